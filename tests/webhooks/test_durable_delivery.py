"""A delivery survives its process: killed during retries, the next process sends it with the
same webhook-id and a fresh timestamp."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from .conftest import Receiver

ROOT = Path(__file__).parents[2]


async def test_kill_during_retries_then_resume_delivers_with_the_same_id(
    receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ORCHESTRATOR_WEBHOOK_SCHEDULE", "0,1s,1s,1s,1s,1s,1s,1s")
    receiver.script["/hook"] = [(503, {}) for _ in range(50)]
    dag = {
        "name": "durable_hooks",
        "webhooks": [
            {"name": "ops", "url": f"{receiver.base_url}/hook", "triggerEvent": "onJobDone"}
        ],
        "jobs": {"only": {"type": "fake"}},
    }
    path = tmp_path / "dag.json"
    path.write_text(json.dumps(dag))
    env = dict(os.environ)
    proc = await anyio.open_process(
        [sys.executable, "-m", "orchestrator", "run", str(path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    await receiver.wait_for("/hook", 2, timeout=30)  # the first try and one retry failed
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    await anyio.sleep(0.3)  # a request the process sent just before dying is still handled
    failed = receiver.on("/hook")
    receiver.script["/hook"] = []  # the endpoint is back
    resumed = await anyio.run_process(
        [sys.executable, "-m", "orchestrator", "resume", "--all"], cwd=ROOT, env=env, check=False
    )
    assert resumed.returncode == 0, resumed.stderr.decode()
    got = receiver.on("/hook")
    assert len(got) > len(failed)  # the resumed process delivered it
    delivered = got[-1]
    assert {r.headers["webhook-id"] for r in got} == {delivered.headers["webhook-id"]}
    assert int(delivered.headers["webhook-timestamp"]) >= int(
        failed[0].headers["webhook-timestamp"]
    )
    listing = await anyio.run_process(
        [sys.executable, "-m", "orchestrator", "webhooks", "list", "--json"], cwd=ROOT, env=env
    )
    (row,) = json.loads(listing.stdout)
    assert row["status"] == "delivered"
    assert [a["httpStatus"] for a in row["attempts"]][-1] == 200
    assert row["id"] == delivered.headers["webhook-id"]
    again = await anyio.run_process(
        [sys.executable, "-m", "orchestrator", "webhooks", "redeliver", row["id"]],
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert again.returncode == 0, again.stderr.decode()
    assert b"delivered" in again.stdout
    last = receiver.on("/hook")[-1]
    assert len(receiver.on("/hook")) > len(got)
    assert last.headers["webhook-id"] == row["id"]
