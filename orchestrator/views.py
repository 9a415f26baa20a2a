"""One JSON view of a run, its jobs and attempts, read from the store: what ``run --json`` and
``runs show --json`` print (and what the REST API will answer).

    {"id", "dag", "status", "reason", "trigger", "params", "owner", "createdAt", "startedAt",
     "endedAt",
     "jobs": {"data": [{"id", "type", "status", "attempts", "error", "remote", "remoteStatus",
                        "outputs", "logTail", "notes", "startedAt", "endedAt"}]},
     "attempts": [{"job", "attempt", "key", "status", "remote", "error", "submittedAt",
                   "acceptedAt", "endedAt"}],
     "events": <count>, "jobGraph": {"vertices", "edges"} | null}

Jobs come in the order the DAG lists them; ``remote`` is the handle of the job's last attempt
that has one. Times are ISO 8601 UTC. Secrets are the caller's to mask (``logs.redact``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .engine.records import iso
from .store.base import (
    AttemptRecord,
    DeliveryAttempt,
    DeliveryRecord,
    JobRecord,
    RunRecord,
    Store,
)


def run_summary(record: RunRecord) -> dict[str, Any]:
    """A run without its jobs, as ``runs list --json`` shows each."""
    return {
        "id": record.id,
        "dag": record.dag,
        "status": record.state.value,
        "reason": record.error,
        "trigger": record.trigger,
        "params": record.params,
        "owner": record.owner,
        "createdAt": iso(record.created_at),
        "startedAt": iso(record.started_at),
        "endedAt": iso(record.ended_at),
    }


def run_view(
    record: RunRecord,
    jobs: Mapping[str, JobRecord],
    attempts: list[AttemptRecord],
    *,
    events: int,
    definition: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    definition = definition or {}
    declared: Mapping[str, Any] = definition.get("jobs") or {}
    remote: dict[str, Any] = {}
    for attempt in attempts:
        if attempt.handle is not None:
            remote[attempt.job_id] = attempt.handle
    order = [job_id for job_id in declared if job_id in jobs]
    order += [job_id for job_id in jobs if job_id not in declared]
    if len(order) > len(declared):  # a mapped job's instances, right after it
        order = instances_after_their_job(order, declared)
    return {
        **run_summary(record),
        "jobs": {
            "data": [
                _job(jobs[job_id], _declared(declared, job_id), remote.get(job_id))
                for job_id in order
            ]
        },
        "attempts": [
            {
                "job": a.job_id,
                "attempt": a.attempt,
                "key": a.key,
                "status": a.state,
                "remote": a.handle,
                "error": a.error,
                "submittedAt": iso(a.submitted_at),
                "acceptedAt": iso(a.accepted_at),
                "endedAt": iso(a.ended_at),
            }
            for a in attempts
        ],
        "events": events,
        "jobGraph": definition.get("jobGraph"),
    }


def _declared(declared: Mapping[str, Any], job_id: str) -> Any:
    """A job's declaration; an instance's (``job[3]``) is its mapped job's."""
    found = declared.get(job_id)
    if found is None and job_id.endswith("]"):
        found = declared.get(job_id[: job_id.rfind("[")])
    return found


def instances_after_their_job(order: list[str], declared: Mapping[str, Any]) -> list[str]:
    """``order`` with each instance (``job[3]``) of a declared job right after that job, in the
    order of their items."""
    instances: dict[str, list[tuple[int, str]]] = {}
    rest = []
    for job_id in order:
        base, _, index = job_id[:-1].rpartition("[") if job_id.endswith("]") else ("", "", "")
        if base in declared and index.isdigit() and job_id not in declared:
            instances.setdefault(base, []).append((int(index), job_id))
        else:
            rest.append(job_id)
    out = []
    for job_id in rest:
        out.append(job_id)
        out.extend(i for _, i in sorted(instances.get(job_id, ())))
    return out


def _job(job: JobRecord, declared: Mapping[str, Any] | None, remote: Any) -> dict[str, Any]:
    return {
        "id": job.job_id,
        "type": declared.get("type") if isinstance(declared, Mapping) else None,
        "status": job.state.value,
        "attempts": job.attempts,
        "error": job.error,
        "remote": remote,
        "remoteStatus": job.remote_status,
        "outputs": job.outputs,
        "logTail": job.log_tail,
        "notes": job.notes,
        "startedAt": iso(job.started_at),
        "endedAt": iso(job.ended_at),
    }


async def read_run_view(store: Store, run_id: str) -> dict[str, Any] | None:
    """:func:`run_view` of a stored run; None if the store has no such run."""
    record = await store.get_run(run_id)
    if record is None:
        return None
    return run_view(
        record,
        await store.get_jobs(run_id),
        await store.get_attempts(run_id),
        events=len(await store.get_events(run_id)),
        definition=await store.get_dag_definition(record.dag_hash),
    )


def delivery_view(delivery: DeliveryRecord, attempts: list[DeliveryAttempt]) -> dict[str, Any]:
    """A webhook delivery and its attempts, as ``webhooks list --json`` and the API show it."""
    d = delivery
    return {
        "id": d.id,
        "run": d.run_id,
        "job": d.job_id,
        "dag": d.dag,
        "webhook": d.webhook,
        "event": d.event,
        "url": d.url,
        "status": d.state,
        "attempts": [
            {
                "number": a.number,
                "at": iso(a.at),
                "httpStatus": a.status,
                "error": a.error,
                "seconds": round(a.duration, 3),
            }
            for a in attempts
        ],
        "nextAt": iso(d.next_at) if d.state == "pending" else None,
        "deliveredAt": iso(d.delivered_at),
    }
