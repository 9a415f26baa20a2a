"""The run's journal: every state change of its jobs, attempts and run, kept as what changed
since the last hand-over to the store (the jobs and attempts marked dirty, and the events of
their steps as records), and handed over in group commits: the writes asked for in a few turns of
the event loop (:data:`FLUSH_TURNS`) go to the store as one batch, in the order they were made.

One step waits: a job that becomes ``queued`` (its upstream done, waiting for a slot) is written
with its next step, when a worker takes it, in one row with it; or once it has waited
:data:`QUEUED_WRITE_WITHIN` seconds; or before the run's own next state. Nothing depends on it
being durable (a run resumed queues its pending jobs again), and a run that starts with a
thousand jobs ready wrote a thousand rows before its first submission could leave. Each job's
events stay in order, and the run's after its jobs'; a queued event can follow later events of
other jobs.

:class:`Journal` is a part of :class:`~orchestrator.engine.executor.RunExecutor` (its state is
the executor's, set up by its constructor): the executor's hot path calls these methods on
itself, as it did when they were written in one class.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from ..clock import Clock
from ..connectors.base import RemoteHandle
from ..errors import StoreError
from ..model.states import (
    ATTEMPT_LIVE,
    JOB_TERMINAL,
    JOB_TRANSITIONS,
    AttemptState,
    JobState,
    RunState,
    check_job_transition,
    check_run_transition,
)
from ..store.base import (
    AttemptEvent,
    AttemptRow,
    Changes,
    JobEvent,
    JobRow,
    Lease,
    LeaseLost,
    Operation,
    Receipt,
    RunTransition,
    StaleWrite,
    StateEvent,
    handle_json,
)
from .ports import EventSink, JobEnded, RunStore
from .records import JobRun, Run

Observer = Callable[[JobRun, JobState], None]
DIRTY_JOB = 1  # JobRun.dirty: the job's record changed since it was handed to the store
DIRTY_ATTEMPT = 2  # its current attempt did

# read on every state change: a global is read in a tenth of the time of an enum's attribute
_RETRY_WAIT = JobState.RETRY_WAIT
_RUNNING = AttemptState.RUNNING
_PENDING = JobState.PENDING
_QUEUED = JobState.QUEUED
# Turns of the event loop a batch gathers writes before it is handed over, unless half the run's
# slots wait on it first. A turn of an idle loop is a few microseconds; a busy loop's turns each
# add the writes of the jobs whose answers came in: with the store's writer on the same core,
# every batch wakes it and it takes the core at once, so four turns instead of one made 40% fewer
# batches and commits (bench_http.py: 413 -> 245 batches for 1,000 jobs, the writer's CPU
# 170-210 -> 120-140 µs a job).
FLUSH_TURNS = 4
# Seconds a job's step to `queued` waits at most for its next step before it is written alone
# (see the module doc): what the store shows of a job waiting for a slot is that old at most.
QUEUED_WRITE_WITHIN = 1.0
# the records of the store are built from all their fields at once, in C (a NamedTuple's own
# constructor is a Python function: twice the time, on the hot path of every state change)
_new = tuple.__new__


class _Batch:
    """The commits waiting for the next batch: they wait for it to be settled (durable or
    refused), one wake-up each, whether it is handed over yet or not."""

    __slots__ = ("done", "error", "waiting")

    def __init__(self) -> None:
        self.done = asyncio.Event()  # asyncio's own: anyio's wraps it, one call more a wait
        self.error: BaseException | None = None
        self.waiting = 0

    def settled(self, error: BaseException | None) -> None:
        """The receipt's callback (:meth:`Receipt.then`)."""
        self.error = error
        self.done.set()


