"""The run executor: ordering, trigger rules, retries, timeouts, cancellation, limits."""

from __future__ import annotations

import itertools
import logging
import random
from typing import Any

import anyio
import pytest

from orchestrator.clock import FakeClock
from orchestrator.connectors.base import (
    CancelResult,
    ConnectorBase,
    PollResult,
    RemoteHandle,
    RemoteStatus,
    Submission,
)
from orchestrator.connectors.fake import FakeConnector, FakeRemote
from orchestrator.connectors.registry import job_types
from orchestrator.engine.executor import ExecutorStatistics, RunExecutor
from orchestrator.engine.records import JobRun
from orchestrator.errors import TransientError
from orchestrator.model.dag import DAG, Job
from orchestrator.model.states import JobState, RunState
from orchestrator.runtime.connectors import ConnectorSet
from orchestrator.runtime.prepare import prepare_run

from ..counting import CountingTypes
from .conftest import RunFn

S, F, UF, SK, C = (
    JobState.SUCCEEDED,
    JobState.FAILED,
    JobState.UPSTREAM_FAILED,
    JobState.SKIPPED,
    JobState.CANCELLED,
)


def states(run: Any) -> dict[str, JobState]:
    return {j.id: j.state for j in run.jobs.values()}


class Recorder:
    """Observer recording (time, job, state) of every transition."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.events: list[tuple[float, str, JobState]] = []
        self.running = 0
        self.max_running = 0

    def __call__(self, jr: JobRun, old: JobState) -> None:
        self.events.append((self.clock.monotonic(), jr.id, jr.state))
        active = (JobState.SUBMITTING, JobState.RUNNING)
        if jr.state in active and old not in active:
            self.running += 1
        elif old in active and jr.state not in active:
            self.running -= 1
        self.max_running = max(self.max_running, self.running)

    def first(self, job: str, state: JobState) -> float:
        return next(t for t, j, s in self.events if j == job and s is state)

    def order(self, state: JobState) -> list[str]:
        return [j for _, j, s in self.events if s is state]


async def test_fan_out_fan_in_runs_children_after_parents(run: RunFn, clock: FakeClock) -> None:
    with DAG("fan") as dag:
        a = Job("a", "fake", duration="10s")
        b = Job("b", "fake", duration="20s")
        c = Job("c", "fake", duration="5s")
        d = Job("d", "fake", duration="1s")
        a >> [b, c] >> d
    rec = Recorder(clock)
    result = await run(dag, observers=[rec])
    assert result.state is RunState.SUCCEEDED
    assert states(result) == dict.fromkeys("abcd", S)
    assert rec.first("b", JobState.SUBMITTING) >= rec.first("a", S)
    assert rec.first("c", JobState.SUBMITTING) >= rec.first("a", S)
    assert rec.first("d", JobState.SUBMITTING) >= max(rec.first("b", S), rec.first("c", S))
    # b and c ran side by side: the run took a + b + d, not a + b + c + d
    assert rec.first("d", S) - rec.first("a", JobState.SUBMITTING) == pytest.approx(31, abs=0.5)


async def test_failure_propagates_as_upstream_failed_and_all_done_still_runs(run: RunFn) -> None:
    with DAG("prop") as dag:
        a = Job("a", "fake", outcome="failure", message="disk full")
        b = Job("b", "fake")
        c = Job("c", "fake")
        cleanup = Job("cleanup", "fake", trigger_rule="all_done")
        alert = Job("alert", "fake", trigger_rule="one_failed")
        ok_path = Job("ok_path", "fake", trigger_rule="none_failed")
        a >> b >> c >> cleanup
        a >> alert
        a >> ok_path
    result = await run(dag)
    assert states(result) == {
        "a": F,
        "b": UF,
        "c": UF,
        "cleanup": S,
        "alert": S,
        "ok_path": UF,
    }
    assert result.jobs["a"].error == "disk full"
    assert result.jobs["b"].error == "upstream 'a' failed"
    # alert (one_failed) handled a's failure; no handler ran for b, c or ok_path
    assert (result.state, result.error) == (RunState.FAILED, "3 job(s) failed: b, c, ok_path")


FAIL = {"outcome": "failure"}
CLEANUP = {"trigger_rule": "all_done"}
ON_FAILURE = {"trigger_rule": "one_failed"}


@pytest.mark.parametrize(
    ("jobs", "edges", "state", "error"),
    [
        pytest.param(
            {"a": FAIL, "cleanup": CLEANUP},
            ["a>cleanup"],
            RunState.FAILED,
            "1 job(s) failed: a",
            id="all_done cleanup after a failure",
        ),
        pytest.param(
            {"a": FAIL, "b": {}, "c": {}, "report": CLEANUP},
            ["a>b", "b>c", "c>report"],
            RunState.FAILED,
            "3 job(s) failed: a, b, c",
            id="chain.json with a failing remote",
        ),
        pytest.param(
            {"a": FAIL, "alert": ON_FAILURE},
            ["a>alert"],
            RunState.SUCCEEDED,
            None,
            id="one_failed handler that succeeds",
        ),
        pytest.param(
            {"a": FAIL, "alert": {**ON_FAILURE, **FAIL}},
            ["a>alert"],
            RunState.FAILED,
            "2 job(s) failed: a, alert",
            id="one_failed handler that fails",
        ),
        pytest.param(
            {"a": FAIL, "b": {}, "alert": {"trigger_rule": "all_failed"}, "cleanup": CLEANUP},
            ["a>b", "b>alert", "alert>cleanup"],
            RunState.SUCCEEDED,
            None,
            id="all_failed handler reached through upstream_failed",
        ),
        pytest.param(
            {"a": FAIL, "b": {}, "alert": ON_FAILURE},
            ["a>b", "a>alert"],
            RunState.FAILED,
            "1 job(s) failed: b",
            id="a handler of one branch leaves the other failed",
        ),
        pytest.param(
            {"a": {"duration": "1h", "timeout": "1s"}, "cleanup": CLEANUP},
            ["a>cleanup"],
            RunState.FAILED,
            "1 job(s) failed: a",
            id="timeout before a cleanup",
        ),
        pytest.param(
            {"a": {}, "on_failure": {"trigger_rule": "all_failed"}, "then": {}, "ok": {}},
            ["a>on_failure", "on_failure>then", "a>ok"],
            RunState.SUCCEEDED,
            None,
            id="skipped branches",
        ),
        pytest.param(
            {"a": {"failTimes": 1, "retries": 2}, "report": CLEANUP},
            ["a>report"],
            RunState.SUCCEEDED,
            None,
            id="a failed attempt retried to success",
        ),
    ],
)
async def test_a_run_fails_when_a_job_failed_unless_a_failure_handler_ran_for_it(
    run: RunFn,
    jobs: dict[str, dict[str, Any]],
    edges: list[str],
    state: RunState,
    error: str | None,
) -> None:
    with DAG("outcome") as dag:
        made = {name: Job(name, "fake", **fields) for name, fields in jobs.items()}
    for edge in edges:
        upstream, downstream = edge.split(">")
        made[upstream] >> made[downstream]
    result = await run(dag)
    assert (result.state, result.error) == (state, error)


async def test_skips_propagate(run: RunFn) -> None:
    with DAG("skips") as dag:
        a = Job("a", "fake")
        only_on_failure = Job("only_on_failure", "fake", trigger_rule="all_failed")
        after = Job("after", "fake")
        joined = Job("joined", "fake", trigger_rule="none_failed_min_one_success")
        a >> only_on_failure >> after
        [a, after] >> joined
    result = await run(dag)
    assert states(result) == {"a": S, "only_on_failure": SK, "after": SK, "joined": S}
    assert result.state is RunState.SUCCEEDED


async def test_always_runs_without_waiting_for_upstream(run: RunFn, clock: FakeClock) -> None:
    with DAG("always") as dag:
        slow = Job("slow", "fake", duration="1h")
        anyway = Job("anyway", "fake", trigger_rule="always")
        slow >> anyway
    rec = Recorder(clock)
    result = await run(dag, observers=[rec])
    assert states(result) == {"slow": S, "anyway": S}
    assert rec.first("anyway", S) < rec.first("slow", S)


async def test_retries_back_off_exponentially_in_virtual_time(
    run: RunFn, clock: FakeClock, remote: FakeRemote
) -> None:
    with DAG("retry") as dag:
        Job(
            "flaky",
            "fake",
            failTimes=3,
            retries={"attempts": 4, "base": "10s", "backoff": 3, "jitter": False},
        )
    result = await run(dag)
    jr = result.jobs["flaky"]
    assert jr.state is S
    assert jr.attempts == 4
    assert clock.sleeps == [10.0, 30.0, 90.0]
    # each attempt had its own idempotency key
    assert sorted(remote.submissions) == [f"{result.id}/flaky/{n}" for n in (1, 2, 3, 4)]


async def test_retry_delays_use_full_jitter_below_the_cap(run: RunFn, clock: FakeClock) -> None:
    with DAG("jitter") as dag:
        Job(
            "flaky",
            "fake",
            outcome="failure",
            retries={"attempts": 6, "base": "10s", "backoff": 2, "cap": "25s"},
        )
    result = await run(dag, rng=random.Random(3))
    assert result.jobs["flaky"].attempts == 6
    assert result.jobs["flaky"].state is F
    ceilings = [10, 20, 25, 25, 25]
    assert len(clock.sleeps) == 5
    assert all(0 <= d <= c for d, c in zip(clock.sleeps, ceilings, strict=True))
    assert len(set(clock.sleeps)) == 5  # jittered, not a fixed schedule


async def test_a_retry_wait_holds_no_worker_and_no_slot(
    clock: FakeClock, remote: FakeRemote
) -> None:
    """With concurrency 1, a job waiting an hour for its retry lets another job run meanwhile,
    and no worker task sleeps through that wait."""
    with DAG("waiting", concurrency=1) as dag:
        Job(
            "flaky",
            "fake",
            failTimes=1,
            priority=1,
            retries={"attempts": 2, "base": "1h", "cap": "1h", "jitter": False},
        )
        Job("other", "fake", duration="10s")
    dag.validate()
    run = prepare_run(dag)
    rec = Recorder(clock)
    meanwhile: list[ExecutorStatistics] = []

    def observe(jr: JobRun, old: JobState) -> None:
        if jr.id == "other" and jr.state is JobState.RUNNING:
            meanwhile.append(executor.statistics())

    async with clock, ConnectorSet(dag, {}, {"fake": FakeConnector(remote)}) as connectors:
        executor = RunExecutor(
            run, connectors, job_types=job_types(), clock=clock, observers=[rec, observe]
        )
        await executor.execute()
    assert states(run) == {"flaky": S, "other": S}
    waited_from = rec.first("flaky", JobState.RETRY_WAIT)
    assert rec.order(JobState.SUBMITTING) == ["flaky", "other", "flaky"]
    assert rec.first("other", S) < waited_from + 60  # ran during the hour's wait
    retried_at = [t for t, j, st in rec.events if j == "flaky" and st is JobState.SUBMITTING][1]
    assert retried_at - waited_from == pytest.approx(3600)  # the retry waited its hour
    # while "other" ran, its worker was the only one: none slept through the retry wait
    assert meanwhile == [ExecutorStatistics(workers=1, running=1, retry_waiting=1)]
    assert executor.statistics() == ExecutorStatistics(workers=0, running=0, retry_waiting=0)


async def test_a_retry_due_sooner_is_not_held_behind_a_later_one(
    run: RunFn, clock: FakeClock
) -> None:
    def flaky(name: str, duration: str, wait: str) -> Job:
        retries = {"attempts": 2, "base": wait, "cap": wait, "jitter": False}
        return Job(name, "fake", duration=duration, failTimes=1, retries=retries)

    with DAG("two_waits") as dag:
        flaky("late", "1s", "1h")
        flaky("soon", "10s", "1m")
    rec = Recorder(clock)
    result = await run(dag, observers=[rec])
    assert states(result) == {"late": S, "soon": S}

    def retried(job: str) -> float:
        submits = [t for t, j, st in rec.events if j == job and st is JobState.SUBMITTING]
        return submits[1] - rec.first(job, JobState.RETRY_WAIT)

    assert retried("soon") == pytest.approx(60)
    assert retried("late") == pytest.approx(3600)


async def test_a_stopped_run_cancels_the_jobs_waiting_for_a_retry(
    clock: FakeClock, remote: FakeRemote
) -> None:
    with DAG("stopped", timeout="10m") as dag:
        Job(
            "flaky",
            "fake",
            outcome="failure",
            retries={"attempts": 3, "base": "1h", "cap": "1h", "jitter": False},  # > timeout
        )
    dag.validate()
    run = prepare_run(dag)
    async with clock, ConnectorSet(dag, {}, {"fake": FakeConnector(remote)}) as connectors:
        executor = RunExecutor(run, connectors, job_types=job_types(), clock=clock)
        await executor.execute()
    assert (run.state, run.error) == (RunState.FAILED, "run timed out after 600s")
    assert (run.jobs["flaky"].state, run.jobs["flaky"].attempts) == (C, 1)
    assert executor.statistics() == ExecutorStatistics(workers=0, running=0, retry_waiting=0)


async def test_retry_only_on_the_named_outcomes(run: RunFn) -> None:
    with DAG("retry_on") as dag:
        Job("fails", "fake", outcome="failure", retries={"attempts": 3, "retryOn": ["timeout"]})
        Job(
            "times_out",
            "fake",
            hang=True,
            timeout="1m",
            retries={"attempts": 2, "base": 1, "retryOn": ["timeout"]},
        )
        Job(
            "refused",
            "fake",
            submitError=True,
            retries={"attempts": 2, "base": 1, "retryOn": ["error"]},
        )
    result = await run(dag)
    assert result.jobs["fails"].attempts == 1
    assert result.jobs["times_out"].attempts == 2
    assert result.jobs["times_out"].error == "timed out after 60s"
    assert result.jobs["refused"].attempts == 2
    assert "submit failed" in (result.jobs["refused"].error or "")


async def test_job_timeout_cancels_the_remote_job(
    run: RunFn, remote: FakeRemote, clock: FakeClock
) -> None:
    with DAG("timeout") as dag:
        Job("stuck", "fake", hang=True, timeout="2h")
    start = clock.monotonic()
    result = await run(dag)
    assert result.jobs["stuck"].state is F
    assert result.jobs["stuck"].error == "timed out after 7200s"
    assert remote.cancels == ["fake-0"]
    assert clock.monotonic() - start == pytest.approx(7200, abs=1)


async def test_run_timeout_fails_the_run_and_cancels_everything(
    run: RunFn, remote: FakeRemote
) -> None:
    with DAG("run_timeout", timeout="1h") as dag:
        a = Job("a", "fake", hang=True)
        Job("b", "fake", duration="10m")
        after = Job("after", "fake")
        a >> after
    result = await run(dag)
    assert result.state is RunState.FAILED
    assert result.error == "run timed out after 3600s"
    assert states(result) == {"a": C, "b": S, "after": C}
    assert remote.cancels == ["fake-0"]


async def test_cancel_reaches_every_running_job_and_starts_nothing_new(
    clock: FakeClock, remote: FakeRemote
) -> None:
    with DAG("cancel") as dag:
        running = [Job(f"r{i}", "fake", hang=True) for i in range(3)]
        later = Job("later", "fake")
        for r in running:
            r >> later
        Job("quick", "fake", duration="1s")
    dag.validate()
    run = prepare_run(dag)
    async with ConnectorSet(dag, {}, {"fake": FakeConnector(remote)}) as connectors:
        executor = RunExecutor(run, connectors, job_types=job_types(), clock=clock)

        async def cancel_later() -> None:
            await clock.sleep(60)
            executor.cancel("cancelled by test")

        async with clock, anyio.create_task_group() as tg:
            tg.start_soon(cancel_later)
            await executor.execute()
    assert run.state is RunState.CANCELLED
    assert run.error == "cancelled by test"
    assert sorted(remote.cancels) == ["fake-0", "fake-1", "fake-2"]
    assert {j: s for j, s in states(run).items()} == {
        "r0": C,
        "r1": C,
        "r2": C,
        "later": C,
        "quick": S,
    }
    assert all(run.jobs[f"r{i}"].error == "cancelled by test" for i in range(3))
    assert f"{run.id}/later/1" not in remote.submissions


async def test_fail_fast_stops_the_run_at_the_first_failure(run: RunFn, remote: FakeRemote) -> None:
    with DAG("ff", fail_fast=True) as dag:
        Job("bad", "fake", duration="1m", outcome="failure")
        Job("long", "fake", hang=True)
        slow = Job("slow", "fake", duration="2m")
        after = Job("after", "fake")
        slow >> after
    result = await run(dag)
    assert result.state is RunState.FAILED
    assert result.error == "fail_fast: job 'bad' failed"
    assert states(result) == {"bad": F, "long": C, "slow": C, "after": C}
    assert sorted(remote.cancels) == ["fake-1", "fake-2"]


async def test_global_concurrency_limit(run: RunFn, clock: FakeClock) -> None:
    with DAG("limit", concurrency=3) as dag:
        for i in range(12):
            Job(f"j{i}", "fake", duration="10s")
    rec = Recorder(clock)
    result = await run(dag, observers=[rec])
    assert result.state is RunState.SUCCEEDED
    assert rec.max_running == 3


async def test_jobs_that_wait_start_together_after_the_first(run: RunFn) -> None:
    """Workers double while they come back for more jobs (jobs that never wait need few); once
    the first one waits on its job, the other ready jobs start together, not over one turn of
    the loop after another (1, 2, 4, ...), which staggered a run's first requests."""
    with DAG("together", concurrency=64) as dag:
        for i in range(64):
            Job(f"j{i}", "fake", duration="10s")
    turn = 0
    turns: list[int] = []

    async def count_turns() -> None:
        nonlocal turn
        while True:
            await anyio.lowlevel.checkpoint()
            turn += 1

    def starts(jr: JobRun, old: JobState) -> None:
        if jr.state is JobState.SUBMITTING:
            turns.append(turn)

    async with anyio.create_task_group() as tg:
        tg.start_soon(count_turns)
        result = await run(dag, observers=[starts])
        tg.cancel_scope.cancel()
    assert result.state is RunState.SUCCEEDED
    assert len(turns) == 64
    first, *rest = turns
    assert len(set(rest)) == 1, sorted(set(turns))  # before: over 7 turns
    assert rest[0] > first


