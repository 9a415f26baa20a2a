"""The ``Store`` contract, one suite for every store (saq's ``TestQueue`` habit): what
``MemoryStore`` (the reference) does, SQLite does too. A PostgreSQL store joins the ``store``
fixture's parameters when it exists.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator.errors import OrchestratorError, StoreError
from orchestrator.model.states import JobState, RunState
from orchestrator.store.base import (
    ActiveRunExists,
    Changes,
    CreateRun,
    DeliveryAttempt,
    DeliveryRecord,
    EnqueueDelivery,
    JobEvent,
    JobRow,
    Lease,
    LeaseLost,
    Operation,
    RecordTick,
    RunExists,
    RunRecord,
    RunTransition,
    StaleWrite,
    Store,
    TickExists,
    TickRecord,
)
from orchestrator.store.memory import MemoryStore
from orchestrator.store.sqlite import SQLiteStore

from ..store_ops import attempt, job

J = JobState
R = RunState


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    opened: Store
    if request.param == "memory":
        opened = MemoryStore()
    else:
        opened = await SQLiteStore.open(tmp_path / "store.db")
    try:
        yield opened
    finally:
        await opened.aclose()


def create(
    run_id: str = "r1",
    *,
    dag: str = "d",
    jobs: tuple[str, ...] = ("a", "b"),
    created_at: float = 1.0,
    dag_hash: str = "h1",
    definition: dict[str, Any] | None = None,
    exclusive: bool = False,
    nominal_at: float | None = None,
) -> CreateRun:
    record = RunRecord(
        run_id,
        dag,
        dag_hash,
        {"day": "2024-01-01"},
        "manual" if nominal_at is None else "schedule",
        R.QUEUED,
        created_at=created_at,
        nominal_at=nominal_at,
    )
    return CreateRun(record, definition or {"name": dag, "jobs": list(jobs)}, jobs, exclusive)


def run(
    old: RunState, new: RunState, run_id: str = "r1", at: float = 2.0, **kw: Any
) -> RunTransition:
    return RunTransition(run_id, old, new, at, **kw)


async def event_tuples(store: Store, run_id: str = "r1") -> list[tuple[Any, ...]]:
    return [(e.kind, e.job_id, e.old, e.new) for e in await store.get_events(run_id)]


# -- runs, jobs, events -----------------------------------------------------------------------


async def test_create_run_stores_the_run_its_jobs_its_definition_and_an_event(
    store: Store,
) -> None:
    await store.apply([create(jobs=("a", "b", "c"))])
    stored = await store.get_run("r1")
    assert stored is not None
    assert (stored.id, stored.dag, stored.dag_hash, stored.trigger) == ("r1", "d", "h1", "manual")
    assert stored.params == {"day": "2024-01-01"}
    assert stored.state is R.QUEUED
    assert (stored.owner, stored.epoch, stored.started_at, stored.ended_at) == (None, 0, None, None)
    jobs = await store.get_jobs("r1")
    assert list(jobs) == ["a", "b", "c"]
    for record in jobs.values():
        assert record.state is J.PENDING
        assert (record.attempts, record.outputs, record.notes, record.error) == (0, {}, [], None)
    [event] = await store.get_events("r1")
    assert (event.kind, event.job_id, event.old, event.new, event.at) == (
        "run",
        None,
        None,
        "queued",
        1.0,
    )
    assert await store.get_dag_definition("h1") == {"name": "d", "jobs": ["a", "b", "c"]}


async def test_what_does_not_exist_reads_as_nothing(store: Store) -> None:
    assert await store.get_run("nope") is None
    assert await store.get_jobs("nope") == {}
    assert await store.get_attempts("nope") == []
    assert await store.get_events("nope") == []
    assert await store.get_dag_definition("nope") is None
    assert await store.list_runs() == []


async def test_run_ids_are_found_by_prefix_as_text_never_as_a_pattern(store: Store) -> None:
    ids = ["abc1", "abc2", "abd", "ab%_x", "ab\U0010ffff", "ab\U0010ffffz", "a\ud7ffb", "b"]
    await store.apply([create(i, created_at=n) for n, i in enumerate(ids, 1)])
    assert await store.find_run_ids("abc") == ["abc1", "abc2"]
    assert await store.find_run_ids("abc", limit=1) == ["abc1"]
    assert await store.find_run_ids("abc1") == ["abc1"]
    assert await store.find_run_ids("ab%") == ["ab%_x"]  # not LIKE: '%' and '_' are characters
    assert await store.find_run_ids("a_") == []
    assert await store.find_run_ids("ab\U0010ffff") == ["ab\U0010ffff", "ab\U0010ffffz"]
    assert await store.find_run_ids("a\ud7ff") == ["a\ud7ffb"]  # the next is past surrogates
    assert await store.find_run_ids("abz") == []
    assert await store.find_run_ids("") == sorted(ids)


async def test_creating_a_run_twice_is_a_stale_write(store: Store) -> None:
    await store.apply([create()])
    with pytest.raises(StaleWrite):
        await store.apply([create()])
    assert len(await store.get_events("r1")) == 1


async def test_job_and_run_transitions_compare_and_set(store: Store) -> None:
    await store.apply([create()])
    await store.apply([run(R.QUEUED, R.RUNNING, at=2.0), job(J.PENDING, J.QUEUED, at=2.0)])
    await store.apply(
        [job(J.QUEUED, J.SUBMITTING, at=3.0, attempts=1, error="old", started_at=3.0)]
    )
    await store.apply(
        [job(J.SUBMITTING, J.RUNNING, at=4.0, attempts=1, remote_status="QUEUED", started_at=3.0)]
    )
    # the same state again: the record's other fields move on
    await store.apply(
        [job(J.RUNNING, J.RUNNING, at=5.0, attempts=1, remote_status="RUNNING", started_at=3.0)]
    )
    await store.apply(
        [
            job(
                J.RUNNING,
                J.SUCCEEDED,
                at=6.0,
                attempts=1,
                remote_status="RUNNING",
                outputs={"rows": 3},
                log_tail="done",
                notes=["slow start"],
                started_at=3.0,
                ended_at=6.0,
            ),
            job(J.PENDING, J.SKIPPED, "b", at=6.0, ended_at=6.0),
            run(R.RUNNING, R.FAILED, at=7.0, error="b skipped"),
        ]
    )
    a = (await store.get_jobs("r1"))["a"]
    assert a.state is J.SUCCEEDED
    assert (a.attempts, a.error, a.remote_status) == (1, None, "RUNNING")
    assert (a.outputs, a.log_tail, a.notes) == ({"rows": 3}, "done", ["slow start"])
    assert (a.started_at, a.ended_at) == (3.0, 6.0)
    stored = await store.get_run("r1")
    assert stored is not None
    assert (stored.state, stored.started_at, stored.ended_at, stored.error) == (
        R.FAILED,
        2.0,
        7.0,
        "b skipped",
    )


async def test_one_row_may_move_several_steps_with_an_event_each(store: Store) -> None:
    await store.apply([create()])
    steps = [(J.PENDING, J.QUEUED), (J.QUEUED, J.SUBMITTING), (J.SUBMITTING, J.SUCCEEDED)]
    events = [JobEvent("a", o, n, 2.0 + i) for i, (o, n) in enumerate(steps)]
    row = JobRow("r1", "a", J.PENDING, J.SUCCEEDED, 1, started_at=3.0, ended_at=4.0)
    await store.apply([Changes("r1", jobs=[row], events=events)])
    a = (await store.get_jobs("r1"))["a"]
    assert (a.state, a.attempts, a.started_at, a.ended_at) == (J.SUCCEEDED, 1, 3.0, 4.0)
    assert (await event_tuples(store))[1:] == [
        ("job", "a", "pending", "queued"),
        ("job", "a", "queued", "submitting"),
        ("job", "a", "submitting", "succeeded"),
    ]


async def test_a_run_adds_jobs_pending_before_its_rows_apply(store: Store) -> None:
    """A mapped job's instances: inserted ``pending`` by the batch that queues them."""
    await store.apply([create()])
    queued = [JobRow("r1", f"a[{i}]", J.PENDING, J.QUEUED) for i in range(2)]
    events = [JobEvent(f"a[{i}]", J.PENDING, J.QUEUED, 2.0) for i in range(2)]
    await store.apply([Changes("r1", queued, events=events, new_jobs=["a[0]", "a[1]"])])
    jobs = await store.get_jobs("r1")
    assert {j: r.state for j, r in jobs.items()} == {
        "a": J.PENDING,
        "b": J.PENDING,
        "a[0]": J.QUEUED,
        "a[1]": J.QUEUED,
    }
    # added twice: the whole batch is refused, and nothing of it written
    with pytest.raises(StaleWrite):
        await store.apply([job(J.PENDING, J.QUEUED, "b"), Changes("r1", new_jobs=["a[2]", "a[1]"])])
    jobs = await store.get_jobs("r1")
    assert (jobs["b"].state, "a[2]" in jobs) == (J.PENDING, False)


