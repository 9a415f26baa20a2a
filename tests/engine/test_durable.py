"""Runs recorded in a store, and resumed from it: in-flight attempts are adopted, never
submitted twice; ambiguous submissions follow `onAmbiguousSubmit`."""

from __future__ import annotations

import dataclasses
import itertools
import random
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from orchestrator.clock import FakeClock
from orchestrator.connectors.base import Submission
from orchestrator.connectors.fake import FakeConnector, FakeRemote
from orchestrator.connectors.registry import job_types
from orchestrator.engine.durable import dag_definition, record_new_run
from orchestrator.engine.executor import RunExecutor
from orchestrator.engine.records import Run
from orchestrator.model.dag import DAG, Job
from orchestrator.model.states import JobState, RunState
from orchestrator.runtime.connectors import ConnectorSet
from orchestrator.runtime.prepare import prepare_run
from orchestrator.runtime.runs import run_dag
from orchestrator.store.base import Operation, RunTransition, StaleWrite, Store
from orchestrator.store.memory import MemoryStore
from orchestrator.store.sqlite import SQLiteStore

from ..store_ops import attempt
from ..store_ops import job as job_step

J = JobState


async def test_a_run_with_a_store_records_every_change(
    clock: FakeClock, remote: FakeRemote
) -> None:
    with DAG("stored") as dag:
        a = Job("a", "fake", duration="5s")
        b = Job("b", "fake", failTimes=1, retries={"attempts": 2, "base": 1})
        a >> b
    dag.validate()
    store = MemoryStore()
    run = prepare_run(dag)
    await record_new_run(store, run, owner="me", at=clock.time(), exclusive=True)
    async with clock, ConnectorSet(dag, {}, {"fake": FakeConnector(remote)}) as connectors:
        await RunExecutor(
            run, connectors, job_types=job_types(), clock=clock, store=store, rng=random.Random(1)
        ).execute()
    assert run.state is RunState.SUCCEEDED
    record = await store.get_run(run.id)
    assert record is not None
    assert record.state is RunState.SUCCEEDED
    jobs = await store.get_jobs(run.id)
    assert {j: r.state for j, r in jobs.items()} == {"a": J.SUCCEEDED, "b": J.SUCCEEDED}
    assert jobs["b"].attempts == 2
    assert jobs["b"].error is None
    attempts = await store.get_attempts(run.id)
    assert [(x.job_id, x.attempt, x.state, x.key) for x in attempts] == [
        ("a", 1, "succeeded", f"{run.id}/a/1"),
        ("b", 1, "failed", f"{run.id}/b/1"),
        ("b", 2, "succeeded", f"{run.id}/b/2"),
    ]
    assert all(x.handle is not None and x.handle["id"].startswith("fake-") for x in attempts)
    events = await store.get_events(run.id)
    job_b = [(e.old, e.new) for e in events if e.job_id == "b" and e.kind == "job"]
    assert job_b == [
        ("pending", "queued"),
        ("queued", "submitting"),
        ("submitting", "running"),
        ("running", "retry_wait"),
        ("retry_wait", "queued"),
        ("queued", "submitting"),
        ("submitting", "running"),
        ("running", "succeeded"),
    ]
    assert [e.new for e in events if e.kind == "run"] == ["queued", "running", "succeeded"]
    # the definition is stored with the run, under its hash
    assert await store.get_dag_definition(dag_definition(dag)[1]) is not None


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_an_attempt_that_ends_in_the_batch_of_the_next_one_is_written_too(
    clock: FakeClock, remote: FakeRemote, tmp_path: Path, kind: str
) -> None:
    """An attempt's end is written with the next commit, the next attempt's write-ahead: one
    batch with two attempt rows of one job."""
    with DAG("again") as dag:
        Job("b", "fake", duration="1s", failTimes=2, retries={"attempts": 3, "base": 1})
    dag.validate()
    store: Store = MemoryStore() if kind == "memory" else await SQLiteStore.open(tmp_path / "s.db")
    try:
        run = prepare_run(dag)
        await record_new_run(store, run, owner="me", at=clock.time(), exclusive=True)
        async with clock, ConnectorSet(dag, {}, {"fake": FakeConnector(remote)}) as connectors:
            await RunExecutor(
                run, connectors, job_types=job_types(), clock=clock, store=store
            ).execute()
        assert run.state is RunState.SUCCEEDED
        attempts = await store.get_attempts(run.id)
        assert [(x.attempt, x.state) for x in attempts] == [
            (1, "failed"),
            (2, "failed"),
            (3, "succeeded"),
        ]
        assert all(x.ended_at is not None and x.handle is not None for x in attempts)
        events = [(e.old, e.new) for e in await store.get_events(run.id) if e.kind == "attempt"]
        assert events == [
            (None, "submitting"),
            ("submitting", "running"),
            ("running", "failed"),
        ] * 2 + [
            (None, "submitting"),
            ("submitting", "running"),
            ("running", "succeeded"),
        ]
        [record] = (await store.get_jobs(run.id)).values()
        assert (record.state, record.attempts, record.error) == (J.SUCCEEDED, 3, None)
    finally:
        await store.aclose()


