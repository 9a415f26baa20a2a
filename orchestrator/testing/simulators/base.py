"""What every API simulator shares: job behaviours over time, faults on demand, counters.

A simulator is an aiohttp application for one remote API. Each submitted job gets a
:class:`Behaviour` (how long it takes, how it ends), chosen by the first matching rule: a
behaviour queued with :meth:`Simulator.script` for the next submission, else a rule keyed by the
API's own target (a dataset id, a job id, a job name: each simulator says which), else the
default. Faults queued with :meth:`Simulator.fault` hit the next matching requests. Everything is
also reachable over HTTP under ``/_sim`` so that tests in another process can drive it:

    GET  /_sim/counters          counters as JSON
    POST /_sim/behaviour         {"target": "...", "duration": 2, "outcome": "failure", ...}
    POST /_sim/script            same fields, for the next submission (no target)
    POST /_sim/fault             {"kind": "status", "status": 503, "retryAfter": 1, "count": 2,
                                  "method": "POST", "path": "/v4/jobGroups"}
    POST /_sim/reset             forget jobs, rules, faults, counters
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

Outcome = Literal["success", "failure"]
FaultKind = Literal["status", "slow", "drop", "malformed"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class Behaviour:
    duration: float = 0.5  # seconds from submission to the end
    outcome: Outcome = "success"
    message: str = "simulated failure"
    queued: float = 0.0  # seconds in a pending/queued state before running
    outputs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Behaviour:
        return cls(
            duration=float(data.get("duration", 0.5)),
            outcome=data.get("outcome", "success"),
            message=str(data.get("message", "simulated failure")),
            queued=float(data.get("queued", 0.0)),
            outputs=dict(data.get("outputs", {})),
        )


JobPhase = Literal["queued", "running", "succeeded", "failed", "cancelled"]


@dataclass(slots=True)
class SimJob:
    """One job the simulator accepted; ``data`` holds API-specific fields."""

    id: str
    behaviour: Behaviour
    created: float
    key: str | None = None  # idempotency key, where the request carried one
    name: str | None = None
    cancelled_at: float | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def phase(self, now: float) -> JobPhase:
        b = self.behaviour
        end = self.created + b.queued + b.duration
        if self.cancelled_at is not None and self.cancelled_at < end:
            return "cancelled"
        if now < self.created + b.queued:
            return "queued"
        if now < end:
            return "running"
        return "succeeded" if b.outcome == "success" else "failed"

    def ended_at(self) -> float:
        if self.cancelled_at is not None:
            return min(
                self.cancelled_at, self.created + self.behaviour.queued + self.behaviour.duration
            )
        return self.created + self.behaviour.queued + self.behaviour.duration


@dataclass(slots=True)
class Fault:
    kind: FaultKind
    count: int = 1
    status: int = 503
    retry_after: str | None = None  # header value, seconds or an HTTP date
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 5.0  # for "slow"
    method: str | None = None
    path: str | None = None  # a prefix of the path under the simulator's prefix

    def matches(self, request: web.Request, local_path: str) -> bool:
        if self.method and request.method != self.method.upper():
            return False
        return not (self.path and not local_path.startswith(self.path))


@dataclass(slots=True)
class Counters:
    requests: collections.Counter[str] = field(default_factory=collections.Counter)
    submissions: collections.Counter[str] = field(default_factory=collections.Counter)
    polls: int = 0
    cancels: int = 0
    faults_served: int = 0
    auth_failures: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "submissions": dict(self.submissions),
            "polls": self.polls,
            "cancels": self.cancels,
            "faultsServed": self.faults_served,
            "authFailures": self.auth_failures,
        }


class Simulator:
    """Base of every API simulator. Subclasses add routes in :meth:`routes`."""

    name = "base"

    def __init__(
        self,
        *,
        prefix: str = "",
        clock: Callable[[], float] = time.monotonic,
        default: Behaviour | None = None,
    ) -> None:
        self.prefix = prefix.rstrip("/")
        self.clock = clock
        self.default = default or Behaviour()
        self.rules: dict[str, Behaviour] = {}
        self.scripted: collections.deque[Behaviour] = collections.deque()
        self.faults: list[Fault] = []
        self.counters = Counters()
        self.jobs: dict[str, SimJob] = {}
        self._seq = 0

    # -- control -------------------------------------------------------------------------
    def script(self, behaviour: Behaviour) -> None:
        """Use ``behaviour`` for the next submitted job."""
        self.scripted.append(behaviour)

    def rule(self, target: str, behaviour: Behaviour) -> None:
        self.rules[str(target)] = behaviour

    def fault(self, fault: Fault) -> None:
        self.faults.append(fault)

    def reset(self) -> None:
        self.rules.clear()
        self.scripted.clear()
        self.faults.clear()
        self.jobs.clear()
        self.counters = Counters()

    def next_id(self) -> int:
        self._seq += 1
        return self._seq

    def behaviour_for(self, target: str | None) -> Behaviour:
        if self.scripted:
            return self.scripted.popleft()
        if target is not None and str(target) in self.rules:
            return self.rules[str(target)]
        return self.default

    def accept(
        self,
        job_id: str,
        *,
        target: str | None,
        key: str | None,
        name: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> SimJob:
        """Record a new job as accepted and count its submission."""
        job = SimJob(
            id=job_id,
            behaviour=self.behaviour_for(target),
            created=self.clock(),
            key=key,
            name=name,
            data=data or {},
        )
        self.jobs[job_id] = job
        self.counters.submissions[key or f"<no key:{job_id}>"] += 1
        return job

    # -- application ---------------------------------------------------------------------
    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def authorized(self, request: web.Request) -> bool:
        """Override to check the API's credentials."""
        return True

    def unauthorized(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": "unauthorized"}, status=401)

    def build(self) -> web.Application:
        """The application, to mount under :attr:`prefix` or serve alone."""
        app = web.Application(middlewares=[self._middleware])
        self.routes(app)
        control = web.RouteTableDef()
        control.get("/_sim/counters")(self._h_counters)
        control.post("/_sim/behaviour")(self._h_behaviour)
        control.post("/_sim/script")(self._h_script)
        control.post("/_sim/fault")(self._h_fault)
        control.post("/_sim/reset")(self._h_reset)
        app.add_routes(control)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        local = (
            request.path[len(self.prefix) :]
            if request.path.startswith(self.prefix)
            else request.path
        )
        if local.startswith("/_sim/"):
            return await handler(request)
        self.counters.requests[f"{request.method} {local}"] += 1
        for fault in self.faults:
            if fault.count > 0 and fault.matches(request, local):
                fault.count -= 1
                self.counters.faults_served += 1
                return await self._serve_fault(fault, request, handler)
        if not self.authorized(request):
            self.counters.auth_failures += 1
            return self.unauthorized(request)
        return await handler(request)

    async def _serve_fault(
        self, fault: Fault, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay)
            return await handler(request)
        if fault.kind == "drop":
            assert request.transport is not None
            request.transport.abort()
            # aiohttp needs a response object; the client never sees it
            return web.Response(status=500)
        if fault.kind == "malformed":
            return web.Response(
                status=200, body=b"<html>not json{", content_type="application/json"
            )
        headers = dict(fault.headers)
        if fault.retry_after is not None:
            headers["Retry-After"] = fault.retry_after
        return web.Response(status=fault.status, text="simulated fault", headers=headers)

    async def _h_counters(self, request: web.Request) -> web.Response:
        return web.json_response(self.counters.to_json())

    async def _h_behaviour(self, request: web.Request) -> web.Response:
        data = await request.json()
        self.rule(str(data["target"]), Behaviour.from_json(data))
        return web.json_response({"ok": True})

    async def _h_script(self, request: web.Request) -> web.Response:
        self.script(Behaviour.from_json(await request.json()))
        return web.json_response({"ok": True})

    async def _h_fault(self, request: web.Request) -> web.Response:
        d = await request.json()
        ra = d.get("retryAfter")
        self.fault(
            Fault(
                kind=d.get("kind", "status"),
                count=int(d.get("count", 1)),
                status=int(d.get("status", 503)),
                retry_after=None if ra is None else str(ra),
                headers=dict(d.get("headers", {})),
                delay=float(d.get("delay", 5.0)),
                method=d.get("method"),
                path=d.get("path"),
            )
        )
        return web.json_response({"ok": True})

    async def _h_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})
