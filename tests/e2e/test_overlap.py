"""The overlap policy between processes, through the store; orphaned runs do not block."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parents[2]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ORCHESTRATOR_HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    """The processes a test started; those still running at its end are killed, so that a
    failed test leaves no process (nor a ResourceWarning that a later test would report)."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def sleeping(seconds: float) -> list[str]:
    return ["sleep", str(seconds)]


def gated(gate: Path, started: Path | None = None) -> list[str]:
    """A command that runs until ``gate`` exists (at most about a minute, then fails);
    it creates ``started`` first."""
    touch = f"touch '{started}'; " if started else ""
    script = f"{touch}for _ in $(seq 1200); do [ -e '{gate}' ] && exit 0; sleep 0.05; done; exit 1"
    return ["sh", "-c", script]


def dag_file(tmp_path: Path, work: list[str], overlap: str | None = None) -> Path:
    data: dict[str, Any] = {
        "name": "nightly",
        "jobs": {
            "work": {"type": "command", "command": work},
            "after": {"type": "fake"},
        },
        "jobGraph": {
            "vertices": ["work", "after"],
            "edges": [{"source": "work", "target": "after"}],
        },
    }
    if overlap:
        data["schedule"] = {"overlap": overlap}
    path = tmp_path / f"nightly-{overlap or 'default'}.json"
    path.write_text(json.dumps(data))
    return path


def start(procs: list[subprocess.Popen[str]], *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    procs.append(proc)
    return proc


def wait_started(proc: subprocess.Popen[str]) -> str:
    """Read stderr until the run started; return its id."""
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    for line in proc.stderr:
        if '"run.started"' in line:
            return str(json.loads(line)["run"])
        assert time.monotonic() < deadline, "the run did not start"
    raise AssertionError("the process ended before its run started")


def orchestrator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )


