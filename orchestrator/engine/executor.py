"""Runs one DAG run to its end: the scheduling (see also :mod:`.attempt`, :mod:`.journal`).

Event-driven: a job's end updates its dependents' upstream counts and queues those whose trigger
rule says run; nothing rescans the graph. Ready jobs wait in one priority heap, taken by worker
tasks (the best runnable job within the global limit and named pools, one after another); a
spawner adds workers only while ready jobs outnumber free workers, doubling at most per turn of
the loop, so that jobs which never wait on I/O do not pay for a task each. Jobs waiting for a
retry hold no worker and no slot: a second heap, by due time, with one timer task.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
import structlog

from ..clock import Clock, RealClock
from ..connectors.base import JobType
from ..errors import StoreError
from ..model.outcome import FAILURES, run_failure
from ..model.states import JobState, RunState
from ..model.trigger_rules import Decision, evaluate
from ..store.base import (
    AttemptRecord,
    AttemptRow,
    JobRecord,
    Lease,
    LeaseLost,
    Operation,
    StateEvent,
)
from .durable import count_ended, restore
from .fanout import Expansion
from .inline import Calls
from .journal import Observer, _Batch
from .ports import CallbackUrls, ConnectorProvider, EventSink, JobTypes, RunEnded, RunStore
from .records import JobRun, Run
from .slots import Slots
from .waits import RetryWaits

__all__ = ["ExecutorStatistics", "Observer", "RunExecutor"]

DEFAULT_CONCURRENCY = 64
CANCEL_GRACE = 30.0  # seconds a remote cancel may take once the run is being cancelled
SLICE = 0.01  # seconds the workers run jobs back to back before one yields to the loop
# workers started in one step of the loop at most: thousands held the loop over 100 ms
SPAWN_BATCH = 256


@dataclass(frozen=True, slots=True)
class ExecutorStatistics:
    """What a run's executor holds at one moment (see :meth:`RunExecutor.statistics`)."""

    workers: int  # worker tasks alive
    running: int  # jobs holding a concurrency slot
    retry_waiting: int  # jobs waiting for their next attempt (they hold neither)