async def test_write_ahead_the_attempt_is_durable_before_the_request_leaves(
    clock: FakeClock,
) -> None:
    store = MemoryStore()
    seen: list[str | None] = []

    class Spy(FakeConnector):
        async def submit(self, submission: Submission) -> dict[str, str]:
            attempts = await store.get_attempts(submission.run_id)
            seen.append(attempts[-1].state if attempts else None)
            return await super().submit(submission)

    with DAG("wal") as dag:
        Job("a", "fake")
    dag.validate()
    run = prepare_run(dag)
    await record_new_run(store, run, owner="me", at=0, exclusive=False)
    async with clock, ConnectorSet(dag, {}, {"fake": Spy(FakeRemote(clock=clock))}) as connectors:
        await RunExecutor(
            run, connectors, job_types=job_types(), clock=clock, store=store
        ).execute()
    assert seen == ["submitting"]


async def test_the_handle_is_durable_before_the_first_poll(clock: FakeClock) -> None:
    store = MemoryStore()
    seen: list[tuple[str, bool]] = []

    class Spy(FakeConnector):
        async def poll(self, handle: dict[str, Any]) -> Any:
            if not seen:
                [stored] = await store.get_attempts(run.id)
                seen.append((stored.state, stored.handle == handle))
            return await super().poll(handle)

    with DAG("first_poll") as dag:
        Job("a", "fake", duration="2s")
    dag.validate()
    run = prepare_run(dag)
    await record_new_run(store, run, owner="me", at=0, exclusive=False)
    async with clock, ConnectorSet(dag, {}, {"fake": Spy(FakeRemote(clock=clock))}) as connectors:
        executor = RunExecutor(run, connectors, job_types=job_types(), clock=clock, store=store)
        # polled as a remote job type is: over a connection (the fake is polled in memory,
        # where the handle only rides along with the next commit)
        jr = run.jobs["a"]
        jr.job_type = dataclasses.replace(jr.job_type, needs_connection=True)
        await executor.execute()
    assert run.state is RunState.SUCCEEDED
    assert seen == [("running", True)]


@pytest.mark.parametrize(
    ("policy", "sends", "state", "error"),
    [
        (
            "resubmit",
            2,
            J.FAILED,
            "submitted again (the first outcome unknown): connection reset after sending",
        ),
        (
            "fail",
            1,
            J.FAILED,
            "submission outcome unknown (connection reset after sending); not found on the "
            "remote; not sent again (onAmbiguousSubmit: fail)",
        ),
        (
            "unknown",
            1,
            J.UNKNOWN,
            "submission outcome unknown (connection reset after sending); not found on the "
            "remote; not sent again (onAmbiguousSubmit: unknown)",
        ),
    ],
)
async def test_an_ambiguous_submit_is_sent_again_only_when_the_policy_says_and_says_so(
    clock: FakeClock, policy: str, sends: int, state: JobState, error: str
) -> None:
    store = MemoryStore()
    sent: list[str] = []

    class Spy(FakeConnector):
        async def submit(self, submission: Submission) -> dict[str, str]:
            sent.append(submission.idempotency_key)
            return await super().submit(submission)

    with DAG("ambiguous") as dag:
        Job("a", "fake", submitAmbiguous=True, on_ambiguous_submit=policy)
    dag.validate()
    run = prepare_run(dag)
    await record_new_run(store, run, owner="me", at=0, exclusive=False)
    async with clock, ConnectorSet(dag, {}, {"fake": Spy(FakeRemote(clock=clock))}) as connectors:
        await RunExecutor(
            run, connectors, job_types=job_types(), clock=clock, store=store
        ).execute()
    assert (run.jobs["a"].state, run.jobs["a"].error) == (state, error)
    assert sent == [f"{run.id}/a/1"] * sends  # sent again with the attempt's own key


