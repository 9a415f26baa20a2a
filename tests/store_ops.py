"""Store operations for tests: one job or attempt step as the engine would hand it over."""

from __future__ import annotations

from typing import Any

import anyio

from orchestrator.model.states import AttemptState, JobState
from orchestrator.store.base import (
    AttemptEvent,
    AttemptRow,
    Changes,
    JobEvent,
    JobRow,
    Operation,
    Store,
)


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
    row = JobRow(run_id, job_id, old, new, outputs=outputs, notes=notes, **fields)
    event = JobEvent(job_id, old, new, at, fields.get("error"))
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
    old = AttemptState(expected) if expected is not None else None
    new = AttemptState(state)
    row = AttemptRow(
        run_id,
        job_id,
        n,
        old,
        key or f"{run_id}/{job_id}/{n}",
        new,
        handle,
        submitted_at=at if expected is None else None,
        accepted_at=at if handle is not None else None,
        ended_at=at if state not in ("submitting", "running") else None,
        error=error,
    )
    event = AttemptEvent(job_id, n, old, new, at, handle, error)
    return Changes(run_id, attempts=[row], events=[event])


def lifecycle(job_id: str) -> list[list[Operation]]:
    """Five single-operation batches that take one job from pending to succeeded."""
    J = JobState
    return [
        [job(J.PENDING, J.QUEUED, job_id, at=2.0)],
        [job(J.QUEUED, J.SUBMITTING, job_id, at=3.0, attempts=1)],
        [attempt(1, None, "submitting", 3.0, job_id=job_id)],
        [
            job(
                J.SUBMITTING,
                J.RUNNING,
                job_id,
                at=4.0,
                attempts=1,
                remote_status="RUNNING",
            )
        ],
        [job(J.RUNNING, J.SUCCEEDED, job_id, at=5.0, attempts=1, outputs={"n": 1})],
    ]


async def run_lifecycles(store: Store, jobs: tuple[str, ...], writers: int = 200) -> None:
    """``writers`` concurrent tasks (like the jobs of a wide DAG) take the jobs one by one."""
    todo = list(reversed(jobs))

    async def writer() -> None:
        while todo:
            for batch in lifecycle(todo.pop()):
                await store.apply(batch)

    async with anyio.create_task_group() as tg:
        for _ in range(writers):
            tg.start_soon(writer)
