"""`python` jobs, an inline job type: called by the worker that runs the attempt (no submit,
no poll, no task per call), with their timeouts, cancels, retries and the store's records."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator import DAG, Job, JobContext, JobState, RunState, logs
from orchestrator.clock import FakeClock
from orchestrator.connectors.registry import job_types
from orchestrator.engine.durable import record_new_run
from orchestrator.engine.executor import RunExecutor
from orchestrator.engine.records import Run
from orchestrator.model.states import AttemptState
from orchestrator.runtime.connectors import ConnectorSet
from orchestrator.runtime.prepare import prepare_run
from orchestrator.store.base import Operation, RunTransition, Store
from orchestrator.store.memory import MemoryStore
from orchestrator.store.sqlite import SQLiteStore

from ..store_ops import attempt
from ..store_ops import job as job_step
from .conftest import RunFn

J = JobState


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
    else:
        async with await SQLiteStore.open(tmp_path / "inline.db") as sqlite:
            yield sqlite


async def _execute(
    dag: DAG, store: Store | None = None, **kwargs: Any
) -> tuple[Run, RunExecutor, ConnectorSet]:
    """Run ``dag`` to its end on the real clock, recorded in ``store`` if one is given."""
    dag.validate()
    run = prepare_run(dag)
    if store is not None:
        await record_new_run(store, run, owner="me", at=0.0, exclusive=False)
    async with ConnectorSet(dag) as connectors:
        executor = RunExecutor(run, connectors, job_types=job_types(), store=store, **kwargs)
        await executor.execute()
    return run, executor, connectors


async def test_a_python_job_is_called_by_the_worker_that_runs_its_attempt() -> None:
    tasks: list[str] = []

    async def where(ctx: JobContext) -> str:
        tasks.append(anyio.get_current_task().name)
        return "here"

    with DAG("inline") as dag:
        Job("a", "python", call=where)
    run, _, connectors = await _execute(dag)
    assert run.jobs["a"].state is J.SUCCEEDED
    assert run.jobs["a"].outputs == {"result": "here"}
    assert tasks == ["orchestrator.engine.executor.RunExecutor._worker"]  # no task of its own
    # one call, counted as the attempt's submission; nothing polled
    masked = connectors.get(job_types()["python"], None)
    assert dict(masked.calls) == {("", "submit"): 1}


async def test_a_timed_out_call_is_cancelled_then_retried(clock: FakeClock, run: RunFn) -> None:
    attempts: list[int] = []
    cancelled: list[int] = []

    async def slow_once(ctx: JobContext) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            try:
                await clock.sleep(60)
            except anyio.get_cancelled_exc_class():
                cancelled.append(ctx.attempt)
                raise
        return ctx.attempt

    with DAG("timeout") as dag:
        Job("a", "python", call=slow_once, timeout=5, retries={"attempts": 2, "base": 1})
    result = await run(dag)
    a = result.jobs["a"]
    assert (a.state, a.attempts, a.outputs) == (J.SUCCEEDED, 2, {"result": 2})
    assert attempts == [1, 2]
    assert cancelled == [1]


async def test_a_call_that_ignores_its_timeout_still_times_out(
    clock: FakeClock, run: RunFn
) -> None:
    async def stubborn(ctx: JobContext) -> str:
        with anyio.CancelScope(shield=True):
            await clock.sleep(10)
        return "too late"

    with DAG("stubborn") as dag:
        Job("a", "python", call=stubborn, timeout=1)
    result = await run(dag)
    a = result.jobs["a"]
    assert (a.state, a.error, a.outputs) == (J.FAILED, "timed out after 1s", {})


async def test_retries_call_again_with_the_next_attempt(run: RunFn) -> None:
    seen: list[int] = []

    async def flaky(ctx: JobContext) -> str:
        seen.append(ctx.attempt)
        if ctx.attempt < 3:
            raise RuntimeError(f"try {ctx.attempt}")
        return "third time"

    with DAG("retries") as dag:
        Job("a", "python", call=flaky, retries={"attempts": 3, "base": 1})
    result = await run(dag)
    a = result.jobs["a"]
    assert (a.state, a.attempts, a.error, a.outputs) == (
        J.SUCCEEDED,
        3,
        None,
        {"result": "third time"},
    )
    assert seen == [1, 2, 3]


async def test_a_plain_function_runs_in_a_worker_thread() -> None:
    threads: list[threading.Thread] = []

    def blocking(ctx: JobContext) -> dict[str, Any]:
        threads.append(threading.current_thread())
        return {"job": ctx.job_id, "kwargs": dict(ctx.kwargs)}

    with DAG("sync") as dag:
        Job("a", "python", call=blocking, rows=3)
    run, _, _ = await _execute(dag)
    assert run.jobs["a"].outputs == {"result": {"job": "a", "kwargs": {"rows": 3}}}
    assert len(threads) == 1
    assert threads[0] is not threading.main_thread()


async def test_each_callable_is_called_its_own_way_however_many_calls() -> None:
    """Whether a callable is a coroutine function is asked once per callable: an async one and
    a plain one, called by turns, each keep their own way; one that cannot be a dictionary's
    key (an object comparing by value) is asked every time."""
    threads: list[threading.Thread] = []

    async def fetch(ctx: JobContext) -> str:
        threads.append(threading.current_thread())
        return "async"

    def load(ctx: JobContext) -> str:
        threads.append(threading.current_thread())
        return "plain"

    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Unhashable)

        def __call__(self, ctx: JobContext) -> str:
            threads.append(threading.current_thread())
            return "object"

    with DAG("kinds") as dag:
        for i in range(3):
            Job(f"f{i}", "python", call=fetch)
            Job(f"l{i}", "python", call=load)
            Job(f"u{i}", "python", call=Unhashable())
    run, _, _ = await _execute(dag)
    results = {job_id: jr.outputs["result"] for job_id, jr in run.jobs.items()}
    for i in range(3):
        assert (results[f"f{i}"], results[f"l{i}"], results[f"u{i}"]) == (
            "async",
            "plain",
            "object",
        )
    main = threading.main_thread()
    assert sum(thread is main for thread in threads) == 3  # the async calls, on the loop
    assert len(threads) == 9


async def test_a_raising_call_fails_with_its_error_and_unjsonable_results_are_shown() -> None:
    async def broken(ctx: JobContext) -> None:
        raise KeyError("rows")

    async def odd(ctx: JobContext) -> object:
        return {1, 2}

    with DAG("errors") as dag:
        Job("broken", "python", call=broken)
        Job("odd", "python", call=odd)
    run, _, _ = await _execute(dag)
    broken_job, odd_job = run.jobs["broken"], run.jobs["odd"]
    assert (broken_job.state, broken_job.error, broken_job.remote_status) == (
        J.FAILED,
        "KeyError: 'rows'",
        "raised",
    )
    assert (odd_job.state, odd_job.outputs) == (J.SUCCEEDED, {"result": "{1, 2}"})
    assert run.state is RunState.FAILED


async def _started(event: anyio.Event, log: list[str]) -> None:
    event.set()
    try:
        await anyio.sleep_forever()
    finally:
        log.append("unwound")


async def test_a_run_cancel_cancels_its_calls_and_records_them(store: Store) -> None:
    started, log = anyio.Event(), []

    async def forever(ctx: JobContext) -> None:
        await _started(started, log)

    with DAG("stop") as dag:
        Job("a", "python", call=forever)
    dag.validate()
    run = prepare_run(dag)
    await record_new_run(store, run, owner="me", at=0.0, exclusive=False)
    async with ConnectorSet(dag) as connectors, anyio.create_task_group() as tg:
        executor = RunExecutor(run, connectors, job_types=job_types(), store=store)
        tg.start_soon(executor.execute)
        with anyio.fail_after(5):
            await started.wait()
        executor.cancel("stop")
    assert log == ["unwound"]
    assert (run.state, run.jobs["a"].state, run.jobs["a"].error) == (
        RunState.CANCELLED,
        J.CANCELLED,
        "stop",
    )
    attempts = await store.get_attempts(run.id)
    assert [(a.attempt, a.state, a.error) for a in attempts] == [(1, "cancelled", "stop")]
    assert (await store.get_jobs(run.id))["a"].state is J.CANCELLED


@pytest.mark.parametrize("kind", ["async", "thread"])
async def test_cancel_job_cancels_one_call_and_the_run_goes_on(kind: str) -> None:
    started, log = anyio.Event(), []
    release = threading.Event()

    async def forever(ctx: JobContext) -> None:
        await _started(started, log)

    def blocking(ctx: JobContext) -> None:  # abandoned on cancel, then let go
        anyio.from_thread.run_sync(started.set)
        release.wait(5)

    async def after(ctx: JobContext) -> str:
        return "ran"

    with DAG("one") as dag:
        a = Job("a", "python", call=forever if kind == "async" else blocking)
        b = Job("b", "python", call=after, trigger_rule="all_done")
        a >> b
    dag.validate()
    run = prepare_run(dag)
    try:
        async with ConnectorSet(dag) as connectors, anyio.create_task_group() as tg:
            executor = RunExecutor(run, connectors, job_types=job_types())
            tg.start_soon(executor.execute)
            with anyio.fail_after(5):
                await started.wait()
            assert executor.wake("a") is True  # a wake-up alone leaves the call running
            await anyio.lowlevel.checkpoint()
            assert run.jobs["a"].state is J.RUNNING
            assert executor.cancel_job("a", "not needed") == "cancelling"
    finally:
        release.set()
    assert log == (["unwound"] if kind == "async" else [])
    assert (run.jobs["a"].state, run.jobs["a"].error) == (J.CANCELLED, "not needed")
    assert (run.jobs["b"].state, run.jobs["b"].outputs) == (J.SUCCEEDED, {"result": "ran"})


async def test_cancel_job_before_the_call_starts_never_calls_it(tmp_path: Path) -> None:
    called: list[str] = []

    async def never(ctx: JobContext) -> None:
        called.append(ctx.job_id)

    with DAG("early") as dag:
        Job("a", "python", call=never)
    dag.validate()
    run = prepare_run(dag)
    async with await SQLiteStore.open(tmp_path / "early.db") as store:
        await record_new_run(store, run, owner="me", at=0.0, exclusive=False)
        executors: list[RunExecutor] = []

        def cancel_when_submitting(jr: Any, old: JobState) -> None:
            if jr.state is J.SUBMITTING:  # its write-ahead record is on its way
                executors[0].cancel_job("a", "changed my mind")

        async with ConnectorSet(dag) as connectors:
            executors.append(
                RunExecutor(
                    run,
                    connectors,
                    job_types=job_types(),
                    store=store,
                    observers=[cancel_when_submitting],
                )
            )
            await executors[0].execute()
        attempts = await store.get_attempts(run.id)
    assert called == []
    assert (run.jobs["a"].state, run.jobs["a"].error) == (J.CANCELLED, "changed my mind")
    assert [(a.state, a.error) for a in attempts] == [("cancelled", "changed my mind")]


async def test_the_store_records_an_inline_attempt_ahead_and_at_its_end(store: Store) -> None:
    during: list[tuple[str, AttemptState]] = []

    async def look(ctx: JobContext) -> int:
        # the attempt is durable before the call starts (its running step may follow)
        for each in await store.get_attempts(ctx.run_id):
            during.append((each.key, each.state))
        return 7

    with DAG("records") as dag:
        Job("a", "python", call=look)
    run, _, _ = await _execute(dag, store)
    r = run.id
    assert during[0][0] == f"{r}/a/1"
    assert during[0][1] in (AttemptState.SUBMITTING, AttemptState.RUNNING)
    (stored,) = await store.get_attempts(r)
    assert (stored.key, stored.state, stored.handle, stored.error) == (
        f"{r}/a/1",
        "succeeded",
        {"call": f"{r}/a/1"},
        None,
    )
    assert stored.submitted_at is not None
    assert stored.accepted_at is not None
    assert stored.ended_at is not None
    assert stored.submitted_at <= stored.accepted_at <= stored.ended_at
    job = (await store.get_jobs(r))["a"]
    assert (job.state, job.attempts, job.outputs, job.remote_status) == (
        J.SUCCEEDED,
        1,
        {"result": 7},
        "returned",
    )
    events = [(e.kind, e.old, e.new) for e in await store.get_events(r) if e.job_id == "a"]
    assert events == [
        ("job", "pending", "queued"),
        ("job", "queued", "submitting"),
        ("attempt", None, "submitting"),
        ("attempt", "submitting", "running"),
        ("job", "submitting", "running"),
        ("attempt", "running", "succeeded"),
        ("job", "running", "succeeded"),
    ]


async def _crashed(store: Store, dag: DAG) -> Run:
    """A run of python jobs as a crash leaves it: ``running`` with its call's handle stored,
    ``submitting`` and ``ambiguous`` written ahead only."""
    dag.validate()
    run = prepare_run(dag)
    await record_new_run(store, run, owner="dead-host:1:1", at=0, exclusive=False)
    r = run.id
    ops: list[Operation] = [RunTransition(r, RunState.QUEUED, RunState.RUNNING, 1)]
    for job_id in ("running", "submitting", "ambiguous"):
        for old, new in itertools.pairwise((J.PENDING, J.QUEUED, J.SUBMITTING)):
            ops.append(job_step(old, new, job_id, run_id=r, at=1, attempts=1))
        ops.append(attempt(1, None, "submitting", 1, job_id=job_id, run_id=r))
    handle = {"call": f"{r}/running/1"}
    ops.append(attempt(1, "submitting", "running", 1, job_id="running", run_id=r, handle=handle))
    ops.append(job_step(J.SUBMITTING, J.RUNNING, "running", run_id=r, at=1, attempts=1))
    await store.apply(ops)
    return run


async def test_python_jobs_in_flight_after_a_crash_are_handled_as_before(store: Store) -> None:
    """A call cannot be followed across a restart: one stored as running fails (its call is
    gone with its process); one written ahead only follows onAmbiguousSubmit (resubmit by
    default: called again as the same attempt; unknown: not called)."""
    called: list[tuple[str, int]] = []

    async def work(ctx: JobContext) -> str:
        called.append((ctx.job_id, ctx.attempt))
        return "again"

    with DAG("crashed") as dag:
        Job("running", "python", call=work)
        Job("submitting", "python", call=work)
        Job("ambiguous", "python", call=work, on_ambiguous_submit="unknown")
    crashed = await _crashed(store, dag)
    run = Run(crashed.id, dag, {}, "manual")
    run.state = RunState.RUNNING
    async with ConnectorSet(dag) as connectors:
        executor = RunExecutor(run, connectors, job_types=job_types(), store=store)
        executor.resume_from(await store.get_jobs(run.id), await store.get_attempts(run.id))
        await executor.execute()
    r = run.id
    assert called == [("submitting", 1)]
    jobs = run.jobs
    assert (jobs["running"].state, jobs["running"].error) == (
        J.FAILED,
        f"polling failed: no python call '{r}/running/1' in this process",
    )
    assert (jobs["submitting"].state, jobs["submitting"].outputs) == (
        J.SUCCEEDED,
        {"result": "again"},
    )
    assert jobs["ambiguous"].state is J.UNKNOWN
    assert jobs["ambiguous"].error == (
        "submission outcome unknown (the process stopped); not found on the remote; "
        "not sent again (onAmbiguousSubmit: unknown)"
    )
    stored = {a.job_id: (a.attempt, a.state) for a in await store.get_attempts(r)}
    assert stored == {
        "running": (1, "error"),
        "submitting": (1, "succeeded"),
        "ambiguous": (1, "unknown"),
    }


async def _cancel_while_running(dag: DAG, started: anyio.Event, cancel: Any, **kwargs: Any) -> Run:
    """Run ``dag`` on the real clock; once ``started`` is set, ``cancel(executor)``."""
    dag.validate()
    run = prepare_run(dag)
    async with ConnectorSet(dag) as connectors, anyio.create_task_group() as tg:
        executor = RunExecutor(run, connectors, job_types=job_types(), **kwargs)
        tg.start_soon(executor.execute)
        with anyio.fail_after(5):
            await started.wait()
        cancel(executor)
    return run


async def test_cancel_job_within_a_timeout_is_a_cancel_not_a_timeout() -> None:
    started, log = anyio.Event(), []

    async def forever(ctx: JobContext) -> None:
        await _started(started, log)

    with DAG("both") as dag:
        Job("a", "python", call=forever, timeout=60, retries=3)
    run = await _cancel_while_running(dag, started, lambda e: e.cancel_job("a", "enough"))
    a = run.jobs["a"]
    assert (a.state, a.error, a.attempts, log) == (J.CANCELLED, "enough", 1, ["unwound"])
    assert run.state is RunState.FAILED  # its only final job did not succeed


async def test_a_call_that_swallows_its_cancel_leaves_no_cancel_behind() -> None:
    """The job is cancelled all the same, and the worker's next job (one worker here) runs as
    if nothing happened: the job's cancel was taken back from the task."""
    started = anyio.Event()

    async def stubborn(ctx: JobContext) -> str:
        started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            pass
        return "ignored"

    async def next_one(ctx: JobContext) -> str:
        await anyio.sleep(0.01)  # a cancel left pending would land here
        task = asyncio.current_task()
        assert task is not None
        return f"ran, {task.cancelling()} cancel(s) pending"

    with DAG("swallow") as dag:
        a = Job("a", "python", call=stubborn)
        b = Job("b", "python", call=next_one, trigger_rule="all_done")
        a >> b
    run = await _cancel_while_running(
        dag, started, lambda e: e.cancel_job("a", "stop it"), concurrency=1
    )
    assert (run.jobs["a"].state, run.jobs["a"].error) == (J.CANCELLED, "stop it")
    b_job = run.jobs["b"]
    assert (b_job.state, b_job.outputs) == (J.SUCCEEDED, {"result": "ran, 0 cancel(s) pending"})