async def test_statistics_show_the_workers_and_slots_in_use(
    clock: FakeClock, remote: FakeRemote
) -> None:
    with DAG("stats", concurrency=2) as dag:
        for i in range(4):
            Job(f"j{i}", "fake", duration="10s")
    dag.validate()
    run = prepare_run(dag)
    seen: list[ExecutorStatistics] = []

    def observe(jr: JobRun, old: JobState) -> None:
        if jr.state is JobState.RUNNING:
            seen.append(executor.statistics())

    async with clock, ConnectorSet(dag, {}, {"fake": FakeConnector(remote)}) as connectors:
        executor = RunExecutor(
            run, connectors, job_types=job_types(), clock=clock, observers=[observe]
        )
        await executor.execute()
    assert run.state is RunState.SUCCEEDED
    assert len(seen) == 4
    assert all(1 <= s.running <= 2 and s.running <= s.workers <= 2 for s in seen)
    assert max(s.running for s in seen) == 2
    assert executor.statistics() == ExecutorStatistics(workers=0, running=0, retry_waiting=0)


async def test_named_pool_limits_its_jobs_only(run: RunFn, clock: FakeClock) -> None:
    with DAG("pools", pools={"warehouse": 1}) as dag:
        for i in range(4):
            Job(f"w{i}", "fake", duration="10s", pool="warehouse")
        for i in range(4):
            Job(f"free{i}", "fake", duration="10s")
    rec = Recorder(clock)
    result = await run(dag, observers=[rec])
    assert result.state is RunState.SUCCEEDED
    spans = sorted(
        (rec.first(f"w{i}", JobState.SUBMITTING), rec.first(f"w{i}", S)) for i in range(4)
    )
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end  # never two warehouse jobs at once
    assert max(rec.first(f"free{i}", S) for i in range(4)) <= spans[0][1] + 0.5


