"""Hostile input at the command line: values stay data, bad settings get one-line errors."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.connectors.local import _start_time

ROOT = Path(__file__).parents[2]


def cli(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def test_the_quickstart_runs_no_command_from_a_param(tmp_path: Path) -> None:
    """The issue's reproduction: the value reaches the commands as it is, and runs nothing."""
    value = "$(touch PWNED)"
    proc = cli(
        "run",
        str(ROOT / "dags" / "quickstart.json"),
        "--db",
        "memory:",
        "--json",
        "--param",
        f"region={value}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    jobs = {j["id"]: j for j in json.loads(proc.stdout)["jobs"]["data"]}
    assert jobs["validate"]["logTail"] == f"region {value} looks fine\n"
    assert jobs["extract"]["logTail"].startswith(f"extracting region {value} for run ")
    assert not (tmp_path / "PWNED").exists()


def _one_line_error(proc: subprocess.CompletedProcess[str], expected: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f"orchestrator: {expected}\n"  # one line, no traceback


CRASH_POINTS = (
    "before_submit, after_accept, after_store, mid_poll, mid_commit, after_tick, after_expand"
)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("nonsense", f"unknown point 'nonsense' (one of {CRASH_POINTS})"),
        ("mid_poll:x", "the count after ':' must be a whole number >= 1, got 'x'"),
        ("mid_poll:0", "the count after ':' must be a whole number >= 1, got '0'"),
    ],
)
def test_a_bad_crash_point_is_a_one_line_error(spec: str, expected: str) -> None:
    env = {"ORCHESTRATOR_CRASH_AT": spec}
    proc = cli("validate", str(ROOT / "dags" / "quickstart.json"), env=env)
    _one_line_error(proc, f"ORCHESTRATOR_CRASH_AT: {expected}")
    helped = cli("--help", env=env)  # help needs no crash point: it works
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: orchestrator")
    assert helped.stderr == ""


def test_a_bad_webhook_allow_list_is_a_one_line_error() -> None:
    env = {"ORCHESTRATOR_WEBHOOK_ALLOW": "loopback,bogus"}
    proc = cli("run", str(ROOT / "dags" / "webhooks.json"), "--db", "memory:", env=env)
    _one_line_error(
        proc, "ORCHESTRATOR_WEBHOOK_ALLOW: 'bogus' is not loopback, private, link-local or a CIDR"
    )


@pytest.mark.parametrize("command", ["simulate", "receive"])
@pytest.mark.parametrize("port", ["65536", "-1", "99999"])
def test_a_port_out_of_range_is_a_one_line_error(command: str, port: str) -> None:
    proc = cli(command, "--port", port, timeout=30)
    _one_line_error(proc, f"--port {port}: expected a port number from 0 to 65535")


@pytest.mark.parametrize("command", ["simulate", "receive"])
def test_a_port_in_use_is_a_one_line_error(command: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = cli(command, "--port", str(port), "--host", "127.0.0.1", timeout=30)
    _one_line_error(proc, f"cannot listen on 127.0.0.1:{port}: Address already in use")


def test_a_receive_secret_that_cannot_sign_is_a_one_line_error() -> None:
    proc = cli("receive", "--port", "0", "--secret", "whsec_@@@", timeout=30)
    _one_line_error(
        proc,
        "--secret (or $WEBHOOK_SECRET): no key in it (a whsec_ secret is base64 after its prefix)",
    )


def test_a_command_running_when_the_engine_is_killed_is_stopped_on_resume(tmp_path: Path) -> None:
    started = tmp_path / "started"
    data = {
        "name": "orphan",
        "jobs": {"long": {"type": "command", "command": f"touch {started}; sleep 60"}},
        "jobGraph": {"vertices": ["long"], "edges": []},
    }
    (tmp_path / "dag.json").write_text(json.dumps(data))
    db = tmp_path / "runs.db"
    engine = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", str(tmp_path / "dag.json"), "--db", str(db)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        handle = None
        while handle is None:  # the command runs and its handle is stored
            assert time.monotonic() < deadline, "the command never started"
            if started.exists() and db.exists():
                with contextlib.closing(sqlite3.connect(db)) as conn:
                    row = conn.execute("SELECT handle FROM attempts WHERE state='running'")
                    found = row.fetchone()
                handle = json.loads(found[0]) if found and found[0] else None
            time.sleep(0.05)
        engine.kill()  # kill -9
    finally:
        engine.kill()
        engine.wait(timeout=10)
    assert _start_time(handle["pid"]) == handle["start"]  # outlived the engine
    proc = cli("resume", "--all", "--db", str(db), "--json")
    assert proc.returncode == 1, proc.stderr
    (job,) = json.loads(proc.stdout)["jobs"]["data"]
    assert job["error"] == (
        f"the orchestrator restarted while the command ran: its process group "
        f"(pid {handle['pid']}) was stopped by SIGTERM, as a command is not followed across a "
        "restart"
    )
    assert _start_time(handle["pid"]) is None
