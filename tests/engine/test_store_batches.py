"""What the engine hands to the store, and what it waits for: the write-ahead record before the
request leaves and the handle before the first poll, each waited for until the store says it is
durable (not only handed over), however the batches are gathered."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from orchestrator.clock import FakeClock
from orchestrator.connectors.base import Submission
from orchestrator.connectors.fake import FakeConnector, FakeRemote
from orchestrator.connectors.registry import job_types
from orchestrator.engine import journal
from orchestrator.engine.durable import record_new_run
from orchestrator.engine.executor import RunExecutor
from orchestrator.engine.records import JobRun, Run
from orchestrator.model.dag import DAG, Job
from orchestrator.model.states import AttemptState, JobState, RunState
from orchestrator.runtime.connectors import ConnectorSet
from orchestrator.runtime.prepare import prepare_run
from orchestrator.runtime.runs import run_dag
from orchestrator.store.base import (
    AttemptRow,
    Changes,
    CreateRun,
    Operation,
    Receipt,
    RunTransition,
    StaleWrite,
)
from orchestrator.store.memory import MemoryStore
from orchestrator.store.sqlite import SQLiteStore


def attempt_rows(ops: Sequence[Operation]) -> list[AttemptRow]:
    return [row for op in ops if isinstance(op, Changes) for row in op.attempts]


class GatedStore(MemoryStore):
    """A memory store that holds every batch from the first one with an attempt row in
    ``hold`` on, or with a run's record if ``hold_records`` (in order: a batch after a held one
    is held too) until :meth:`release` (or :meth:`refuse`). ``batches``: each handed to it."""

    def __init__(self) -> None:
        super().__init__()
        self.hold: set[AttemptState] = set()
        self.hold_records = False
        self.held: list[tuple[list[Operation], Receipt]] = []
        self.batches: list[list[Operation]] = []

    def submit(self, ops: Sequence[Operation]) -> Receipt:
        self.batches.append(list(ops))
        record = self.hold_records and any(isinstance(op, CreateRun) for op in ops)
        if self.held or record or any(row.state in self.hold for row in attempt_rows(ops)):
            receipt = Receipt()
            self.held.append((list(ops), receipt))
            return receipt
        return super().submit(ops)

    def refuse(self, error: Exception) -> None:
        held, self.held = self.held, []
        for _, receipt in held:
            receipt.settle(error)

    def holds(self, state: AttemptState) -> bool:
        return any(row.state is state for ops, _ in self.held for row in attempt_rows(ops))

    def release(self) -> None:
        held, self.held = self.held, []
        for ops, receipt in held:
            receipt.settle(super().submit(ops).error)


class Spy(FakeConnector):
    def __init__(self, remote: FakeRemote) -> None:
        super().__init__(remote)
        self.submits = 0
        self.polls = 0

    async def submit(self, submission: Submission) -> dict[str, Any]:
        self.submits += 1
        return await super().submit(submission)

    async def poll(self, handle: dict[str, Any]) -> Any:
        self.polls += 1
        return await super().poll(handle)


async def until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(10):
        while not condition():
            await anyio.lowlevel.checkpoint()


async def turns(n: int) -> None:
    """Let the engine go on for ``n`` turns of the loop (more than a batch gathers)."""
    for _ in range(n):
        await anyio.lowlevel.checkpoint()


def remote_job(run: Run, job_id: str) -> None:
    """Polled as a remote job type is, over a connection (the fake is polled in memory, where
    the handle rides along with the next commit without being waited for)."""
    jr = run.jobs[job_id]
    jr.job_type = dataclasses.replace(jr.job_type, needs_connection=True)


async def test_no_request_leaves_until_the_store_says_its_record_is_durable(
    clock: FakeClock,
) -> None:
    """The write-ahead rule with batches gathered over several turns of the loop: the
    submission waits for the receipt of the batch with its `submitting` record, the first poll
    for that of the handle; handing a batch over is not enough."""
    store = GatedStore()
    spy = Spy(FakeRemote(clock=clock))
    with DAG("gated") as dag:
        Job("a", "fake", duration="1s")
    dag.validate()
    run = prepare_run(dag)
    await record_new_run(store, run, owner="me", at=0, exclusive=False)
    async with clock, ConnectorSet(dag, {}, {"fake": spy}) as connectors:
        executor = RunExecutor(run, connectors, job_types=job_types(), clock=clock, store=store)
        remote_job(run, "a")
        store.hold = {AttemptState.SUBMITTING, AttemptState.RUNNING}
        async with anyio.create_task_group() as tg:
            tg.start_soon(executor.execute)
            await until(lambda: store.holds(AttemptState.SUBMITTING))
            await turns(4 * journal.FLUSH_TURNS)
            assert spy.submits == 0
            store.release()
            await until(lambda: store.holds(AttemptState.RUNNING))
            await turns(4 * journal.FLUSH_TURNS)
            assert (spy.submits, spy.polls) == (1, 0)
            store.hold = set()
            store.release()
    assert run.state is RunState.SUCCEEDED
    assert spy.submits == 1
    assert spy.polls >= 1


def job_states(seen: list[tuple[str, JobState]]) -> Callable[[JobRun, JobState], None]:
    """An observer of a run's jobs: each step as (job, new state)."""
    return lambda jr, old: seen.append((jr.id, jr.state))


