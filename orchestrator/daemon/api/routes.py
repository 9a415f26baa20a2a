"""The API's operations (their shapes are :mod:`.document`'s): DAGs, runs, attempts and webhook
deliveries."""

from __future__ import annotations

import base64
import binascii
import json
import time
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web

from ... import logs
from ...clock import iso
from ...engine.durable import overlap_policy
from ...errors import ConfigError, DagValidationError, StoreError
from ...model.dag import DAG
from ...model.formats import to_json
from ...model.schedule import Schedule, next_fires
from ...model.states import JobState, RunState
from ...runtime.prepare import prepare_run
from ...runtime.rerun import NothingToRerun, plan_rerun
from ...store.base import ActiveRunExists, RunExists, RunRecord
from ...views import delivery_view, read_run_view, run_summary
from . import checks
from .context import ApiContext, context
from .document import MAX_KEY, PREFIX
from .errors import ApiError, not_found

log = structlog.get_logger("orchestrator.api")


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/dags", list_dags)
    r.add_get(f"{PREFIX}/dags/{{dag}}", show_dag)
    r.add_post(f"{PREFIX}/dags/{{dag}}/pause", pause_dag)
    r.add_post(f"{PREFIX}/dags/{{dag}}/unpause", unpause_dag)
    r.add_post(f"{PREFIX}/dags/{{dag}}/runs", trigger)
    r.add_get(f"{PREFIX}/runs", list_runs)
    r.add_get(f"{PREFIX}/runs/{{run}}", show_run)
    r.add_post(f"{PREFIX}/runs/{{run}}/cancel", cancel_run)
    r.add_post(f"{PREFIX}/runs/{{run}}/rerun", rerun)
    r.add_post(f"{PREFIX}/runs/{{run}}/jobs/{{job}}/cancel", cancel_job)
    r.add_get(f"{PREFIX}/runs/{{run}}/jobs/{{job}}/attempts", list_attempts)
    r.add_get(f"{PREFIX}/deliveries", list_deliveries)
    r.add_post(f"{PREFIX}/deliveries/{{delivery}}/redeliver", redeliver)


# -- DAGs -------------------------------------------------------------------------------------
def _dag(api: ApiContext, request: web.Request) -> DAG:
    name = request.match_info["dag"]
    dag = api.catalog.dags.get(name)
    if dag is None:
        raise not_found(f"DAG {name!r}")
    return dag


async def _summary(api: ApiContext, dag: DAG, pauses: dict[str, bool]) -> dict[str, Any]:
    schedule = dag.schedule or {}
    nexts: list[str] = []
    paused = False
    if schedule.get("cron"):
        parsed = Schedule.from_json(schedule)
        paused = pauses.get(dag.name, parsed.paused)
        now = datetime.now(UTC)
        nexts = [
            f.astimezone(UTC).isoformat().replace("+00:00", "Z") for f in next_fires(parsed, now, 5)
        ]
    last = await api.store.list_runs(dag=dag.name, limit=1)
    return {
        "name": dag.name,
        "jobs": len(dag),
        "file": str(api.catalog.source_of(dag.name)),
        "schedule": logs.redact(dict(schedule)) if schedule else None,
        "paused": paused,
        "next": nexts,
        "lastRun": logs.redact(run_summary(last[0])) if last else None,
    }


def _job_graph(dag: DAG) -> dict[str, Any]:
    return {
        "vertices": list(dag.jobs),
        "edges": [{"source": a, "target": b} for a, b in dag.edges],
    }


async def list_dags(request: web.Request) -> web.Response:
    api = context(request)
    pauses = await api.store.schedule_pauses()
    data = [await _summary(api, dag, pauses) for _, dag in sorted(api.catalog.dags.items())]
    errors = [{"file": str(e.path), "message": e.message} for e in api.catalog.errors]
    return web.json_response({"data": data, "errors": errors})


async def show_dag(request: web.Request) -> web.Response:
    api = context(request)
    dag = _dag(api, request)
    summary = await _summary(api, dag, await api.store.schedule_pauses())
    body = {**summary, "definition": to_json(dag, mask=True), "jobGraph": _job_graph(dag)}
    return web.json_response(body)


async def _pause(request: web.Request, paused: bool) -> web.Response:
    api = context(request)
    dag = _dag(api, request)
    if not (dag.schedule or {}).get("cron"):
        raise ApiError(409, f"DAG {dag.name!r} has no schedule to pause or unpause")
    await api.store.set_paused(dag.name, paused, time.time())
    api.scheduler.wake()
    log.info("dag.paused" if paused else "dag.unpaused", dag=dag.name)
    return web.json_response(await _summary(api, dag, await api.store.schedule_pauses()))


