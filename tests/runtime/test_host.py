"""The run host: what its runs share (connectors, connection limits, the rate limit, one
deliverer), counted at the remote: the generic job API simulator over real HTTP."""

from __future__ import annotations

import time
from typing import Any

import anyio
from aiohttp import web

from orchestrator import DAG, Job
from orchestrator.connections import Connection
from orchestrator.connectors.registry import job_types
from orchestrator.engine.records import Run
from orchestrator.runtime.host import RunHost
from orchestrator.runtime.hub import ConnectorHub
from orchestrator.runtime.prepare import prepare_run
from orchestrator.testing.simulators.base import Behaviour
from orchestrator.testing.simulators.jobs_api import JobsApiSimulator
from tests.contract.conftest import serve  # noqa: F401 - the fixture
from tests.counting import CountingTypes

HTTP_JOB: dict[str, Any] = {
    "submit": {"method": "POST", "path": "/jobs", "body": {"name": "work"}},
    "idPath": "$.id",
    "poll": {"method": "GET", "path": "/jobs/{id}"},
    "statusPath": "$.state",
    "running": ["queued", "running"],
    "success": ["done"],
    "failure": ["error", "cancelled"],
}


class TimedSimulator(JobsApiSimulator):
    """The generic simulator, noting when each request arrived."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.arrivals: list[float] = []

    def routes(self, app: web.Application) -> None:
        @web.middleware
        async def note(request: web.Request, handler: Any) -> web.StreamResponse:
            if not request.path.endswith("/_sim/counters"):
                self.arrivals.append(time.monotonic())
            return await handler(request)  # type: ignore[no-any-return]

        app.middlewares.append(note)
        super().routes(app)


def parallel_dag(name: str, jobs: int) -> DAG:
    with DAG(name) as dag:
        for i in range(jobs):
            Job(f"job{i}", "http", connection="sim", **HTTP_JOB)
    dag.validate()
    return dag


def max_overlap(sim: JobsApiSimulator) -> int:
    """The most jobs that were running at the remote at one moment."""
    edges = sorted(
        [(job.created, 1) for job in sim.jobs.values()]
        + [(job.ended_at(), -1) for job in sim.jobs.values()]
    )
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


async def run_both(host: RunHost, first: Run, second: Run) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(host.run, first)
        tg.start_soon(host.run, second)


async def test_two_runs_share_a_connections_concurrency(serve: Any) -> None:  # noqa: F811
    served = await serve(JobsApiSimulator())
    served.sim.rule("work", Behaviour(duration=0.3))
    conn = Connection("sim", "http", served.base_url, {"token": "sim-token"}, concurrency=2)
    dags = [parallel_dag("left", 3), parallel_dag("right", 3)]
    runs = [prepare_run(dag, connections={"sim": conn}) for dag in dags]
    async with RunHost(None, {"sim": conn}) as host:
        await run_both(host, *runs)
    assert [run.state.value for run in runs] == ["succeeded", "succeeded"]
    assert len(served.sim.jobs) == 6
    assert max_overlap(served.sim) <= 2  # each run alone would have had two


async def test_two_runs_share_one_connector_and_its_rate_limit(serve: Any) -> None:  # noqa: F811
    served = await serve(TimedSimulator())
    served.sim.rule("work", Behaviour(duration=0))
    rate = 10.0
    conn = Connection("sim", "http", served.base_url, {"token": "sim-token"}, rate=rate)
    dags = [parallel_dag("left", 3), parallel_dag("right", 3)]
    runs = [prepare_run(dag, connections={"sim": conn}) for dag in dags]
    async with RunHost(None, {"sim": conn}) as host:
        await run_both(host, *runs)
    assert [run.state.value for run in runs] == ["succeeded", "succeeded"]
    arrivals = served.sim.arrivals
    assert len(arrivals) >= 12  # a submit and a poll per job at least
    # one limiter for both runs: the requests are spread over (n - 1) / rate seconds at least
    # (two limiters would have let both runs send at once: half the time); a lower bound,
    # which a slow machine only makes easier to meet
    assert arrivals[-1] - arrivals[0] >= 0.8 * (len(arrivals) - 1) / rate


async def test_hosts_raise_the_collectors_threshold_while_they_run() -> None:
    """A run's jobs hold their objects across the waits for commits: CPython's first threshold
    (700) made a run with a store collect seven times as often as one without. The hosts raise
    it while any of them runs (two at once here, ending out of order), and put it back."""
    import gc

    from orchestrator.runtime.host import YOUNG_COLLECTION

    before = gc.get_threshold()
    gc.set_threshold(700, *before[1:])
    entered = [anyio.Event(), anyio.Event()]
    leave = [anyio.Event(), anyio.Event()]
    left = [anyio.Event(), anyio.Event()]

    async def host(i: int) -> None:
        async with RunHost(None):
            entered[i].set()
            await leave[i].wait()
        left[i].set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(host, 0)
            await entered[0].wait()
            assert gc.get_threshold()[0] == YOUNG_COLLECTION
            tg.start_soon(host, 1)
            await entered[1].wait()
            leave[0].set()
            await left[0].wait()
            assert gc.get_threshold()[0] == YOUNG_COLLECTION  # the second still runs
            leave[1].set()
            await left[1].wait()
        assert gc.get_threshold() == (700, *before[1:])
        gc.set_threshold(20_000, *before[1:])  # a program's own choice, higher: kept
        async with RunHost(None):
            assert gc.get_threshold()[0] == 20_000
        assert gc.get_threshold()[0] == 20_000
    finally:
        gc.set_threshold(*before)


async def test_the_hub_looks_each_job_type_and_connection_up_once_per_dag() -> None:
    """A DAG of many jobs of one type opens its connector after one lookup, not one a job
    (part of a run's start)."""
    types = CountingTypes(job_types())
    hub = ConnectorHub(job_types=types)
    with DAG("many") as dag:
        for i in range(50):
            Job(f"j{i}", "fake")
    dag.validate()
    async with anyio.create_task_group() as tg:
        await tg.start(hub.serve)
        await hub.open_for(dag)
        hub.close()
    assert types.lookups == 1