async def _crashed_run(store: MemoryStore, dag: DAG, remote: FakeRemote) -> Run:
    """A run as a crash leaves it: some jobs in flight, one ended, others pending."""
    run = prepare_run(dag)
    await record_new_run(store, run, owner="dead-host:1:1", at=0, exclusive=False)
    r = run.id
    ops: list[Operation] = [RunTransition(r, RunState.QUEUED, RunState.RUNNING, 1)]

    def move(job: str, *states: J) -> None:
        for old, new in itertools.pairwise(states):
            ops.append(job_step(old, new, job, run_id=r, at=1, attempts=1))

    # "done" ended before the crash
    move("done", J.PENDING, J.QUEUED, J.SUBMITTING)
    ops.append(attempt(1, None, "submitting", 1, job_id="done", run_id=r))
    ops.append(
        attempt(1, "submitting", "running", 1, job_id="done", run_id=r, handle={"id": "old-done"})
    )
    move("done", J.SUBMITTING, J.RUNNING, J.SUCCEEDED)
    ops.append(attempt(1, "running", "succeeded", 2, job_id="done", run_id=r))
    # "running" was polled: its handle is stored
    move("running", J.PENDING, J.QUEUED, J.SUBMITTING)
    ops.append(attempt(1, None, "submitting", 1, job_id="running", run_id=r))
    ops.append(
        attempt(1, "submitting", "running", 1, job_id="running", run_id=r, handle={"id": "fake-0"})
    )
    move("running", J.SUBMITTING, J.RUNNING)
    # "accepted" reached the remote, the process died before storing the handle
    move("accepted", J.PENDING, J.QUEUED, J.SUBMITTING)
    ops.append(attempt(1, None, "submitting", 1, job_id="accepted", run_id=r))
    # "never_sent" and "ambiguous" died before their request left
    for job in ("never_sent", "ambiguous"):
        move(job, J.PENDING, J.QUEUED, J.SUBMITTING)
        ops.append(attempt(1, None, "submitting", 1, job_id=job, run_id=r))
    await store.apply(ops)
    # the remote side of that history
    fake = FakeConnector(remote)
    await fake.submit(Submission("crash", r, "running", 1, f"{r}/running/1", {"duration": "30s"}))
    await fake.submit(Submission("crash", r, "accepted", 1, f"{r}/accepted/1", {"duration": "5s"}))
    remote.submissions.clear()
    return run