async def test_a_retry_wait_keeps_when_its_next_attempt_is_due(store: Store) -> None:
    await store.apply([create()])
    due = 1_700_000_060.25  # wall-clock seconds
    await store.apply(
        [
            job(J.PENDING, J.QUEUED),
            job(J.QUEUED, J.SUBMITTING, attempts=1, started_at=2.0),
            job(J.SUBMITTING, J.RETRY_WAIT, attempts=1, error="boom", retry_at=due),
        ]
    )
    jobs = await store.get_jobs("r1")
    assert (jobs["a"].state, jobs["a"].error, jobs["a"].retry_at) == (J.RETRY_WAIT, "boom", due)
    assert jobs["b"].retry_at is None  # a job is created without one
    # the row as it is now: the due time goes once the job leaves retry_wait
    await store.apply([job(J.RETRY_WAIT, J.QUEUED, attempts=1, error="boom", started_at=2.0)])
    a = (await store.get_jobs("r1"))["a"]
    assert (a.state, a.error, a.retry_at) == (J.QUEUED, "boom", None)


async def test_a_stale_write_writes_nothing_of_its_batch(store: Store) -> None:
    await store.apply([create()])
    before_events = await store.get_events("r1")
    with pytest.raises(StaleWrite):
        await store.apply(
            [
                run(R.QUEUED, R.RUNNING),
                job(J.PENDING, J.QUEUED, "a"),
                attempt(1, None, "submitting", 2.0),
                job(J.QUEUED, J.SUBMITTING, "b"),  # b is pending: stale
            ]
        )
    stored = await store.get_run("r1")
    assert stored is not None
    assert stored.state is R.QUEUED
    assert stored.started_at is None
    assert {j.state for j in (await store.get_jobs("r1")).values()} == {J.PENDING}
    assert await store.get_attempts("r1") == []
    assert await store.get_events("r1") == before_events
    # and the store goes on
    await store.apply([job(J.PENDING, J.QUEUED, "a")])
    assert (await store.get_jobs("r1"))["a"].state is J.QUEUED


async def test_a_refused_batch_leaves_no_dag_definition(store: Store) -> None:
    await store.apply([create("r1")])
    with pytest.raises(StaleWrite):
        await store.apply([create("r2", dag_hash="h2"), job(J.QUEUED, J.SUBMITTING)])
    assert await store.get_run("r2") is None
    assert await store.get_dag_definition("h2") is None


@pytest.mark.parametrize(
    ("old", "new"),
    [(J.QUEUED, J.PENDING), (J.RUNNING, J.PENDING), (J.RETRY_WAIT, J.PENDING)],
)
async def test_a_move_no_steps_lead_to_is_refused(
    store: Store, old: JobState, new: JobState
) -> None:
    await store.apply([create()])
    await store.apply([job(J.PENDING, old)])
    with pytest.raises(StaleWrite):
        await store.apply([job(old, new)])
    assert (await store.get_jobs("r1"))["a"].state is old


async def test_a_row_that_expects_another_state_is_refused(store: Store) -> None:
    await store.apply([create()])
    with pytest.raises(StaleWrite):
        await store.apply([job(J.QUEUED, J.SUBMITTING)])  # it is pending
    await store.apply([job(J.PENDING, J.SUBMITTING, attempts=1)])  # several steps at once
    assert (await store.get_jobs("r1"))["a"].state is J.SUBMITTING


async def test_a_run_edge_not_in_the_table_is_refused(store: Store) -> None:
    await store.apply([create()])
    with pytest.raises(StaleWrite):
        await store.apply([run(R.QUEUED, R.SUCCEEDED)])
    with pytest.raises(StaleWrite):
        await store.apply([run(R.RUNNING, R.SUCCEEDED)])  # it is queued
    stored = await store.get_run("r1")
    assert stored is not None
    assert stored.state is R.QUEUED