async def pause_dag(request: web.Request) -> web.Response:
    return await _pause(request, True)


async def unpause_dag(request: web.Request) -> web.Response:
    return await _pause(request, False)


# -- runs -------------------------------------------------------------------------------------
def _job_group(run_id: str, dag: DAG, reason: str) -> dict[str, Any]:
    """Seed 002's answer to a job group's start: its id, a reason, its graph and its jobs."""
    return {
        "id": run_id,
        "reason": reason,
        "jobGraph": _job_graph(dag),
        "jobs": {"data": [{"id": job_id} for job_id in dag.jobs]},
    }


async def trigger(request: web.Request) -> web.Response:
    """Start a run of the DAG with the body's ``params``, under the DAG's overlap policy. With
    an ``Idempotency-Key``, the key's run is started once: the same key answers with it."""
    api = context(request)
    dag = _dag(api, request)
    if not api.scheduler.serving:
        raise ApiError(503, "the daemon is starting or stopping: no run starts now")
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 0 < len(key) <= MAX_KEY:
        raise ApiError(400, f"Idempotency-Key: 1 to {MAX_KEY} characters", field="Idempotency-Key")
    payload = await checks.body(request, "TriggerRequest")
    try:
        run = prepare_run(
            dag, params=payload.get("params"), connections=api.host.connections, trigger="api"
        )
    except (ConfigError, DagValidationError) as exc:
        raise ApiError(422, str(exc), field="body.params") from None
    try:
        await api.scheduler.start(run, overlap_policy(dag), idempotency_key=key)
    except RunExists as exc:
        return web.json_response(_job_group(exc.run_id, dag, "JobExists"), status=200)
    except ActiveRunExists as exc:
        raise ApiError(
            409,
            f"DAG {dag.name!r} has an active run {exc.run_id}; its overlap policy refuses another",
        ) from None
    log.info("run.triggered", dag=dag.name, run=run.id)
    return web.json_response(_job_group(run.id, dag, "JobStarted"), status=201)


