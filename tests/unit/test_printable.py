"""What reaches a terminal: control, format (bidi) and other non-printable characters escaped."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator import DAG, Job, JobContext, run_dag
from orchestrator.cli.progress import Progress
from orchestrator.model.states import JobState, RunState
from orchestrator.printable import printable
from orchestrator.store.base import CreateRun, RunRecord
from orchestrator.store.open import open_store
from tests.store_ops import job


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain words, ünïcödé and 日本語", "plain words, ünïcödé and 日本語"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("nul\x00byte", "nul\\x00byte"),
        ("abc\u202edcba", "abc\\u202edcba"),  # right-to-left override
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("two\nlines\ttab\rcr", "two\\nlines\\ttab\\rcr"),
        ("\U000e0041tag", "\\U000e0041tag"),
        (42, "42"),
    ],
)
def test_printable(text: object, shown: str) -> None:
    assert printable(text) == shown


def test_printable_keeps_newlines_when_asked() -> None:
    assert printable("one\x1b\ntwo", keep_newlines=True) == "one\\x1b\ntwo"


def _fails(ctx: JobContext) -> None:
    raise RuntimeError("remote says \x1b]0;owned\x07\x1b[2J\u202eevil")


async def test_progress_escapes_what_a_job_reported() -> None:
    with DAG("shown") as dag:
        Job("a", "python", call=_fails)
    dag.validate()
    run = await run_dag(dag)
    screen = io.StringIO()
    Progress(run, stream=screen).draw()
    drawn = screen.getvalue()
    assert "remote says \\x1b]0;owned\\x07\\x1b[2J\\u202eevil" in drawn
    assert "\x07" not in drawn
    assert "\u202e" not in drawn
    assert drawn.count("\x1b") == drawn.count("\x1b[2K")  # the progress's own line clears


def test_console_logs_escape_what_they_show() -> None:
    from orchestrator.logs import printable_processor

    event = {"event": "job.ended", "error": "bad\x1b[2J\u202e\nsecond line", "attempt": 1}
    assert printable_processor(None, "warning", event) == {
        "event": "job.ended",
        "error": "bad\\x1b[2J\\u202e\nsecond line",
        "attempt": 1,
    }


async def test_runs_list_and_show_escape_a_stored_run(tmp_path: Path) -> None:
    """A run stored before ids were checked, with what a remote said in its error."""
    db = tmp_path / "old.db"
    hostile = "a\x1b[2J\u202e"
    store = await open_store(str(db))
    try:
        record = RunRecord("r1", hostile, "hash", {}, "manual", RunState.QUEUED, created_at=1.0)
        await store.apply([CreateRun(record, {"name": hostile}, [hostile])])
        await store.apply(
            [job(JobState.PENDING, JobState.FAILED, job_id=hostile, error=f"said {hostile}")]
        )
    finally:
        await store.aclose()
    for args in (["runs", "list"], ["runs", "show", "r1"]):
        proc = subprocess.run(
            [sys.executable, "-m", "orchestrator", *args, "--db", str(db)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert "a\\x1b[2J\\u202e" in proc.stdout
        assert "\x1b" not in proc.stdout
        assert "\u202e" not in proc.stdout