async def test_a_new_run_starts_while_its_record_is_written(clock: FakeClock) -> None:
    """run_dag hands the store the run's record and starts the run without waiting for it:
    its first job gets as far as its write-ahead record meanwhile; that record, and the run's
    start, wait for the run's record to be durable, then go in one batch, and only then does
    the request leave."""
    store = GatedStore()
    store.hold_records = True
    spy = Spy(FakeRemote(clock=clock))
    with DAG("early") as dag:
        Job("a", "fake")
    dag.validate()
    seen: list[tuple[str, JobState]] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            partial(
                run_dag, dag, store=store, connectors={"fake": spy}, observers=[job_states(seen)]
            )
        )
        await until(lambda: ("a", JobState.SUBMITTING) in seen)
        await turns(4 * journal.FLUSH_TURNS)
        [(record, _)] = store.held  # the run's record, and nothing after it
        assert [type(op) for op in record] == [CreateRun]
        assert (len(store.batches), spy.submits) == (1, 0)
        store.hold_records = False
        store.release()
    assert spy.submits == 1
    [run] = store.runs.values()
    assert run.state is RunState.SUCCEEDED
    first = store.batches[1]
    assert any(isinstance(op, RunTransition) for op in first)  # the run's start
    assert [row.state for row in attempt_rows(first)] == [AttemptState.SUBMITTING]


async def test_a_run_whose_record_is_refused_writes_and_submits_nothing(
    clock: FakeClock,
) -> None:
    """The store refuses the run's record while the run has started: run_dag raises the
    refusal as it is, nothing more of the run was handed to the store, and no job left."""
    store = GatedStore()
    store.hold_records = True
    spy = Spy(FakeRemote(clock=clock))
    with DAG("refused_late") as dag:
        Job("a", "fake")
        Job("b", "fake")
    dag.validate()
    seen: list[tuple[str, JobState]] = []
    failure: list[BaseException] = []

    async def run() -> None:
        try:
            await run_dag(dag, store=store, connectors={"fake": spy}, observers=[job_states(seen)])
        except StaleWrite as exc:
            failure.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await until(lambda: ("a", JobState.SUBMITTING) in seen)
        store.refuse(StaleWrite("run x exists"))
    assert [str(exc) for exc in failure] == ["run x exists"]
    assert (len(store.batches), spy.submits) == (1, 0)
    assert store.runs == {}


@pytest.mark.parametrize("waiting", [False, True])
async def test_a_run_stopped_from_outside_while_its_record_is_written(
    clock: FakeClock, waiting: bool
) -> None:
    """run_dag cancelled by its caller (a script's Ctrl-C, a timeout around it) before the
    run's record is durable, at once or once a job waits for its write-ahead record: the
    record is kept as the store writes it, and nothing more is handed over (as a crash there
    would leave it: the run resumable, no job of it submitted)."""
    store = GatedStore()
    store.hold_records = True
    spy = Spy(FakeRemote(clock=clock))
    with DAG("stopped_early") as dag:
        Job("a", "fake") >> Job("b", "fake")
    dag.validate()
    seen: list[tuple[str, JobState]] = []
    caller = anyio.CancelScope()

    async def run() -> None:
        with caller:
            await run_dag(dag, store=store, connectors={"fake": spy}, observers=[job_states(seen)])

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await until(lambda: ("a", JobState.SUBMITTING if waiting else JobState.QUEUED) in seen)
        caller.cancel()
        await turns(4 * journal.FLUSH_TURNS)
        store.hold_records = False
        store.release()  # settles the record: nothing follows it
        await turns(4 * journal.FLUSH_TURNS)
    assert [[type(op) for op in batch] for batch in store.batches] == [[CreateRun]]
    assert spy.submits == 0
    [run] = store.runs.values()
    assert run.state is RunState.QUEUED
    stored = await store.get_jobs(run.id)
    assert {job.state for job in stored.values()} == {JobState.PENDING}


