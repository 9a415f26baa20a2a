"""A generic REST job API, the remote of the ``http`` job type's tests, examples and benchmark.

    POST /jobs                {"name"?: str, ...}   201 {"id", "name", "state": "queued", ...}
    GET  /jobs/{id}           200 {"id", "name", "state", "error"?, "result"?}
    GET  /jobs?key=K          200 {"data": [job...]}  (jobs submitted with Idempotency-Key K)
    POST /jobs/{id}/cancel    202 {"id", "state": "cancelled"}; 409 when the job already ended

States: ``queued`` → ``running`` → ``done`` | ``error``, or ``cancelled``. Auth: ``Authorization:
Bearer <token>`` (default ``sim-token``); 401 ``{"error": "unauthorized"}`` otherwise. A request
with an ``Idempotency-Key`` already seen returns the job it created (200, not counted again as
a submission; ``counters.requests`` still counts it). Unknown ids: 404 ``{"error": "no job
<id>"}``; a body that is not a JSON object: 400 ``{"error": ...}``. Rule target: the ``name`` in
the body.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .base import SimJob, Simulator

_STATE = {
    "queued": "queued",
    "running": "running",
    "succeeded": "done",
    "failed": "error",
    "cancelled": "cancelled",
}


class JobsApiSimulator(Simulator):
    name = "generic"

    def __init__(self, *, token: str = "sim-token", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.token = token
        self.by_key: dict[str, str] = {}

    def reset(self) -> None:
        super().reset()
        self.by_key.clear()

    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    def _view(self, job: SimJob) -> dict[str, Any]:
        phase = job.phase(self.clock())
        out: dict[str, Any] = {"id": job.id, "name": job.name, "state": _STATE[phase]}
        if phase == "failed":
            out["error"] = job.behaviour.message
        if phase == "succeeded":
            out["result"] = job.behaviour.outputs
        return out

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/jobs", self._create)
        app.router.add_get("/jobs", self._search)
        app.router.add_get("/jobs/{id}", self._get)
        app.router.add_post("/jobs/{id}/cancel", self._cancel)

    async def _create(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            return web.json_response({"error": "the body is not JSON"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"error": "the body must be a JSON object"}, status=400)
        key = request.headers.get("Idempotency-Key")
        if key and key in self.by_key:
            return web.json_response(self._view(self.jobs[self.by_key[key]]), status=200)
        name = body.get("name")
        job = self.accept(f"job-{self.next_id()}", target=name, key=key, name=name, data=body)
        if key:
            self.by_key[key] = job.id
        return web.json_response(self._view(job), status=201)

    async def _search(self, request: web.Request) -> web.Response:
        key = request.query.get("key")
        found = [self._view(j) for j in self.jobs.values() if key is None or j.key == key]
        return web.json_response({"data": found})

    async def _get(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return web.json_response({"error": f"no job {request.match_info['id']}"}, status=404)
        self.counters.polls += 1
        return web.json_response(self._view(job))

    async def _cancel(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return web.json_response({"error": f"no job {request.match_info['id']}"}, status=404)
        self.counters.cancels += 1
        if job.phase(self.clock()) in ("succeeded", "failed"):
            return web.json_response(
                {"error": "the job already ended", **self._view(job)}, status=409
            )
        if job.cancelled_at is None:
            job.cancelled_at = self.clock()
        return web.json_response(self._view(job), status=202)
