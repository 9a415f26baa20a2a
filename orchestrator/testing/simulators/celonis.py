"""Celonis EMS data integration, data jobs (REMOTE_APIS.md §3), as a server would answer.

Under ``/integration/api``:

    POST pools/{p}/jobs/{j}/execute                  JobExecutionConfiguration   200, empty
    POST v2/data-pools/{p}/data-jobs/{j}/execute?mode=FULL|DELTA                 200, empty
    POST pools/{p}/jobs/{j}/cancel                                               200, empty
    GET  pools/{p}/jobs/{j}                          JobTransport
    GET  pools/{p}/logs/status                       [EntityStatus{id, status,
                                                      lastExecutionStartDate}]
    GET  pools/{p}/logs/{j}/executions?limit=&page=  {executionItems (newest first), numOfPages}
    GET  pools/{p}/logs/executions?executionId=&type=TASK&id={j}     [ExecutionItemTransport]
    GET  pools/{p}/logs/executions/detail?executionId=&id={taskId}&type=&limit=&page=
                                                     {logMessages, numOfPages}

Statuses over time: ``QUEUED`` (the behaviour's ``queued`` seconds), ``RUNNING``, then
``SUCCESS`` or ``FAIL``; ``CANCEL`` after a cancel while it runs. Each execution has two tasks,
"Extract orders" and "Transform orders"; on failure the second is ``FAIL`` and its log holds an
INFO line then the behaviour's message at ERROR level.

Auth: ``Authorization: AppKey <app_key>`` (default ``sim-app-key``) or ``Bearer <token>``
(default ``sim-token``); otherwise 401. Errors are ``ExceptionReference{reference, message,
shortMessage}``: 404 for a pool or job id starting with ``unknown`` (any case: the rule that
makes them unknown), 400 for a bad body or mode, 401 without the key. Faults such as 429 with
``x-ratelimit-reset`` come from :class:`~.base.Fault` (``headers={"x-ratelimit-reset": "1"}``).

Rule target: the job id. ``status_lag`` (seconds, default 0) delays the moment a new execution
shows in ``logs/status`` (the entry keeps describing the previous execution until then), to
exercise a client that must tell an old status from a new one. ``lose_answers = n``: the next
``n`` executions start but the execute request's connection is cut before the answer.
Counters: ``logs/status`` counts a poll; cancel counts a cancel.

[UNCONFIRMED] choices: execute and cancel answer 200 with an empty body; executing while an
execution of the job is queued or running is 400 "There is already a job execution in
progress."; a cancel with nothing running is a 200 no-op; dates are ISO-8601 strings in UTC; a
job that never ran is absent from ``logs/status``; the ``Idempotency-Key`` header is recorded
but not used to deduplicate; the behaviour's ``outputs`` are not shown.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from .base import SimJob, Simulator

_API = "/integration/api"
_POOL = _API + "/pools/{pool}"
_STATUS = {
    "queued": "QUEUED",
    "running": "RUNNING",
    "succeeded": "SUCCESS",
    "failed": "FAIL",
    "cancelled": "CANCEL",
}
_TASKS = (("task-extract", "Extract orders"), ("task-transform", "Transform orders"))


class CelonisSimulator(Simulator):
    name = "celonis"

    def __init__(
        self,
        *,
        app_key: str = "sim-app-key",
        token: str = "sim-token",
        status_lag: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.app_key = app_key
        self.token = token
        self.status_lag = status_lag
        self.executions: dict[tuple[str, str], list[str]] = {}  # (pool, job) -> ids, oldest first
        self.configurations: list[dict[str, Any]] = []  # every execute body received
        self.lose_answers = 0  # next executions started whose answer is cut off

    def reset(self) -> None:
        super().reset()
        self.executions.clear()
        self.configurations.clear()
        self.lose_answers = 0

    # -- auth and errors --

    def authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        return header in (f"AppKey {self.app_key}", f"Bearer {self.token}")

    def unauthorized(self, request: web.Request) -> web.StreamResponse:
        return _error(401, "Unauthorized", "The AppKey or Bearer token is missing or invalid.")

    def _unknown(self, pool: str, job: str | None = None) -> web.Response | None:
        if pool.lower().startswith("unknown"):
            return _error(404, "Not found", f"Data pool with id '{pool}' does not exist.")
        if job is not None and job.lower().startswith("unknown"):
            return _error(404, "Not found", f"Data job with id '{job}' does not exist.")
        return None

    # -- state --

    def _history(self, pool: str, job: str) -> list[SimJob]:
        return [self.jobs[i] for i in self.executions.get((pool, job), []) if i in self.jobs]

    def _current(self, pool: str, job: str) -> SimJob | None:
        history = self._history(pool, job)
        return history[-1] if history else None

    def _visible(self, pool: str, job: str) -> SimJob | None:
        """The execution ``logs/status`` describes: the newest one older than ``status_lag``."""
        now = self.clock()
        shown = [j for j in self._history(pool, job) if now - j.created >= self.status_lag]
        return shown[-1] if shown else None

    def _start(self, request: web.Request, pool: str, job: str, mode: str) -> web.Response:
        current = self._current(pool, job)
        if current is not None and current.phase(self.clock()) in ("queued", "running"):
            return _error(400, "Bad request", "There is already a job execution in progress.")
        execution = self.accept(
            str(uuid.uuid4()),
            target=job,
            key=request.headers.get("Idempotency-Key"),
            data={"pool": pool, "job": job, "mode": mode, "wall": time.time()},
        )
        self.executions.setdefault((pool, job), []).append(execution.id)
        if self.lose_answers > 0:  # the execution exists, its answer never arrives
            self.lose_answers -= 1
            assert request.transport is not None
            request.transport.abort()
        return web.Response(status=200)

    # -- routes --

    def routes(self, app: web.Application) -> None:
        app.router.add_post(_POOL + "/jobs/{job}/execute", self._execute)
        app.router.add_post(
            _API + "/v2/data-pools/{pool}/data-jobs/{job}/execute", self._execute_v2
        )
        app.router.add_post(_POOL + "/jobs/{job}/cancel", self._cancel)
        app.router.add_get(_POOL + "/jobs/{job}", self._job)
        app.router.add_get(_POOL + "/logs/status", self._status)
        app.router.add_get(_POOL + "/logs/executions", self._items)
        app.router.add_get(_POOL + "/logs/executions/detail", self._detail)
        app.router.add_get(_POOL + "/logs/{job}/executions", self._executions)

    async def _execute(self, request: web.Request) -> web.Response:
        pool, job = request.match_info["pool"], request.match_info["job"]
        unknown = self._unknown(pool, job)
        if unknown is not None:
            return unknown
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _error(400, "Bad request", "The body must be a JobExecutionConfiguration.")
        mode = body.get("mode") or "DELTA"
        if mode not in ("FULL", "DELTA"):
            return _error(400, "Bad request", f"Unknown extraction mode '{mode}'.")
        self.configurations.append(body)
        return self._start(request, pool, job, mode)

    async def _execute_v2(self, request: web.Request) -> web.Response:
        pool, job = request.match_info["pool"], request.match_info["job"]
        unknown = self._unknown(pool, job)
        if unknown is not None:
            return unknown
        mode = request.query.get("mode", "DELTA")
        if mode not in ("FULL", "DELTA"):
            return _error(400, "Bad request", f"Unknown extraction mode '{mode}'.")
        return self._start(request, pool, job, mode)

    async def _cancel(self, request: web.Request) -> web.Response:
        pool, job = request.match_info["pool"], request.match_info["job"]
        unknown = self._unknown(pool, job)
        if unknown is not None:
            return unknown
        self.counters.cancels += 1
        current = self._current(pool, job)
        now = self.clock()
        if current is not None and current.phase(now) in ("queued", "running"):
            current.cancelled_at = now
        return web.Response(status=200)

    async def _job(self, request: web.Request) -> web.Response:
        pool, job = request.match_info["pool"], request.match_info["job"]
        unknown = self._unknown(pool, job)
        if unknown is not None:
            return unknown
        current = self._current(pool, job)
        return web.json_response(
            {
                "id": job,
                "name": f"Simulated job {job}",
                "dataPoolId": pool,
                "dataSourceId": None,
                "timeStamp": _iso(time.time()),
                "status": _STATUS[current.phase(self.clock())] if current else None,
                "currentExecutionId": current.id if current else None,
                "dagBasedExecutionEnabled": False,
                "latestExecutionItemId": f"{current.id}-job" if current else None,
            }
        )

    async def _status(self, request: web.Request) -> web.Response:
        pool = request.match_info["pool"]
        unknown = self._unknown(pool)
        if unknown is not None:
            return unknown
        self.counters.polls += 1
        entries = []
        for p, job in self.executions:
            shown = self._visible(p, job) if p == pool else None
            if shown is not None:
                entries.append(
                    {
                        "id": job,
                        "status": _STATUS[shown.phase(self.clock())],
                        "lastExecutionStartDate": _iso(shown.data["wall"]),
                    }
                )
        return web.json_response(entries)

    async def _executions(self, request: web.Request) -> web.Response:
        pool, job = request.match_info["pool"], request.match_info["job"]
        unknown = self._unknown(pool, job)
        if unknown is not None:
            return unknown
        limit = _int(request.query.get("limit"), 10)
        page = _int(request.query.get("page"), 0)
        history = list(reversed(self._history(pool, job)))
        items = [self._item(e, "JOB") for e in history[page * limit : (page + 1) * limit]]
        pages = max(1, -(-len(history) // max(1, limit)))
        return web.json_response({"executionItems": items, "numOfPages": pages})

    async def _items(self, request: web.Request) -> web.Response:
        pool = request.match_info["pool"]
        unknown = self._unknown(pool)
        if unknown is not None:
            return unknown
        execution = self.jobs.get(request.query.get("executionId", ""))
        if execution is None or execution.data["pool"] != pool:
            return web.json_response([])
        kind = request.query.get("type", "TASK")
        if kind == "JOB":
            return web.json_response([self._item(execution, "JOB")])
        if kind != "TASK":
            return web.json_response([])
        return web.json_response([self._item(execution, "TASK", n) for n in range(len(_TASKS))])

    async def _detail(self, request: web.Request) -> web.Response:
        pool = request.match_info["pool"]
        unknown = self._unknown(pool)
        if unknown is not None:
            return unknown
        execution = self.jobs.get(request.query.get("executionId", ""))
        wanted = request.query.get("id", "")
        index = next(
            (n for n, (task_id, _) in enumerate(_TASKS) if wanted in (task_id, f"item-{task_id}")),
            None,
        )
        if execution is None or index is None:
            return web.json_response({"logMessages": [], "numOfPages": 0})
        item = self._item(execution, "TASK", index)
        lines = [("INFO", f"Starting task {item['name']}")]
        if item["status"] == "FAIL":
            lines.append(("ERROR", execution.behaviour.message))
        elif item["status"] == "SUCCESS":
            lines.append(("INFO", f"Task {item['name']} finished"))
        levels = set(request.query.getall("logLevels", []))
        messages = [
            {
                "id": f"{item['id']}-log-{n}",
                "executionItemId": item["id"],
                "level": level,
                "date": item["startDate"],
                "logMessage": text,
                "logTranslationCode": None,
                "logTranslationParameters": [],
            }
            for n, (level, text) in enumerate(lines)
            if not levels or level in levels
        ]
        return web.json_response({"logMessages": messages, "numOfPages": 1})

    # -- documents --

    def _item(self, execution: SimJob, kind: str, task: int | None = None) -> dict[str, Any]:
        phase = execution.phase(self.clock())
        status = _STATUS[phase]
        task_id, name = (None, f"Simulated job {execution.data['job']}")
        if task is not None:
            task_id, name = _TASKS[task]
            status = _task_status(phase, task)
        ended = status in ("SUCCESS", "FAIL", "CANCEL")
        wall = execution.data["wall"]
        return {
            "id": f"item-{task_id}" if task_id else f"{execution.id}-job",
            "poolId": execution.data["pool"],
            "poolName": f"Pool {execution.data['pool']}",
            "executionId": execution.id,
            "schedulingId": None,
            "jobId": execution.data["job"],
            "taskId": task_id,
            "stepId": None,
            "name": name,
            "status": status,
            "dataPoolVersion": 1,
            "startDate": _iso(wall),
            "endDate": _iso(wall + execution.ended_at() - execution.created) if ended else None,
            "type": kind,
            "mode": execution.data["mode"],
            "schedulingName": None,
            "executionOrder": 0 if task is None else task,
            "monitored": False,
        }


def _task_status(phase: str, task: int) -> str:
    if phase == "queued":
        return "QUEUED"
    if phase == "running":
        return "RUNNING" if task == 0 else "QUEUED"
    if phase == "succeeded":
        return "SUCCESS"
    if phase == "failed":
        return "SUCCESS" if task == 0 else "FAIL"
    return "CANCEL" if task == 0 else "SKIPPED"


def _int(value: str | None, default: int) -> int:
    try:
        return max(0, int(value)) if value is not None else default
    except ValueError:
        return default


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error(status: int, short: str, message: str) -> web.Response:
    return web.json_response(
        {"reference": str(uuid.uuid4()), "message": message, "shortMessage": short},
        status=status,
    )