def runs(*args: str) -> list[dict[str, Any]]:
    proc = orchestrator("runs", "list", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return list(json.loads(proc.stdout))


def wait_for_handle(run_id: str, job: str) -> None:
    """Until the store holds the remote handle of ``job``'s attempt (for a command: its
    process), as a resumed run will read it."""
    deadline = time.monotonic() + 60
    while True:
        proc = orchestrator("runs", "show", run_id, "--json")
        assert proc.returncode == 0, proc.stderr
        attempts = json.loads(proc.stdout)["attempts"]
        if any(a["job"] == job and a["remote"] is not None for a in attempts):
            return
        assert time.monotonic() < deadline, f"no handle stored for {job}: {attempts}"
        time.sleep(0.1)


def test_second_run_is_refused_while_the_first_is_active(
    home: Path, started: list[subprocess.Popen[str]]
) -> None:
    gate = home / "gate"
    path = dag_file(home, gated(gate))
    first = start(started, "run", str(path), "--json")
    first_id = wait_started(first)
    second = orchestrator("run", str(path))
    assert second.returncode == 4
    assert first_id in second.stderr
    assert "overlap policy is skip" in second.stderr
    gate.touch()  # the first run ends only now: the second one saw it active
    _out, _ = first.communicate(timeout=30)
    assert first.returncode == 0
    assert [r["id"] for r in runs("--dag", "nightly")] == [first_id]


def test_queue_waits_for_the_active_run(home: Path, started: list[subprocess.Popen[str]]) -> None:
    path = dag_file(home, sleeping(2), overlap="queue")
    first = start(started, "run", str(path))
    wait_started(first)
    second = subprocess.run(
        [sys.executable, "-m", "orchestrator", "run", str(path), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    first.communicate(timeout=30)
    assert second.returncode == 0, second.stderr
    listed = runs("--dag", "nightly")
    assert [r["status"] for r in listed] == ["succeeded", "succeeded"]
    newest, oldest = listed
    assert newest["startedAt"] >= oldest["endedAt"]


def test_a_run_whose_process_died_is_resumed_by_the_next_run(
    home: Path, started: list[subprocess.Popen[str]]
) -> None:
    path = dag_file(home, gated(home / "never"))
    first = start(started, "run", str(path))
    first_id = wait_started(first)
    wait_for_handle(first_id, "work")  # killed once its command is running, as recorded
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=10)
    assert [r["status"] for r in runs()] == ["running"]
    second = subprocess.run(
        [sys.executable, "-m", "orchestrator", "run", str(dag_file(home, sleeping(0.1))), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ},
    )
    assert second.returncode == 0, second.stderr
    assert '"run.orphaned"' in second.stderr
    by_id = {r["id"]: r for r in runs()}
    # the orphan was resumed to its end: its command's process was gone, so that job failed
    assert by_id[first_id]["status"] == "failed"
    assert len(by_id) == 2


def test_cancel_previous_cancels_the_run_of_another_process_then_starts(
    home: Path, started: list[subprocess.Popen[str]]
) -> None:
    """The active run belongs to another process: its cancel goes through the store, its
    owner cancels it (its command killed), and the new run starts once it ended."""
    gate = home / "gate"
    path = dag_file(home, gated(gate), overlap="cancel_previous")
    first = start(started, "run", str(path), "--json")
    first_id = wait_started(first)
    wait_for_handle(first_id, "work")
    second = start(started, "run", str(path), "--json")
    first.communicate(timeout=30)  # ends once its owner read the request and cancelled it
    assert first.returncode == 3
    gate.touch()  # the second run's command may end now
    second.communicate(timeout=60)
    assert second.returncode == 0
    newest, oldest = runs("--dag", "nightly")
    assert (oldest["id"], oldest["status"]) == (first_id, "cancelled")
    assert "cancel_previous" in oldest["reason"]
    assert newest["status"] == "succeeded"
    assert newest["startedAt"] >= oldest["endedAt"]


def test_runs_cancel_cancels_a_run_in_another_process(
    home: Path, started: list[subprocess.Popen[str]]
) -> None:
    path = dag_file(home, gated(home / "never"))
    first = start(started, "run", str(path), "--json")
    first_id = wait_started(first)
    cancel = orchestrator("runs", "cancel", first_id[:8], "--reason", "by me")
    assert cancel.returncode == 0, cancel.stderr
    first.communicate(timeout=30)
    assert first.returncode == 3
    [run] = runs("--dag", "nightly")
    assert (run["status"], run["reason"]) == ("cancelled", "by me")
    again = orchestrator("runs", "cancel", first_id)
    assert again.returncode == 4
    assert "not active (cancelled)" in again.stderr


def test_runs_cancel_job_cancels_one_job_of_a_run_in_another_process(
    home: Path, started: list[subprocess.Popen[str]]
) -> None:
    """`runs cancel RUN --job JOB`: the run's owner reads the request, cancels the job (its
    command killed) and goes on; its dependent follows its trigger rule."""
    path = dag_file(home, gated(home / "never"))
    first = start(started, "run", str(path), "--json")
    first_id = wait_started(first)
    wait_for_handle(first_id, "work")
    cancel = orchestrator("runs", "cancel", first_id[:8], "--job", "work")
    assert cancel.returncode == 0, cancel.stderr
    assert "cancel requested" in cancel.stdout
    first.communicate(timeout=30)
    assert first.returncode == 1  # not cancelled as a whole: failed, its last job not run
    [run] = runs("--dag", "nightly")
    assert run["status"] == "failed"
    shown = orchestrator("runs", "show", first_id, "--json")
    jobs = {j["id"]: j for j in json.loads(shown.stdout)["jobs"]["data"]}
    assert (jobs["work"]["status"], jobs["work"]["error"]) == (
        "cancelled",
        "cancelled from the command line",
    )
    assert jobs["after"]["status"] == "upstream_failed"
    again = orchestrator("runs", "cancel", first_id, "--job", "work")
    assert again.returncode == 0  # cancelled already: said so
    assert "cancelled" in again.stdout
    other = orchestrator("runs", "cancel", first_id, "--job", "nope")
    assert other.returncode == 2
    assert "has no job 'nope'" in other.stderr
