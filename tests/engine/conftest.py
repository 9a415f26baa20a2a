"""Engine tests run in virtual time against the in-memory fake remote."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from orchestrator.clock import FakeClock
from orchestrator.connectors.fake import FakeConnector, FakeRemote
from orchestrator.engine.records import Run
from orchestrator.model.dag import DAG
from orchestrator.runtime.runs import run_dag


@pytest.fixture
def clock() -> FakeClock:
    """Virtual time; enter it (``async with clock:``) where it must advance by itself
    (``run`` does)."""
    return FakeClock()


@pytest.fixture
def remote(clock: FakeClock) -> FakeRemote:
    return FakeRemote(clock=clock)


RunFn = Callable[..., Awaitable[Run]]


@pytest.fixture
def run(clock: FakeClock, remote: FakeRemote) -> RunFn:
    """``await run(dag, **kwargs)``: the DAG run in virtual time on the fake remote."""

    async def go(dag: DAG, **kwargs: Any) -> Run:
        dag.validate()
        kwargs.setdefault("rng", random.Random(7))
        async with clock:
            return await run_dag(
                dag, clock=clock, connectors={"fake": FakeConnector(remote)}, **kwargs
            )

    return go
