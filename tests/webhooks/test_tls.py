"""TLS: verification is on by default; `sslVerification: false` works only when set."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import pytest
import trustme
from aiohttp import web
from structlog.testing import capture_logs

from orchestrator.model.dag import DAG, Job
from orchestrator.runtime import runs
from orchestrator.runtime.host import RunHost
from orchestrator.store.memory import MemoryStore

from .conftest import hook


@pytest.fixture
async def https_url(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    monkeypatch.setenv("ORCHESTRATOR_WEBHOOK_ALLOW", "loopback")
    monkeypatch.setenv("ORCHESTRATOR_WEBHOOK_SCHEDULE", "0,0.1s")
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)

    async def handle(request: web.Request) -> web.Response:
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/h", handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    yield f"https://127.0.0.1:{runner.addresses[0][1]}/h"
    await runner.cleanup()


@pytest.mark.parametrize("verify", [True, False])
async def test_self_signed_receiver(https_url: str, verify: bool) -> None:
    store = MemoryStore()
    with DAG("tls") as dag:
        Job("j", "fake", webhooks=[hook("h", https_url, "onJobDone", sslVerification=verify)])
    dag.validate()
    with capture_logs() as logs:
        async with RunHost(store) as host:
            await runs.run_new(host, dag, {}, overlap="allow", webhook_wait=3)
    ((delivery, attempts),) = await store.list_deliveries()
    if verify:
        assert delivery.state == "failed"
        assert all(
            "TLS" in (a.error or "") or "certificate" in (a.error or "").lower() for a in attempts
        )
        assert not any(e["event"] == "webhook.tls_unverified" for e in logs)
    else:
        assert delivery.state == "delivered"
        assert [a.status for a in attempts] == [204]
        assert any(
            e["event"] == "webhook.tls_unverified" and e["log_level"] == "warning" for e in logs
        )