class Recording(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[Operation]] = []

    def submit(self, ops: Sequence[Operation]) -> Receipt:
        self.batches.append(list(ops))
        return super().submit(ops)


class RecordingSQLite(SQLiteStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.batches: list[list[Operation]] = []

    def submit(self, ops: Sequence[Operation]) -> Receipt:
        self.batches.append(list(ops))
        return super().submit(ops)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_a_handle_goes_to_the_store_once_and_stays_there(
    clock: FakeClock, tmp_path: Path, kind: str
) -> None:
    """The handle goes with the step that makes the attempt running; the attempt's end,
    written after that step was handed over, leaves it out (None keeps the stored one)."""
    store: Recording | RecordingSQLite
    store = Recording() if kind == "memory" else await RecordingSQLite.open(tmp_path / "s.db")
    try:
        with DAG("handle") as dag:
            Job("a", "fake", duration="1s")
        dag.validate()
        run = prepare_run(dag)
        await record_new_run(store, run, owner="me", at=0, exclusive=False)
        connector = FakeConnector(FakeRemote(clock=clock))
        async with clock, ConnectorSet(dag, {}, {"fake": connector}) as connectors:
            executor = RunExecutor(run, connectors, job_types=job_types(), clock=clock, store=store)
            remote_job(run, "a")
            await executor.execute()
        assert run.state is RunState.SUCCEEDED
        rows = [row for ops in store.batches for row in attempt_rows(ops)]
        handle = run.jobs["a"].handle
        assert handle is not None
        assert [(row.expected, row.state, row.handle) for row in rows] == [
            (None, AttemptState.SUBMITTING, None),
            (AttemptState.SUBMITTING, AttemptState.RUNNING, handle),
            (AttemptState.RUNNING, AttemptState.SUCCEEDED, None),
        ]
        [stored] = await store.get_attempts(run.id)
        assert (stored.state, stored.handle) == (AttemptState.SUCCEEDED, handle)
    finally:
        await store.aclose()


async def test_writes_of_several_turns_of_the_loop_go_in_one_batch(clock: FakeClock) -> None:
    """Jobs whose steps fall in consecutive turns of the loop share a batch (fewer commits and
    wake-ups of the store's writer), and each still waits for its own record."""
    store = Recording()
    spy = Spy(FakeRemote(clock=clock))
    with DAG("turns") as dag:
        for i in range(8):
            Job(f"j{i}", "fake")
    dag.validate()
    run = prepare_run(dag)
    await record_new_run(store, run, owner="me", at=0, exclusive=False)
    store.batches.clear()
    async with clock, ConnectorSet(dag, {}, {"fake": spy}) as connectors:
        await RunExecutor(
            run, connectors, job_types=job_types(), clock=clock, store=store
        ).execute()
    assert run.state is RunState.SUCCEEDED
    assert spy.submits == 8
    # the run's start, then the attempts' rows in two batches: the submissions of the first
    # worker's job and of the seven started a turn later, then the eight ends (a batch a turn
    # of the loop made seven, of 1-6 rows)
    assert [len(attempt_rows(ops)) for ops in store.batches] == [0, 8, 8]


def steps_of(events: Sequence[Any], job_id: str) -> list[tuple[str | None, str]]:
    """A job's stored steps, in the order of the event log."""
    return [(e.old, e.new) for e in events if e.kind == "job" and e.job_id == job_id]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_jobs_waiting_for_a_slot_are_written_with_their_next_step(
    clock: FakeClock, tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twenty jobs ready at once for two slots: no batch writes a row only to say that a job is
    queued. Each job's step to queued goes in one row with its next step (its attempt's
    write-ahead record), so the first submissions wait for two jobs' rows, not twenty; the
    event log still has every step, each job's in order, and the run's after them."""
    monkeypatch.setattr(journal, "QUEUED_WRITE_WITHIN", 3600.0)  # not by the timer
    store: Recording | RecordingSQLite
    store = Recording() if kind == "memory" else await RecordingSQLite.open(tmp_path / "s.db")
    try:
        with DAG("slots", concurrency=2) as dag:
            for i in range(20):
                Job(f"j{i:02}", "fake", duration="1s")
        dag.validate()
        run = prepare_run(dag)
        await record_new_run(store, run, owner="me", at=0, exclusive=False)
        async with (
            clock,
            ConnectorSet(dag, {}, {"fake": FakeConnector(FakeRemote(clock=clock))}) as c,
        ):
            await RunExecutor(run, c, job_types=job_types(), clock=clock, store=store).execute()
        assert run.state is RunState.SUCCEEDED
        rows = [
            row for ops in store.batches for op in ops if isinstance(op, Changes) for row in op.jobs
        ]
        assert [row.state for row in rows if row.state is JobState.QUEUED] == []
        first = next(ops for ops in store.batches if attempt_rows(ops))
        jobs_in_first = {row.job_id for op in first if isinstance(op, Changes) for row in op.jobs}
        assert jobs_in_first == {row.job_id for row in attempt_rows(first)}
        assert len(jobs_in_first) <= 2
        events = await store.get_events(run.id)
        for i in range(20):
            assert steps_of(events, f"j{i:02}")[:2] == [
                ("pending", "queued"),
                ("queued", "submitting"),
            ]
        assert (events[-1].kind, events[-1].new) == ("run", "succeeded")
        stored = await store.get_jobs(run.id)
        assert {job.state for job in stored.values()} == {JobState.SUCCEEDED}
    finally:
        await store.aclose()


def blocked_run(name: str) -> tuple[DAG, Run]:
    """One slot, taken by a job that never ends (the fake clock is not driven): the two others
    wait for it, queued."""
    with DAG(name, concurrency=1) as dag:
        Job("a", "fake", duration="1h", priority=1)
        Job("b", "fake")
        Job("c", "fake")
    dag.validate()
    return dag, prepare_run(dag)


async def test_a_job_waiting_for_a_slot_is_stored_queued_within_the_bound(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job that waits for a slot longer than QUEUED_WRITE_WITHIN is written queued on its
    own: what the store shows of it is never older than that."""
    monkeypatch.setattr(journal, "QUEUED_WRITE_WITHIN", 0.05)
    store = MemoryStore()
    dag, run = blocked_run("bounded")
    await record_new_run(store, run, owner="me", at=0, exclusive=False)

    async def stored(job_id: str) -> JobState:
        return (await store.get_jobs(run.id))[job_id].state

    async with ConnectorSet(dag, {}, {"fake": FakeConnector(FakeRemote(clock=clock))}) as c:
        executor = RunExecutor(run, c, job_types=job_types(), clock=clock, store=store)
        async with anyio.create_task_group() as tg:
            tg.start_soon(executor.execute)
            with anyio.fail_after(10):
                while {await stored("b"), await stored("c")} != {JobState.QUEUED}:
                    await anyio.sleep(0.01)
            assert await stored("a") is JobState.RUNNING
            executor.cancel("enough")
    assert run.state is RunState.CANCELLED


async def test_the_run_s_end_writes_the_steps_to_queued_that_waited(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jobs still waiting for a slot when the run ends (cancelled here) have their step to
    queued written before their end, and the run's end after both."""
    monkeypatch.setattr(journal, "QUEUED_WRITE_WITHIN", 3600.0)
    store = MemoryStore()
    dag, run = blocked_run("ended")
    await record_new_run(store, run, owner="me", at=0, exclusive=False)
    seen: list[tuple[str, JobState]] = []
    async with ConnectorSet(dag, {}, {"fake": FakeConnector(FakeRemote(clock=clock))}) as c:
        executor = RunExecutor(
            run, c, job_types=job_types(), clock=clock, store=store, observers=[job_states(seen)]
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(executor.execute)
            await until(lambda: ("a", JobState.RUNNING) in seen)
            await turns(4 * journal.FLUSH_TURNS)
            jobs = await store.get_jobs(run.id)
            assert (jobs["a"].state, jobs["b"].state, jobs["c"].state) == (
                JobState.RUNNING,
                JobState.PENDING,  # queued, not written yet
                JobState.PENDING,
            )
            executor.cancel("enough")
    assert run.state is RunState.CANCELLED
    events = await store.get_events(run.id)
    for job_id in ("b", "c"):
        assert steps_of(events, job_id) == [("pending", "queued"), ("queued", "cancelled")]
    assert (events[-1].kind, events[-1].new) == ("run", "cancelled")