async def test_terminal_states_are_never_overwritten(store: Store) -> None:
    await store.apply([create()])
    await store.apply([run(R.QUEUED, R.RUNNING), job(J.PENDING, J.CANCELLED, "b")])
    await store.apply([run(R.RUNNING, R.CANCELLED, at=3.0)])
    for new in JobState:
        if new is not J.CANCELLED:
            with pytest.raises(StaleWrite):
                await store.apply([job(J.CANCELLED, new, "b")])
    for new in RunState:
        with pytest.raises(StaleWrite):
            await store.apply([run(R.CANCELLED, new)])
    with pytest.raises(StaleWrite):  # a writer that did not see the end
        await store.apply([run(R.RUNNING, R.SUCCEEDED)])
    stored = await store.get_run("r1")
    assert stored is not None
    assert (stored.state, stored.ended_at) == (R.CANCELLED, 3.0)
    assert (await store.get_jobs("r1"))["b"].state is J.CANCELLED


async def test_exclusive_create_refuses_a_second_active_run(store: Store) -> None:
    await store.apply([create("r1", exclusive=True)])
    with pytest.raises(ActiveRunExists) as caught:
        await store.apply([create("r2", exclusive=True, created_at=2.0)])
    assert caught.value.run_id == "r1"
    assert await store.get_run("r2") is None
    await store.apply([create("other", dag="e", exclusive=True)])  # another DAG: fine
    await store.apply([run(R.QUEUED, R.CANCELLED)])
    await store.apply([create("r2", exclusive=True, created_at=3.0)])  # r1 ended
    assert await store.get_run("r2") is not None


# -- attempts ---------------------------------------------------------------------------------


async def submitting(store: Store) -> None:
    await store.apply([create()])
    await store.apply([job(J.PENDING, J.QUEUED), job(J.QUEUED, J.SUBMITTING, attempts=1)])


async def test_attempt_lifecycle(store: Store) -> None:
    await submitting(store)
    await store.apply([attempt(1, None, "submitting", 3.0)])
    [stored] = await store.get_attempts("r1")
    assert (stored.key, stored.state, stored.handle, stored.submitted_at) == (
        "r1/a/1",
        "submitting",
        None,
        3.0,
    )
    await store.apply(
        [
            attempt(1, "submitting", "running", 4.0, handle={"id": "x-1"}),
            job(J.SUBMITTING, J.RUNNING, at=4.0, attempts=1),
        ]
    )
    await store.apply([attempt(1, "running", "failed", 5.0, error="boom")])  # no handle: kept
    [stored] = await store.get_attempts("r1")
    assert stored.state == "failed"
    assert stored.handle == {"id": "x-1"}
    assert (stored.submitted_at, stored.accepted_at, stored.ended_at, stored.error) == (
        3.0,
        4.0,
        5.0,
        "boom",
    )
    attempt_events = [e for e in await store.get_events("r1") if e.kind == "attempt"]
    assert [(e.old, e.new, e.data) for e in attempt_events] == [
        (None, "submitting", {"attempt": 1}),
        ("submitting", "running", {"attempt": 1, "handle": {"id": "x-1"}}),
        ("running", "failed", {"attempt": 1, "error": "boom"}),
    ]


async def test_attempts_are_listed_by_job_then_number(store: Store) -> None:
    await store.apply([create()])
    await store.apply([job(J.PENDING, J.QUEUED, j) for j in ("b", "a")])
    await store.apply(
        [
            attempt(1, None, "submitting", 2.0, job_id="b", key="b1"),
            attempt(2, None, "submitting", 2.0, key="a2"),
            attempt(1, None, "submitting", 2.0, key="a1"),
        ]
    )
    assert [a.key for a in await store.get_attempts("r1")] == ["a1", "a2", "b1"]


async def test_an_ended_attempt_does_not_move(store: Store) -> None:
    await submitting(store)
    await store.apply([attempt(1, None, "submitting", 3.0, key="k")])
    await store.apply([attempt(1, "submitting", "succeeded", 4.0)])
    with pytest.raises(StaleWrite):  # a writer that did not see the end
        await store.apply([attempt(1, "running", "failed", 5.0)])
    with pytest.raises(StaleWrite):  # from an end state: never
        await store.apply([attempt(1, "succeeded", "failed", 5.0)])
    [stored] = await store.get_attempts("r1")
    assert (stored.state, stored.ended_at) == ("succeeded", 4.0)


async def test_an_attempt_must_exist_and_be_in_its_expected_state(store: Store) -> None:
    await submitting(store)
    with pytest.raises(StaleWrite):  # no such attempt
        await store.apply([attempt(1, "submitting", "running", 3.0, handle={"id": "x"})])
    await store.apply([attempt(1, None, "submitting", 3.0, key="k")])
    with pytest.raises(StaleWrite):
        await store.apply([attempt(1, "running", "succeeded", 4.0)])
    assert [a.state for a in await store.get_attempts("r1")] == ["submitting"]


async def test_a_duplicate_idempotency_key_is_refused(store: Store) -> None:
    await submitting(store)
    await store.apply([attempt(1, None, "submitting", 3.0, key="same")])
    with pytest.raises(StaleWrite):
        await store.apply([attempt(2, None, "submitting", 4.0, key="same")])
    assert [a.attempt for a in await store.get_attempts("r1")] == [1]


async def test_an_attempt_is_inserted_once(store: Store) -> None:
    await submitting(store)
    await store.apply([attempt(1, None, "submitting", 3.0, key="k1")])
    with pytest.raises(StaleWrite):
        await store.apply([attempt(1, None, "submitting", 4.0, key="k2")])
    [stored] = await store.get_attempts("r1")
    assert (stored.key, stored.submitted_at) == ("k1", 3.0)


# -- the event log ----------------------------------------------------------------------------


