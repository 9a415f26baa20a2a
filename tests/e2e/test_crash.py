"""Crash tests: the CLI, killed at every crash point and at random moments, then resumed.

The remote (the generic job API simulator of `orchestrator simulate`) lives in its own process,
so it sees every request the orchestrator made before dying. After `resume --all`, every run
must have ended in the right state, the remote must have accepted at most one submission per
idempotency key, and the event log must hold an unbroken chain of every job's states.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import generic_job

ROOT = Path(__file__).parents[2]
CRASH_EXIT = 70


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def simulator() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "simulate",
            "--port",
            str(port),
            "--log-level",
            "error",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/generic"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"{base}/_sim/counters", timeout=1).read()
            break
        except OSError:
            assert time.monotonic() < deadline, "the simulator did not start"
            time.sleep(0.05)
    yield base
    proc.terminate()
    proc.wait(10)


def control(base: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base + path, data=data, headers={"Content-Type": "application/json"}
    )
    return json.loads(urllib.request.urlopen(request, timeout=5).read())


@pytest.fixture
def setup(simulator: str, tmp_path: Path) -> dict[str, Any]:
    control(simulator, "/_sim/reset", {})
    control(simulator, "/_sim/behaviour", {"target": "slow", "duration": 1.5})
    control(simulator, "/_sim/behaviour", {"target": "quick", "duration": 0.2})
    connections = tmp_path / "connections.toml"
    connections.write_text(f'[sim]\ntype = "http"\nbase_url = "{simulator}"\ntoken = "sim-token"\n')
    dag = {
        "name": "crashy",
        "jobs": {
            "extract": generic_job("slow"),
            "left": generic_job("quick"),
            "right": generic_job("quick"),
            "join": generic_job("quick"),
        },
        "jobGraph": {
            "vertices": ["extract", "left", "right", "join"],
            "edges": [
                {"source": "extract", "target": "left"},
                {"source": "extract", "target": "right"},
                {"source": "left", "target": "join"},
                {"source": "right", "target": "join"},
            ],
        },
    }
    path = tmp_path / "crashy.json"
    path.write_text(json.dumps(dag))
    env = {
        **os.environ,
        "ORCHESTRATOR_HOME": str(tmp_path / "home"),
        "ORCHESTRATOR_CONNECTIONS": str(connections),
    }
    env.pop("ORCHESTRATOR_CRASH_AT", None)
    return {"dag": path, "env": env, "db": tmp_path / "home" / "orchestrator.db", "base": simulator}


def cli(
    setup: dict[str, Any], *args: str, crash: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = dict(setup["env"])
    if crash:
        env["ORCHESTRATOR_CRASH_AT"] = crash
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def check_history(setup: dict[str, Any]) -> None:
    """Every run ended well; one accepted submission per key; no event lost."""
    conn = sqlite3.connect(setup["db"])
    try:
        runs = conn.execute("SELECT id, state FROM runs").fetchall()
        assert runs, "no run was recorded"
        for run_id, state in runs:
            assert state == "succeeded", (run_id, state)
            jobs = dict(
                conn.execute(
                    "SELECT job_id, state FROM jobs WHERE run_id = ?", (run_id,)
                ).fetchall()
            )
            assert set(jobs.values()) == {"succeeded"}, jobs
            for job_id in jobs:
                chain = conn.execute(
                    "SELECT old, new FROM events WHERE run_id = ? AND job_id = ? AND kind = 'job' "
                    "ORDER BY seq",
                    (run_id, job_id),
                ).fetchall()
                assert chain[0][0] == "pending", chain
                for (_, new), (old, _) in itertools.pairwise(chain):
                    assert old == new, (
                        f"{job_id}: a state change is missing from the event log: {chain}"
                    )
                assert chain[-1][1] == "succeeded"
            run_chain = [
                r[0]
                for r in conn.execute(
                    "SELECT new FROM events WHERE run_id = ? AND job_id IS NULL ORDER BY seq",
                    (run_id,),
                )
            ]
            assert run_chain == ["queued", "running", "succeeded"], run_chain
    finally:
        conn.close()
    counters = control(setup["base"], "/_sim/counters")
    submissions = counters["submissions"]
    assert submissions, "the remote accepted nothing"
    assert all(count == 1 for count in submissions.values()), submissions
    assert len(submissions) == 4 * len(runs)


@pytest.mark.parametrize(
    "point",
    ["before_submit", "after_accept", "after_store", "mid_poll", "mid_commit:3", "mid_commit:6"],
)
def test_crash_point_then_resume(setup: dict[str, Any], point: str) -> None:
    crashed = cli(setup, "run", str(setup["dag"]), crash=point)
    assert crashed.returncode == CRASH_EXIT, crashed.stderr[-2000:]
    resumed = cli(setup, "resume", "--all")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    check_history(setup)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_at_a_random_moment_then_resume(setup: dict[str, Any], seed: int) -> None:
    delay = random.Random(seed).uniform(0.2, 2.0)
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", str(setup["dag"])],
        cwd=ROOT,
        env=setup["env"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    resumed = cli(setup, "resume", "--all")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    conn = sqlite3.connect(setup["db"])
    started = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    conn.close()
    if started == 0:  # killed before the run was recorded: nothing may have been sent
        assert control(setup["base"], "/_sim/counters")["submissions"] == {}
        return
    check_history(setup)
