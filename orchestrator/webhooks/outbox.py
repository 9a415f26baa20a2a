"""Turning a job's or a run's end into outbox rows: which webhooks fire, and what they send."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from ..engine.records import JobRun, Run, iso
from ..store.base import DeliveryRecord
from .definitions import Webhook
from .payloads import default_payload, render_body


def remote_id(handle: dict[str, Any] | None) -> str | None:
    if not handle:
        return None
    for key in ("id", "jobGroupId", "executionId", "jobId", "job_id", "pid", "call"):
        if key in handle:
            return str(handle[key])
    return None


def _record(
    hook: Webhook, run: Run, job_id: str | None, event_type: str, values: dict[str, Any], at: float
) -> DeliveryRecord:
    headers = {str(k): str(v) for k, v in hook.headers.items()}
    if hook.method in ("get", "delete"):
        body = b""
    elif hook.body is None:
        body = default_payload(event_type, iso(at) or "", values)
        headers.setdefault("Content-Type", "application/json")
    else:
        body, content_type = render_body(hook.body, values, headers)
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = content_type
    return DeliveryRecord(
        id=f"msg_{uuid.uuid4().hex}",
        run_id=run.id,
        job_id=job_id,
        dag=run.dag.name,
        webhook=hook.name,
        event=hook.trigger_event,
        url=hook.url,
        method=hook.method,
        headers=headers,
        body=body,
        secret_refs=list(hook.secret_keys),
        ssl_verification=hook.ssl_verification,
        created_at=at,
        next_at=at,
    )


def job_deliveries(
    hooks: Iterable[Webhook], run: Run, jr: JobRun, at: float
) -> list[DeliveryRecord]:
    state = jr.state.value
    firing = [h for h in hooks if h.fires_for_job(state)]
    if not firing:
        return []
    duration = (jr.ended_at - jr.started_at) if jr.ended_at and jr.started_at else None
    values = {
        "dagName": run.dag.name,
        "runId": run.id,
        "runStatus": run.state.value,
        "jobId": jr.id,
        "jobStatus": state,
        "jobError": jr.error or "",
        "remoteJobId": remote_id(jr.handle) or "",
        "attempt": jr.attempts,
        "startedAt": iso(jr.started_at) or "",
        "endedAt": iso(jr.ended_at) or "",
        "duration": round(duration, 3) if duration is not None else "",
    }
    return [
        _record(h, run, jr.id, f"job.{state}", {**values, "event": h.trigger_event}, at)
        for h in firing
    ]


def run_deliveries(hooks: Iterable[Webhook], run: Run, at: float) -> list[DeliveryRecord]:
    state = run.state.value
    firing = [h for h in hooks if h.fires_for_run(state)]
    if not firing:
        return []
    duration = (run.ended_at - run.started_at) if run.ended_at and run.started_at else None
    values = {
        "dagName": run.dag.name,
        "runId": run.id,
        "runStatus": state,
        "jobId": "",
        "jobStatus": "",
        "jobError": run.error or "",
        "remoteJobId": "",
        "attempt": "",
        "startedAt": iso(run.started_at) or "",
        "endedAt": iso(run.ended_at) or "",
        "duration": round(duration, 3) if duration is not None else "",
    }
    return [
        _record(h, run, None, f"run.{state}", {**values, "event": h.trigger_event}, at)
        for h in firing
    ]
