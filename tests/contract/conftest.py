"""Shared fixtures for the connector contract suites: simulators served over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import anyio
import pytest
from aiohttp import web

from orchestrator.connectors.base import Connector, PollResult, RemoteHandle, Submission
from orchestrator.testing.simulators.base import Simulator


class Served:
    """A simulator running on 127.0.0.1 at ``base_url`` (its prefix included)."""

    def __init__(self, simulator: Simulator, base_url: str) -> None:
        self.sim = simulator
        self.base_url = base_url


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Simulator], Any]]:
    """``served = await serve(simulator)`` starts it on a free port; stopped after the test."""
    runners: list[web.AppRunner] = []

    async def start(simulator: Simulator) -> Served:
        root = web.Application()
        if simulator.prefix:
            root.add_subapp(simulator.prefix, simulator.build())
        else:
            root = simulator.build()
        runner = web.AppRunner(root, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return Served(simulator, f"http://127.0.0.1:{port}{simulator.prefix}")

    yield start
    for runner in runners:
        await runner.cleanup()


def submission(
    params: dict[str, Any],
    *,
    job_id: str = "job",
    attempt: int = 1,
    not_before: float | None = None,
    claimed: Sequence[RemoteHandle] = (),
) -> Submission:
    """``not_before`` and ``claimed`` are what the engine gives ``find`` when it reconciles."""

    async def held() -> Sequence[RemoteHandle]:
        return claimed

    return Submission(
        dag="contract",
        run_id="run-1",
        job_id=job_id,
        attempt=attempt,
        idempotency_key=f"run-1/{job_id}/{attempt}",
        params=params,
        not_before=not_before,
        claimed=held,
    )


async def run_to_end(
    connector: Connector, handle: RemoteHandle, *, interval: float = 0.05, limit: float = 20.0
) -> PollResult:
    """Poll until the remote status is terminal."""
    with anyio.fail_after(limit):
        while True:
            result = await connector.poll(handle)
            if result.status.terminal:
                return result
            await anyio.sleep(interval)