class RunExecutor(RetryWaits, Calls):
    """Runs one run: scheduling here, the attempt lifecycle in :mod:`.attempt` and
    :mod:`.inline`, fan-out in :mod:`.fanout`, retry waits in :mod:`.waits`, the journal in
    :mod:`.journal` (parts of this class, sharing its state)."""

    def __init__(
        self,
        run: Run,
        connectors: ConnectorProvider,
        *,
        job_types: JobTypes,
        clock: Clock | None = None,
        concurrency: int | None = None,
        pool_limits: Mapping[str, int] | None = None,
        connection_limits: Mapping[str, int] | None = None,
        rng: random.Random | None = None,
        observers: list[Observer] | None = None,
        cancel_grace: float = CANCEL_GRACE,
        store: RunStore | None = None,
        slots: Slots | None = None,
        events: EventSink | None = None,
        callbacks: CallbackUrls | None = None,
    ) -> None:
        dag = run.dag
        self.run = run
        self.dag = dag
        self._connectors = connectors
        self._callbacks = callbacks  # pushed completion, for the job types that can call back
        self._clock = clock or RealClock()
        self._limit = concurrency or dag.concurrency or DEFAULT_CONCURRENCY
        self._rng = rng or random.Random()
        self._observers = observers or []
        self._cancel_grace = cancel_grace
        # a DAG's pools are the run's own; connection limits are shared through ``slots``
        # with every run of the same host
        self._slots = slots if slots is not None else Slots()
        own_pools = {**dag.pools, **(pool_limits or {})}
        self._own_pools = [f"{run.id}/{name}" for name in own_pools]
        for name, limit in own_pools.items():
            self._slots.limits[f"{run.id}/{name}"] = limit
        for name, limit in (connection_limits or {}).items():
            self._slots.limit(f"connection:{name}", limit)
        self._blocked: defaultdict[str, list[tuple[int, int, JobRun]]] = defaultdict(list)
        self._heap: list[tuple[int, int, JobRun]] = []
        # jobs waiting for a retry, by due time (monotonic), woken by one timer task
        self._due: list[tuple[float, int, JobRun]] = []
        self._timing = False  # the timer task runs
        self._timer: anyio.CancelScope | None = None  # its sleep until the first due time
        self._seq = itertools.count()
        self._running = 0
        self._workers = 0
        self._busy = 0
        self._slice_start = time.perf_counter()  # of the workers' run since one last yielded
        self._remaining = 0
        self._need = anyio.Event()
        self._scope = anyio.CancelScope()
        self._store = store
        self._ops: list[Operation] = []
        # what changed since the last hand-over to the store (see _changes)
        self._dirty: list[JobRun] = []
        self._queued: list[JobRun] = []  # their step to `queued` not handed over yet
        self._events: list[StateEvent] = []
        self._attempt_rows: list[AttemptRow] = []  # of attempts no longer current
        self._flush_scheduled = False  # a batch of this turn of the loop is due
        self._filling: _Batch | None = None  # the commits waiting for the next batch
        # waiters enough for a batch of their own: the next ones make a second batch, written
        # while the first one's jobs go on (the writer and the event loop work side by side)
        self._cohort = max(1, self._limit // 2)
        self._after_flush: list[Callable[[], None]] = []
        self._store_failure: StoreError | LeaseLost | None = None
        # told of the ends of jobs and of the run, with a store only (it adds to its batches)
        self._sink = events if store is not None else None
        self._watched = frozenset(self._sink.watched) if self._sink is not None else frozenset()
        self._sink_pending = False
        self._resumed = False
        self._stop_state: RunState | None = None
        self._halted = False  # the store failed: stop where we are, touch no remote
        self.detached = False  # let go by its host (see detach): left running in the store
        # the lease this executor writes the run under (fencing): set by its host
        self.lease: Lease | None = None
        self._stop_reason: str | None = None
        self._tokens_base = {"runId": run.id, "dagName": dag.name, **run.params}
        self._expansions: dict[str, Expansion] = {}
        self._instance_of: dict[str, Expansion] = {}
        self._tg: Any = None
        self._log = structlog.get_logger("orchestrator.engine").bind(dag=dag.name, run=run.id)
        self._debug = self._log.is_enabled_for(logging.DEBUG)  # once: a state change is hot
        # once a run, for each of its jobs (10,000 jobs: a tenth of a run of instant ones): the
        # job types looked up once each, and no pools worked out for a job without any
        types: dict[str, JobType] = {}
        limits = self._slots.limits
        jobs = run.jobs
        for job in dag:
            job_type = types.get(job.type)
            if job_type is None:
                job_type = types[job.type] = job_types[job.type]
            pools: tuple[str, ...] = ()
            if job.pool is not None:
                pools = tuple(f"{run.id}/{pool}" for pool in job.pools)
            if job.connection and f"connection:{job.connection}" in limits:
                pools = (*pools, f"connection:{job.connection}")
            jobs[job.id] = JobRun(job, job_type, pools)
        successors = dag.successors
        for job_id, jr in jobs.items():
            jr.children = [jobs[c] for c in successors[job_id]]
            jr.counts.total = dag.in_degree(job_id)

    # -- public --------------------------------------------------------------------------
    def statistics(self) -> ExecutorStatistics:
        return ExecutorStatistics(
            workers=self._workers, running=self._running, retry_waiting=len(self._due)
        )

    def cancel(self, reason: str = "cancelled") -> None:
        """Cancel the run: running jobs are cancelled on their remotes, the rest never start."""
        self._stop(RunState.CANCELLED, reason)

    def cancel_job(self, job_id: str, reason: str = "cancelled") -> str | None:
        """Cancel one job, the run going on (its dependents follow their trigger rules): one not
        started ends now, one in flight has its remote job cancelled at its next step. Returns
        ``cancelling``, ``cancelled``, the state of a job that ended otherwise, or None."""
        jr = self.run.jobs.get(job_id)
        if jr is None:
            return None
        if jr.state.terminal:
            return jr.state.value
        if self._cancel_instances(job_id, reason):  # a mapped job: all its instances
            return "cancelling"
        if jr.state in (JobState.SUBMITTING, JobState.RUNNING):
            jr.cancel_reason = reason
            jr.wake()
            return "cancelling"
        self._set(jr, JobState.CANCELLED, reason)  # pending, queued or waiting for a retry
        self._job_done(jr)
        self._commit_soon()
        return "cancelled"

    def resume_from(self, jobs: Mapping[str, JobRecord], attempts: list[AttemptRecord]) -> None:
        """Continue a run that did not end, from its jobs and attempts as the store has them:
        in-flight attempts are followed, never submitted again."""
        known = {job_id: job for job_id, job in jobs.items() if job_id in self.run.jobs}
        restore(self.run, known, attempts, count=False)
        if len(known) < len(jobs):  # the instances of mapped jobs that expanded
            instances = self._re_expand(jobs)
            restore(self.run, {i: jobs[i] for i in instances}, attempts, count=False)
        count_ended(self.run)
        self._resumed = True

    def wake(self, job_id: str, attempt: int | None = None) -> bool:
        """Poll ``job_id`` now (a pushed completion); False if it is not being followed, or
        if ``attempt`` is given and is not its current attempt."""
        jr = self.run.jobs.get(job_id)
        if jr is None or (attempt is not None and attempt != jr.attempts):
            return False
        if jr.state is not JobState.RUNNING and not (
            attempt is not None and jr.state is JobState.SUBMITTING
        ):
            return False
        jr.wake()
        return True

    def halt(self, failure: StoreError | LeaseLost) -> None:
        """The store failed (a full disk, another owner): nothing more can be recorded, so stop
        where the store shows the run. No remote job is cancelled (that cancel could not be
        recorded): in-flight jobs are left for ``resume`` to follow, as after a crash.
        :meth:`execute` raises ``failure``."""
        self._store_failure = self._store_failure or failure
        self._halted = True
        self._stop(RunState.FAILED, str(failure))

    def detach(self, reason: str) -> None:
        """Let the run go (a daemon stopping): what is recorded is flushed, nothing more starts,
        no remote job is cancelled; the run stays as the store shows it (running, its in-flight
        attempts with their handles) for the next owner to adopt, as after a crash but with
        nothing in doubt that was answered. :meth:`execute` returns with the run still active
        (``detached`` is then true)."""
        self.detached = True
        self._halted = True  # no remote cancel, no end of the run written
        self._stop(self.run.state, reason)

    async def execute(self) -> Run:
        """Run to its end. The tasks that follow the store's receipts live in a task group that
        outlives the run's own (the first and the last commits are made outside it)."""
        failure: StoreError | LeaseLost | None = None
        try:
            async with anyio.create_task_group() as writes:
                self._writes = writes
                try:
                    await self._execute()
                except (StoreError, LeaseLost) as exc:
                    failure = exc
                finally:  # the run's own pools leave the slots it may share with other runs
                    for pool in self._own_pools:
                        self._slots.limits.pop(pool, None)
                        self._slots.used.pop(pool, None)
        finally:
            self._ended = True  # nothing more is handed over (see Journal._flush)
        if failure is not None:
            raise failure
        return self.run

    async def _execute(self) -> None:
        run = self.run
        if run.state is RunState.QUEUED:
            self._set_run(RunState.RUNNING)
            run.started_at = self._clock.time()
        self._remaining = sum(1 for jr in run.jobs.values() if not jr.state.terminal)
        self._log.info("run.resumed" if self._resumed else "run.started", jobs=len(run.jobs))
        if self._recording is not None:  # the record is being written: the jobs start meanwhile
            self._commit_soon()
        else:
            await self._commit()
        timeout = self.dag.timeout_seconds
        deadline = self._clock.deadline(timeout)
        try:
            with deadline, self._scope:
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    self._start_ready()
                    if self._remaining:
                        tg.start_soon(self._spawner)
                        self._start_worker()
        except* (StoreError, LeaseLost) as group:  # the store refused a write: stop, say why
            raise group.exceptions[0] from None
        if self._store_failure is not None:
            raise self._store_failure
        if self.detached:
            with anyio.CancelScope(shield=True):
                await self._commit()  # what is recorded so far, and nothing more
            self._log.info("run.detached", reason=self._stop_reason)
            return
        if deadline.cancelled_caught and self._stop_state is None:
            self._stop_state, self._stop_reason = (
                RunState.FAILED,
                f"run timed out after {timeout:g}s",
            )
        self._finish_run()
        with anyio.CancelScope(shield=True):
            await self._commit()

    def _start_ready(self) -> None:
        """Queue what can run: roots at the start; after a restart, whatever was queued,
        waiting for a retry, or in flight (adopted, never submitted again)."""
        self._ended_expansions()  # mapped jobs whose instances all ended while we were down
        for jr in self.run.jobs.values():
            state = jr.state
            if state is JobState.PENDING:
                decision = evaluate(jr.rule, jr.counts)
                if decision is Decision.RUN:
                    self._queue(jr)
                elif decision is not Decision.WAIT:  # upstream ended while we were down
                    self._job_done_by_rule(jr, decision)
            elif state is JobState.RETRY_WAIT:  # for the time left until its stored due time
                left = jr.retry_at - self._clock.time() if jr.retry_at is not None else 0.0
                if left > 0:
                    self._log.info(
                        "job.retry_waits", job=jr.id, attempt=jr.attempts, left=round(left, 3)
                    )
                    self._wait_retry(jr, left)
                else:
                    self._queue(jr)
            elif state is JobState.QUEUED:
                heapq.heappush(self._heap, (-jr.priority, next(self._seq), jr))
            elif state in (JobState.SUBMITTING, JobState.RUNNING):
                if jr.id in self._expansions:  # it ends with its instances
                    continue
                jr.adopt = True
                heapq.heappush(self._heap, (-jr.priority, next(self._seq), jr))

    def _job_done_by_rule(self, jr: JobRun, decision: Decision) -> None:
        if decision is Decision.SKIP:
            self._set(jr, JobState.SKIPPED)
        else:
            self._set(jr, JobState.UPSTREAM_FAILED, "upstream failed")
        self._job_done(jr)

    def _finish_run(self) -> None:
        run = self.run
        reason = self._stop_reason or "run cancelled"
        self._due.clear()  # a stopped run's retries wait no more: they are cancelled
        for jr in run.jobs.values():
            if not jr.state.terminal:
                if jr.state in (JobState.RUNNING, JobState.SUBMITTING):
                    jr.notes.append("left running on the remote")
                self._set(jr, JobState.CANCELLED, reason)
        if self._stop_state is not None:
            state = self._stop_state
            run.error = self._stop_reason
        else:
            jobs = run.jobs.values()
            if any(jr.state in FAILURES for jr in jobs):
                run.error = run_failure(
                    {jr.id: (jr.state, jr.rule) for jr in jobs},
                    ((jr.id, child.id) for jr in jobs for child in jr.children),
                )
            else:  # nothing failed: only the final jobs can fail the run (no graph to build,
                # which for 10,000 jobs was enough garbage to set off a full collection)
                finals = {jr.id: (jr.state, jr.rule) for jr in jobs if not jr.children}
                run.error = run_failure(finals, ())
            state = RunState.FAILED if run.error else RunState.SUCCEEDED
        run.ended_at = self._clock.time()
        self._set_run(state)
        if self._sink is not None:  # with a store only
            ended = RunEnded(
                run.dag.name, run.id, state, run.error, run.started_at, run.ended_at, run.ended_at
            )
            ops = self._sink.run_ended(ended)
            if ops:
                self._ops.extend(ops)
                self._sink_pending = True
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
        if self._instance_of and jr.id in self._instance_of:
            self._instance_done(jr)
        if jr.state is JobState.FAILED and self.dag.fail_fast:
            self._stop(RunState.FAILED, f"fail_fast: job {jr.id!r} failed")
        if self._remaining == 0:
            self._need.set()
        self._commit_soon()  # the end goes with the next batch, whatever comes after it

    def _pop_runnable(self) -> JobRun | None:
        heap = self._heap
        if self._stop_state is not None:
            return None
        while heap and self._running < self._limit:
            entry = heapq.heappop(heap)
            jr = entry[2]
            if jr.state is not JobState.QUEUED and not jr.adopt:
                continue
            for pool in jr.pools:
                if self._slots.full(pool):
                    self._blocked[pool].append(entry)
                    self._slots.wait(pool, self._unblock)
                    break
            else:
                self._slots.take(jr.pools)
                self._running += 1
                jr.held = True
                return jr
        return None

    def _release(self, jr: JobRun) -> None:
        if not jr.held:
            return
        jr.held = False
        self._running -= 1
        if jr.pools:
            self._slots.give_back(jr.pools)  # wakes the runs waiting for these pools
        if self._heap:
            self._need.set()

    def _unblock(self, pool: str) -> None:
        """A slot of ``pool`` was given back (by this run or another of the host)."""
        blocked = self._blocked.get(pool)
        if blocked:
            for entry in blocked:
                heapq.heappush(self._heap, entry)
            blocked.clear()
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
                # doubling while workers come back for more (jobs that do not wait need few);
                # once every worker waits on its job, the jobs wait: the rest start together
                ramp = wanted if self._workers and not free else max(1, self._workers)
                spawn = min(wanted, ramp, SPAWN_BATCH)
                for _ in range(spawn):
                    self._start_worker()
                if spawn < wanted:
                    self._need.set()
                    await anyio.lowlevel.checkpoint()

    def _start_worker(self) -> None:
        self._workers += 1
        self._tg.start_soon(self._worker)

    async def _worker(self) -> None:
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
                # a job that never waited (an instantaneous remote) returns without yielding;
                # the slice is shared, so a worker whose job did wait does not yield again
                if time.perf_counter() - self._slice_start > SLICE:
                    self._slice_start = time.perf_counter()
                    await anyio.lowlevel.checkpoint()
        finally:
            self._workers -= 1
