"""The scheduler on a run host, in a wall clock the test moves: each tick recorded once with its
run, catch-up after downtime, overlap policies, pause and jitter. Ticks are fired by calling
``evaluate`` (what the daemon's loop calls when a tick is due)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

from orchestrator import DAG, Job
from orchestrator.model.states import RunState
from orchestrator.runtime.host import RunHost
from orchestrator.runtime.scheduler import Scheduler
from orchestrator.store.base import RecordTick, RunRecord, TickRecord
from orchestrator.store.memory import MemoryStore
from tests.unit.test_schedule import DST

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC).timestamp()  # a Monday, 12:00 UTC


class Wall:
    """The scheduler's wall clock, moved by the test."""

    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


@asynccontextmanager
async def scheduling(
    store: MemoryStore, dag: DAG, wall: Wall
) -> AsyncIterator[tuple[RunHost, Scheduler]]:
    """A host on ``store`` and its scheduler of ``dag`` in the clock ``wall``, in session."""
    async with RunHost(store) as host:
        scheduler = Scheduler(host, now=wall)
        scheduler.update({dag.name: dag})
        async with scheduler.session():
            yield host, scheduler


def scheduled(name: str = "every_minute", *, hang: bool = False, **schedule: Any) -> DAG:
    with DAG(name, schedule={"cron": "* * * * *", **schedule}) as dag:
        Job("a", "fake", hang=hang)
    dag.validate()
    return dag


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


async def runs_of(store: MemoryStore, dag: str) -> list[RunRecord]:
    return sorted(await store.list_runs(dag=dag, limit=1000), key=lambda r: r.nominal_at or 0)


async def until(check: Callable[[], Any], timeout: float = 10) -> None:
    """Wait until ``await check()`` is true."""
    with anyio.fail_after(timeout):
        while not await check():
            await anyio.sleep(0.01)


async def settled(store: MemoryStore, dag: str, count: int) -> list[RunRecord]:
    """The DAG's runs once ``count`` of them ended."""

    async def ended() -> bool:
        return sum(r.state.terminal for r in await runs_of(store, dag)) >= count

    await until(ended)
    return await runs_of(store, dag)


async def test_a_new_schedule_fires_its_next_tick_once_with_its_nominal_time(
    store: MemoryStore,
) -> None:
    wall = Wall(T0 + 30)  # 12:00:30: nothing before now is missed
    dag = scheduled()
    async with scheduling(store, dag, wall) as (_host, scheduler):
        assert await scheduler.evaluate() == T0 + 60  # look again at 12:01
        assert await runs_of(store, dag.name) == []
        wall.at = T0 + 60.2
        await scheduler.evaluate()
        await scheduler.evaluate()  # the same moment again: the tick is recorded
    [run] = await settled(store, dag.name, 1)
    assert (run.trigger, run.nominal_at, run.state) == ("schedule", T0 + 60, RunState.SUCCEEDED)
    [tick] = await store.list_ticks(dag.name)
    assert (tick.nominal, tick.run_id, tick.skipped) == (T0 + 60, run.id, None)


async def test_two_schedulers_on_one_store_start_each_tick_once(store: MemoryStore) -> None:
    wall = Wall(T0 + 30)
    dag = scheduled(overlap="allow")
    async with RunHost(store) as one, RunHost(store) as two:
        first, second = Scheduler(one, now=wall), Scheduler(two, now=wall)
        for scheduler in (first, second):
            scheduler.update({dag.name: dag})
        async with first.session(), second.session():
            await first.evaluate()
            await second.evaluate()
            for minute in (1, 2, 3):
                wall.at = T0 + 60 * minute + 0.1
                async with anyio.create_task_group() as tg:  # at the same moment
                    tg.start_soon(first.evaluate)
                    tg.start_soon(second.evaluate)
    runs = await settled(store, dag.name, 3)
    assert [r.nominal_at for r in runs] == [T0 + 60, T0 + 120, T0 + 180]


