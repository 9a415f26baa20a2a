"""Runs one DAG run to its end.

Event-driven: a job's end updates its dependents' upstream counts and queues those whose trigger
rule says run; nothing rescans the graph. Ready jobs wait in one priority heap. Jobs are run by
worker tasks that each take the best runnable job (respecting the global limit and named
pools), run it, and take the next one; a spawner adds workers only while ready jobs outnumber
free workers, doubling at most per turn of the event loop, so that jobs which never wait on I/O
do not pay for a task each. Jobs waiting for a retry hold neither a worker nor a slot: they wait
in a second heap, by due time, whose one timer task queues each when it falls due.
"""

from __future__ import annotations

import asyncio
import contextlib
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

from .. import crash
from ..clock import Clock, RealClock
from ..connectors.base import (
    Connector,
    LookupUndecided,
    PollResult,
    RemoteHandle,
    RemoteStatus,
    Submission,
)
from ..connectors.registry import job_types
from ..errors import ConnectorError, StoreError, TransientError
from ..outcome import run_failure
from ..retry import Outcome
from ..states import (
    ATTEMPT_LIVE,
    JOB_TERMINAL,
    JOB_TRANSITIONS,
    AttemptState,
    JobState,
    Reconcile,
    RunState,
    check_job_transition,
    check_run_transition,
)
from ..store.base import (
    Changes,
    EnqueueDelivery,
    EventJSON,
    Lease,
    LeaseLost,
    Operation,
    Row,
    RunTransition,
    StaleWrite,
    Store,
    json_text,
    strict_json_text,
)
from ..trigger_rules import Decision, evaluate
from ..webhooks.definitions import Webhook
from ..webhooks.outbox import job_deliveries, run_deliveries
from .ports import ConnectorProvider
from .records import JobRun, Run
from .slots import Slots

DEFAULT_CONCURRENCY = 64
CANCEL_GRACE = 30.0  # seconds a remote cancel may take once the run is being cancelled
MAX_POLL_ERRORS = 10  # consecutive transient poll failures before the attempt errors
SLICE = 0.01  # seconds the workers run jobs back to back before one yields to the loop

Observer = Callable[[JobRun, JobState], None]
DIRTY_JOB = 1  # JobRun.dirty: the job's record changed since it was handed to the store
DIRTY_ATTEMPT = 2  # its current attempt did


_UNKNOWN: Any = object()  # outcome of a submission that policy forbids resubmitting
_ENDED = {outcome: AttemptState(outcome.value) for outcome in Outcome}  # how an attempt ended
# read on every state change: a global is read in a tenth of the time of an enum's attribute
_RETRY_WAIT = JobState.RETRY_WAIT


_ACTIVE = (RunState.QUEUED, RunState.RUNNING)
CLAIM_MARGIN = 60.0  # seconds before a write-ahead record whose accepted handles may claim


class _Claims:
    """``Submission.claimed`` of one reconciliation: the handles read once, when first asked."""

    __slots__ = ("_executor", "_handles", "_jr", "_not_before")

    def __init__(self, executor: RunExecutor, jr: JobRun, not_before: float | None) -> None:
        self._executor, self._jr, self._not_before = executor, jr, not_before
        self._handles: list[RemoteHandle] | None = None

    async def __call__(self) -> list[RemoteHandle]:
        if self._handles is None:
            self._handles = await self._executor._claimed(self._jr, self._not_before)
        return self._handles


_NO_SCOPE = contextlib.nullcontext(None)


class _Attempt:
    """What one attempt ended with."""

    __slots__ = ("error", "outcome", "result")

    def __init__(
        self, outcome: Outcome | None, error: str | None = None, result: PollResult | None = None
    ) -> None:
        self.outcome = outcome  # None: succeeded
        self.error = error
        self.result = result


def _after_store() -> None:
    crash.reached("after_store")


@dataclass(frozen=True, slots=True)
class ExecutorStatistics:
    """What a run's executor holds at one moment (see :meth:`RunExecutor.statistics`)."""

    workers: int  # worker tasks alive
    running: int  # jobs holding a concurrency slot
    retry_waiting: int  # jobs waiting for their next attempt (they hold neither)