async def test_events_are_in_order_with_their_old_and_new_states(store: Store) -> None:
    await store.apply([create(), create("r2", created_at=1.5)])
    await store.apply([run(R.QUEUED, R.RUNNING), job(J.PENDING, J.QUEUED)])
    await store.apply([job(J.PENDING, J.QUEUED, "b", run_id="r2")])  # another run's
    await store.apply(
        [
            job(J.QUEUED, J.SUBMITTING, attempts=1),
            attempt(1, None, "submitting", 3.0, key="k"),
        ]
    )
    await store.apply(
        [
            attempt(1, "submitting", "running", 4.0, handle={"id": 1}),
            job(J.SUBMITTING, J.RUNNING, at=4.0),
        ]
    )
    await store.apply([job(J.RUNNING, J.FAILED, at=5.0, error="exit 1")])
    events = await store.get_events("r1")
    assert await event_tuples(store) == [
        ("run", None, None, "queued"),
        ("run", None, "queued", "running"),
        ("job", "a", "pending", "queued"),
        ("job", "a", "queued", "submitting"),
        ("attempt", "a", None, "submitting"),
        ("attempt", "a", "submitting", "running"),
        ("job", "a", "submitting", "running"),
        ("job", "a", "running", "failed"),
    ]
    assert events[-1].data == {"error": "exit 1"}
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    assert {e.run_id for e in events} == {"r1"}
    assert await event_tuples(store, "r2") == [
        ("run", None, None, "queued"),
        ("job", "b", "pending", "queued"),
    ]


async def events_of_r1_with_another_run_between(store: Store) -> None:
    """r1's events in three commits (five events), r2's committed between them."""
    await store.apply([create(), run(R.QUEUED, R.RUNNING)])  # 2 events of r1, one chunk
    await store.apply([create("r2"), job(J.PENDING, J.QUEUED, "b", run_id="r2")])
    await store.apply([job(J.PENDING, J.QUEUED), job(J.PENDING, J.QUEUED, "b")])  # 2 more
    await store.apply([job(J.QUEUED, J.CANCELLED, "b", at=3.0)])


async def test_events_since_zero_are_all_of_the_runs_events(store: Store) -> None:
    await events_of_r1_with_another_run_between(store)
    everything = await store.get_events("r1")
    assert len(everything) == 5
    assert await store.events_since("r1", 0) == everything
    assert await store.events_since("r2", 0) == await store.get_events("r2")


async def test_events_since_a_seq_are_those_after_it_even_mid_chunk(store: Store) -> None:
    await events_of_r1_with_another_run_between(store)
    everything = await store.get_events("r1")
    for i, event in enumerate(everything):
        assert await store.events_since("r1", event.seq) == everything[i + 1 :]
    # a seq that is not one of the run's (another run's, between two of its chunks)
    [_, r2_event] = await store.get_events("r2")
    assert everything[1].seq < r2_event.seq < everything[2].seq
    assert await store.events_since("r1", r2_event.seq) == everything[2:]


async def test_events_since_returns_at_most_limit(store: Store) -> None:
    await events_of_r1_with_another_run_between(store)
    everything = await store.get_events("r1")
    assert await store.events_since("r1", 0, limit=3) == everything[:3]
    assert await store.events_since("r1", everything[0].seq, limit=2) == everything[1:3]
    assert await store.events_since("r1", 0, limit=1) == everything[:1]
    assert await store.events_since("r1", 0, limit=0) == []
    # paging by the last seq read gives the whole log once
    paged, last = [], 0
    while page := await store.events_since("r1", last, limit=2):
        paged.extend(page)
        last = page[-1].seq
    assert paged == everything


async def test_events_since_of_an_unknown_run_or_past_the_end_are_none(store: Store) -> None:
    assert await store.events_since("nope", 0) == []
    await events_of_r1_with_another_run_between(store)
    assert await store.events_since("nope", 0) == []
    last = (await store.get_events("r1"))[-1].seq
    assert await store.events_since("r1", last) == []
    assert await store.events_since("r1", last + 1000) == []


async def test_events_appended_after_a_read_follow_it(store: Store) -> None:
    await events_of_r1_with_another_run_between(store)
    first = await store.events_since("r1", 0)
    await store.apply([create("r3")])  # another run's, in between
    await store.apply([job(J.QUEUED, J.SUBMITTING, attempts=1, at=4.0)])
    later = await store.events_since("r1", first[-1].seq)
    assert [(e.kind, e.job_id, e.old, e.new, e.at) for e in later] == [
        ("job", "a", "queued", "submitting", 4.0)
    ]
    # numbered once and for all: what was read before reads the same
    assert await store.get_events("r1") == first + later
    assert first[-1].seq < later[0].seq


async def test_a_runs_event_seqs_strictly_increase_across_commits(store: Store) -> None:
    await events_of_r1_with_another_run_between(store)
    await store.apply([job(J.QUEUED, J.SUBMITTING, attempts=1, at=4.0)])
    seqs = [e.seq for e in await store.get_events("r1")]
    assert all(a < b for a, b in itertools.pairwise(seqs))
    assert seqs[0] >= 1


# -- listing runs -----------------------------------------------------------------------------


async def test_list_runs_filters_and_is_newest_first(store: Store) -> None:
    await store.apply(
        [
            create("old-d", dag="d", created_at=1.0),
            create("new-d", dag="d", created_at=3.0),
            create("mid-e", dag="e", created_at=2.0),
        ]
    )
    await store.apply([run(R.QUEUED, R.RUNNING, "new-d"), run(R.QUEUED, R.CANCELLED, "mid-e")])

    async def ids(**kwargs: Any) -> list[str]:
        return [r.id for r in await store.list_runs(**kwargs)]

    assert await ids() == ["new-d", "mid-e", "old-d"]
    assert await ids(dag="d") == ["new-d", "old-d"]
    assert await ids(states=[R.QUEUED, R.RUNNING]) == ["new-d", "old-d"]
    assert await ids(dag="e", states=[R.QUEUED]) == []
    assert await ids(states=[]) == []
    assert await ids(limit=2) == ["new-d", "mid-e"]
    assert await ids(dag="nope") == []


# -- ownership --------------------------------------------------------------------------------


async def test_claim_run_bumps_the_epoch_and_fences_the_old_owner(store: Store) -> None:
    await store.apply([create()])
    assert await store.claim_run("r1", "host:1:a", expected_owner=None, at=10.0) == 1
    with pytest.raises(StaleWrite):  # someone else claimed it first
        await store.claim_run("r1", "host:2:b", expected_owner=None, at=11.0)
    assert await store.claim_run("r1", "host:2:b", expected_owner="host:1:a", at=12.0) == 2
    stored = await store.get_run("r1")
    assert stored is not None
    assert (stored.owner, stored.epoch, stored.heartbeat_at) == ("host:2:b", 2, 12.0)
    with pytest.raises(StaleWrite):
        await store.claim_run("nope", "host:1:a", expected_owner=None, at=13.0)