async def test_priorities_order_ready_jobs(run: RunFn, clock: FakeClock) -> None:
    with DAG("prio", concurrency=1) as dag:
        for _i, p in enumerate([1, 5, 3, 9, 0]):
            Job(f"p{p}", "fake", duration="1s", priority=p)
    rec = Recorder(clock)
    await run(dag, observers=[rec])
    assert rec.order(JobState.SUBMITTING) == ["p9", "p5", "p3", "p1", "p0"]


class Scripted(ConnectorBase):
    """Answers polls from a script: RUNNING n times, transient errors, then success."""

    def __init__(self, script: list[Any]) -> None:
        self.script = list(script)
        self.cancels = 0

    async def submit(self, submission: Submission) -> RemoteHandle:
        return {"id": "x"}

    async def poll(self, handle: RemoteHandle) -> PollResult:
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return PollResult(step)

    async def cancel(self, handle: RemoteHandle) -> CancelResult:
        self.cancels += 1
        return CancelResult(True)


async def test_poll_delay_grows_and_transient_errors_do_not_use_attempts(clock: FakeClock) -> None:
    R = RemoteStatus.RUNNING
    script = [R, R, TransientError("503", retry_after=7), R, R, R, RemoteStatus.SUCCEEDED]
    connector = Scripted(script)
    with DAG("polls") as dag:
        Job("j", "fake")
    dag.validate()
    run = prepare_run(dag)
    async with clock, ConnectorSet(dag, {}, {"fake": connector}) as connectors:
        await RunExecutor(
            run, connectors, job_types=job_types(), clock=clock, rng=random.Random(1)
        ).execute()
    assert run.jobs["j"].state is S
    assert run.jobs["j"].attempts == 1
    # the fake job type polls from 0.1s growing by 1.5x (each jittered by ±20%); Retry-After 7s
    assert clock.sleeps == [7]
    d = clock.waits
    assert len(d) == 5
    expected = [0.1, 0.15, 0.225, 0.3375, 0.50625]
    for got, want in zip(d, expected, strict=True):
        assert want * 0.8 <= got <= want * 1.2


