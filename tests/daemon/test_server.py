"""The daemon's HTTP server over real HTTP: health, readiness, metrics, JSON errors, and a port
that is taken."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from orchestrator.daemon.metrics import DaemonMetrics
from orchestrator.daemon.server import Checks, build_app, serving
from orchestrator.errors import ConfigError

Serve = Callable[..., Any]


class ReadyChecks:
    """What ``/readyz`` answers, set by each test."""

    def __init__(self) -> None:
        self.checks: Mapping[str, tuple[bool, str]] = {"store": (True, "sqlite open")}
        self.error: Exception | None = None

    async def __call__(self) -> Checks:
        if self.error is not None:
            raise self.error
        return self.checks


@pytest.fixture
def ready() -> ReadyChecks:
    return ReadyChecks()


@pytest.fixture
def metrics() -> DaemonMetrics:
    return DaemonMetrics()


@pytest.fixture
async def client(
    ready: ReadyChecks, metrics: DaemonMetrics
) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    app = build_app(ready=ready, metrics=metrics)

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("secret detail of a bug")

    app.router.add_get("/boom", boom)
    async with serving(app) as port, aiohttp.ClientSession() as session:
        yield session, f"http://127.0.0.1:{port}"


async def test_healthz(client: tuple[aiohttp.ClientSession, str]) -> None:
    session, base = client
    async with session.get(f"{base}/healthz") as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok"}


async def test_readyz_when_every_check_passes(client: tuple[aiohttp.ClientSession, str]) -> None:
    session, base = client
    async with session.get(f"{base}/readyz") as response:
        assert response.status == 200
        assert await response.json() == {
            "status": "ok",
            "checks": {"store": {"ok": True, "detail": "sqlite open"}},
        }


async def test_readyz_when_a_check_fails(
    client: tuple[aiohttp.ClientSession, str], ready: ReadyChecks
) -> None:
    session, base = client
    ready.checks = {"store": (True, "sqlite open"), "dags": (False, "folder not loaded yet")}
    async with session.get(f"{base}/readyz") as response:
        assert response.status == 503
        body = await response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["dags"] == {"ok": False, "detail": "folder not loaded yet"}
    assert body["checks"]["store"]["ok"] is True


async def test_readyz_when_the_checks_raise(
    client: tuple[aiohttp.ClientSession, str], ready: ReadyChecks
) -> None:
    session, base = client
    ready.error = RuntimeError("store gone")
    async with session.get(f"{base}/readyz") as response:
        assert response.status == 503
        body = await response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["checks"]["ok"] is False


async def test_metrics_in_prometheus_text_format(
    client: tuple[aiohttp.ClientSession, str], metrics: DaemonMetrics
) -> None:
    session, base = client
    metrics.set_run_counts({"running": 2})
    metrics.sync({("trifacta", "submit"): 1}, {})
    metrics.tick_started(0.3)
    metrics.tick_skipped("overlap")
    async with session.get(f"{base}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    for name in (
        'orchestrator_runs{state="running"} 2.0',
        'orchestrator_runs{state="failed"} 0.0',
        'orchestrator_submissions_total{connection="trifacta"} 1.0',
        'orchestrator_ticks_skipped_total{reason="overlap"} 1.0',
        "orchestrator_tick_delay_seconds_count 1.0",
        "orchestrator_event_loop_lag_seconds_bucket",
        "orchestrator_jobs_in_flight",
    ):
        assert name in text


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nowhere", 404), ("POST", "/healthz", 405), ("GET", "/boom", 500)],
)
async def test_errors_are_json(
    client: tuple[aiohttp.ClientSession, str], method: str, path: str, status: int
) -> None:
    session, base = client
    async with session.request(method, f"{base}{path}") as response:
        assert response.status == status
        assert response.content_type == "application/json"
        body = await response.json()
    codes = {404: "not_found", 405: "method_not_allowed", 500: "internal"}
    assert body["error"]["code"] == codes[status]
    assert "secret detail" not in body["error"]["message"]


async def test_a_port_in_use_is_a_config_error(ready: ReadyChecks, metrics: DaemonMetrics) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        app = build_app(ready=ready, metrics=metrics)
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}: the port is in use"):
            async with serving(app, port=port):
                pass