async def test_a_claim_after_expiry_waits_for_the_lease_to_expire(store: Store) -> None:
    await store.apply([create("r1")])
    now = time.time()
    await store.claim_run("r1", "a", expected_owner=None, at=now)  # a heartbeat now
    with pytest.raises(StaleWrite):
        await store.claim_run("r1", "b", expected_owner="a", at=now + 1, expired_after=30)
    await store.heartbeat({"r1": Lease("a", 1)}, at=now - 100)  # its last beat, long ago
    assert await store.claim_run("r1", "b", expected_owner="a", at=now, expired_after=30) == 2


async def test_heartbeat_renews_the_leases_held_and_names_those_lost(store: Store) -> None:
    await store.apply([create("r1"), create("r2"), create("r3")])
    await store.claim_run("r1", "me", expected_owner=None, at=1.0)
    await store.claim_run("r2", "other", expected_owner=None, at=1.0)
    leases = {run_id: Lease("me", 1) for run_id in ("r1", "r2", "r3", "nope")}
    assert sorted(await store.heartbeat(leases, at=5.0)) == ["nope", "r2", "r3"]
    beats = {}
    for run_id in ("r1", "r2", "r3"):
        stored = await store.get_run(run_id)
        assert stored is not None
        beats[run_id] = stored.heartbeat_at
    assert beats == {"r1": 5.0, "r2": 1.0, "r3": None}


async def test_a_lease_of_an_earlier_claim_is_lost_even_for_the_same_owner(store: Store) -> None:
    await store.apply([create("r1")])
    await store.claim_run("r1", "me", expected_owner=None, at=1.0)
    await store.claim_run("r1", "me", expected_owner="me", at=2.0)  # a second process of mine
    assert await store.heartbeat({"r1": Lease("me", 1)}, at=3.0) == ["r1"]
    assert await store.heartbeat({"r1": Lease("me", 2)}, at=3.0) == []


@pytest.mark.parametrize("kind", ["changes", "run"])
async def test_a_write_under_a_lost_lease_is_refused_and_writes_nothing(
    store: Store, kind: str
) -> None:
    await store.apply([create("r1")])
    assert await store.claim_run("r1", "old", expected_owner=None, at=1.0) == 1
    held = Lease("old", 1)
    await store.apply([Changes("r1", job(J.PENDING, J.QUEUED).jobs, lease=held)])  # still its own
    await store.claim_run("r1", "new", expected_owner="old", at=2.0)  # taken over
    events = len(await store.get_events("r1"))
    late: Operation = (
        Changes("r1", job(J.QUEUED, J.SUBMITTING).jobs, lease=held)
        if kind == "changes"
        else RunTransition("r1", R.QUEUED, R.RUNNING, 3.0, lease=held)
    )
    with pytest.raises(LeaseLost, match=r"run r1: its lease was lost"):
        await store.apply([late])
    assert (await store.get_jobs("r1"))["a"].state is J.QUEUED
    stored = await store.get_run("r1")
    assert stored is not None
    assert (stored.state, stored.owner, stored.epoch) == (R.QUEUED, "new", 2)
    assert len(await store.get_events("r1")) == events
    # the new owner's lease writes
    await store.apply([Changes("r1", job(J.QUEUED, J.SUBMITTING).jobs, lease=Lease("new", 2))])
    assert (await store.get_jobs("r1"))["a"].state is J.SUBMITTING


def test_lease_refusals_are_orchestrator_errors() -> None:
    assert issubclass(LeaseLost, StaleWrite)
    assert issubclass(StaleWrite, OrchestratorError)
    assert not issubclass(StaleWrite, StoreError)  # the store works; the run was lost


# -- DAG definitions --------------------------------------------------------------------------


async def test_a_dag_definition_is_stored_once_per_hash(store: Store) -> None:
    await store.apply([create("r1", dag_hash="h1", definition={"v": 1})])
    await store.apply([create("r2", dag_hash="h1", definition={"v": "ignored"})])
    await store.apply([create("r3", dag_hash="h2", definition={"v": 2})])
    assert await store.get_dag_definition("h1") == {"v": 1}
    assert await store.get_dag_definition("h2") == {"v": 2}
    r2 = await store.get_run("r2")
    assert r2 is not None
    assert r2.dag_hash == "h1"


# -- many writers -----------------------------------------------------------------------------


async def test_many_concurrent_applies_all_commit(store: Store) -> None:
    jobs = tuple(f"j{i}" for i in range(200))
    await store.apply([create(jobs=jobs)])
    before = store.statistics() if isinstance(store, SQLiteStore) else None

    async def writer(job_id: str) -> None:
        await store.apply([job(J.PENDING, J.QUEUED, job_id)])
        await store.apply([job(J.QUEUED, J.SUBMITTING, job_id, attempts=1)])

    async with anyio.create_task_group() as tg:
        for job_id in jobs:
            tg.start_soon(writer, job_id)
    assert {j.state for j in (await store.get_jobs("r1")).values()} == {J.SUBMITTING}
    assert len(await store.get_events("r1")) == 1 + 2 * len(jobs)
    if isinstance(store, SQLiteStore):
        assert before is not None
        after = store.statistics()
        batches = after["batches"] - before["batches"]
        commits = after["commits"] - before["commits"]
        assert batches == 2 * len(jobs)
        assert commits < batches  # batches shared commits: group commit happened


async def test_a_stale_batch_among_many_fails_only_its_caller(store: Store) -> None:
    jobs = tuple(f"j{i}" for i in range(50))
    await store.apply([create(jobs=jobs)])
    outcomes: dict[str, str] = {}

    async def writer(job_id: str) -> None:
        expected = J.QUEUED if job_id == "j25" else J.PENDING  # j25 is stale
        try:
            await store.apply(
                [job(expected, J.SUBMITTING if expected is J.QUEUED else J.QUEUED, job_id)]
            )
        except StaleWrite:
            outcomes[job_id] = "stale"
        else:
            outcomes[job_id] = "ok"

    async with anyio.create_task_group() as tg:
        for job_id in jobs:
            tg.start_soon(writer, job_id)
    assert [j for j, o in outcomes.items() if o == "stale"] == ["j25"]
    states = {j: r.state for j, r in (await store.get_jobs("r1")).items()}
    assert states.pop("j25") is J.PENDING
    assert set(states.values()) == {J.QUEUED}