@pytest.mark.parametrize(
    ("catchup", "started", "skipped"),
    [
        ("none", [], 10),  # every missed tick skipped
        ("latest", [600], 9),  # the most recent one runs
        ("all", [60 * m for m in range(1, 11)], 0),  # each in order (cap 10)
    ],
)
async def test_catch_up_after_downtime(
    store: MemoryStore, catchup: str, started: list[int], skipped: int
) -> None:
    dag = scheduled(catchup=catchup, overlap="queue_all")  # caught-up runs one at a time
    await store.apply([RecordTick(TickRecord(dag.name, T0, T0, "earlier", None))])
    wall = Wall(T0 + 600 + 45)  # down from 12:00 to 12:10:45: 12:01 ... 12:10 missed
    async with scheduling(store, dag, wall) as (_host, scheduler):
        await scheduler.evaluate()
    runs = await settled(store, dag.name, len(started))
    assert [r.nominal_at for r in runs] == [T0 + s for s in started]
    assert (await store.skipped_ticks()).get((dag.name, "catchup"), 0) == skipped


async def test_missed_ticks_older_than_the_window_are_skipped_as_such(store: MemoryStore) -> None:
    dag = scheduled(catchup="all", overlap="queue_all")
    await store.apply([RecordTick(TickRecord(dag.name, T0, T0, "earlier", None))])
    wall = Wall(T0 + 2 * 86_400 + 45)  # two days down; the window is one day
    async with scheduling(store, dag, wall) as (_host, scheduler):
        await scheduler.evaluate()
    counts = await store.skipped_ticks()
    assert counts[(dag.name, "outside window")] == 1440  # the first day's minutes
    assert len(await settled(store, dag.name, 10)) == 10  # the cap, oldest first


@pytest.mark.parametrize("overlap", ["skip", "queue", "queue_all", "cancel_previous", "allow"])
async def test_overlap_with_a_run_still_active(store: MemoryStore, overlap: str) -> None:
    """The first tick's run hangs; two more ticks come while it is active."""
    dag = scheduled(hang=True, overlap=overlap)
    wall = Wall(T0 + 30)
    async with scheduling(store, dag, wall) as (host, scheduler):
        await scheduler.evaluate()
        for minute in (1, 2, 3):
            wall.at = T0 + 60 * minute + 0.1
            await scheduler.evaluate()
            await until(lambda: _started(store, scheduler, dag.name))

        async def cancels_done() -> bool:  # cancel_previous: the runs it cancelled ended
            runs = await runs_of(store, dag.name)
            return overlap != "cancel_previous" or all(r.state.terminal for r in runs[:-1])

        await until(cancels_done)
        runs = await runs_of(store, dag.name)
        states = [r.state for r in runs]
        skipped = (await store.skipped_ticks()).get((dag.name, "overlap"), 0)
        host.cancel_all("the test ends")
        if overlap in ("queue", "queue_all"):
            scheduler.stop()  # the queued runs stay queued
    R = RunState
    if overlap == "skip":
        assert (states, skipped) == ([R.RUNNING], 2)
    elif overlap == "queue":  # one waits; the third tick finds it waiting
        assert (states, skipped) == ([R.RUNNING, R.QUEUED], 1)
    elif overlap == "queue_all":
        assert (states, skipped) == ([R.RUNNING, R.QUEUED, R.QUEUED], 0)
    elif overlap == "cancel_previous":
        assert (states, skipped) == ([R.CANCELLED, R.CANCELLED, R.RUNNING], 0)
    else:
        assert (states, skipped) == ([R.RUNNING] * 3, 0)


async def _started(store: MemoryStore, scheduler: Scheduler, dag: str) -> bool:
    """Every run of the DAG started or ended, but those queued behind an active one."""
    waiting = scheduler.waiting(dag)
    runs = await store.list_runs(dag=dag)
    return all(r.state is not RunState.QUEUED or r.id in waiting for r in runs)