class RunExecutor:
    def __init__(
        self,
        run: Run,
        connectors: ConnectorProvider,
        *,
        clock: Clock | None = None,
        concurrency: int | None = None,
        pool_limits: Mapping[str, int] | None = None,
        connection_limits: Mapping[str, int] | None = None,
        rng: random.Random | None = None,
        observers: list[Observer] | None = None,
        cancel_grace: float = CANCEL_GRACE,
        store: Store | None = None,
        slots: Slots | None = None,
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
        self._events: list[EventJSON] = []
        self._attempt_rows: list[Row] = []  # of attempts no longer current
        self._flush_scheduled = False  # a batch of this turn of the loop is due
        self._flush_waiters: list[asyncio.Future[None]] = []
        # waiters enough for a batch of their own: the next ones make a second batch, written
        # while the first one's jobs go on (the writer and the event loop work side by side)
        self._cohort = max(1, self._limit // 2)
        self._after_flush: list[Callable[[], None]] = []
        self.on_deliveries: Callable[[], None] | None = None  # new webhook deliveries committed
        self._store_failure: StoreError | LeaseLost | None = None
        self._deliveries_pending = False
        self._job_hooks: dict[str, list[Webhook]] = {
            job.id: [Webhook.from_json(h) for h in job.webhooks] for job in dag if job.webhooks
        }
        self._dag_hooks = [Webhook.from_json(h) for h in dag.webhooks]
        self._resumed = False
        self._stop_state: RunState | None = None
        self._halted = False  # the store failed: stop where we are, touch no remote
        # the lease this executor writes the run under (fencing): set by its host
        self.lease: Lease | None = None
        self._stop_reason: str | None = None
        self._tokens_base = {"runId": run.id, "dagName": dag.name, **run.params}
        self._tg: Any = None
        self._log = structlog.get_logger("orchestrator.engine").bind(dag=dag.name, run=run.id)
        self._debug = self._log.is_enabled_for(logging.DEBUG)  # once: a state change is hot
        types = job_types()
        for job in dag:
            pools = tuple(f"{run.id}/{pool}" for pool in job.pools)
            if job.connection and f"connection:{job.connection}" in self._slots.limits:
                pools = (*pools, f"connection:{job.connection}")
            jr = run.jobs[job.id] = JobRun(job, types[job.type], pools)
            if store is not None:
                jr.id_json = json_text(job.id)  # in its events
        for job_id, jr in run.jobs.items():
            jr.children = [run.jobs[c] for c in dag.graph.successors(job_id)]
            jr.counts.total = dag.graph.in_degree(job_id)

    # -- public --------------------------------------------------------------------------
    def statistics(self) -> ExecutorStatistics:
        return ExecutorStatistics(
            workers=self._workers, running=self._running, retry_waiting=len(self._due)
        )

    def cancel(self, reason: str = "cancelled") -> None:
        """Cancel the run: running jobs are cancelled on their remotes, the rest never start."""
        self._stop(RunState.CANCELLED, reason)

    def wake(self, job_id: str) -> bool:
        """Poll ``job_id`` now (a pushed completion); False if it is not being followed."""
        jr = self.run.jobs.get(job_id)
        if jr is None or jr.state is not JobState.RUNNING:
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

    async def execute(self) -> Run:
        run = self.run
        if run.state is RunState.QUEUED:
            self._set_run(RunState.RUNNING)
            run.started_at = self._clock.time()
        self._remaining = sum(1 for jr in run.jobs.values() if not jr.state.terminal)
        self._log.info("run.resumed" if self._resumed else "run.started", jobs=len(run.jobs))
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
        if deadline.cancelled_caught and self._stop_state is None:
            self._stop_state, self._stop_reason = (
                RunState.FAILED,
                f"run timed out after {timeout:g}s",
            )
        self._finish_run()
        for pool in self._own_pools:
            self._slots.limits.pop(pool, None)
            self._slots.used.pop(pool, None)
        with anyio.CancelScope(shield=True):
            await self._commit()
        return run

    def _start_ready(self) -> None:
        """Queue what can run: roots at the start; after a restart, whatever was queued,
        waiting for a retry, or in flight (adopted, never submitted again)."""
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
                jr.adopt = True
                heapq.heappush(self._heap, (-jr.priority, next(self._seq), jr))

    def _job_done_by_rule(self, jr: JobRun, decision: Decision) -> None:
        if decision is Decision.SKIP:
            self._set(jr, JobState.SKIPPED)
        else:
            self._set(jr, JobState.UPSTREAM_FAILED, "upstream failed")
        self._job_done(jr)

    # -- states --------------------------------------------------------------------------
    def _set(self, jr: JobRun, new: JobState, error: str | None = None) -> None:
        old = jr.state
        if new not in JOB_TRANSITIONS[old]:
            check_job_transition(old, new)  # raises, naming both states
        jr.state = new
        if error is not None:
            jr.error = error
        if old is _RETRY_WAIT:
            jr.retry_at = None
        if self._debug:
            self._log.debug(
                "job.state", job=jr.id, attempt=jr.attempts, old=old.value, new=new.value
            )
        terminal = new in JOB_TERMINAL
        if terminal:
            jr.ended_at = self._clock.time()
            self._log_end(jr)
        if self._store is not None:
            at = self._clock.time()
            at_us = round(at * 1_000_000)
            data = f'{{"error":{json_text(error)}}}' if error else "null"
            # the event as event_json encodes it, in one step (states need no escaping)
            self._events.append(
                f'[{jr.id_json},"job","{old._value_}","{new._value_}",{at_us},{data}]'
            )
            if not jr.dirty:
                self._dirty.append(jr)
            jr.dirty |= DIRTY_JOB
            if terminal and jr.id in self._job_hooks:
                for delivery in job_deliveries(self._job_hooks[jr.id], self.run, jr, at):
                    self._ops.append(EnqueueDelivery(delivery))
                    self._deliveries_pending = True
        for observer in self._observers:
            observer(jr, old)

    def _log_end(self, jr: JobRun) -> None:
        state = jr.state
        if state is JobState.SUCCEEDED or state is JobState.SKIPPED:
            self._log.info("job.ended", job=jr.id, attempt=jr.attempts, state=state.value)
        else:
            self._log.warning(
                "job.ended", error=jr.error, job=jr.id, attempt=jr.attempts, state=state.value
            )

    def _set_run(self, new: RunState) -> None:
        old = self.run.state
        check_run_transition(old, new)
        self.run.state = new
        if self._store is not None:
            error = self.run.error if new.terminal else None
            self._cut()  # the run's event after those of its jobs so far
            self._ops.append(
                RunTransition(self.run.id, old, new, self._clock.time(), error, self.lease)
            )

    def _attempt_write(
        self,
        jr: JobRun,
        new: AttemptState,
        *,
        key: str | None = None,
        handle: RemoteHandle | None = None,
        error: str | None = None,
    ) -> None:
        """Record a step of the current attempt (a ``key`` starts a new one, ``submitting``):
        its row as it is now goes to the store with the next batch."""
        if self._store is None:
            return
        at = self._clock.time()
        row = jr.attempt_row
        n = jr.attempts
        state = new._value_  # rows and events carry plain values
        if key is not None:
            if row is not None and jr.dirty & DIRTY_ATTEMPT:  # the one before has a step
                self._attempt_rows.append(row)
            jr.attempt_stored = None
            jr.attempt_row = (self.run.id, jr.id, n, None, key, state, None, at, None, None, None)
            old = "null"
            data = f'{{"attempt":{n}}}'
        else:
            if row is None:
                raise StoreError(f"run {self.run.id}: job {jr.id} has no attempt {n} stored")
            # the row's fields by position (AttemptRow's order)
            old = f'"{row[5]}"'
            data = f'{{"attempt":{n}'
            handle_json = row[6]
            accepted_at = row[8]
            if handle is not None:
                try:
                    handle_json = strict_json_text(handle)
                except (TypeError, ValueError) as exc:
                    raise StoreError(
                        f"run {self.run.id}: job {jr.id}: its remote handle cannot be stored "
                        f"({exc})"
                    ) from None
                accepted_at = at
                data += f',"handle":{handle_json}'
            if error is not None:
                data += f',"error":{json_text(error)}'
            data += "}"
            jr.attempt_row = (
                row[0],
                row[1],
                row[2],
                jr.attempt_stored,
                row[4],
                state,
                handle_json,
                row[7],
                accepted_at,
                at if new not in ATTEMPT_LIVE else None,
                error if error is not None else row[10],
            )
        # the event as event_json encodes it (attempt states need no escaping)
        at_us = round(at * 1_000_000)
        self._events.append(f'[{jr.id_json},"attempt",{old},"{state}",{at_us},{data}]')
        if not jr.dirty:
            self._dirty.append(jr)
        jr.dirty |= DIRTY_ATTEMPT

    def _changes(self) -> Changes:
        """The rows of what changed since the last hand-over, one per job and attempt however
        many steps it took, with the events of those steps in order. Rows are plain tuples in
        the order of JobRow and AttemptRow's fields (building those would cost more)."""
        run_id = self.run.id
        jobs: list[Row] = []
        attempts, self._attempt_rows = self._attempt_rows, []
        for jr in self._dirty:
            if jr.dirty & DIRTY_JOB:
                outputs, notes = jr.outputs, jr.notes
                jobs.append(
                    (
                        run_id,
                        jr.id,
                        jr.stored_state._value_,
                        jr.state._value_,
                        jr.attempts,
                        jr.error,
                        jr.remote_status,
                        json_text(outputs) if outputs else None,
                        jr.log_tail,
                        json_text(notes) if notes else None,
                        jr.started_at,
                        jr.ended_at,
                        jr.retry_at,
                    )
                )
                jr.stored_state = jr.state
            if jr.dirty & DIRTY_ATTEMPT:
                row = jr.attempt_row
                assert row is not None
                attempts.append(row)
                jr.attempt_stored = row[5]
            jr.dirty = 0
        self._dirty = []
        events, self._events = self._events, []
        return Changes(run_id, jobs, attempts, events, self.lease)

    def _cut(self) -> None:
        """Put what changed so far into the next batch as it is, before an operation that
        must follow it."""
        if self._events:
            self._ops.append(self._changes())

    def _unwritten(self) -> bool:
        return bool(self._ops or self._events)

    async def _commit(self) -> None:
        """Write what changed; returns once it is durable. The commits asked for in one turn of
        the event loop go to the store as one batch (see :meth:`_flush`)."""
        if self._store is None or not self._unwritten():
            return
        waiter = asyncio.get_running_loop().create_future()
        self._flush_waiters.append(waiter)  # a waiter cancelled alone leaves the others waiting
        if len(self._flush_waiters) >= self._cohort:
            self._flush()  # now: these wait for their commit while the others go on
        else:
            self._schedule_flush()
        await waiter

    def _commit_soon(self, after: Callable[[], None] | None = None) -> None:
        """Hand what changed to the store with the next batch, without waiting for it; ``after``
        is called once it is committed."""
        if self._store is None or not self._unwritten():
            return
        self._schedule_flush()
        if after is not None:
            self._after_flush.append(after)

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """One store batch for every write of this turn of the loop: the workers that wait for
        durability wait together, and the store sees a few large batches instead of one per
        write. Writes stay in the order they were made."""
        assert self._store is not None
        self._flush_scheduled = False
        if not (self._flush_waiters or self._after_flush or self._unwritten()):
            return  # flushed early, in this turn of the loop
        waiters, self._flush_waiters = self._flush_waiters, []
        self._cut()
        ops, self._ops = self._ops, []
        after, self._after_flush = self._after_flush, []
        notify, self._deliveries_pending = self._deliveries_pending, False

        def done(error: BaseException | None) -> None:
            if error is not None:
                self._log.error("run.lost", error=str(error))
                failure: StoreError | LeaseLost
                if isinstance(error, LeaseLost):
                    failure = error
                elif isinstance(error, StaleWrite):
                    failure = StoreError(f"run {self.run.id}: another process changed it: {error}")
                elif isinstance(error, StoreError):
                    failure = error
                else:
                    failure = StoreError(f"run {self.run.id}: the store refused a write: {error}")
                for waiter in waiters:
                    if not waiter.cancelled():
                        waiter.set_exception(failure)
                self.halt(failure)
                return
            for waiter in waiters:
                if not waiter.cancelled():
                    waiter.set_result(None)
            if notify and self.on_deliveries is not None:
                self.on_deliveries()
            for callback in after:
                callback()

        self._store.apply_nowait(ops, done)

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
            run.error = run_failure(
                {jr.id: (jr.state, jr.rule) for jr in run.jobs.values()},
                ((jr.id, child.id) for jr in run.jobs.values() for child in jr.children),
            )
            state = RunState.FAILED if run.error else RunState.SUCCEEDED
        run.ended_at = self._clock.time()
        self._set_run(state)
        if self._store is not None and self._dag_hooks:
            for delivery in run_deliveries(self._dag_hooks, run, run.ended_at):
                self._ops.append(EnqueueDelivery(delivery))
                self._deliveries_pending = True
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

    # -- retry waits ---------------------------------------------------------------------
    def _wait_retry(self, jr: JobRun, delay: float) -> None:
        """Hold ``jr`` in the due-time queue until its next attempt is due: a waiting retry
        holds no worker and no slot. Then it is queued like any ready job."""
        entry = (self._clock.monotonic() + delay, next(self._seq), jr)
        heapq.heappush(self._due, entry)
        if not self._timing:
            self._timing = True
            self._tg.start_soon(self._wake_due)
        elif self._due[0] is entry and self._timer is not None:
            self._timer.cancel()  # due before the one it sleeps for

    async def _wake_due(self) -> None:
        """The timer of the due-time queue: sleeps until the first due time, queues what is
        due, and ends when no retry waits (the next one starts it again)."""
        due = self._due
        try:
            while due:
                wait = due[0][0] - self._clock.monotonic()
                if wait > 0:
                    with anyio.CancelScope() as self._timer:
                        await self._clock.sleep(wait)
                    self._timer = None
                    continue
                jr = heapq.heappop(due)[2]
                if jr.state is JobState.RETRY_WAIT:
                    self._queue(jr)  # back in line like any ready job: slots and pools apply
        finally:
            self._timing = False
            self._timer = None

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

    # -- one job -------------------------------------------------------------------------
    async def _run_job(self, jr: JobRun) -> None:
        if jr.started_at is None:
            jr.started_at = self._clock.time()
        if jr.adopt:
            jr.adopt = False
            result = await self._adopt(jr)
        else:
            jr.attempts += 1
            self._set(jr, JobState.SUBMITTING)
            result = await self._attempt(jr)
        if result.outcome is None:
            jr.error = None
            self._attempt_write(jr, AttemptState.SUCCEEDED)
            self._set(jr, JobState.SUCCEEDED)
            self._job_done(jr)
            return
        if result.outcome is _UNKNOWN:
            self._attempt_write(jr, AttemptState.UNKNOWN, error=result.error)
            self._set(jr, JobState.UNKNOWN, result.error)
            self._job_done(jr)
            return
        self._attempt_write(jr, _ENDED[result.outcome], error=result.error)
        if jr.policy.should_retry(jr.attempts, result.outcome):
            delay = jr.policy.delay(jr.attempts, self._rng)
            jr.retry_at = self._clock.time() + delay  # stored: a resumed run waits what is left
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
            self._wait_retry(jr, delay)
            self._commit_soon()  # durable without anyone waiting for it
            return
        self._set(jr, JobState.FAILED, result.error)
        self._job_done(jr)

    def _submission(self, jr: JobRun) -> Submission:
        job = jr.job
        params: Mapping[str, Any] = job.params
        if jr.has_tokens:
            params = jr.job_type.substitute(
                params, {**self._tokens_base, "jobId": jr.id, "attempt": jr.attempts}
            )
        if job.call is not None:
            params = {**params, "call": job.call, "__run_params__": self.run.params}
        key = f"{self.run.id}/{jr.id}/{jr.attempts}"
        return Submission(self.dag.name, self.run.id, jr.id, jr.attempts, key, params, wake=jr.wake)

    async def _attempt(self, jr: JobRun) -> _Attempt:
        """Submit a new attempt (written ahead), then follow it to its end."""
        connector = self._connectors.get(jr.job_type, jr.job.connection)
        submission = self._submission(jr)
        if self._store is not None:
            self._attempt_write(jr, AttemptState.SUBMITTING, key=submission.idempotency_key)
            await self._commit()  # durable before the request leaves
        crash.reached("before_submit")
        handle: RemoteHandle | None = None
        try:
            with self._clock.deadline(jr.timeout) if jr.timeout is not None else _NO_SCOPE as scope:
                try:
                    handle = await connector.submit(submission)
                except TransientError as exc:
                    if not exc.ambiguous:
                        return _Attempt(Outcome.ERROR, f"submit failed: {exc}")
                    found = await self._settle(jr, connector, submission, str(exc))
                    if isinstance(found, _Attempt):
                        return found
                    handle = found
                except ConnectorError as exc:
                    return _Attempt(Outcome.ERROR, f"submit failed: {exc}")
                except Exception as exc:  # a connector bug: the request may have gone out
                    self._log.exception("job.connector_bug", job=jr.id, attempt=jr.attempts)
                    why = f"connector error {type(exc).__name__}: {exc}"
                    found = await self._settle(jr, connector, submission, why)
                    if isinstance(found, _Attempt):
                        return found
                    handle = found
                crash.reached("after_accept")
                await self._accepted(jr, handle)
                result = await self._follow(jr, connector, handle)
            if scope is not None and scope.cancelled_caught:
                return await self._timed_out(jr, connector, handle)
            return result
        except anyio.get_cancelled_exc_class():
            await self._cancelled(jr, connector, handle)
            raise

    async def _accepted(self, jr: JobRun, handle: RemoteHandle) -> None:
        """Store the handle and count the attempt as running; returns once the handle is
        durable when polls go to a remote (job types with a connection), so that no poll
        leaves while the store still says ``submitting``; in-process job types poll in memory
        and only hand the handle to the next group commit."""
        jr.handle = handle
        if self._store is None:
            self._set(jr, JobState.RUNNING)
            return
        try:
            self._attempt_write(jr, AttemptState.RUNNING, handle=handle)
        except StoreError as exc:  # a handle the store cannot keep: the run stops
            self._stop(RunState.FAILED, str(exc))
            await anyio.lowlevel.checkpoint()  # cancelled: this job is cancelled too
            raise
        self._set(jr, JobState.RUNNING)
        if jr.job_type.needs_connection:
            await self._commit()  # in the group commit of this turn of the loop
            crash.reached("after_store")
        else:  # polled in this process, nothing is sent: no need to wait for the commit
            self._commit_soon(after=_after_store)

    async def _settle(
        self, jr: JobRun, connector: Connector, submission: Submission, why: str
    ) -> RemoteHandle | _Attempt:
        """An ambiguous submission: the remote job it started, else what the policy says (a
        resubmission of the same attempt included)."""
        decision, found, message = await self._reconcile(jr, connector, submission, why)
        if decision is Reconcile.ADOPT:
            assert found is not None
            return found
        if decision is Reconcile.UNKNOWN:
            return _Attempt(_UNKNOWN, f"{message}; not sent again (onAmbiguousSubmit: unknown)")
        if decision is Reconcile.FAIL:
            return _Attempt(Outcome.ERROR, f"{message}; not sent again (onAmbiguousSubmit: fail)")
        self._log.warning("job.resubmitting", job=jr.id, attempt=jr.attempts, reason=message)
        try:
            return await connector.submit(submission)
        except ConnectorError as exc:
            return _Attempt(Outcome.ERROR, f"submitted again (the first outcome unknown): {exc}")

    async def _reconcile(
        self, jr: JobRun, connector: Connector, submission: Submission, why: str
    ) -> tuple[Reconcile, RemoteHandle | None, str]:
        """The submission may or may not have reached the remote: look it up (a remote job
        started since the write-ahead record that no other attempt claims) and adopt it, else
        decide by the job's ``onAmbiguousSubmit`` policy. Returns the decision, the handle of
        the job to adopt, and what was found (for the job's error)."""
        row = jr.attempt_row
        submission.not_before = row[7] if row is not None else None
        submission.claimed = _Claims(self, jr, submission.not_before)
        outcome = "not found on the remote"
        try:
            found = await connector.find(submission)
        except LookupUndecided as exc:
            self._log.warning("job.find_undecided", job=jr.id, attempt=jr.attempts, why=str(exc))
            found, outcome = None, f"the remote's lookup cannot decide: {exc}"
        except ConnectorError as exc:
            self._log.warning("job.find_failed", job=jr.id, attempt=jr.attempts, error=str(exc))
            found, outcome = None, f"the lookup failed: {exc}"
        if found is not None:
            self._log.info("job.reconciled", job=jr.id, attempt=jr.attempts, remote=found)
            return Reconcile.ADOPT, found, "found on the remote"
        policy = Reconcile(jr.job.on_ambiguous_submit or jr.job_type.ambiguous_default)
        return policy, None, f"submission outcome unknown ({why}); {outcome}"

    async def _claimed(self, jr: JobRun, not_before: float | None) -> list[RemoteHandle]:
        """The handles held by every attempt but ``jr``'s current one that may have been
        accepted since ``not_before``: this run's in memory, and every stored run's."""
        handles = [o.handle for o in self.run.jobs.values() if o is not jr and o.handle]
        if self._store is None:
            return handles
        since = (not_before or 0.0) - CLAIM_MARGIN
        runs = {r.id: r for r in await self._store.list_runs(states=_ACTIVE, limit=10_000)}
        for record in await self._store.list_runs(limit=200):
            if record.ended_at is None or record.ended_at >= since:
                runs.setdefault(record.id, record)
        for run_id in runs:
            for attempt in await self._store.get_attempts(run_id):
                if attempt.handle is None or (attempt.accepted_at or since) < since:
                    continue
                mine = run_id == self.run.id and attempt.job_id == jr.id
                if not (mine and attempt.attempt == jr.attempts):
                    handles.append(attempt.handle)
        return handles

    async def _adopt(self, jr: JobRun) -> _Attempt:
        """After a restart: follow the attempt that was in flight, never submit it again."""
        connector = self._connectors.get(jr.job_type, jr.job.connection)
        handle = jr.handle
        submission = self._submission(jr)
        self._log.info("job.adopted", job=jr.id, attempt=jr.attempts, remote=handle)
        try:
            with self._clock.deadline(jr.timeout) if jr.timeout is not None else _NO_SCOPE as scope:
                if handle is None:  # stored as submitting: did the request reach the remote?
                    found = await self._settle(jr, connector, submission, "the process stopped")
                    if isinstance(found, _Attempt):
                        return found
                    handle = found
                    await self._accepted(jr, handle)
                result = await self._follow(jr, connector, handle)
            if scope is not None and scope.cancelled_caught:
                return await self._timed_out(jr, connector, handle)
            return result
        except anyio.get_cancelled_exc_class():
            await self._cancelled(jr, connector, handle)
            raise

    async def _timed_out(
        self, jr: JobRun, connector: Connector, handle: RemoteHandle | None
    ) -> _Attempt:
        if handle is not None:
            with anyio.move_on_after(self._cancel_grace):
                await self._cancel_remote(jr, connector, handle)
        return _Attempt(Outcome.TIMEOUT, f"timed out after {jr.timeout:g}s")

    async def _cancelled(
        self, jr: JobRun, connector: Connector, handle: RemoteHandle | None
    ) -> None:
        if self._halted:
            # The store failed: a cancel sent now could not be recorded, so the remote job is
            # left running as the store shows it, for `resume` to follow (as after a crash).
            return
        with anyio.CancelScope(shield=True):
            if handle is not None:
                with anyio.move_on_after(self._cancel_grace):
                    await self._cancel_remote(jr, connector, handle)
            if not jr.state.terminal:
                self._attempt_write(jr, AttemptState.CANCELLED, error=self._stop_reason)
                self._set(jr, JobState.CANCELLED, self._stop_reason or "run cancelled")
                self._remaining -= 1

    async def _cancel_remote(self, jr: JobRun, connector: Connector, handle: RemoteHandle) -> None:
        """Cancel on the remote, retried with backoff until it acknowledges; the caller bounds
        the time. A permanent refusal (the job is gone, say) ends the tries."""
        fields = {"job": jr.id, "attempt": jr.attempts}
        tries = 0
        while True:
            tries += 1
            try:
                outcome = await connector.cancel(handle)
                break
            except TransientError as exc:
                self._log.warning("job.cancel_retrying", error=str(exc), tries=tries, **fields)
                await self._clock.sleep(min(30.0, 0.5 * 2 ** min(tries - 1, 10)))
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
            except Exception as exc:  # a connector bug must not take the run down
                self._log.exception("job.connector_bug", job=jr.id, attempt=jr.attempts)
                return _Attempt(Outcome.ERROR, f"polling failed: {type(exc).__name__}: {exc}")
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
            crash.reached("mid_poll")
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
