"""Turning a job's or a run's end into outbox rows: which webhooks fire, and what they send.

:class:`OutboxSink` is the engine's event sink for a DAG's webhooks: the engine hands it each end
and writes the rows it returns in the same batch as that end."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..clock import iso
from ..model.dag import DAG
from ..model.ended import JobEnded, RunEnded
from ..model.webhook_definitions import Webhook
from ..store.base import DeliveryRecord, EnqueueDelivery, Operation
from .payloads import default_payload, render_body


def remote_id(handle: Mapping[str, Any] | None) -> str | None:
    if not handle:
        return None
    for key in ("id", "jobGroupId", "executionId", "jobId", "job_id", "pid", "call"):
        if key in handle:
            return str(handle[key])
    return None


def _record(
    hook: Webhook,
    dag: str,
    run_id: str,
    job_id: str | None,
    event_type: str,
    values: dict[str, Any],
    at: float,
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
        run_id=run_id,
        job_id=job_id,
        dag=dag,
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


def job_deliveries(hooks: Iterable[Webhook], ended: JobEnded) -> list[DeliveryRecord]:
    state = ended.state.value
    firing = [h for h in hooks if h.fires_for_job(state)]
    if not firing:
        return []
    started_at, ended_at = ended.started_at, ended.ended_at
    duration = (ended_at - started_at) if ended_at and started_at else None
    values = {
        "dagName": ended.dag,
        "runId": ended.run_id,
        "runStatus": ended.run_state.value,
        "jobId": ended.job_id,
        "jobStatus": state,
        "jobError": ended.error or "",
        "remoteJobId": remote_id(ended.handle) or "",
        "attempt": ended.attempt,
        "startedAt": iso(started_at) or "",
        "endedAt": iso(ended_at) or "",
        "duration": round(duration, 3) if duration is not None else "",
    }
    return [
        _record(
            h,
            ended.dag,
            ended.run_id,
            ended.job_id,
            f"job.{state}",
            {**values, "event": h.trigger_event},
            ended.at,
        )
        for h in firing
    ]


def run_deliveries(hooks: Iterable[Webhook], ended: RunEnded) -> list[DeliveryRecord]:
    state = ended.state.value
    firing = [h for h in hooks if h.fires_for_run(state)]
    if not firing:
        return []
    started_at, ended_at = ended.started_at, ended.ended_at
    duration = (ended_at - started_at) if ended_at and started_at else None
    values = {
        "dagName": ended.dag,
        "runId": ended.run_id,
        "runStatus": state,
        "jobId": "",
        "jobStatus": "",
        "jobError": ended.error or "",
        "remoteJobId": "",
        "attempt": "",
        "startedAt": iso(started_at) or "",
        "endedAt": iso(ended_at) or "",
        "duration": round(duration, 3) if duration is not None else "",
    }
    return [
        _record(
            h,
            ended.dag,
            ended.run_id,
            None,
            f"run.{state}",
            {**values, "event": h.trigger_event},
            ended.at,
        )
        for h in firing
    ]


class OutboxSink:
    """A DAG's webhooks as the engine's event sink (see ``orchestrator.engine.ports.EventSink``):
    the end of a job or of the run becomes the outbox rows of the webhooks that fire for it.
    ``notify`` (the deliverer's) is called once such rows are committed."""

    def __init__(self, dag: DAG, notify: Callable[[], None] | None = None) -> None:
        self._job_hooks = {
            job.id: [Webhook.from_json(h) for h in job.webhooks] for job in dag if job.webhooks
        }
        self._dag_hooks = [Webhook.from_json(h) for h in dag.webhooks]
        self.watched = frozenset(self._job_hooks)
        self._notify = notify

    def job_ended(self, event: JobEnded) -> list[Operation]:
        hooks = self._job_hooks.get(event.job_id)
        if hooks is None and event.job_id.endswith("]"):  # an instance: its mapped job's
            hooks = self._job_hooks.get(event.job_id[: event.job_id.rfind("[")])
        return [EnqueueDelivery(delivery) for delivery in job_deliveries(hooks or (), event)]

    def run_ended(self, event: RunEnded) -> list[Operation]:
        return [EnqueueDelivery(d) for d in run_deliveries(self._dag_hooks, event)]

    def committed(self) -> None:
        if self._notify is not None:
            self._notify()