async def test_submitted_batches_are_answered_in_order(store: Store) -> None:
    await store.apply([create()])
    batches: list[tuple[str, list[Operation]]] = [
        ("first", [job(J.PENDING, J.QUEUED)]),
        ("stale", [job(J.PENDING, J.QUEUED)]),  # the first moved it on
        ("third", [job(J.QUEUED, J.SUBMITTING)]),
    ]
    receipts = [(name, store.submit(ops)) for name, ops in batches]  # queued now, in order
    answers: list[tuple[str, str | None]] = []
    with anyio.fail_after(5):
        for name, receipt in receipts:
            try:
                await receipt.wait()
                answers.append((name, None))
            except StaleWrite as exc:
                answers.append((name, type(exc).__name__))
    assert answers == [("first", None), ("stale", "StaleWrite"), ("third", None)]
    assert (await store.get_jobs("r1"))["a"].state is J.SUBMITTING


async def test_a_receipt_is_awaited_by_many(store: Store) -> None:
    await store.apply([create()])
    receipt = store.submit([job(J.PENDING, J.QUEUED)])
    results: list[bool] = []

    async def wait() -> None:
        await receipt.wait()
        results.append(True)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(wait)
    assert results == [True, True, True]
    assert (await store.get_jobs("r1"))["a"].state is J.QUEUED


# -- the webhook outbox -----------------------------------------------------------------------


def delivery(
    delivery_id: str,
    *,
    webhook: str = "hook",
    created_at: float = 1.0,
    next_at: float | None = None,
) -> DeliveryRecord:
    return DeliveryRecord(
        id=delivery_id,
        run_id="r1",
        job_id="a",
        dag="d",
        webhook=webhook,
        event="onJobSuccess",
        url="https://example.test/hook",
        method="POST",
        headers={"content-type": "application/json"},
        body=b'{"ok":true}',
        secret_refs=["${HOOK_SECRET}"],
        ssl_verification=True,
        created_at=created_at,
        next_at=next_at,
    )


async def test_the_outbox_is_written_with_the_change_and_delivered(store: Store) -> None:
    await store.apply([create()])
    await store.apply(
        [
            job(J.PENDING, J.QUEUED),
            EnqueueDelivery(delivery("msg_1", created_at=2.0)),
            EnqueueDelivery(delivery("msg_2", created_at=3.0, next_at=50.0)),
        ]
    )
    with pytest.raises(StaleWrite):  # the same webhook-id twice
        await store.apply([EnqueueDelivery(delivery("msg_1"))])
    with pytest.raises(StaleWrite):  # with a stale change: no delivery either
        await store.apply([job(J.PENDING, J.QUEUED), EnqueueDelivery(delivery("msg_3"))])
    [due] = await store.due_deliveries(now=10.0)
    assert due == delivery("msg_1", created_at=2.0)
    assert [d.id for d in await store.due_deliveries(now=60.0)] == ["msg_1", "msg_2"]

    await store.record_delivery(
        DeliveryAttempt("msg_1", 1, 11.0, 503, "unavailable", 0.1), state="pending", next_at=20.0
    )
    await store.record_delivery(
        DeliveryAttempt("msg_1", 2, 21.0, 200, None, 0.2), state="delivered", next_at=None
    )
    [(first, attempts), (second, _)] = await store.list_deliveries("r1")
    assert (first.id, first.state, first.attempts, first.delivered_at) == (
        "msg_1",
        "delivered",
        2,
        21.0,
    )
    assert (first.last_status, first.last_error) == (200, None)
    assert [(a.number, a.status) for a in attempts] == [(1, 503), (2, 200)]
    assert second.id == "msg_2"
    assert await store.list_deliveries("other") == []

    assert await store.redeliver("msg_1", now=30.0)
    assert not await store.redeliver("nope", now=30.0)
    assert [d.id for d in await store.due_deliveries(now=30.0)] == ["msg_1"]


async def test_a_disabled_webhook_stops_its_deliveries(store: Store) -> None:
    await store.apply([create()])
    await store.apply(
        [EnqueueDelivery(delivery("msg_1")), EnqueueDelivery(delivery("msg_2", webhook="other"))]
    )
    await store.disable_webhook("d", "hook", "410 Gone", at=5.0)
    await store.apply([EnqueueDelivery(delivery("msg_3", created_at=6.0))])
    assert await store.disabled_webhooks("d") == {"hook"}
    assert await store.disabled_webhooks("e") == set()
    states = {d.id: (d.state, d.last_error) for d, _ in await store.list_deliveries()}
    assert states == {
        "msg_1": ("disabled", "410 Gone"),
        "msg_2": ("pending", None),
        "msg_3": ("disabled", None),
    }
    assert [d.id for d in await store.due_deliveries(now=100.0)] == ["msg_2"]


async def test_a_terminal_job_record_never_changes_again(store: Store) -> None:
    await store.apply([create()])
    await store.apply([job(J.PENDING, J.SKIPPED, at=2.0, ended_at=2.0)])
    for new in (J.SKIPPED, J.SUCCEEDED, J.QUEUED):  # not even to the same state
        with pytest.raises(StaleWrite):
            await store.apply([job(J.SKIPPED, new, at=9.0, error="late")])
    record = (await store.get_jobs("r1"))["a"]
    assert record.state is J.SKIPPED
    assert record.error is None
    assert record.ended_at == 2.0


# -- schedule ticks and pauses ----------------------------------------------------------------

NOON = 1_704_110_400.0  # 2024-01-01T12:00:00Z


def tick(
    nominal: float = NOON,
    *,
    dag: str = "d",
    run_id: str | None = None,
    skipped: str | None = None,
    backfill: bool = False,
) -> TickRecord:
    return TickRecord(dag, nominal, nominal + 0.5, run_id, skipped, backfill)


def fire(run_id: str, nominal: float = NOON, *, dag: str = "d") -> list[Operation]:
    """What a scheduler writes for a tick that starts a run: the tick and the run, one batch."""
    return [
        RecordTick(tick(nominal, dag=dag, run_id=run_id)),
        create(run_id, dag=dag, created_at=nominal + 0.5, nominal_at=nominal),
    ]


async def test_a_tick_is_recorded_with_the_run_it_started(store: Store) -> None:
    await store.apply(fire("r1"))
    assert await store.list_ticks() == [tick(run_id="r1")]
    assert await store.last_tick("d") == tick(run_id="r1")
    stored = await store.get_run("r1")
    assert stored is not None
    assert (stored.trigger, stored.nominal_at) == ("schedule", NOON)


