"""The daemon's HTTP server: health, readiness and metrics now; the REST API joins them in
:func:`add_routes`.

Every answer is JSON except ``/metrics`` (Prometheus' text format): an unknown path is a JSON
404, an unexpected exception a JSON 500 with no traceback (the traceback goes to the log).
:func:`serving` runs an application on a port for as long as its ``async with`` block lasts.
"""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager

import anyio
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from ..errors import ConfigError
from .api import callbacks, feed, routes
from .api.auth import TOKENS, Tokens, authorize
from .api.context import CONTEXT, ApiContext
from .api.document import MAX_BODY, PREFIX, document
from .api.errors import ApiError, error_response
from .metrics import DaemonMetrics

log = structlog.get_logger("orchestrator")

Checks = Mapping[str, tuple[bool, str]]
"""Readiness: check name -> (ok, detail)."""
Ready = Callable[[], Awaitable[Checks]]

READY_TIMEOUT = 5.0  # seconds /readyz waits for the checks; slower is not ready
SHUTDOWN_GRACE = 5.0  # seconds open requests get when the server stops

READY_KEY: web.AppKey[Ready] = web.AppKey("ready")
METRICS_KEY = web.AppKey("metrics", DaemonMetrics)


def build_app(
    *,
    ready: Ready,
    metrics: DaemonMetrics,
    api: ApiContext | None = None,
    tokens: Tokens | None = None,
) -> web.Application:
    """The daemon's application: ``ready`` answers ``/readyz``; ``metrics`` is ``/metrics``;
    ``api`` serves the REST API and its event stream; ``tokens`` guard everything but the
    health checks (nothing is guarded without)."""
    app = web.Application(middlewares=[json_errors, authorize], client_max_size=MAX_BODY)
    app[READY_KEY] = ready
    app[METRICS_KEY] = metrics
    app[TOKENS] = tokens or Tokens()
    if api is not None:
        app[CONTEXT] = api
    add_routes(app, api=api is not None)
    return app


def add_routes(app: web.Application, *, api: bool = True) -> None:
    """Every route of the daemon, in one place."""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_text)
    if api:
        app.router.add_get(f"{PREFIX}/openapi.json", openapi)
        routes.add_routes(app)
        feed.add_routes(app)
        callbacks.add_routes(app)


async def openapi(request: web.Request) -> web.Response:
    """The API's OpenAPI document."""
    return web.json_response(document())


async def healthz(request: web.Request) -> web.Response:
    """The process is up and its event loop answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 when every readiness check passes, else 503; the body lists each check."""
    checks: dict[str, tuple[bool, str]] = {}
    with anyio.move_on_after(READY_TIMEOUT) as scope:
        try:
            checks = dict(await request.app[READY_KEY]())
        except Exception as exc:
            log.exception("readiness checks failed")
            checks = {"checks": (False, f"the checks failed: {type(exc).__name__}")}
    if scope.cancelled_caught:
        checks = {"checks": (False, f"no answer within {READY_TIMEOUT:g}s")}
    ok = all(passed for passed, _ in checks.values())
    body = {
        "status": "ok" if ok else "unavailable",
        "checks": {
            name: {"ok": passed, "detail": detail} for name, (passed, detail) in checks.items()
        },
    }
    return web.json_response(body, status=200 if ok else 503)


async def metrics_text(request: web.Request) -> web.Response:
    body = request.app[METRICS_KEY].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors as JSON ``{"error": {"code", "message", "field"}}``; anything unexpected a JSON
    500 that shows nothing of it (the log has the traceback)."""
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like are answers, not errors
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return error_response(exc.status, exc.reason, headers=headers)
    except Exception:
        log.exception("request failed", method=request.method, path=request.path)
        return error_response(500, "Internal Server Error")


@asynccontextmanager
async def serving(
    app: web.Application, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[int]:
    """Serve ``app`` on ``host:port`` inside the block, which gets the port bound (``port`` 0
    picks a free one). A port that cannot be bound is a :class:`ConfigError` naming it."""
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(_bind_failure(host, port, exc)) from None
        yield _bound_port(runner)
    finally:
        with anyio.move_on_after(SHUTDOWN_GRACE + 1, shield=True):
            await runner.cleanup()


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise ConfigError("the server is bound to no TCP port")  # pragma: no cover


def _bind_failure(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"cannot listen on {host}:{port}: the port is in use (another daemon or program)"
    if exc.errno == errno.EACCES:
        return f"cannot listen on {host}:{port}: permission denied (ports below 1024 need root)"
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"cannot listen on {host}:{port}: {reason}"