async def test_remote_cancelled_job_counts_as_failed(clock: FakeClock) -> None:
    connector = Scripted([RemoteStatus.CANCELLED])
    with DAG("rc") as dag:
        Job("j", "fake")
    dag.validate()
    run = prepare_run(dag)
    async with clock, ConnectorSet(dag, {}, {"fake": connector}) as connectors:
        await RunExecutor(run, connectors, job_types=job_types(), clock=clock).execute()
    assert run.jobs["j"].state is F
    assert run.jobs["j"].error == "cancelled on the remote"


async def test_ten_thousand_nodes(run: RunFn, caplog: pytest.LogCaptureFixture) -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))
    from workloads import layered_dag

    dag = layered_dag(10_000)
    caplog.set_level(logging.WARNING, "orchestrator")  # not 10,000 lines of job.ended
    result = await run(dag)
    assert result.state is RunState.SUCCEEDED
    assert len(result.jobs) == 10_000
    assert all(j.state is S and j.attempts == 1 for j in result.jobs.values())
    for job_id, jr in result.jobs.items():
        for parent in dag.upstream(job_id):
            assert result.jobs[parent].ended_at <= jr.started_at  # type: ignore[operator]


class FlakyCancel(Scripted):
    def __init__(self) -> None:
        super().__init__([RemoteStatus.RUNNING] * 1000)
        self.cancel_calls = 0

    async def cancel(self, handle: RemoteHandle) -> CancelResult:
        self.cancel_calls += 1
        if self.cancel_calls <= 2:
            raise TransientError("cancel endpoint answered 503")
        return CancelResult(True, "acknowledged")