def _cursor(record: RunRecord) -> str:
    raw = json.dumps([record.created_at, record.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, run_id = json.loads(raw)
        return float(created_at), str(run_id)
    except (binascii.Error, ValueError, TypeError):
        raise ApiError(400, "cursor: not a cursor of this API", field="cursor") from None


async def list_runs(request: web.Request) -> web.Response:
    api = context(request)
    q = checks.query(request, "/runs")
    limit = q["limit"]
    records = await api.store.list_runs(
        dag=q.get("dag"),
        states=[RunState(q["state"])] if "state" in q else None,
        trigger=q.get("trigger"),
        created_after=q.get("createdAfter"),
        created_before=q.get("createdBefore"),
        after=_after(q["cursor"]) if "cursor" in q else None,
        limit=limit + 1,
    )
    page = records[:limit]
    following = _cursor(page[-1]) if len(records) > limit else None
    return web.json_response(
        {"data": [logs.redact(run_summary(r)) for r in page], "next": following}
    )


async def show_run(request: web.Request) -> web.Response:
    api = context(request)
    run_id = request.match_info["run"]
    view = await read_run_view(api.store, run_id)
    if view is None:
        raise not_found(f"run {run_id!r}")
    return web.json_response(logs.redact(view), dumps=lambda v: json.dumps(v, default=str))


async def cancel_run(request: web.Request) -> web.Response:
    """Cancel the run wherever it runs (here at once, elsewhere through the store). A run
    cancelled already answers 200 the same way; one that ended otherwise is a conflict."""
    api = context(request)
    run_id = request.match_info["run"]
    record = await api.store.get_run(run_id)
    if record is None:
        raise not_found(f"run {run_id!r}")
    if record.state is RunState.CANCELLED:
        return web.json_response({"id": run_id, "status": "cancelled"})
    if record.state.terminal:
        raise ApiError(409, f"run {run_id} ended ({record.state.value}): nothing to cancel")
    reason = "cancelled through the API"
    if not api.host.cancel(run_id, reason):
        await api.store.request_cancel(run_id, reason, time.time())
    log.info("run.cancel_requested", run=run_id)
    return web.json_response({"id": run_id, "status": "cancelling"}, status=202)


async def cancel_job(request: web.Request) -> web.Response:
    """Cancel one job of a run (its remote job too), here at once or elsewhere through the
    store; the run goes on. A job cancelled already answers 200 the same way; one that ended
    otherwise is a conflict."""
    api = context(request)
    run_id, job_id = request.match_info["run"], request.match_info["job"]
    jobs = await api.store.get_jobs(run_id)
    job = jobs.get(job_id)
    if job is None:
        raise not_found(f"job {job_id!r} of run {run_id!r}")
    reason = "cancelled through the API"
    outcome = api.host.cancel_job(run_id, job_id, reason)
    if outcome is None:  # not a run of this daemon: its owner reads the request
        if await api.store.request_job_cancel(run_id, job_id, reason, time.time()):
            outcome = "cancelling"
        else:  # it ended (or its run did) since it was read
            job = (await api.store.get_jobs(run_id)).get(job_id, job)
            outcome = "cancelled" if job.state is JobState.CANCELLED else job.state.value
            if not job.state.terminal:  # its run ended, the job left as it was
                run = await api.store.get_run(run_id)
                state = run.state.value if run is not None else "unknown"
                raise ApiError(409, f"run {run_id} ended ({state}): nothing to cancel")
    if outcome == "cancelling":
        log.info("job.cancel_requested", run=run_id, job=job_id)
        return web.json_response({"id": job_id, "run": run_id, "status": outcome}, status=202)
    if outcome == "cancelled":
        return web.json_response({"id": job_id, "run": run_id, "status": outcome})
    raise ApiError(409, f"job {job_id} of run {run_id} ended ({outcome}): nothing to cancel")


async def rerun(request: web.Request) -> web.Response:
    """Run the failed jobs of an ended run again, as a new run: the jobs that succeeded (or
    were skipped) are carried over with their outputs, the others run."""
    api = context(request)
    run_id = request.match_info["run"]
    record = await api.store.get_run(run_id)
    if record is None:
        raise not_found(f"run {run_id!r}")
    if not api.scheduler.serving:
        raise ApiError(503, "the daemon is starting or stopping: no run starts now")
    try:
        run, kept = await plan_rerun(api.store, record)
    except NothingToRerun as exc:
        raise ApiError(409, str(exc)) from None
    except StoreError as exc:  # its DAG cannot be rebuilt (a Python DAG whose file changed)
        raise ApiError(409, str(exc)) from None
    try:
        await api.scheduler.start(run, overlap_policy(run.dag), carried=kept)
    except ActiveRunExists as exc:
        message = f"DAG {run.dag.name!r} has an active run {exc.run_id}; its overlap policy refuses"
        raise ApiError(409, f"{message} another") from None
    log.info("run.rerun", dag=run.dag.name, run=run.id, of=run_id, kept=len(kept))
    return web.json_response(_job_group(run.id, run.dag, "JobStarted"), status=201)


async def list_attempts(request: web.Request) -> web.Response:
    api = context(request)
    run_id, job_id = request.match_info["run"], request.match_info["job"]
    jobs = await api.store.get_jobs(run_id)
    job = jobs.get(job_id)
    if job is None:
        raise not_found(f"job {job_id!r} of run {run_id!r}")
    attempts = [a for a in await api.store.get_attempts(run_id) if a.job_id == job_id]
    data = []
    for a in attempts:
        last = a.attempt == job.attempts
        data.append(
            {
                "job": job_id,
                "attempt": a.attempt,
                "key": a.key,
                "status": a.state.value,
                "remote": a.handle,
                "remoteStatus": job.remote_status if last else None,
                "logTail": job.log_tail if last else None,
                "error": a.error,
                "submittedAt": iso(a.submitted_at),
                "acceptedAt": iso(a.accepted_at),
                "endedAt": iso(a.ended_at),
            }
        )
    return web.json_response(logs.redact({"data": data}))


# -- webhook deliveries -------------------------------------------------------------------
async def list_deliveries(request: web.Request) -> web.Response:
    api = context(request)
    q = checks.query(request, "/deliveries")
    data = [delivery_view(d, tries) for d, tries in await api.store.list_deliveries(q.get("run"))]
    return web.json_response(logs.redact({"data": data}))


async def redeliver(request: web.Request) -> web.Response:
    api = context(request)
    delivery_id = request.match_info["delivery"]
    if not await api.store.redeliver(delivery_id, time.time()):
        raise not_found(f"delivery {delivery_id!r}")
    if api.host.deliverer is not None:
        api.host.deliverer.notify()
    return web.json_response({"id": delivery_id, "status": "pending"}, status=202)