async def test_a_tick_recorded_already_refuses_its_whole_batch(store: Store) -> None:
    """Two schedulers, or one before and after a crash, fire the same tick: the second's run
    is not written, nor its tick."""
    await store.apply(fire("r1"))
    with pytest.raises(TickExists) as refused:
        await store.apply(fire("r2"))
    assert (refused.value.dag, refused.value.nominal) == ("d", NOON)
    when = "2024-01-01T12:00:00+00:00"
    assert str(refused.value) == f"the tick of DAG d at {when} is recorded already"
    assert isinstance(refused.value, StaleWrite)
    # the run first, then the tick: the run is taken back all the same
    with pytest.raises(TickExists):
        await store.apply(list(reversed(fire("r3"))))
    # skipped this time: refused too (one record per tick)
    with pytest.raises(TickExists):
        await store.apply([RecordTick(tick(skipped="overlap"))])
    receipt = store.submit(fire("r4"))
    with pytest.raises(TickExists):
        await receipt.wait()
    for run_id in ("r2", "r3", "r4"):
        assert await store.get_run(run_id) is None
        assert await store.get_jobs(run_id) == {}
        assert await store.get_events(run_id) == []
    assert [r.id for r in await store.list_runs()] == ["r1"]
    assert await store.list_ticks() == [tick(run_id="r1")]
    assert await store.skipped_ticks() == {}
    await store.apply(fire("r5", NOON + 60))  # the store goes on: the next tick is written
    assert [t.run_id for t in await store.list_ticks()] == ["r5", "r1"]


async def test_the_same_tick_twice_in_one_batch_is_refused(store: Store) -> None:
    with pytest.raises(TickExists):
        await store.apply([*fire("r1"), RecordTick(tick(skipped="overlap"))])
    assert await store.get_run("r1") is None
    assert await store.list_ticks() == []


async def test_the_same_nominal_time_of_another_dag_is_another_tick(store: Store) -> None:
    await store.apply(fire("r1"))
    await store.apply(fire("r2", dag="e"))
    assert {(t.dag, t.run_id) for t in await store.list_ticks()} == {("d", "r1"), ("e", "r2")}


async def test_last_tick_and_list_ticks_go_by_nominal_time(store: Store) -> None:
    hour = 3600.0
    await store.apply(fire("r2", NOON + 2 * hour))
    await store.apply([RecordTick(tick(NOON + 3 * hour, skipped="overlap"))])
    await store.apply(fire("r1", NOON + hour))  # recorded later, nominally earlier
    await store.apply([RecordTick(tick(NOON + 9 * hour, dag="e", skipped="paused"))])
    # a backfill of older times, and one of a time after the schedule's last: neither moves it
    await store.apply([RecordTick(tick(NOON, run_id="b1", backfill=True))])
    await store.apply([RecordTick(tick(NOON + 5 * hour, run_id="b2", backfill=True))])

    last = await store.last_tick("d")
    assert last == tick(NOON + 3 * hour, skipped="overlap")  # skipped ticks count too
    assert await store.last_tick("e") == tick(NOON + 9 * hour, dag="e", skipped="paused")
    assert await store.last_tick("unknown") is None

    d_ticks = await store.list_ticks("d")
    assert [(t.nominal - NOON) / hour for t in d_ticks] == [5, 3, 2, 1, 0]
    assert [t.backfill for t in d_ticks] == [True, False, False, False, True]
    assert [t.dag for t in await store.list_ticks()] == ["e", "d", "d", "d", "d", "d"]
    assert [t.run_id for t in await store.list_ticks("d", limit=2)] == ["b2", None]
    assert await store.list_ticks("d", limit=0) == []
    assert await store.list_ticks("unknown") == []


async def test_skipped_ticks_are_counted_by_dag_and_reason(store: Store) -> None:
    assert await store.skipped_ticks() == {}
    skips = [("d", "overlap"), ("d", "overlap"), ("d", "catchup"), ("e", "outside window")]
    for minute, (dag, reason) in enumerate(skips):
        await store.apply([RecordTick(tick(NOON + 60 * minute, dag=dag, skipped=reason))])
    await store.apply(fire("r1", NOON + 3600))  # a tick that started a run is not counted
    assert await store.skipped_ticks() == {
        ("d", "overlap"): 2,
        ("d", "catchup"): 1,
        ("e", "outside window"): 1,
    }


def test_a_tick_either_started_a_run_or_was_skipped() -> None:
    with pytest.raises(ValueError, match="either started a run or was skipped"):
        TickRecord("d", NOON, NOON, None, None)
    with pytest.raises(ValueError, match="either started a run or was skipped"):
        TickRecord("d", NOON, NOON, "r1", "overlap")


async def test_a_runs_nominal_time_is_stored_with_it(store: Store) -> None:
    await store.apply([create("r1", created_at=1.0)])
    await store.apply([create("r2", created_at=2.0, nominal_at=NOON)])
    assert [(r.id, r.nominal_at) for r in await store.list_runs()] == [("r2", NOON), ("r1", None)]
    first, second = await store.get_run("r1"), await store.get_run("r2")
    assert first is not None
    assert second is not None
    assert (first.nominal_at, second.nominal_at) == (None, NOON)


async def test_schedule_pauses_are_set_and_read(store: Store) -> None:
    assert await store.schedule_pauses() == {}
    await store.set_paused("d", True, at=1.0)
    await store.set_paused("e", False, at=2.0)  # resumed: explicit, overrides the file's own
    assert await store.schedule_pauses() == {"d": True, "e": False}
    await store.set_paused("d", False, at=3.0)
    assert await store.schedule_pauses() == {"d": False, "e": False}
    assert await store.schedule_resumed() == {"d": 3.0, "e": 2.0}
    await store.set_paused("e", True, at=4.0)
    assert await store.schedule_resumed() == {"d": 3.0}