class Journal:
    """State changes, and their hand-over to the store (a part of the run executor)."""

    # the executor's state that the journal reads and writes (set in RunExecutor.__init__)
    run: Run
    lease: Lease | None
    _store: RunStore | None
    _clock: Clock
    _log: Any
    _debug: bool
    _observers: list[Observer]
    _ops: list[Operation]
    _dirty: list[JobRun]
    _queued: list[JobRun]  # jobs whose step to `queued` may still wait (see _wait_queued)
    _events: list[StateEvent]
    _attempt_rows: list[AttemptRow]
    _flush_scheduled: bool
    _flushes = 0  # the batches handed over so far (a scheduled flush made early is void)
    _filling: _Batch | None
    _writes: TaskGroup
    _halted: bool
    _cohort: int
    _after_flush: list[Callable[[], None]]
    _sink: EventSink | None
    _watched: frozenset[str]  # the jobs whose end the sink is told of (with a store only)
    _sink_pending: bool  # a batch to come holds operations of the sink
    _new_jobs: Sequence[str] = ()  # jobs added to the run (a map's instances), to insert
    # a new run's record (see after_record) until it is durable (kept if refused): nothing
    # more of the run is handed over meanwhile
    _recording: Receipt | None = None
    # execute() has returned (or was cancelled from outside, as a crash would stop it): what
    # was not handed over by then never is (a run's record that becomes durable later, say)
    _ended = False

    if TYPE_CHECKING:

        def halt(self, failure: StoreError | LeaseLost) -> None: ...

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
        at = self._clock.time() if terminal or self._store is not None else 0.0
        if terminal:
            jr.ended_at = at
            self._log_end(jr)
        if self._store is not None:
            event = _new(JobEvent, (jr.id, old, new, at, error or None))
            if new is _QUEUED and old is _PENDING and not jr.dirty:
                self._wait_queued(jr, event)  # written with its next step, or soon
            else:
                if (waiting := jr.queued_event) is not None:
                    self._queued_step(jr, waiting)
                self._events.append(event)
                if not jr.dirty:
                    self._dirty.append(jr)
                jr.dirty |= DIRTY_JOB
            if terminal and jr.id in self._watched:
                self._job_ended(jr, at)
        for observer in self._observers:
            observer(jr, old)

    def _job_ended(self, jr: JobRun, at: float) -> None:
        """Tell the sink of ``jr``'s end; what it returns goes in the batch of that end."""
        assert self._sink is not None
        run = self.run
        ops = self._sink.job_ended(
            JobEnded(
                run.dag.name,
                run.id,
                run.state,
                jr.id,
                jr.state,
                jr.error,
                jr.handle,
                jr.attempts,
                jr.started_at,
                jr.ended_at,
                at,
            )
        )
        if ops:
            self._ops.extend(ops)
            self._sink_pending = True

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
            self._queued_steps()
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
        its row as it is now goes to the store with the next batch. The handle goes with the
        step that makes the attempt running, and with every row until one that has it is handed
        to the store (``running``); the rows after that leave it None, which keeps the stored
        one (a handle never changes once accepted): the attempt's end does not encode and send
        it again."""
        if self._store is None:
            return
        if (waiting := jr.queued_event) is not None:
            self._queued_step(jr, waiting)
        at = self._clock.time()
        row = jr.attempt_row
        n = jr.attempts
        if key is not None:
            if row is not None and jr.dirty & DIRTY_ATTEMPT:  # the one before has a step
                self._attempt_rows.append(row)
            jr.attempt_stored = None
            jr.attempt_row = _new(
                AttemptRow, (self.run.id, jr.id, n, None, key, new, None, at, None, None, None)
            )
            self._events.append(_new(AttemptEvent, (jr.id, n, None, new, at, None, None)))
        else:
            if row is None:
                raise StoreError(f"run {self.run.id}: job {jr.id} has no attempt {n} stored")
            if handle is not None:  # refused here, failing the job, if not plain JSON
                handle_json(self.run.id, jr.id, handle)
            jr.attempt_row = _new(
                AttemptRow,
                (
                    row.run_id,
                    row.job_id,
                    row.attempt,
                    jr.attempt_stored,
                    row.key,
                    new,
                    handle if handle is not None or jr.attempt_stored is _RUNNING else row.handle,
                    row.submitted_at,
                    row.accepted_at if handle is None else at,
                    at if new not in ATTEMPT_LIVE else None,
                    row.error if error is None else error,
                ),
            )
            self._events.append(_new(AttemptEvent, (jr.id, n, row.state, new, at, handle, error)))
        if not jr.dirty:
            self._dirty.append(jr)
        jr.dirty |= DIRTY_ATTEMPT

    def _wait_queued(self, jr: JobRun, event: JobEvent) -> None:
        """Keep ``jr``'s step to ``queued`` (``event``) off the next batch (see the module doc):
        its next step takes it along (:meth:`_queued_step`), or the timer, or the run's state."""
        jr.queued_event = event
        if not self._queued:
            asyncio.get_running_loop().call_later(QUEUED_WRITE_WITHIN, self._queued_due)
        self._queued.append(jr)

    def _queued_step(self, jr: JobRun, event: JobEvent) -> None:
        """``jr``'s waiting step to ``queued`` (``event``), into the changes, before anything
        after it."""
        self._events.append(event)
        jr.queued_event = None
        if not jr.dirty:
            self._dirty.append(jr)
        jr.dirty |= DIRTY_JOB

    def _queued_steps(self) -> None:
        """Every step to ``queued`` that still waits, into the changes."""
        for jr in self._queued:
            if (waiting := jr.queued_event) is not None:
                self._queued_step(jr, waiting)
        self._queued = []

    def _queued_due(self) -> None:
        """The steps to ``queued`` have waited long enough: to the store with the next batch."""
        if self._queued and not (self._ended or self._halted):  # halted: nothing more
            self._queued_steps()
            self._commit_soon()

    def _changes(self) -> Changes:
        """The rows of what changed since the last hand-over, one per job and attempt however
        many steps it took, with the events of those steps in order."""
        run_id = self.run.id
        jobs: list[JobRow] = []
        attempts, self._attempt_rows = self._attempt_rows, []
        for jr in self._dirty:
            if jr.dirty & DIRTY_JOB:
                jobs.append(
                    _new(
                        JobRow,
                        (
                            run_id,
                            jr.id,
                            jr.stored_state,
                            jr.state,
                            jr.attempts,
                            jr.error,
                            jr.remote_status,
                            jr.outputs or None,
                            jr.log_tail,
                            jr.notes or None,
                            jr.started_at,
                            jr.ended_at,
                            jr.retry_at,
                        ),
                    )
                )
                jr.stored_state = jr.state
            if jr.dirty & DIRTY_ATTEMPT:
                row = jr.attempt_row
                assert row is not None
                attempts.append(row)
                jr.attempt_stored = row.state
            jr.dirty = 0
        self._dirty = []
        events, self._events = self._events, []
        new_jobs, self._new_jobs = self._new_jobs, ()
        return Changes(run_id, jobs, attempts, events, self.lease, new_jobs)

    def _cut(self) -> None:
        """Put what changed so far into the next batch as it is, before an operation that
        must follow it."""
        if self._events:
            self._ops.append(self._changes())

    def _unwritten(self) -> bool:
        return bool(self._ops or self._events)

    def after_record(self, created: Receipt) -> None:
        """Start the run while the store writes its record (``created``, handed to the store by
        the caller): until it is durable, nothing more of the run is handed over (its first
        steps wait, and then go in one batch), so a run whose record is refused writes nothing,
        and submits no job (a submission waits for its write-ahead record): it halts with the
        refusal."""
        self._recording = created
        created.then(self._recorded)

    async def _commit(self) -> None:
        """Write what changed; returns once it is durable. The commits asked for in a few turns
        of the event loop go to the store as one batch (see :meth:`_flush`)."""
        if self._store is None or not self._unwritten():
            return
        if self._recording is not None and self._recording.error is not None:
            raise self._refused(self._recording.error)  # the run's record was refused: halted
        batch = self._filling
        if batch is None:
            batch = self._filling = _Batch()
        batch.waiting += 1  # a waiter cancelled alone leaves the others waiting
        if batch.waiting >= self._cohort:
            self._flush()  # now: these wait for their commit while the others go on
        else:
            self._schedule_flush()
        await batch.done.wait()  # handed over now or a few turns of the loop from now
        if batch.error is not None:
            raise self._refused(batch.error) from None

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
            asyncio.get_running_loop().call_soon(self._flush_due, self._flushes, FLUSH_TURNS)

    def _flush_due(self, flushes: int, turns: int) -> None:
        """The scheduled flush, ``turns`` turns of the loop from now, unless a flush was made
        since (the cohort's: ``_flushes`` counts them)."""
        if flushes != self._flushes:
            return
        if turns > 1:
            asyncio.get_running_loop().call_soon(self._flush_due, flushes, turns - 1)
            return
        self._flush()

    def _flush(self) -> None:
        """One store batch for every write of the last turns of the loop: the workers that wait for
        durability wait together on its receipt, and the store sees a few large batches instead
        of one per write. Writes stay in the order they were made (the store queues a batch when
        it is submitted). A task of the run's (``_writes``) follows each receipt, for what
        comes after a commit: the sink told, callbacks called, the run halted if refused."""
        assert self._store is not None
        self._flush_scheduled = False
        self._flushes += 1
        if self._ended:
            return  # stopped from outside: as after a crash, what was not written is not
        if self._recording is not None:
            return  # handed over once the run's record is durable (see _recorded)
        if not (self._filling or self._after_flush or self._unwritten()):
            return  # nothing to hand over
        batch, self._filling = self._filling, None
        self._cut()
        ops, self._ops = self._ops, []
        after, self._after_flush = self._after_flush, []
        notify, self._sink_pending = self._sink_pending, False
        receipt = self._store.submit(ops)
        if batch is not None:
            receipt.then(batch.settled)
        if after or notify or batch is None:  # else its waiters see a refusal, and halt
            self._writes.start_soon(self._settled, receipt, after, notify)

    @property
    def record_refusal(self) -> BaseException | None:
        """Why the store refused the run's record (see :meth:`after_record`), if it did: the
        run was never stored, and halted at once."""
        return self._recording.error if self._recording is not None else None

    def _recorded(self, error: BaseException | None) -> None:
        """The run's record is settled: what waited for it is handed over now, or, refused,
        never (the run halts, and the commits waiting fail with its refusal)."""
        if error is None:
            self._recording = None
            if self._filling or self._after_flush or self._unwritten():
                self._flush()
            return
        # the refused receipt stays: _flush hands over nothing more
        self.halt(error if isinstance(error, StoreError | LeaseLost) else StoreError(str(error)))
        held, self._filling = self._filling, None
        self._ops, self._after_flush = [], []
        if held is not None:
            held.settled(error)

    async def _settled(
        self, receipt: Receipt, after: list[Callable[[], None]], notify: bool
    ) -> None:
        with anyio.CancelScope(shield=True):  # a batch handed over is followed to its end
            try:
                await receipt.wait()
            except Exception as error:
                self._refused(error)
                return
        if notify and self._sink is not None:
            self._sink.committed()
        for callback in after:
            callback()

    def _refused(self, error: BaseException) -> StoreError | LeaseLost:
        """The store refused a batch: what the run says of it; the run halts (see ``halt``)."""
        failure: StoreError | LeaseLost
        if isinstance(error, LeaseLost):
            failure = error
        elif isinstance(error, StaleWrite):
            failure = StoreError(f"run {self.run.id}: another process changed it: {error}")
        elif isinstance(error, StoreError):
            failure = error
        else:
            failure = StoreError(f"run {self.run.id}: the store refused a write: {error}")
        if not self._halted:
            self._log.error("run.lost", error=str(error))
        self.halt(failure)
        return failure
