"""Rerunning the failed jobs of an ended run as a new run: the jobs that succeeded (or were
skipped) are carried over as they ended, recorded so in the new run with their outputs, and
only the others run (what Airflow calls clearing the failed tasks of a DAG run)."""

from __future__ import annotations

import time
from collections.abc import Mapping

from ..engine.durable import load_dag_for
from ..engine.records import Run
from ..errors import OrchestratorError
from ..model.states import JobState
from ..store.base import Changes, JobEvent, JobRecord, JobRow, Lease, RunRecord, Store
from .prepare import new_run_id

CARRIED = (JobState.SUCCEEDED, JobState.SKIPPED)  # what a rerun keeps


class NothingToRerun(OrchestratorError):
    """The run has not ended, or none of its jobs needs running again."""


async def plan_rerun(store: Store, record: RunRecord) -> tuple[Run, dict[str, JobRecord]]:
    """The new run of ``record``'s DAG (as it ran, with its parameters) and the jobs it keeps."""
    if not record.state.terminal:
        raise NothingToRerun(f"run {record.id} has not ended ({record.state.value})")
    jobs = await store.get_jobs(record.id)
    if all(job.state in CARRIED for job in jobs.values()):
        raise NothingToRerun(f"run {record.id}: every job succeeded, there is nothing to rerun")
    dag = await load_dag_for(store, record)
    run = Run(new_run_id(), dag, dict(record.params), "rerun")
    kept = {
        job_id: job for job_id, job in jobs.items() if job.state in CARRIED and job_id in dag.jobs
    }
    # a mapped job kept: its instances with it (a failed one runs again, all its instances)
    kept.update(
        (job_id, job)
        for job_id, job in jobs.items()
        if job_id not in dag.jobs and job_id.endswith("]") and _mapped_job(job_id) in kept
    )
    return run, kept


def _mapped_job(instance_id: str) -> str:
    return instance_id[: instance_id.rfind("[")]


async def carry_over(
    store: Store, run: Run, kept: Mapping[str, JobRecord], owner: str
) -> dict[str, JobRecord]:
    """Record the kept jobs in the new run as they ended (with their outputs and a note saying
    where they come from); returns them as the new run's records, to start it from."""
    now = time.time()
    records: dict[str, JobRecord] = {}
    rows: list[JobRow] = []
    events: list[JobEvent] = []
    for job_id, old in kept.items():
        note = f"carried over from run {old.run_id} ({old.state.value})"
        record = JobRecord(
            run.id,
            job_id,
            old.state,
            0,
            None,
            old.remote_status,
            dict(old.outputs),
            None,
            [*old.notes, note],
            old.started_at,
            old.ended_at,
        )
        records[job_id] = record
        rows.append(
            JobRow(
                run.id,
                job_id,
                JobState.PENDING,
                old.state,
                outputs=record.outputs or None,
                remote_status=record.remote_status,
                notes=record.notes,
                started_at=record.started_at,
                ended_at=record.ended_at,
            )
        )
        events.append(JobEvent(job_id, JobState.PENDING, old.state, now))
    instances = [job_id for job_id in kept if job_id not in run.dag.jobs]
    await store.apply([Changes(run.id, rows, [], events, Lease(owner, 0), instances)])
    return records
