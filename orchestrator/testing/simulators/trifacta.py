"""Trifacta / Alteryx Designer Cloud API v4 (REMOTE_APIS.md §1), as a server would answer.

    POST /v4/jobGroups                 {"wrangledDataset": {"id": N}, "overrides"?,
                                       "runParameters"?, "ranfrom"?, "name"?, "description"?}
                                       201 {"sessionId", "reason": "JobStarted", "jobGraph",
                                       "id", "jobs": {"data": [{"id"}, {"id"}]}}
    GET  /v4/jobGroups                 limit (25), offset, noLimit, filter, filterFields (name)
                                       200 {"data": [jobGroup…]}, newest first
    GET  /v4/jobGroups/{id}            200 jobGroup {id, name, description, ranfrom, ranfor,
                                       status, profilingEnabled, createdAt, updatedAt,
                                       wrangledDataset, flowRun, …}
    GET  /v4/jobGroups/{id}/status     200 the bare JSON string of the status
    GET  /v4/jobGroups/{id}/jobs       200 {"data": [{id, status, jobType, percentComplete,
                                       errorMessage, jobGroup, …}]}: a wrangle and a filewriter
    POST /v4/jobGroups/{id}/cancel     200 the jobGroup, now Canceled
    POST /v4/flows/{id}/run            201 {"data": [{"id", "flowRun": {"id"}, "reason",
                                       "sessionId"}…]}
    POST /v4/deployments/{id}/run      201 {"data": [{"reason", "sessionId", "id"}…]}

Statuses over time: ``Created`` while queued, ``InProgress``, then ``Complete`` or ``Failed``
(the failure's message is the wrangle job's ``errorMessage``); a cancel makes it ``Canceled``.

Errors, all ``{"exception": {"name", "message", "details"}}``: ``ApiValidationFailed`` 400 for
a body that is not a JSON object or a job group body without an integer ``wrangledDataset.id``;
``DataNotFoundException`` 404 for an unknown job group id, or a dataset, flow or deployment id in
:attr:`TrifactaSimulator.unknown`; ``RouteNotFoundException`` 404 for any other route or method.
Auth: ``Authorization: Bearer <token>`` (default ``sim-token``).

Rule target: the ``wrangledDataset`` id for job groups, the flow id for flow runs, the deployment
id for deployment runs, as strings. ``groups_per_run[target]`` (default 1) sets how many job
groups a flow or deployment run starts; each takes the next behaviour (a scripted one first), and
only the first counts as a submission. ``unknown`` holds the dataset, flow and deployment ids
that do not exist (``POST /_sim/unknown {"id": N}`` adds one). Counters: GET of a job group or
its status counts a poll, every cancel request of a known group a cancel.

Webhooks: a job group whose ``overrides.webhooks`` ask for ``onJobDone`` (on Complete or
Failed), ``onJobSuccess`` or ``onJobFailure`` has them sent when it ends, by a background task
the application owns (started on startup, cancelled on cleanup), best effort with a short
timeout; :attr:`TrifactaSimulator.deliveries` records each try (``GET /_sim/deliveries``).

[UNCONFIRMED] choices: flow runs answer 201 like the other runs; the cancel route answers 200
with the job group and 400 ``ApiValidationFailed`` once it has ended; the 401 document is named
``AuthenticationFailed``; the list sorts newest first and ``filter`` matches a case-insensitive
substring of each ``filterFields`` field; the create body's ``name`` and ``description`` are kept
on the job group; child jobs mirror their group's status (``Pending`` while it is queued); webhook
bodies are the hook's ``body`` with ``$jobId`` and ``$jobStatus`` replaced in its strings (a
default ``{"jobGroupId", "status", "triggerEvent"}`` without one), and a cancelled group sends none.
The behaviour's ``outputs`` are not shown (the API has no place for them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from .base import SimJob, Simulator

_STATUS = {
    "queued": "Created",
    "running": "InProgress",
    "succeeded": "Complete",
    "failed": "Failed",
    "cancelled": "Canceled",
}
_CHILD = {**_STATUS, "queued": "Pending"}
_TRIGGERS = frozenset({"onJobDone", "onJobSuccess", "onJobFailure"})


def _exception(status: int, name: str, message: str, details: Any = None) -> web.Response:
    return web.json_response(
        {"exception": {"name": name, "message": message, "details": details}}, status=status
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _positive_int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


class TrifactaSimulator(Simulator):
    name = "trifacta"

    def __init__(
        self, *, token: str = "sim-token", webhook_timeout: float = 2.0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.token = token
        self.webhook_timeout = webhook_timeout
        self.unknown: set[str] = set()
        self.groups_per_run: dict[str, int] = {}
        self.deliveries: list[dict[str, Any]] = []
        self._hooked: dict[str, SimJob] = {}
        self._wake = asyncio.Event()

    def reset(self) -> None:
        super().reset()
        self.unknown.clear()
        self.groups_per_run.clear()
        self.deliveries.clear()
        self._hooked.clear()

    # -- auth --

    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    def unauthorized(self, request: web.Request) -> web.StreamResponse:
        return _exception(
            401, "AuthenticationFailed", "Invalid or missing access token", "Unauthorized"
        )

    # -- application --

    def build(self) -> web.Application:
        app = super().build()
        app.router.add_route("*", "/{tail:.*}", self._no_route)  # after every other route
        app.cleanup_ctx.append(self._webhook_pump)
        return app

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v4/jobGroups", self._create)
        app.router.add_get("/v4/jobGroups", self._list)
        app.router.add_get("/v4/jobGroups/{id}", self._get)
        app.router.add_get("/v4/jobGroups/{id}/status", self._status)
        app.router.add_get("/v4/jobGroups/{id}/jobs", self._jobs)
        app.router.add_post("/v4/jobGroups/{id}/cancel", self._cancel)
        app.router.add_post("/v4/flows/{id}/run", self._run_flow)
        app.router.add_post("/v4/deployments/{id}/run", self._run_deployment)
        app.router.add_post("/_sim/unknown", self._h_unknown)
        app.router.add_get("/_sim/deliveries", self._h_deliveries)

    async def _no_route(self, request: web.Request) -> web.Response:
        return _exception(
            404,
            "RouteNotFoundException",
            "This route does not exist",
            f"Cannot {request.method} {request.path}",
        )

    async def _h_deliveries(self, request: web.Request) -> web.Response:
        return web.json_response({"data": self.deliveries})

    async def _h_unknown(self, request: web.Request) -> web.Response:
        self.unknown.add(str((await request.json())["id"]))
        return web.json_response({"ok": True})

    # -- job groups --

    def _new_group(
        self,
        target: str,
        key: str | None,
        *,
        counted: bool,
        ranfor: str,
        body: dict[str, Any],
        flow_run: int | None = None,
    ) -> SimJob:
        group_id = str(self.next_id())
        children = [self.next_id(), self.next_id()]
        overrides = body.get("overrides") if isinstance(body.get("overrides"), dict) else {}
        data: dict[str, Any] = {
            "ranfor": ranfor,
            "ranfrom": body.get("ranfrom") or "api",
            "target": int(target),
            "description": body.get("description"),
            "overrides": overrides,
            "runParameters": body.get("runParameters"),
            "children": children,
            "flowRun": flow_run,
            "createdAt": _now(),
            "sessionId": str(uuid.uuid4()),
        }
        name = body.get("name") if isinstance(body.get("name"), str) else None
        if counted:
            job = self.accept(group_id, target=target, key=key, name=name, data=data)
        else:
            job = SimJob(
                id=group_id,
                behaviour=self.behaviour_for(target),
                created=self.clock(),
                key=key,
                name=name,
                data=data,
            )
            self.jobs[group_id] = job
        hooks = overrides.get("webhooks") if isinstance(overrides, dict) else None
        if isinstance(hooks, list) and any(
            isinstance(h, dict) and h.get("triggerEvent") in _TRIGGERS for h in hooks
        ):
            self._hooked[group_id] = job
            self._wake.set()
        return job

    def _view(self, job: SimJob) -> dict[str, Any]:
        status = _STATUS[job.phase(self.clock())]
        data = job.data
        ended = status in ("Complete", "Failed", "Canceled")
        return {
            "id": int(job.id),
            "name": job.name,
            "description": data["description"],
            "ranfrom": data["ranfrom"],
            "ranfor": data["ranfor"],
            "status": status,
            "profilingEnabled": bool(data["overrides"].get("profiler", False)),
            "runParameterReferenceDate": data["createdAt"],
            "createdAt": data["createdAt"],
            "updatedAt": _now() if not ended else data.setdefault("endedAt", _now()),
            "workspace": {"id": 1},
            "creator": {"id": 1},
            "updater": {"id": 1},
            "snapshot": {"id": int(job.id) + 100000},
            "wrangledDataset": {"id": data["target"]} if data["ranfor"] == "recipe" else None,
            "flowRun": {"id": data["flowRun"]} if data["flowRun"] is not None else None,
        }

    def _children(self, job: SimJob) -> list[dict[str, Any]]:
        phase = job.phase(self.clock())
        status = _CHILD[phase]
        percent = {"queued": 0, "running": 50}.get(phase, 100)
        out = []
        for job_id, job_type in zip(job.data["children"], ("wrangle", "filewriter"), strict=True):
            error = job.behaviour.message if phase == "failed" and job_type == "wrangle" else None
            out.append(
                {
                    "id": job_id,
                    "status": status,
                    "jobType": job_type,
                    "sampleSize": 100,
                    "percentComplete": percent,
                    "lastHeartbeatAt": _now(),
                    "createdAt": job.data["createdAt"],
                    "updatedAt": _now(),
                    "creator": {"id": 1},
                    "jobGroup": {"id": int(job.id)},
                    "errorMessage": error,
                }
            )
        return out

    def _lookup(self, request: web.Request) -> SimJob | web.Response:
        job_id = request.match_info["id"]
        job = self.jobs.get(job_id)
        if job is None:
            return _exception(
                404, "DataNotFoundException", f"JobGroup with id {job_id} does not exist"
            )
        return job

    async def _body(self, request: web.Request, *, required: bool) -> dict[str, Any] | web.Response:
        raw = await request.read()
        if not raw.strip() and not required:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _exception(400, "ApiValidationFailed", "The request body must be a JSON object")
        return body

    async def _create(self, request: web.Request) -> web.Response:
        body = await self._body(request, required=True)
        if isinstance(body, web.Response):
            return body
        dataset = body.get("wrangledDataset")
        dataset_id = _positive_int(dataset.get("id")) if isinstance(dataset, dict) else None
        if dataset_id is None:
            return _exception(
                400,
                "ApiValidationFailed",
                '"wrangledDataset.id" is required and must be a positive integer',
                {"path": ["wrangledDataset", "id"]},
            )
        if "overrides" in body and not isinstance(body["overrides"], dict):
            return _exception(400, "ApiValidationFailed", '"overrides" must be an object')
        target = str(dataset_id)
        if target in self.unknown:
            return _exception(
                404, "DataNotFoundException", f"WrangledDataset with id {target} does not exist"
            )
        key = request.headers.get("Idempotency-Key")
        job = self._new_group(target, key, counted=True, ranfor="recipe", body=body)
        first, second = job.data["children"]
        return web.json_response(
            {
                "sessionId": job.data["sessionId"],
                "reason": "JobStarted",
                "jobGraph": {
                    "vertices": [first, second],
                    "edges": [{"source": first, "target": second}],
                },
                "id": int(job.id),
                "jobs": {"data": [{"id": first}, {"id": second}]},
            },
            status=201,
        )

    async def _run(self, request: web.Request, kind: str) -> web.Response:
        raw_id = request.match_info["id"]
        if not raw_id.isdigit():
            return _exception(400, "ApiValidationFailed", f'"id" must be an integer: {raw_id}')
        body = await self._body(request, required=False)
        if isinstance(body, web.Response):
            return body
        target = str(int(raw_id))
        if target in self.unknown:
            noun = "Flow" if kind == "flow" else "Deployment"
            return _exception(
                404, "DataNotFoundException", f"{noun} with id {target} does not exist"
            )
        key = request.headers.get("Idempotency-Key")
        flow_run = self.next_id() if kind == "flow" else None
        data = []
        for n in range(max(1, self.groups_per_run.get(target, 1))):
            job = self._new_group(
                target, key, counted=n == 0, ranfor=kind, body=body, flow_run=flow_run
            )
            item: dict[str, Any] = {
                "id": int(job.id),
                "reason": "JobStarted",
                "sessionId": job.data["sessionId"],
            }
            if flow_run is not None:
                item["flowRun"] = {"id": flow_run}
            data.append(item)
        return web.json_response({"data": data}, status=201)

    async def _run_flow(self, request: web.Request) -> web.Response:
        return await self._run(request, "flow")

    async def _run_deployment(self, request: web.Request) -> web.Response:
        return await self._run(request, "deployment")

    async def _get(self, request: web.Request) -> web.Response:
        job = self._lookup(request)
        if isinstance(job, web.Response):
            return job
        self.counters.polls += 1
        return web.json_response(self._view(job))

    async def _status(self, request: web.Request) -> web.Response:
        job = self._lookup(request)
        if isinstance(job, web.Response):
            return job
        self.counters.polls += 1
        return web.json_response(_STATUS[job.phase(self.clock())])

    async def _jobs(self, request: web.Request) -> web.Response:
        job = self._lookup(request)
        if isinstance(job, web.Response):
            return job
        return web.json_response({"data": self._children(job)})

    async def _cancel(self, request: web.Request) -> web.Response:
        job = self._lookup(request)
        if isinstance(job, web.Response):
            return job
        self.counters.cancels += 1
        phase = job.phase(self.clock())
        if phase not in ("queued", "running"):
            return _exception(
                400,
                "ApiValidationFailed",
                f"JobGroup {job.id} has already ended ({_STATUS[phase]}) and cannot be canceled",
            )
        job.cancelled_at = self.clock()
        self._wake.set()
        return web.json_response(self._view(job))

    async def _list(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            limit = int(q.get("limit", "25"))
            offset = int(q.get("offset", "0"))
        except ValueError:
            return _exception(400, "ApiValidationFailed", '"limit" and "offset" must be integers')
        if limit < 0 or offset < 0:
            return _exception(400, "ApiValidationFailed", '"limit" and "offset" must be >= 0')
        groups = [self._view(job) for job in self.jobs.values()]
        groups.sort(key=lambda g: g["id"], reverse=True)
        needle = q.get("filter")
        if needle:
            fields = [f.strip() for f in q.get("filterFields", "name").split(",") if f.strip()]
            groups = [
                g
                for g in groups
                if any(needle.lower() in str(g.get(f) or "").lower() for f in fields)
            ]
        end = None if q.get("noLimit") == "true" else offset + limit
        groups = groups[offset:end]
        return web.json_response({"data": groups})

    # -- webhooks --

    async def _webhook_pump(self, app: web.Application) -> AsyncIterator[None]:
        self._wake = asyncio.Event()  # bound to the serving loop
        task = asyncio.create_task(self._pump())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _pump(self) -> None:
        """Send the webhooks of every job group that has ended, then sleep until the next
        one is due (or a new one is accepted)."""
        while True:
            self._wake.clear()
            now = self.clock()
            ended = [
                job
                for job in list(self._hooked.values())
                if job.phase(now) in ("succeeded", "failed", "cancelled")
            ]
            for job in ended:
                self._hooked.pop(job.id, None)
            if ended:
                await asyncio.gather(*(self._fire(job) for job in ended))
            waits = [job.ended_at() - now for job in self._hooked.values()]
            timeout = min(0.5, max(0.0, min(waits))) if waits else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _fire(self, job: SimJob) -> None:
        status = _STATUS[job.phase(self.clock())]
        wanted = {
            "Complete": {"onJobDone", "onJobSuccess"},
            "Failed": {"onJobDone", "onJobFailure"},
        }.get(status, set())
        hooks = [
            h
            for h in job.data["overrides"].get("webhooks") or []
            if isinstance(h, dict) and h.get("triggerEvent") in wanted
        ]
        if not hooks:
            return
        timeout = aiohttp.ClientTimeout(total=self.webhook_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for hook in hooks:
                await self._deliver(session, job, status, hook)

    async def _deliver(
        self, session: aiohttp.ClientSession, job: SimJob, status: str, hook: dict[str, Any]
    ) -> None:
        method = str(hook.get("method") or "post").upper()
        body: Any = None
        if method not in ("GET", "DELETE"):
            template = hook.get("body")
            if isinstance(template, dict):
                body = {
                    k: v.replace("$jobId", job.id).replace("$jobStatus", status)
                    if isinstance(v, str)
                    else v
                    for k, v in template.items()
                }
            else:
                body = {
                    "jobGroupId": int(job.id),
                    "status": status,
                    "triggerEvent": hook.get("triggerEvent"),
                }
        headers = hook.get("headers") if isinstance(hook.get("headers"), dict) else {}
        record: dict[str, Any] = {
            "jobGroupId": int(job.id),
            "url": hook.get("url"),
            "method": method,
            "triggerEvent": hook.get("triggerEvent"),
            "body": body,
            "status": None,
            "error": None,
        }
        try:
            async with session.request(
                method,
                str(hook.get("url")),
                json=body,
                headers=headers,
                ssl=hook.get("sslVerification", True) is not False,
            ) as response:
                record["status"] = response.status
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            record["error"] = type(exc).__name__
        self.deliveries.append(record)