async def test_remote_cancel_is_retried_until_acknowledged(clock: FakeClock) -> None:
    connector = FlakyCancel()
    with DAG("flaky_cancel", timeout="1m") as dag:
        Job("j", "fake")
    dag.validate()
    run = prepare_run(dag)
    async with clock, ConnectorSet(dag, {}, {"fake": connector}) as connectors:
        await RunExecutor(run, connectors, job_types=job_types(), clock=clock).execute()
    assert connector.cancel_calls == 3
    assert run.jobs["j"].state is C
    assert run.jobs["j"].notes == []
    assert clock.sleeps == [0.5, 1.0]


class Buggy(Scripted):
    async def poll(self, handle: RemoteHandle) -> PollResult:
        raise KeyError("status")


async def test_a_connector_bug_fails_the_attempt_not_the_run(clock: FakeClock) -> None:
    with DAG("bug") as dag:
        Job("j", "fake", retries=2)
    dag.validate()
    run = prepare_run(dag)
    async with clock, ConnectorSet(dag, {}, {"fake": Buggy([])}) as connectors:
        await RunExecutor(run, connectors, job_types=job_types(), clock=clock).execute()
    assert run.jobs["j"].state is F
    assert run.jobs["j"].attempts == 2
    assert run.jobs["j"].error == "polling failed: KeyError: 'status'"


