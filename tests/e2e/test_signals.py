"""Signals as users send them: to the whole process group (Ctrl-C on a terminal, `timeout`,
`kill -- -PGID`, systemd and docker stop), not just to the orchestrator's own pid.

The remote (the generic job API of `orchestrator simulate`) runs in a process of its own, so it
counts the cancel the orchestrator sends; the store is read back with sqlite3 afterwards.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import sqlite3
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import control, generic_job

ROOT = Path(__file__).parents[2]


@pytest.fixture
def case(simulator_process: str, tmp_path: Path) -> dict[str, Any]:
    """A DAG whose first job runs on the remote for a minute, then a local one."""
    simulator = f"{simulator_process}/generic"
    control(f"{simulator}/_sim/reset", {})
    control(f"{simulator}/_sim/behaviour", {"target": "long", "duration": 60})
    connections = tmp_path / "connections.toml"
    connections.write_text(f'[sim]\ntype = "http"\nbase_url = "{simulator}"\ntoken = "sim-token"\n')
    dag = {
        "name": "signalled",
        "jobs": {
            "long": generic_job("long"),
            "after": {"type": "fake"},
        },
        "jobGraph": {
            "vertices": ["long", "after"],
            "edges": [{"source": "long", "target": "after"}],
        },
    }
    path = tmp_path / "signalled.json"
    path.write_text(json.dumps(dag))
    env = {**os.environ, "ORCHESTRATOR_HOME": str(tmp_path / "home")}
    env.pop("ORCHESTRATOR_CRASH_AT", None)
    args = [sys.executable, "-m", "orchestrator", "run", str(path)]
    args += ["--connections", str(connections)]
    return {"args": args, "env": env, "db": tmp_path / "home" / "orchestrator.db", "sim": simulator}


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []


def _wait_until_running(case: dict[str, Any], proc: subprocess.Popen[Any]) -> None:
    """Until the remote job's handle is stored: the job is `running` in the store."""
    deadline = time.monotonic() + 30
    while _rows(case["db"], "SELECT state FROM jobs WHERE job_id = 'long'") != [("running",)]:
        assert proc.poll() is None, "the run ended early"
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.05)


def _assert_cancelled_and_recorded(case: dict[str, Any]) -> None:
    assert _rows(case["db"], "SELECT state FROM runs") == [("cancelled",)]
    states = dict(_rows(case["db"], "SELECT job_id, state FROM jobs"))
    assert states == {"long": "cancelled", "after": "cancelled"}
    assert control(f"{case['sim']}/_sim/counters")["cancels"] == 1


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _ended(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")  # a zombie has ended


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_process_group_cancels_and_records(
    case: dict[str, Any], sig: signal.Signals
) -> None:
    proc = subprocess.Popen(
        [*case["args"], "--no-progress"],
        env=case["env"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a group of its own, as a shell gives a command
    )
    _wait_until_running(case, proc)
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert "Traceback" not in err
    _assert_cancelled_and_recorded(case)


def test_ctrl_c_on_a_terminal_cancels_and_records(case: dict[str, Any]) -> None:
    master, slave = pty.openpty()

    def controlling_terminal() -> None:  # a session whose terminal is the pty, as a shell's
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        case["args"],
        env=case["env"],
        cwd=ROOT,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        preexec_fn=controlling_terminal,  # the test's own child
    )
    os.close(slave)
    screen = bytearray()
    try:
        _wait_until_running(case, proc)
        os.write(master, b"\x03")  # the terminal sends SIGINT to its foreground group
        deadline = time.monotonic() + 60
        while proc.poll() is None:
            assert time.monotonic() < deadline, "the run did not end"
            try:
                screen += os.read(master, 65536)
            except OSError:  # the terminal closed: every process on it has ended
                break
        assert proc.wait(30) == 3, screen.decode(errors="replace")[-2000:]
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    assert b"Traceback" not in screen
    _assert_cancelled_and_recorded(case)


def test_the_writer_ends_with_a_killed_engine(case: dict[str, Any]) -> None:
    """SIGKILL leaves no cleanup to the engine; its store writer must end by itself."""
    proc = subprocess.Popen(
        [*case["args"], "--no-progress"],
        env=case["env"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _wait_until_running(case, proc)
    writers = _children(proc.pid)
    assert writers, "the engine has no writer process"
    proc.kill()
    proc.wait(10)
    deadline = time.monotonic() + 20
    while not all(_ended(pid) for pid in writers):
        assert time.monotonic() < deadline, "the writer outlived the engine"
        time.sleep(0.05)
    assert _rows(case["db"], "SELECT state FROM runs") == [("running",)]  # resumable
