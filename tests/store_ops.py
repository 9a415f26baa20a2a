"""Store operations for tests: one job or attempt step as the engine would hand it over."""

from __future__ import annotations

import json
from typing import Any

from orchestrator.states import JobState
from orchestrator.store.base import AttemptRow, Changes, JobRow, event_json


def job(
    old: JobState,
    new: JobState,
    job_id: str = "a",
    run_id: str = "r1",
    at: float = 2.0,
    *,
    outputs: dict[str, Any] | None = None,
    notes: list[str] | None = None,
    **fields: Any,
) -> Changes:
    """One job row moving ``old`` -> ``new`` (the other fields as given: a row is the whole
    record) with the event of that step."""
    row = JobRow(
        run_id,
        job_id,
        old.value,
        new.value,
        outputs=json.dumps(outputs) if outputs else None,
        notes=json.dumps(notes) if notes else None,
        **fields,
    )
    error = fields.get("error")
    event = event_json(job_id, "job", old.value, new.value, at, {"error": error} if error else None)
    return Changes(run_id, jobs=[row], events=[event])


def attempt(
    n: int,
    expected: str | None,
    state: str,
    at: float,
    *,
    job_id: str = "a",
    run_id: str = "r1",
    key: str | None = None,
    handle: dict[str, Any] | None = None,
    error: str | None = None,
) -> Changes:
    """One attempt row: ``expected`` None inserts it (submitted at ``at``), else it moves on
    from ``expected`` (accepted at ``at`` when a handle is given)."""
    row = AttemptRow(
        run_id,
        job_id,
        n,
        expected,
        key or f"{run_id}/{job_id}/{n}",
        state,
        json.dumps(handle) if handle is not None else None,
        submitted_at=at if expected is None else None,
        accepted_at=at if handle is not None else None,
        ended_at=at if state not in ("submitting", "running") else None,
        error=error,
    )
    data: dict[str, Any] = {"attempt": n}
    if handle is not None:
        data["handle"] = handle
    if error is not None:
        data["error"] = error
    event = event_json(job_id, "attempt", expected, state, at, data)
    return Changes(run_id, attempts=[row], events=[event])