async def test_ticks_and_pauses_outlive_the_sqlite_store(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with await SQLiteStore.open(path) as store:
        await store.apply(fire("r1"))
        await store.apply([RecordTick(tick(NOON + 60, skipped="paused"))])
        await store.set_paused("d", True, at=NOON + 30)
        await store.set_paused("e", True, at=NOON + 30)
        await store.set_paused("e", False, at=NOON + 40)
    async with await SQLiteStore.open(path) as store:
        assert await store.schedule_pauses() == {"d": True, "e": False}
        assert await store.last_tick("d") == tick(NOON + 60, skipped="paused")
        assert await store.skipped_ticks() == {("d", "paused"): 1}
        with pytest.raises(TickExists):  # fired again after a restart: refused
            await store.apply(fire("r2"))
        assert await store.get_run("r2") is None
        stored = await store.get_run("r1")
        assert stored is not None
        assert stored.nominal_at == NOON


async def test_two_sqlite_schedulers_firing_one_tick_start_one_run(tmp_path: Path) -> None:
    """Two processes' stores on one file fire the same tick at once: one run is written."""
    path = tmp_path / "store.db"
    outcomes: dict[str, BaseException | None] = {}
    async with await SQLiteStore.open(path) as one, await SQLiteStore.open(path) as two:

        async def fire_from(store: SQLiteStore, run_id: str) -> None:
            try:
                await store.apply(fire(run_id))
            except TickExists as exc:
                outcomes[run_id] = exc
            else:
                outcomes[run_id] = None

        async with anyio.create_task_group() as tg:
            tg.start_soon(fire_from, one, "r1")
            tg.start_soon(fire_from, two, "r2")
        [(started, _)] = [(r, e) for r, e in outcomes.items() if e is None]
        [refused] = [e for e in outcomes.values() if e is not None]
        assert isinstance(refused, TickExists)
        assert [r.id for r in await one.list_runs()] == [started]
        assert await two.list_ticks() == [tick(run_id=started)]


def test_a_tick_has_a_finite_nominal_time() -> None:
    for nominal in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="nominal time"):
            TickRecord("d", nominal, NOON, "r1", None)


async def test_a_cancel_request_is_read_while_the_run_is_active(store: Store) -> None:
    await store.apply([create(), create("r2"), run(R.QUEUED, R.RUNNING)])
    assert await store.cancel_requests(["r1", "r2", "nope"]) == {}
    assert await store.request_cancel("r1", "by the operator", 3.0) is True
    assert await store.request_cancel("nope", "no such run", 3.0) is False
    assert await store.cancel_requests(["r1", "r2"]) == {"r1": "by the operator"}
    assert await store.cancel_requests([]) == {}
    await store.apply([run(R.RUNNING, R.CANCELLED)])
    assert await store.cancel_requests(["r1"]) == {}  # it ended: nothing to read
    assert await store.request_cancel("r1", "again", 4.0) is False


async def test_a_job_cancel_request_is_read_while_the_job_and_its_run_are_active(
    store: Store,
) -> None:
    await store.apply([create(), create("r2"), run(R.QUEUED, R.RUNNING)])
    await store.apply([job(J.PENDING, J.QUEUED), job(J.PENDING, J.SKIPPED, "b")])
    assert await store.job_cancel_requests(["r1", "r2"]) == {}
    assert await store.request_job_cancel("r1", "a", "by the operator", 3.0) is True
    assert await store.request_job_cancel("r1", "b", "ended", 3.0) is False  # skipped
    assert await store.request_job_cancel("r1", "zz", "no such job", 3.0) is False
    assert await store.request_job_cancel("nope", "a", "no such run", 3.0) is False
    assert await store.job_cancel_requests(["r1", "r2"]) == {"r1": {"a": "by the operator"}}
    assert await store.job_cancel_requests([]) == {}
    assert await store.cancel_requests(["r1"]) == {}  # the run's own cancel: not asked for
    await store.apply([job(J.QUEUED, J.CANCELLED, error="by the operator")])
    assert await store.job_cancel_requests(["r1"]) == {}  # it ended: nothing to read
    assert await store.request_job_cancel("r1", "a", "again", 4.0) is False
    # a job of a run that ended is not asked for, even one left as it was
    await store.apply([job(J.PENDING, J.QUEUED, run_id="r2")])
    assert await store.request_job_cancel("r2", "a", "first", 4.0) is True
    await store.apply([run(R.QUEUED, R.CANCELLED, run_id="r2")])
    assert await store.job_cancel_requests(["r2"]) == {}
    assert await store.request_job_cancel("r2", "a", "late", 5.0) is False


async def test_events_after_are_every_runs_events_in_order(store: Store) -> None:
    await events_of_r1_with_another_run_between(store)
    everything = await store.get_events("r1") + await store.get_events("r2")
    everything.sort(key=lambda e: e.seq)
    assert await store.events_after(0) == everything
    middle = everything[2].seq
    assert await store.events_after(middle) == everything[3:]
    assert await store.events_after(middle, limit=2) == everything[3:5]
    assert await store.events_after(everything[-1].seq) == []
    assert await store.events_after(0, limit=0) == []


async def test_an_idempotency_key_makes_one_run(store: Store) -> None:
    first = create("r1")
    first.idempotency_key = "order-42"
    await store.apply([first])
    again = create("r2")
    again.idempotency_key = "order-42"
    with pytest.raises(RunExists) as refused:
        await store.apply([again])
    assert refused.value.run_id == "r1"
    assert await store.get_run("r2") is None
    other = create("r3")
    other.idempotency_key = "order-43"
    await store.apply([other, create("r4")])  # another key, and none
    assert {r.id for r in await store.list_runs()} == {"r1", "r3", "r4"}


async def test_list_runs_pages_with_a_cursor_and_filters(store: Store) -> None:
    batch = []
    for i in range(7):
        op = create(f"r{i}", created_at=10.0 + i // 2)  # two runs at each time
        op.run.trigger = "schedule" if i % 3 == 0 else "manual"
        batch.append(op)
    await store.apply(batch)
    seen: list[str] = []
    after = None
    while True:
        page = await store.list_runs(limit=3, after=after)
        if not page:
            break
        seen += [r.id for r in page]
        after = (page[-1].created_at, page[-1].id)
    assert seen == ["r6", "r5", "r4", "r3", "r2", "r1", "r0"]  # newest first, then by id
    scheduled = await store.list_runs(trigger="schedule")
    assert [r.id for r in scheduled] == ["r6", "r3", "r0"]
    window = await store.list_runs(created_after=11.0, created_before=13.0)
    assert [r.id for r in window] == ["r5", "r4", "r3", "r2"]


async def test_last_event_seq_is_the_last_committed(store: Store) -> None:
    assert await store.last_event_seq() == 0
    await events_of_r1_with_another_run_between(store)
    everything = await store.events_after(0)
    assert await store.last_event_seq() == everything[-1].seq
