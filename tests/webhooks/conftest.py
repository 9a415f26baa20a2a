"""A local webhook receiver whose answers tests script."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from aiohttp import web


@dataclass
class Received:
    path: str
    method: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    base_url: str = ""
    received: list[Received] = field(default_factory=list)
    # per path: list of answers (status, headers) used in order; then 200
    script: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    hang: set[str] = field(default_factory=set)

    def on(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def wait_for(self, path: str, count: int = 1, timeout: float = 10) -> list[Received]:
        with anyio.fail_after(timeout):
            while len(self.on(path)) < count:
                await anyio.sleep(0.02)
        return self.on(path)


@pytest.fixture
async def receiver(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Receiver]:
    monkeypatch.setenv("ORCHESTRATOR_WEBHOOK_ALLOW", "loopback")
    rec = Receiver()

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        rec.received.append(
            Received(
                request.path, request.method, dict(request.headers), body, anyio.current_time()
            )
        )
        if request.path in rec.hang:
            await anyio.sleep(3600)
        answers = rec.script.get(request.path)
        if answers:
            status, headers = answers.pop(0)
            if 300 <= status < 400:
                raise web.HTTPFound(location=f"{rec.base_url}/redirected")
            return web.Response(status=status, headers=headers, text="scripted")
        return web.Response(status=200, text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield rec
    await runner.cleanup()


def hook(name: str, url: str, event: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "url": url, "triggerEvent": event, **extra}
