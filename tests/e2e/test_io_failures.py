"""The process's own I/O failing: a closed stderr or stdout, a log file on a full device, the
store's disk filling mid-run. Logging never ends a run; a store that cannot write stops the run
cleanly (exit 75, one line saying so), leaving it for `resume`."""

from __future__ import annotations

import itertools
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import control, generic_job

ROOT = Path(__file__).parents[2]
EXIT_HALTED = 75


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ORCHESTRATOR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ORCHESTRATOR_CRASH_AT", raising=False)
    return tmp_path / "home"


def local_dag(tmp_path: Path) -> Path:
    """Enough jobs, one after the other, that the run logs after its first line."""
    names = [f"step{i}" for i in range(6)]
    dag = {
        "name": "chatty",
        "jobs": {name: {"type": "fake", "duration": 0.05} for name in names},
        "jobGraph": {
            "vertices": names,
            "edges": [{"source": a, "target": b} for a, b in itertools.pairwise(names)],
        },
    }
    path = tmp_path / "chatty.json"
    path.write_text(json.dumps(dag))
    return path


def stored_runs(home: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(home / "orchestrator.db") as conn:
        return conn.execute("SELECT dag, state FROM runs").fetchall()


def orchestrator(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator", *args]


def test_a_closed_stderr_does_not_end_the_run(tmp_path: Path, home: Path) -> None:
    """`orchestrator run ... 2>&1 | head -1`: the reader goes away after one line."""
    proc = subprocess.Popen(
        orchestrator("run", str(local_dag(tmp_path))),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    assert b"run.started" in proc.stderr.readline()
    proc.stderr.close()
    assert proc.wait(60) == 0
    assert stored_runs(home) == [("chatty", "succeeded")]


def test_a_stderr_closed_from_the_start(tmp_path: Path, home: Path) -> None:
    """`orchestrator run ... 2>&-`: Python starts without a stderr at all."""
    proc = subprocess.run(
        ["sh", "-c", 'exec 2>&-; exec "$@"', "sh", *orchestrator("run", str(local_dag(tmp_path)))],
        cwd=ROOT,
        capture_output=False,
        stdout=subprocess.PIPE,
        timeout=60,
    )
    assert proc.returncode == 0
    assert stored_runs(home) == [("chatty", "succeeded")]


def test_a_closed_stdout_loses_the_report_not_the_run(tmp_path: Path, home: Path) -> None:
    """`orchestrator run ... --json | head -c 10`."""
    proc = subprocess.Popen(
        orchestrator("run", str(local_dag(tmp_path)), "--json", "--log-level", "error"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # before the run prints its report
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert err == b""  # no "Exception ignored", no traceback
    assert stored_runs(home) == [("chatty", "succeeded")]


def test_a_log_file_on_a_full_device(tmp_path: Path, home: Path) -> None:
    proc = subprocess.run(
        orchestrator("run", str(local_dag(tmp_path)), "--log-file", "/dev/full"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "orchestrator: cannot write the log to /dev/full (No space left on device); "
        "the run goes on without it"
    ]
    assert stored_runs(home) == [("chatty", "succeeded")]


def test_a_log_file_that_cannot_be_opened_is_a_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "run.log"
    proc = subprocess.run(
        orchestrator("run", str(local_dag(tmp_path)), "--log-file", str(missing)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr == f"orchestrator: --log-file {missing}: No such file or directory\n"


# -- the store's disk fills mid-run ---------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB file system of its own (tmpfs), so that the test can fill it."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(directory: Path) -> Path:
    # unbuffered: a buffered file that wrote part of a block when the disk filled would try the
    # rest again on close, and raise there (unless what was free happened to be whole blocks)
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    return filler


def test_a_full_disk_stops_the_run_cleanly_and_resume_finishes_it(
    simulator_process: str, small_disk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = f"{simulator_process}/generic"
    control(f"{sim}/_sim/reset", {})
    control(f"{sim}/_sim/behaviour", {"target": "first", "duration": 1.0})
    control(f"{sim}/_sim/behaviour", {"target": "second", "duration": 0.1})
    connections = tmp_path / "connections.toml"
    connections.write_text(f'[sim]\ntype = "http"\nbase_url = "{sim}"\ntoken = "sim-token"\n')
    dag = tmp_path / "full.json"
    dag.write_text(
        json.dumps(
            {
                "name": "full",
                "jobs": {"first": generic_job("first"), "second": generic_job("second")},
                "jobGraph": {
                    "vertices": ["first", "second"],
                    "edges": [{"source": "first", "target": "second"}],
                },
            }
        )
    )
    monkeypatch.setenv("ORCHESTRATOR_HOME", str(small_disk))
    db = small_disk / "orchestrator.db"
    args = ["--connections", str(connections), "--no-progress", "--log-file", str(tmp_path / "log")]
    proc = subprocess.Popen(
        orchestrator("run", str(dag), *args),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while True:  # until the first job's handle is stored, then the disk fills
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                row = conn.execute("SELECT state FROM jobs WHERE job_id = 'first'").fetchone()
        except sqlite3.OperationalError:
            row = None
        if row == ("running",):
            break
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the first job did not start"
        time.sleep(0.05)
    filler = _fill(small_disk)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_HALTED, err
    (run_id,) = (row[0] for row in sqlite3.connect(db).execute("SELECT id FROM runs"))
    assert err == (
        f"orchestrator: run {run_id} stopped: {db}: database or disk is full; its state is kept "
        f"as it was, remote jobs left running: `orchestrator resume {run_id}` continues it once "
        "the store works\n"
    )
    assert control(f"{sim}/_sim/counters")["cancels"] == 0  # left running, not cancelled
    assert stored_runs(small_disk) == [("full", "running")]

    filler.unlink()
    resumed = subprocess.run(
        orchestrator("resume", run_id, *args), cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert resumed.returncode == 0, resumed.stderr
    assert stored_runs(small_disk) == [("full", "succeeded")]
    submissions = control(f"{sim}/_sim/counters")["submissions"]  # by idempotency key
    assert submissions == {f"{run_id}/first/1": 1, f"{run_id}/second/1": 1}
