"""Runs one DAG run to its end.

Event-driven: a job's end updates its dependents' upstream counts and queues those whose trigger
rule says run; nothing rescans the graph. Ready jobs wait in one priority heap. Jobs are run by
worker tasks that each take the best runnable job (respecting the global limit and named
pools), run it, and take the next one; a spawner adds workers only while ready jobs outnumber
free workers, doubling at most per turn of the event loop, so that jobs which never wait on I/O
do not pay for a task each.
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.lowlevel
import structlog

from ..clock import Clock, RealClock
from ..connectors.base import Connector, PollResult, RemoteHandle, RemoteStatus, Submission
from ..connectors.registry import job_types
from ..errors import ConnectorError, TransientError
from ..retry import Outcome
from ..states import (
    JOB_TERMINAL,
    JOB_TRANSITIONS,
    JobState,
    RunState,
    check_job_transition,
    check_run_transition,
)
from ..trigger_rules import Decision, evaluate
from .connectors import ConnectorSet
from .records import JobRun, Run
from .tokens import substitute

DEFAULT_CONCURRENCY = 64
CANCEL_GRACE = 30.0  # seconds a remote cancel may take once the run is being cancelled
MAX_POLL_ERRORS = 10  # consecutive transient poll failures before the attempt errors
SLICE = 0.01  # seconds a worker runs jobs back to back before yielding to the loop

Observer = Callable[[JobRun, JobState], None]


class _Attempt:
    """What one attempt ended with."""

    __slots__ = ("error", "outcome", "result")

    def __init__(
        self, outcome: Outcome | None, error: str | None = None, result: PollResult | None = None
    ) -> None:
        self.outcome = outcome  # None: succeeded
        self.error = error
        self.result = result


class RunExecutor:
    def __init__(
        self,
        run: Run,
        connectors: ConnectorSet,
        *,
        clock: Clock | None = None,
        concurrency: int | None = None,
        pool_limits: Mapping[str, int] | None = None,
        connection_limits: Mapping[str, int] | None = None,
        rng: random.Random | None = None,
        observers: list[Observer] | None = None,
        cancel_grace: float = CANCEL_GRACE,
    ) -> None:
        dag = run.dag
        self.run = run
        self.dag = dag
        self._connectors = connectors
        self._clock = clock or RealClock()
        self._limit = concurrency or dag.concurrency or DEFAULT_CONCURRENCY
        self._rng = rng or random.Random()
        self._observers = observers or []
        self._cancel_grace = cancel_grace
        self._pool_limits: dict[str, int] = dict(dag.pools)
        self._pool_limits.update(pool_limits or {})
        for name, limit in (connection_limits or {}).items():
            self._pool_limits[f"connection:{name}"] = limit
        self._pool_used: Counter[str] = Counter()
        self._blocked: defaultdict[str, list[tuple[int, int, JobRun]]] = defaultdict(list)
        self._heap: list[tuple[int, int, JobRun]] = []
        self._seq = itertools.count()
        self._running = 0
        self._workers = 0
        self._busy = 0
        self._remaining = 0
        self._need = anyio.Event()
        self._scope = anyio.CancelScope()
        self._stop_state: RunState | None = None
        self._stop_reason: str | None = None
        self._tokens_base = {"runId": run.id, "dagName": dag.name, **run.params}
        self._tg: Any = None
        self._log = structlog.get_logger("orchestrator.engine").bind(dag=dag.name, run=run.id)
        types = job_types()
        for job in dag:
            pools = job.pools
            if job.connection and f"connection:{job.connection}" in self._pool_limits:
                pools = (*pools, f"connection:{job.connection}")
            run.jobs[job.id] = JobRun(job, types[job.type], pools)
        for job_id, jr in run.jobs.items():
            jr.children = [run.jobs[c] for c in dag.graph.successors(job_id)]
            jr.counts.total = dag.graph.in_degree(job_id)

    # -- public --------------------------------------------------------------------------
    def cancel(self, reason: str = "cancelled") -> None:
        """Cancel the run: running jobs are cancelled on their remotes, the rest never start."""
        self._stop(RunState.CANCELLED, reason)

    async def execute(self) -> Run:
        run = self.run
        self._set_run(RunState.RUNNING)
        run.started_at = self._clock.time()
        self._remaining = len(run.jobs)
        self._log.info("run.started", jobs=len(run.jobs))
        timeout = self.dag.timeout_seconds
        deadline = self._clock.deadline(timeout)
        with deadline, self._scope:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                for jr in run.jobs.values():
                    if (
                        jr.state is JobState.PENDING
                        and evaluate(jr.rule, jr.counts) is Decision.RUN
                    ):
                        self._queue(jr)
                if self._remaining:
                    tg.start_soon(self._spawner)
                    self._start_worker()
        if deadline.cancelled_caught and self._stop_state is None:
            self._stop_state, self._stop_reason = (
                RunState.FAILED,
                f"run timed out after {timeout:g}s",
            )
        self._finish_run()
        return run

    # -- states --------------------------------------------------------------------------
    def _set(self, jr: JobRun, new: JobState, error: str | None = None) -> None:
        old = jr.state
        if new not in JOB_TRANSITIONS[old]:
            check_job_transition(old, new)  # raises, naming both states
        jr.state = new
        if error is not None:
            jr.error = error
        if new in JOB_TERMINAL:
            jr.ended_at = self._clock.time()
            self._log_end(jr)
        for observer in self._observers:
            observer(jr, old)

    def _log_end(self, jr: JobRun) -> None:
        fields = {
            "job": jr.id,
            "attempt": jr.attempts,
            "state": jr.state.value,
        }
        if jr.state is JobState.SUCCEEDED or jr.state is JobState.SKIPPED:
            self._log.info("job.ended", **fields)
        else:
            self._log.warning("job.ended", error=jr.error, **fields)

    def _set_run(self, new: RunState) -> None:
        check_run_transition(self.run.state, new)
        self.run.state = new

    def _finish_run(self) -> None:
        run = self.run
        reason = self._stop_reason or "run cancelled"
        for jr in run.jobs.values():
            if not jr.state.terminal:
                if jr.state in (JobState.RUNNING, JobState.SUBMITTING):
                    jr.notes.append("left running on the remote")
                self._set(jr, JobState.CANCELLED, reason)
        if self._stop_state is not None:
            state = self._stop_state
            run.error = self._stop_reason
        else:
            bad = [
                jr.id
                for jr in run.jobs.values()
                if not jr.children and jr.state not in (JobState.SUCCEEDED, JobState.SKIPPED)
            ]
            state = RunState.FAILED if bad else RunState.SUCCEEDED
            if bad:
                run.error = f"{len(bad)} final job(s) did not succeed: {', '.join(sorted(bad)[:5])}"
        run.ended_at = self._clock.time()
        self._set_run(state)
        (self._log.info if state is RunState.SUCCEEDED else self._log.warning)(
            "run.ended", state=state.value, error=run.error
        )

    def _stop(self, state: RunState, reason: str) -> None:
        if self._stop_state is None:
            self._stop_state, self._stop_reason = state, reason
            self._log.warning("run.stopping", reason=reason)
        self._scope.cancel()

    # -- readiness -----------------------------------------------------------------------
    def _queue(self, jr: JobRun) -> None:
        self._set(jr, JobState.QUEUED)
        heapq.heappush(self._heap, (-jr.priority, next(self._seq), jr))
        self._need.set()

    def _job_done(self, jr: JobRun) -> None:
        """``jr`` reached a terminal state: update its dependents, maybe end the run."""
        self._remaining -= 1
        stack = [jr]
        while stack:
            done = stack.pop()
            for child in done.children:
                child.counts.add(done.state)
                if child.state is not JobState.PENDING:
                    continue
                decision = evaluate(child.rule, child.counts)
                if decision is Decision.RUN:
                    self._queue(child)
                elif decision is Decision.SKIP:
                    self._set(child, JobState.SKIPPED)
                    self._remaining -= 1
                    stack.append(child)
                elif decision is Decision.UPSTREAM_FAILED:
                    self._set(
                        child, JobState.UPSTREAM_FAILED, f"upstream {done.id!r} {done.state.value}"
                    )
                    self._remaining -= 1
                    stack.append(child)
        if jr.state is JobState.FAILED and self.dag.fail_fast:
            self._stop(RunState.FAILED, f"fail_fast: job {jr.id!r} failed")
        if self._remaining == 0:
            self._need.set()

    def _pop_runnable(self) -> JobRun | None:
        heap = self._heap
        if self._stop_state is not None:
            return None
        while heap and self._running < self._limit:
            entry = heapq.heappop(heap)
            jr = entry[2]
            if jr.state is not JobState.QUEUED:
                continue
            for pool in jr.pools:
                if self._pool_used[pool] >= self._pool_limits[pool]:
                    self._blocked[pool].append(entry)
                    break
            else:
                for pool in jr.pools:
                    self._pool_used[pool] += 1
                self._running += 1
                jr.held = True
                return jr
        return None

    def _release(self, jr: JobRun) -> None:
        if not jr.held:
            return
        jr.held = False
        self._running -= 1
        for pool in jr.pools:
            self._pool_used[pool] -= 1
            blocked = self._blocked.get(pool)
            if blocked:
                for entry in blocked:
                    heapq.heappush(self._heap, entry)
                blocked.clear()
        if self._heap:
            self._need.set()

    # -- workers -------------------------------------------------------------------------
    async def _spawner(self) -> None:
        while self._remaining > 0:
            await self._need.wait()
            self._need = anyio.Event()
            if self._remaining <= 0:
                return
            free = self._workers - self._busy
            wanted = min(len(self._heap), self._limit - self._running) - free
            if wanted > 0:
                spawn = min(wanted, max(1, self._workers))
                for _ in range(spawn):
                    self._start_worker()
                if spawn < wanted:
                    self._need.set()
                    await anyio.lowlevel.checkpoint()

    def _start_worker(self) -> None:
        self._workers += 1
        self._tg.start_soon(self._worker)

    async def _worker(self) -> None:
        last = time.perf_counter()
        try:
            while True:
                jr = self._pop_runnable()
                if jr is None:
                    return
                self._busy += 1
                try:
                    await self._run_job(jr)
                finally:
                    self._busy -= 1
                    self._release(jr)
                now = time.perf_counter()
                if now - last > SLICE:
                    await anyio.lowlevel.checkpoint()
                    last = time.perf_counter()
        finally:
            self._workers -= 1

    # -- one job -------------------------------------------------------------------------
    async def _run_job(self, jr: JobRun) -> None:
        if jr.started_at is None:
            jr.started_at = self._clock.time()
        jr.attempts += 1
        self._set(jr, JobState.SUBMITTING)
        result = await self._attempt(jr)
        if result.outcome is None:
            jr.error = None
            self._set(jr, JobState.SUCCEEDED)
            self._job_done(jr)
            return
        if jr.policy.should_retry(jr.attempts, result.outcome):
            delay = jr.policy.delay(jr.attempts, self._rng)
            self._set(jr, JobState.RETRY_WAIT, result.error)
            self._log.info(
                "job.retrying",
                job=jr.id,
                attempt=jr.attempts,
                outcome=result.outcome.value,
                error=result.error,
                delay=round(delay, 3),
            )
            self._release(jr)
            await self._clock.sleep(delay)
            self._queue(jr)  # back in line like any ready job: slots and pools apply
            return
        self._set(jr, JobState.FAILED, result.error)
        self._job_done(jr)
        return

    async def _attempt(self, jr: JobRun) -> _Attempt:
        job = jr.job
        connector = self._connectors.get(jr.job_type, job.connection)
        params: Mapping[str, Any] = job.params
        if jr.has_tokens:
            params = substitute(
                params, {**self._tokens_base, "jobId": jr.id, "attempt": jr.attempts}
            )
        if job.call is not None:
            params = {**params, "call": job.call, "__run_params__": self.run.params}
        key = f"{self.run.id}/{jr.id}/{jr.attempts}"
        submission = Submission(
            self.dag.name, self.run.id, jr.id, jr.attempts, key, params, wake=jr.wake
        )
        handle: RemoteHandle | None = None
        try:
            if jr.timeout is None:  # no cancel scope: it costs more than the rest of a fast job
                try:
                    handle = await connector.submit(submission)
                except ConnectorError as exc:
                    return _Attempt(Outcome.ERROR, f"submit failed: {exc}")
                jr.handle = handle
                self._set(jr, JobState.RUNNING)
                return await self._follow(jr, connector, handle)
            with self._clock.deadline(jr.timeout) as timeout_scope:
                try:
                    handle = await connector.submit(submission)
                except ConnectorError as exc:
                    return _Attempt(Outcome.ERROR, f"submit failed: {exc}")
                jr.handle = handle
                self._set(jr, JobState.RUNNING)
                result = await self._follow(jr, connector, handle)
            if timeout_scope.cancelled_caught:
                if handle is not None:
                    with anyio.move_on_after(self._cancel_grace):
                        await self._cancel_remote(jr, connector, handle)
                return _Attempt(Outcome.TIMEOUT, f"timed out after {jr.timeout:g}s")
            return result
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                if handle is not None:
                    with anyio.move_on_after(self._cancel_grace):
                        await self._cancel_remote(jr, connector, handle)
                if not jr.state.terminal:
                    self._set(jr, JobState.CANCELLED, self._stop_reason or "run cancelled")
                    self._remaining -= 1
            raise

    async def _cancel_remote(self, jr: JobRun, connector: Connector, handle: RemoteHandle) -> None:
        fields = {"job": jr.id, "attempt": jr.attempts}
        try:
            outcome = await connector.cancel(handle)
        except ConnectorError as exc:
            jr.notes.append(f"remote cancel failed: {exc}")
            self._log.warning("job.cancel_failed", error=str(exc), **fields)
            return
        if not outcome.supported:
            jr.notes.append(f"not cancelled on the remote: {outcome.message}")
            self._log.warning("job.cancel_unsupported", message=outcome.message, **fields)
        else:
            self._log.info("job.cancelled_remote", message=outcome.message, **fields)

    async def _follow(self, jr: JobRun, connector: Connector, handle: RemoteHandle) -> _Attempt:
        schedule = jr.job_type.poll
        polls = 0
        errors = 0
        while True:
            jr.woken = False
            try:
                result = await connector.poll(handle)
            except TransientError as exc:
                errors += 1
                if errors > MAX_POLL_ERRORS:
                    return _Attempt(Outcome.ERROR, f"polling failed {errors} times: {exc}")
                delay = exc.retry_after or schedule.delay(errors, self._rng.random())
                await self._clock.sleep(delay)
                continue
            except ConnectorError as exc:
                return _Attempt(Outcome.ERROR, f"polling failed: {exc}")
            errors = 0
            jr.remote_status = result.remote_status
            if result.status is RemoteStatus.SUCCEEDED:
                jr.outputs = dict(result.outputs)
                jr.log_tail = result.log_tail
                return _Attempt(None, result=result)
            if result.status is RemoteStatus.FAILED:
                jr.outputs = dict(result.outputs)
                jr.log_tail = result.log_tail
                return _Attempt(Outcome.FAILED, result.error or "the remote job failed", result)
            if result.status is RemoteStatus.CANCELLED:
                return _Attempt(Outcome.FAILED, result.error or "cancelled on the remote", result)
            polls += 1
            if jr.woken:
                continue
            delay = (
                result.next_poll
                if result.next_poll is not None
                else schedule.delay(polls, self._rng.random())
            )
            event = jr.wake_event = anyio.Event()
            await self._clock.wait(event, max(0.0, delay))
            jr.wake_event = None
