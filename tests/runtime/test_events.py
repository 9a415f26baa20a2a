"""The run host publishes its runs' state changes to subscribers, as frozen records."""

from __future__ import annotations

import anyio

from orchestrator import DAG, Job
from orchestrator.connectors.fake import FakeConnector, FakeRemote
from orchestrator.model.states import JobState, RunState
from orchestrator.runtime.events import HostEvent, JobChanged, RunChanged
from orchestrator.runtime.host import RunHost
from orchestrator.runtime.prepare import prepare_run


async def test_a_subscriber_sees_every_state_change_of_every_run() -> None:
    with DAG("watched") as dag:
        Job("a", "fake") >> Job("b", "fake", outcome="failure")
    dag.validate()
    runs = [prepare_run(dag), prepare_run(dag)]
    seen: list[HostEvent] = []
    async with RunHost(None, connectors={"fake": FakeConnector(FakeRemote())}) as host:
        with host.events.subscribe() as events:
            async with anyio.create_task_group() as tg:
                for run in runs:
                    tg.start_soon(host.run, run)
            while True:  # what the runs published, then nothing more
                try:
                    seen.append(events.receive_nowait())
                except anyio.WouldBlock:
                    break
    for run in runs:
        mine = [e for e in seen if e.run_id == run.id]
        assert mine[0] == RunChanged(run.id, "watched", None, RunState.RUNNING, mine[0].at)
        assert mine[-1] == RunChanged(
            run.id, "watched", RunState.RUNNING, RunState.FAILED, mine[-1].at, run.error
        )
        steps = [(e.job_id, e.old, e.new) for e in mine if isinstance(e, JobChanged)]
        assert [s for s in steps if s[0] == "b"][-1] == ("b", JobState.RUNNING, JobState.FAILED)
        assert [(old, new) for job, old, new in steps if job == "a"] == [
            (JobState.PENDING, JobState.QUEUED),
            (JobState.QUEUED, JobState.SUBMITTING),
            (JobState.SUBMITTING, JobState.RUNNING),
            (JobState.RUNNING, JobState.SUCCEEDED),
        ]
        ended = next(e for e in mine if isinstance(e, JobChanged) and e.new is JobState.FAILED)
        assert ended.error


async def test_a_full_subscriber_loses_events_not_the_run() -> None:
    with DAG("flood") as dag:
        for i in range(20):
            Job(f"j{i}", "fake")
    dag.validate()
    run = prepare_run(dag)
    async with RunHost(None, connectors={"fake": FakeConnector(FakeRemote())}) as host:
        host.events = type(host.events)(buffer=5)
        with host.events.subscribe() as events:
            await host.run(run)
            assert run.state is RunState.SUCCEEDED
            assert host.events.dropped > 0
            assert len([events.receive_nowait() for _ in range(5)]) == 5
