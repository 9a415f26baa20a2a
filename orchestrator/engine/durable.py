"""Runs in the store: starting one (with the overlap policy), and loading one to resume it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio

from ..errors import DagError, StoreError
from ..model.dag import DAG
from ..model.formats import to_json
from ..model.loader import dag_from_json, load_path
from ..model.states import JobState, RunState
from ..model.validation import schedule_field_problem
from ..store.base import (
    AttemptRecord,
    AttemptRow,
    CreateRun,
    JobRecord,
    Receipt,
    RecordTick,
    RunRecord,
    Store,
    TickRecord,
)
from .records import Run


def dag_definition(dag: DAG) -> tuple[dict[str, Any], str]:
    """The DAG as stored with a run (secrets as written, i.e. ``${ENV}`` references), and its
    hash."""
    definition, digest, _ = encoded_definition(dag)
    return definition, digest


def encoded_definition(dag: DAG) -> tuple[dict[str, Any], str, str]:
    """:func:`dag_definition` and the definition as JSON, encoded once: the hash is that of
    the canonical JSON (keys sorted) without ``x-source``, which is appended to it for the
    store."""
    definition = to_json(dag, mask=False)
    # no check for cycles (a fifth of the time): a job's fields are plain data, a cycle in them
    # is refused when the job is made
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), check_circular=False)
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    if not dag.source:
        return definition, digest, canonical
    source = str(Path(dag.source).resolve())
    comma = "," if canonical != "{}" else ""
    stored = f"{canonical[:-1]}{comma}{json.dumps('x-source')}:{json.dumps(source)}}}"
    return {**definition, "x-source": source}, digest, stored


def overlap_policy(dag: DAG, override: str | None = None) -> str:
    """The policy of a new run: ``override``, else the DAG's ``schedule.overlap``, else skip;
    checked as ``validate`` checks it."""
    policy = override or (dag.schedule or {}).get("overlap") or "skip"
    if (problem := schedule_field_problem("overlap", policy)) is not None:
        raise DagError(f"{dag.source or dag.name}: field 'schedule.overlap': {problem}")
    return str(policy)


async def record_new_run(store: Store, run: Run, *, owner: str, at: float, exclusive: bool) -> None:
    """Store a new run, its DAG and its pending jobs; ``exclusive`` refuses it (raising
    ActiveRunExists) if another run of the DAG is active."""
    await send_new_run(store, run, owner=owner, at=at, exclusive=exclusive).wait()


def send_new_run(
    store: Store,
    run: Run,
    *,
    owner: str,
    at: float,
    exclusive: bool,
    tick: TickRecord | None = None,
    idempotency_key: str | None = None,
) -> Receipt:
    """:func:`record_new_run` without waiting: the run goes to the store now, ahead of any
    later write, and the receipt says when it is stored (or why not). Wait for it before the
    run's first job is submitted. A schedule's ``tick`` is recorded in the same transaction
    (refused with TickExists, and the run with it, if that tick was recorded before); a
    client's ``idempotency_key`` is unique (RunExists names the run that has it)."""
    definition, digest, encoded = encoded_definition(run.dag)
    record = RunRecord(
        id=run.id,
        dag=run.dag.name,
        dag_hash=digest,
        params=dict(run.params),
        trigger=run.trigger,
        state=RunState.QUEUED,
        created_at=at,
        owner=owner,
        heartbeat_at=at,
        nominal_at=tick.nominal if tick is not None else None,
    )
    create = CreateRun(record, definition, list(run.dag.jobs), exclusive, encoded, idempotency_key)
    return store.submit([RecordTick(tick), create] if tick is not None else [create])


async def load_dag_for(store: Store, record: RunRecord) -> DAG:
    """The DAG a run was started with: its source file if it still defines the same DAG (Python
    callables come back that way), else the stored definition."""
    definition = await store.get_dag_definition(record.dag_hash)
    if definition is None:
        raise StoreError(f"run {record.id}: its DAG definition {record.dag_hash[:12]} is missing")
    source = definition.get("x-source")
    if source and await anyio.Path(source).is_file():
        try:
            for dag in load_path(source):
                if dag.name == record.dag and dag_definition(dag)[1] == record.dag_hash:
                    return dag
        except DagError:
            pass
    data = {k: v for k, v in definition.items() if k != "x-source"}
    dag = dag_from_json(data, source=f"run {record.id} (stored definition)")
    python_jobs = [job.id for job in dag if job.type == "python"]
    if python_jobs:
        raise StoreError(
            f"run {record.id}: Python jobs {', '.join(python_jobs)} need their DAG file "
            f"{source or '(unknown)'} unchanged to resume"
        )
    dag.validate()
    return dag


def restore(
    run: Run,
    jobs: Mapping[str, JobRecord],
    attempts: list[AttemptRecord],
    *,
    count: bool = True,
) -> None:
    """Put stored states back into a fresh executor's records (call after building it); and,
    with ``count``, the ended jobs into their dependents' counts (:func:`count_ended`)."""
    last: dict[str, AttemptRecord] = {}
    for each in attempts:
        last[each.job_id] = each
    for job_id, record in jobs.items():
        jr = run.jobs[job_id]
        jr.state = jr.stored_state = record.state
        jr.attempts = record.attempts
        jr.error = record.error
        jr.remote_status = record.remote_status
        jr.outputs = dict(record.outputs)
        jr.log_tail = record.log_tail
        jr.notes = list(record.notes)
        jr.started_at = record.started_at
        jr.ended_at = record.ended_at
        jr.retry_at = record.retry_at
        attempt = last.get(job_id)
        if attempt is not None:
            jr.handle = attempt.handle
            state = attempt.state
            jr.attempt_row = AttemptRow(
                run.id,
                job_id,
                attempt.attempt,
                state,
                attempt.key,
                state,
                attempt.handle,
                attempt.submitted_at,
                attempt.accepted_at,
                attempt.ended_at,
                attempt.error,
            )
            jr.attempt_stored = state
            if record.state in (JobState.SUBMITTING, JobState.RUNNING) and not attempt.state.live:
                raise StoreError(
                    f"run {run.id}: job {job_id} is {record.state.value} but its attempt "
                    f"{attempt.attempt} is {attempt.state}"
                )
    if count:
        count_ended(run)


def count_ended(run: Run) -> None:
    """The ended jobs of a restored run, in their dependents' upstream counts."""
    for jr in run.jobs.values():
        if jr.state.terminal:
            for child in jr.children:
                child.counts.add(jr.state)
