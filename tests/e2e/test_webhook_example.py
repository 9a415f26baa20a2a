"""dags/webhooks.json delivers every webhook to `orchestrator receive`, signed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).parents[2]
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_webhook_example_reaches_the_receiver(tmp_path: Path) -> None:
    port = free_port()
    dag = tmp_path / "webhooks.json"
    dag.write_text(
        (ROOT / "dags" / "webhooks.json").read_text().replace("127.0.0.1:9000", f"127.0.0.1:{port}")
    )
    env = {
        **os.environ,
        "ORCHESTRATOR_HOME": str(tmp_path / "home"),
        "ORCHESTRATOR_WEBHOOK_ALLOW": "loopback",
        "WEBHOOK_SECRET": SECRET,
    }
    receiver = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "receive", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert receiver.stdout is not None
        assert "receiving webhooks" in receiver.stdout.readline()
        run = subprocess.run(
            [sys.executable, "-m", "orchestrator", "run", str(dag), "--json"],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=60,
        )
        assert run.returncode == 1  # flaky fails: the all_done report after it does not hide it
        report = json.loads(run.stdout.strip().splitlines()[-1])
        lines: list[str] = []
        stdout = receiver.stdout
        reader = threading.Thread(
            target=lambda: lines.extend(iter(stdout.readline, "")), daemon=True
        )
        reader.start()
        deadline = time.monotonic() + 15
        while len(lines) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = [line.rstrip("\n") for line in lines]
    finally:
        receiver.terminate()
        receiver.communicate(timeout=10)
    assert len(lines) == 4, lines
    assert sorted(line.split()[2] for line in lines) == ["/alerts", "/jobs", "/jobs", "/runs"]
    signed = [line for line in lines if "signature=ok" in line]
    assert len(signed) == 4  # the receiver refuses (401) an unsigned one
    assert any(
        "/alerts" in line and '"alert": "flaky failed: the remote said no"' in line
        for line in lines
    )
    assert any(f"webhooks_demo run {report['id']} ended: failed" in line for line in lines)
    assert any(line.split()[1] == "GET" for line in lines)