async def test_resume_adopts_in_flight_attempts_and_never_submits_them_again(
    clock: FakeClock, remote: FakeRemote
) -> None:
    with DAG("crash") as dag:
        done = Job("done", "fake")
        running = Job("running", "fake")
        accepted = Job("accepted", "fake")
        never_sent = Job("never_sent", "fake")
        ambiguous = Job("ambiguous", "fake", on_ambiguous_submit="unknown")
        after = Job("after", "fake")
        [done, running, accepted, never_sent] >> after
        ambiguous >> Job("after_ambiguous", "fake", trigger_rule="all_done")
    dag.validate()
    store = MemoryStore()
    crashed = await _crashed_run(store, dag, remote)

    run = Run(crashed.id, dag, {}, "manual")
    run.state = RunState.RUNNING
    async with clock, ConnectorSet(dag, {}, {"fake": FakeConnector(remote)}) as connectors:
        executor = RunExecutor(run, connectors, job_types=job_types(), clock=clock, store=store)
        executor.resume_from(await store.get_jobs(run.id), await store.get_attempts(run.id))
        await executor.execute()

    r = run.id
    states = {j: jr.state for j, jr in run.jobs.items()}
    assert states == {
        "done": J.SUCCEEDED,
        "running": J.SUCCEEDED,
        "accepted": J.SUCCEEDED,
        "never_sent": J.SUCCEEDED,
        "ambiguous": J.UNKNOWN,
        "after": J.SUCCEEDED,
        "after_ambiguous": J.SUCCEEDED,
    }
    # adopted jobs were polled, not submitted; the one that never left was sent once, with its
    # original key; the ambiguous one (policy unknown) was not sent at all
    assert dict(remote.submissions) == {
        f"{r}/never_sent/1": 1,
        f"{r}/after/1": 1,
        f"{r}/after_ambiguous/1": 1,
    }
    assert run.jobs["running"].handle == {"id": "fake-0"}
    assert run.jobs["accepted"].handle == {"id": "fake-1"}  # found by its idempotency key
    assert run.jobs["done"].handle == {"id": "old-done"}  # not touched
    # an unknown job fails the run, though the all_done job after it succeeded
    assert (run.state, run.error) == (RunState.FAILED, "1 job(s) failed: ambiguous")
    stored = await store.get_jobs(r)
    assert {j: rec.state for j, rec in stored.items()} == states


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_run_dag_submits_nothing_when_its_run_cannot_be_stored(
    remote: FakeRemote, tmp_path: Path, kind: str
) -> None:
    """run_dag stores the run while it sets up the executor: a run that the store refuses (its
    id is taken here) fails with the store's reason, and none of its jobs is submitted."""
    with DAG("refused") as dag:
        Job("a", "fake")
    dag.validate()
    connectors = {"fake": FakeConnector(remote)}
    store: Store = MemoryStore() if kind == "memory" else await SQLiteStore.open(tmp_path / "r.db")
    try:
        first = await run_dag(dag, store=store, connectors=connectors, run_id="same")
        assert first.state is RunState.SUCCEEDED
        submitted = sum(remote.submissions.values())
        with pytest.raises(StaleWrite, match="run same exists"):
            await run_dag(dag, store=store, connectors=connectors, run_id="same")
        assert sum(remote.submissions.values()) == submitted
    finally:
        if isinstance(store, SQLiteStore):
            await store.aclose()


async def test_a_remote_handle_that_is_not_json_stops_the_run_naming_the_job(
    remote: FakeRemote, tmp_path: Path
) -> None:
    """A handle the store could not read back as JSON (NaN here) is refused before it is
    written: the run fails naming the job, whose remote job is cancelled, and the store has
    the rest as it happened."""

    class NotJson(FakeConnector):
        async def submit(self, submission: Submission) -> dict[str, Any]:
            handle = await super().submit(submission)
            return {**handle, "size": float("nan")}

    with DAG("nan") as dag:
        Job("a", "fake", hang=True)
    dag.validate()
    async with await SQLiteStore.open(tmp_path / "n.db") as store:
        run = await run_dag(dag, store=store, connectors={"fake": NotJson(remote)})
        assert run.state is RunState.FAILED
        assert run.error is not None
        assert "job a: its remote handle cannot be stored" in run.error
        assert len(remote.cancels) == 1
        record = await store.get_run(run.id)
        assert record is not None
        assert record.state is RunState.FAILED
        attempts = await store.get_attempts(run.id)
        assert [(a.state, a.handle) for a in attempts] == [("cancelled", None)]
        assert (await store.get_jobs(run.id))["a"].state is J.CANCELLED


async def test_events_of_any_job_id_are_json_the_store_and_sqlite_can_read(
    remote: FakeRemote, tmp_path: Path
) -> None:
    """The engine writes each event's JSON itself: an id and an error with quotes, backslashes
    and non-ASCII letters come back the same through the store and SQLite's `events` view."""
    odd = 'say "hi" \\ café ✓'
    with DAG("odd") as dag:
        Job(
            odd,
            "fake",
            failTimes=1,
            message='no "luck" \\ ✗',
            retries={"attempts": 2, "base": 0.001},
        )
    dag.validate()
    path = tmp_path / "o.db"
    async with await SQLiteStore.open(path) as store:
        run = await run_dag(dag, store=store, connectors={"fake": FakeConnector(remote)})
        assert run.state is RunState.SUCCEEDED
        events = await store.get_events(run.id)
    ours = [(e.kind, e.old, e.new, e.data) for e in events if e.job_id == odd]
    assert ours[:2] == [("job", "pending", "queued", {}), ("job", "queued", "submitting", {})]
    assert ("attempt", "running", "failed", {"attempt": 1, "error": 'no "luck" \\ ✗'}) in ours
    assert ("job", "running", "retry_wait", {"error": 'no "luck" \\ ✗'}) in ours
    assert [e.new for e in events if e.kind == "attempt"][-1] == "succeeded"
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT job_id, kind, new, at FROM events WHERE run_id = ? ORDER BY seq", (run.id,)
        ).fetchall()
    finally:
        conn.close()
    assert [(j, k, n) for j, k, n, _ in rows] == [(e.job_id, e.kind, e.new) for e in events]
    assert [at for *_, at in rows] == pytest.approx([e.at for e in events])