async def test_the_runs_cancel_with_a_jobs_cancel_cancels_the_run() -> None:
    started, log = anyio.Event(), []

    async def forever(ctx: JobContext) -> None:
        await _started(started, log)

    def both(executor: RunExecutor) -> None:
        executor.cancel_job("a", "this job")
        executor.cancel("the run")

    with DAG("two_cancels") as dag:
        Job("a", "python", call=forever)
        Job("b", "python", call=forever)
    run = await _cancel_while_running(dag, started, both)
    assert run.state is RunState.CANCELLED
    assert {jr.state for jr in run.jobs.values()} == {J.CANCELLED}


async def test_a_call_that_cancels_its_own_job_ends_cancelled() -> None:
    executors: list[RunExecutor] = []

    async def quits(ctx: JobContext) -> str:
        executors[0].cancel_job(ctx.job_id, "quit")
        await anyio.sleep(0.01)
        return "finished anyway"

    async def next_one(ctx: JobContext) -> str:
        await anyio.sleep(0.01)
        return "ran"

    with DAG("self") as dag:
        a = Job("a", "python", call=quits)
        b = Job("b", "python", call=next_one, trigger_rule="all_done")
        a >> b
    dag.validate()
    run = prepare_run(dag)
    async with ConnectorSet(dag) as connectors:
        executors.append(RunExecutor(run, connectors, job_types=job_types(), concurrency=1))
        await executors[0].execute()
    assert (run.jobs["a"].state, run.jobs["a"].error) == (J.CANCELLED, "quit")
    assert (run.jobs["b"].state, run.jobs["b"].outputs) == (J.SUCCEEDED, {"result": "ran"})


async def test_a_secret_in_a_calls_error_or_result_is_masked() -> None:
    secret = "inline-call-secret-7f3a9c41"
    logs.add_secrets([secret])

    async def leaks(ctx: JobContext) -> None:
        raise RuntimeError(f"token {secret} refused")

    async def returns(ctx: JobContext) -> dict[str, str]:
        return {"token": secret}

    with DAG("masked") as dag:
        Job("error", "python", call=leaks)
        Job("result", "python", call=returns)
    run, _, _ = await _execute(dag)
    assert run.jobs["error"].error == "RuntimeError: token *** refused"
    assert run.jobs["result"].outputs == {"result": {"token": "***"}}