async def test_one_job_cancelled_alone_the_run_goes_on(
    clock: FakeClock, remote: FakeRemote
) -> None:
    """A job in flight is cancelled on its remote at its next step; a job not started ends at
    once; their dependents follow their trigger rules and the run ends as the rest decides."""
    with DAG("one_job") as dag:
        hang = Job("hang", "fake", hang=True)
        later = Job("later", "fake", duration="1h")
        after = Job("after", "fake", trigger_rule="all_done")
        waits = Job("waits", "fake")
        hang >> after
        later >> waits
    dag.validate()
    run = prepare_run(dag)
    async with clock, ConnectorSet(dag, {}, {"fake": FakeConnector(remote)}) as connectors:
        executor = RunExecutor(run, connectors, job_types=job_types(), clock=clock)
        async with anyio.create_task_group() as tg:
            tg.start_soon(executor.execute)
            while run.jobs["hang"].state is not JobState.RUNNING:
                await anyio.sleep(0)
            assert executor.cancel_job("waits", "not today") == "cancelled"  # not started
            assert executor.cancel_job("hang", "by the operator") == "cancelling"
            assert executor.cancel_job("nope") is None
    jobs = run.jobs
    assert (jobs["hang"].state, jobs["hang"].error) == (C, "by the operator")
    assert (jobs["waits"].state, jobs["waits"].error) == (C, "not today")
    assert jobs["after"].state is JobState.SUCCEEDED  # all_done: it ran
    assert jobs["later"].state is JobState.SUCCEEDED  # the run went on
    assert len(remote.cancels) == 1  # the remote job of `hang`, and nothing else
    assert executor.cancel_job("hang") == "cancelled"  # again: answered the same way
    assert run.state is RunState.FAILED  # a job was cancelled: the run did not succeed


async def test_a_run_looks_each_job_type_up_once() -> None:
    """Setting up a run of many jobs of one type looks the type up once, not once a job."""
    with DAG("many") as dag:
        for i in range(50):
            Job(f"j{i}", "fake")
    dag.validate()
    types = CountingTypes(job_types())
    run = prepare_run(dag)
    RunExecutor(run, ConnectorSet(dag, {}, {}), job_types=types)
    assert types.lookups == 1
    assert {jr.job_type.name for jr in run.jobs.values()} == {"fake"}