@pytest.mark.parametrize(("down", "waits"), [(10.0, 50.0), (75.0, 0.0)])
async def test_a_retry_wait_resumes_with_the_time_left(down: float, waits: float) -> None:
    """Killed during a 60 s retry wait and resumed ``down`` seconds later (wall clock; the new
    process's monotonic clock starts elsewhere), the job waits what is left of the 60 s, or
    starts at once when that time has passed."""
    with DAG("retrying") as dag:
        Job(
            "flaky",
            "fake",
            duration="5s",
            failTimes=1,
            retries={"attempts": 2, "base": "1m", "jitter": False},
        )
    dag.validate()
    store = MemoryStore()
    run = prepare_run(dag)
    first = FakeClock()
    await record_new_run(store, run, owner="me", at=first.time(), exclusive=True)
    ended = anyio.Event()
    async with first, ConnectorSet(dag, {}, {"fake": FakeConnector(FakeRemote(clock=first))}) as c:
        executor = RunExecutor(run, c, job_types=job_types(), clock=first, store=store)

        async def execute() -> None:
            await executor.execute()
            ended.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(execute)
            while not ended.is_set():  # until the retry wait is stored, then the process dies
                if (await store.get_jobs(run.id))["flaky"].state is J.RETRY_WAIT:
                    break
                await anyio.lowlevel.checkpoint()
            tg.cancel_scope.cancel()
    assert not ended.is_set(), "the run ended before its retry wait was stored"
    killed_at = first.time()
    record = (await store.get_jobs(run.id))["flaky"]
    assert record.retry_at == pytest.approx(killed_at + 60)  # stored with the row, wall clock

    second = FakeClock(start=5.0, wall_start=killed_at + down)  # another process, later
    resumed = Run(run.id, dag, {}, "manual")
    resumed.state = RunState.RUNNING
    remote = FakeRemote(clock=second)
    async with second, ConnectorSet(dag, {}, {"fake": FakeConnector(remote)}) as connectors:
        rec: list[tuple[float, J]] = []
        executor = RunExecutor(
            resumed,
            connectors,
            job_types=job_types(),
            clock=second,
            store=store,
            observers=[lambda jr, old: rec.append((second.monotonic(), jr.state))],
        )
        executor.resume_from(await store.get_jobs(run.id), await store.get_attempts(run.id))
        await executor.execute()
    assert resumed.state is RunState.SUCCEEDED
    submitted = next(t for t, state in rec if state is J.SUBMITTING)
    assert submitted - 5.0 == pytest.approx(waits)
    assert dict(remote.submissions) == {f"{run.id}/flaky/2": 1}
    record = (await store.get_jobs(run.id))["flaky"]
    assert (record.state, record.attempts, record.retry_at) == (J.SUCCEEDED, 2, None)


async def test_a_job_that_ends_is_written_without_waiting_for_another_write(
    clock: FakeClock,
) -> None:
    """A job's end goes to the store with the next batch, at once, even when nothing else
    happens in the run for an hour (the store, the event stream and `runs show` see it then,
    not at the run's end)."""
    store = MemoryStore()
    with DAG("ends") as dag:
        Job("quick", "fake", duration="1s")
        Job("slow", "fake", duration="1h")
    dag.validate()
    run = prepare_run(dag)
    await record_new_run(store, run, owner="me", at=0, exclusive=False)
    async with clock, ConnectorSet(dag, {}, {"fake": FakeConnector(FakeRemote(clock=clock))}) as c:
        executor = RunExecutor(run, c, job_types=job_types(), clock=clock, store=store)
        async with anyio.create_task_group() as tg:
            tg.start_soon(executor.execute)
            while run.jobs["quick"].state is not JobState.SUCCEEDED:
                await anyio.sleep(0)
            for _ in range(10):  # a few turns of the loop, far less than the hour
                await anyio.lowlevel.checkpoint()
            stored = await store.get_jobs(run.id)
            assert stored["quick"].state is JobState.SUCCEEDED
            executor.cancel("the test ends")