async def test_a_queued_run_starts_when_the_active_one_ends(store: MemoryStore) -> None:
    dag = scheduled(hang=True, overlap="queue")
    wall = Wall(T0 + 30)
    async with scheduling(store, dag, wall) as (host, scheduler):
        await scheduler.evaluate()
        for minute in (1, 2):
            wall.at = T0 + 60 * minute + 0.1
            await scheduler.evaluate()
        await until(lambda: _started(store, scheduler, dag.name))
        first, second = await runs_of(store, dag.name)
        assert (first.state, second.state) == (RunState.RUNNING, RunState.QUEUED)
        host.cancel(first.id, "done with it")

        async def second_running() -> bool:
            run = await store.get_run(second.id)
            return run is not None and run.state is RunState.RUNNING

        await until(second_running)
        host.cancel_all("the test ends")


async def test_a_paused_schedule_records_its_ticks_as_skipped(store: MemoryStore) -> None:
    dag = scheduled()
    wall = Wall(T0 + 30)
    async with scheduling(store, dag, wall) as (_host, scheduler):
        await scheduler.evaluate()
        await store.set_paused(dag.name, True, wall.at)
        wall.at = T0 + 60.1
        await scheduler.evaluate()
        await store.set_paused(dag.name, False, wall.at)
        wall.at = T0 + 120.1
        await scheduler.evaluate()
    [run] = await settled(store, dag.name, 1)
    assert run.nominal_at == T0 + 120
    assert (await store.skipped_ticks()) == {(dag.name, "paused"): 1}


async def test_jitter_delays_a_tick_by_a_fixed_amount_below_the_bound(store: MemoryStore) -> None:
    dag = scheduled(jitter="20s")
    wall = Wall(T0 + 30)
    async with scheduling(store, dag, wall) as (_host, scheduler):
        await scheduler.evaluate()
        wall.at = T0 + 60
        due = await scheduler.evaluate()
        assert due is not None
        assert T0 + 60 < due < T0 + 80  # its jitter, not yet over
        assert await runs_of(store, dag.name) == []
        wall.at = due
        await scheduler.evaluate()
    [run] = await settled(store, dag.name, 1)
    assert run.nominal_at == T0 + 60
    assert run.created_at == due


async def test_a_dag_no_longer_given_is_not_scheduled(store: MemoryStore) -> None:
    dag = scheduled()
    wall = Wall(T0 + 30)
    async with scheduling(store, dag, wall) as (_host, scheduler):
        await scheduler.evaluate()
        scheduler.update({})
        wall.at = T0 + 60.1
        assert await scheduler.evaluate() is None
    assert await runs_of(store, dag.name) == []


@pytest.mark.parametrize(("cron", "zone", "after", "expected"), DST)
async def test_the_scheduler_fires_each_tick_once_across_daylight_saving_time(
    store: MemoryStore, cron: str, zone: str, after: str, expected: list[str]
) -> None:
    """The daemon's scheduler in virtual time, from ``after``: it sleeps until the time it
    names, then fires; the ticks it starts are the fire times the DST table lists (written out
    from Debian cron's rule in tests/unit/test_schedule.py), each once."""
    with DAG("dst", schedule={"cron": cron, "timezone": zone, "overlap": "allow"}) as dag:
        Job("a", "fake")
    dag.validate()
    wall = Wall(datetime.fromisoformat(after).timestamp())
    async with scheduling(store, dag, wall) as (_host, scheduler):
        due = await scheduler.evaluate()
        for _ in expected:
            assert due is not None
            wall.at = due  # the loop wakes when it said it would
            due = await scheduler.evaluate()
            assert due is not None
            due = await scheduler.evaluate()  # nothing new at the same moment
    runs = await settled(store, dag.name, len(expected))
    assert [r.nominal_at for r in runs] == [datetime.fromisoformat(t).timestamp() for t in expected]
    assert [r.created_at for r in runs] == [r.nominal_at for r in runs]  # on time to the second


async def test_an_orphaned_run_of_the_dag_is_adopted_at_its_next_tick(store: MemoryStore) -> None:
    """A run of the DAG left running by a process that died (a command-line run killed) is
    resumed by the scheduler, as `orchestrator run` would, instead of blocking the schedule."""
    import socket

    from orchestrator.engine.durable import send_new_run
    from orchestrator.engine.records import Run

    dag = scheduled()
    orphan = Run("orphan", dag, {}, "manual")
    dead = f"{socket.gethostname()}:999999999:0"  # no such process
    await send_new_run(store, orphan, owner=dead, at=T0, exclusive=False).wait()
    wall = Wall(T0 + 30)
    async with scheduling(store, dag, wall) as (_host, scheduler):
        await scheduler.evaluate()
        wall.at = T0 + 60.1
        await scheduler.evaluate()  # the orphan is active: skipped, and adopted

        async def adopted() -> bool:
            run = await store.get_run("orphan")
            return run is not None and run.state is RunState.SUCCEEDED

        await until(adopted)
        wall.at = T0 + 120.1
        await scheduler.evaluate()
    runs = await settled(store, dag.name, 2)
    assert (runs[0].id, runs[0].nominal_at) == ("orphan", None)
    assert runs[1].nominal_at == T0 + 120
    assert (await store.skipped_ticks()) == {(dag.name, "overlap"): 1}


async def test_queue_all_runs_one_at_a_time_when_ticks_come_while_a_queued_run_runs(
    store: MemoryStore,
) -> None:
    """A tick that comes while the drain runs the last queued run queues behind it, and the
    runs still go one at a time. (This passes with or without the one-drain-per-DAG change:
    the double start it guards against was seen only in the end-to-end test, under load.)"""
    dag = scheduled(hang=True, overlap="queue_all")
    wall = Wall(T0 + 30)

    async def running() -> list[str]:
        return [r.id for r in await store.list_runs(dag=dag.name) if r.state is RunState.RUNNING]

    async with scheduling(store, dag, wall) as (host, scheduler):
        await scheduler.evaluate()
        most = 0
        for minute in (1, 2, 3, 4):
            wall.at = T0 + 60 * minute + 0.1
            await scheduler.evaluate()
            await until(lambda: _started(store, scheduler, dag.name))
            now = await running()
            most = max(most, len(now))
            if minute >= 2:
                host.cancel(now[0], "next")  # the queued one starts; a tick comes meanwhile

                async def next_started(previous: str = now[0]) -> bool:
                    ids = await running()
                    return bool(ids) and previous not in ids

                await until(next_started)
                most = max(most, len(await running()))
        host.cancel_all("the test ends")
        scheduler.stop()
    assert most == 1


async def test_a_tick_due_while_paused_read_only_after_the_resume_is_skipped(
    store: MemoryStore,
) -> None:
    """The scheduler saw the pause, then (busy, or down) reads a tick due during it only after
    the schedule was resumed: that tick is recorded as paused, the next one fires."""
    dag = scheduled()
    wall = Wall(T0 + 30)
    async with scheduling(store, dag, wall) as (_host, scheduler):
        await scheduler.evaluate()
        await store.set_paused(dag.name, True, T0 + 50)
        await store.set_paused(dag.name, False, T0 + 60.5)  # resumed after the tick at 60
        wall.at = T0 + 61  # ...which is read only now
        await scheduler.evaluate()
        assert (await store.skipped_ticks()) == {(dag.name, "paused"): 1}
        assert await runs_of(store, dag.name) == []
        wall.at = T0 + 120.1
        await scheduler.evaluate()
    [run] = await settled(store, dag.name, 1)
    assert run.nominal_at == T0 + 120
