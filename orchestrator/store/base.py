"""The ``Store`` protocol: what the engine writes and reads to make runs durable.

Writes are *operations* applied in order, in one transaction per batch, each state change
compare-and-set on the state the engine expects; every state change appends an event in the same
transaction. Jobs and attempts are written as rows (what they are now, :class:`Changes`) rather
than step by step: the engine hands over each changed row once per batch, with the events of
its steps, and the store writes it with one compare-and-set, so that the cost of durability
does not grow with the number of steps. Rows and events are typed records with Python values;
each backend encodes them as it stores them (no wire format crosses this boundary). Batches
from many jobs are group-committed: a receipt settles once the batch is committed (durable
against a crash of this process). The protocol is written so that a PostgreSQL implementation
can follow: run ownership is a lease row (owner, epoch, heartbeat) and webhook deliveries are an
outbox table written in the transaction of the state change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

from ..errors import OrchestratorError
from ..model.states import AttemptState, JobState, RunState
from .jsontext import handle_json as handle_json
from .jsontext import json_text as json_text
from .jsontext import strict_json_text as strict_json_text
from .ticks import RecordTick as RecordTick
from .ticks import TickRecord as TickRecord

# -- what is stored ---------------------------------------------------------------------------


class Lease(NamedTuple):
    """Who may write a run: its owner and the epoch of the owner's claim. Every claim bumps
    the epoch, so a write by an earlier owner, even one that is still alive (paused, cut off),
    is refused (fencing, as Temporal's RangeID)."""

    owner: str
    epoch: int


@dataclass(slots=True)
class RunRecord:
    id: str
    dag: str
    dag_hash: str
    params: dict[str, Any]
    trigger: str
    state: RunState
    created_at: float
    owner: str | None = None  # who runs it now: "host:pid:start" (see orchestrator.store.owner)
    epoch: int = 0  # bumped each time another owner takes the run over
    heartbeat_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    error: str | None = None
    nominal_at: float | None = None  # the nominal time of the schedule tick that started it


@dataclass(slots=True)
class JobRecord:
    run_id: str
    job_id: str
    state: JobState
    attempts: int = 0
    error: str | None = None
    remote_status: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    log_tail: str | None = None
    notes: list[str] = field(default_factory=list)
    started_at: float | None = None
    ended_at: float | None = None
    retry_at: float | None = None  # in retry_wait: when its next attempt is due (wall clock)


@dataclass(slots=True)
class AttemptRecord:
    run_id: str
    job_id: str
    attempt: int
    key: str  # the idempotency key sent to the remote
    state: AttemptState
    handle: dict[str, Any] | None = None  # the remote handle, plain JSON
    submitted_at: float | None = None  # recorded before the request left
    accepted_at: float | None = None  # the remote answered with a handle
    ended_at: float | None = None
    error: str | None = None


@dataclass(slots=True)
class Event:
    seq: int
    run_id: str
    job_id: str | None  # None: an event of the run
    kind: str  # "run" or "job" or "attempt"
    old: str | None
    new: str
    at: float
    data: dict[str, Any] = field(default_factory=dict)


DELIVERY_STATES = ("pending", "delivered", "failed", "disabled")


@dataclass(slots=True)
class DeliveryRecord:
    """One webhook event in the outbox: its bytes are fixed when it is written, so every retry
    sends the same body under the same ``webhook-id``."""

    id: str  # the webhook-id, "msg_..."
    run_id: str
    job_id: str | None  # None: a DAG-level webhook (the run ended)
    dag: str
    webhook: str  # the webhook's name
    event: str  # onJobSuccess | onJobFailure | onJobDone
    url: str
    method: str
    headers: dict[str, str]
    body: bytes
    secret_refs: list[str]  # secretKey values as written (may be ${ENV} references)
    ssl_verification: bool
    created_at: float
    state: str = "pending"  # one of DELIVERY_STATES
    attempts: int = 0
    next_at: float | None = None
    last_status: int | None = None
    last_error: str | None = None
    delivered_at: float | None = None


@dataclass(slots=True)
class DeliveryAttempt:
    delivery_id: str
    number: int
    at: float
    status: int | None  # HTTP status, None when no answer came
    error: str | None
    duration: float


# -- what is written --------------------------------------------------------------------------


@dataclass(slots=True)
class CreateRun:
    """A new run with its DAG definition (stored once per hash) and all its jobs ``pending``."""

    run: RunRecord
    dag_definition: dict[str, Any]
    job_ids: Sequence[str]
    # refuse (ActiveRunExists) when another run of the same DAG is queued or running: the
    # check and the insert are one transaction, so two processes cannot both pass it
    exclusive: bool = False
    # the definition already encoded as JSON (a store may write it as it is)
    definition_json: str | None = None
    # a client's key for this run (an API's Idempotency-Key): unique, a run with the same key
    # refuses the batch (RunExists, naming that run), so that retried requests make one run
    idempotency_key: str | None = None


@dataclass(slots=True)
class RunTransition:
    run_id: str
    expected: RunState
    new: RunState
    at: float
    error: str | None = None
    lease: Lease | None = None  # the writer's lease on the run: refused if no longer its own


class JobRow(NamedTuple):
    """A job's record as the engine has it now, written only if the stored state is still
    ``expected`` (compare-and-set). The fields are those of :class:`JobRecord`, all of them: a
    row replaces the record."""

    run_id: str
    job_id: str
    expected: JobState  # the stored state it moves from
    state: JobState
    attempts: int = 0
    error: str | None = None
    remote_status: str | None = None
    outputs: Mapping[str, Any] | None = None  # None (or empty) for none
    log_tail: str | None = None
    notes: Sequence[str] | None = None  # None (or empty) for none
    started_at: float | None = None
    ended_at: float | None = None
    retry_at: float | None = None


class AttemptRow(NamedTuple):
    """An attempt as the engine has it now. ``expected`` None inserts it (the engine inserts
    it ``submitting``, before its request leaves; its key is unique); otherwise the stored
    attempt must still be in ``expected``, a live state (``submitting`` or ``running``).
    ``key`` and ``submitted_at`` never change once inserted; a ``None`` handle, ``accepted_at``
    or ``error`` keeps the stored one."""

    run_id: str
    job_id: str
    attempt: int
    expected: AttemptState | None
    key: str
    state: AttemptState
    handle: Mapping[str, Any] | None = None  # the remote handle, plain JSON
    submitted_at: float | None = None
    accepted_at: float | None = None
    ended_at: float | None = None
    error: str | None = None


class JobEvent(NamedTuple):
    """A job's state change, for the run's event log (``at`` in seconds)."""

    job_id: str
    old: JobState
    new: JobState
    at: float
    error: str | None = None


class AttemptEvent(NamedTuple):
    """A step of one of a job's attempts, for the run's event log: ``old`` None when the
    attempt starts (``submitting``); ``handle`` when the remote accepted it."""

    job_id: str
    attempt: int
    old: AttemptState | None
    new: AttemptState
    at: float
    handle: Mapping[str, Any] | None = None
    error: str | None = None


StateEvent = JobEvent | AttemptEvent


def event_data(event: StateEvent) -> dict[str, Any]:
    """What an event's ``data`` holds when it is read back (:class:`Event`)."""
    if isinstance(event, JobEvent):
        return {"error": event.error} if event.error is not None else {}
    data: dict[str, Any] = {"attempt": event.attempt}
    if event.handle is not None:
        data["handle"] = event.handle
    if event.error is not None:
        data["error"] = event.error
    return data


@dataclass(slots=True)
class Changes:
    """What changed in one run since the engine last wrote it: the rows of the jobs and
    attempts that moved (each one compare-and-set on its stored state; a terminal state is
    never left) and the state changes that led there, in the order they happened, appended to
    the event log. Several steps of one job since the last write are one row and several
    events."""

    run_id: str
    jobs: Sequence[JobRow] = field(default_factory=list)
    attempts: Sequence[AttemptRow] = field(default_factory=list)
    events: Sequence[StateEvent] = field(default_factory=list)
    lease: Lease | None = None  # the writer's lease on the run: refused if no longer its own
    # jobs the run adds (the instances of a mapped job), ``pending``, before its rows apply
    new_jobs: Sequence[str] = ()


@dataclass(slots=True)
class EnqueueDelivery:
    """Write a webhook delivery to the outbox, in the transaction of the change causing it."""

    delivery: DeliveryRecord


Operation = CreateRun | RunTransition | Changes | EnqueueDelivery | RecordTick


class StaleWrite(OrchestratorError):
    """A compare-and-set found another state than expected: someone else owns the run. Not a
    :class:`StoreError`: the store works, the writer lost the run."""


class LeaseLost(StaleWrite):
    """A write or heartbeat carried a lease (owner, epoch) that the run no longer has: another
    owner claimed it. The writer must stop, writing nothing and touching no remote job."""


class ActiveRunExists(StaleWrite):
    """An exclusive ``CreateRun`` found another active run of the same DAG."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} of this DAG is active")
        self.run_id = run_id


class RunExists(StaleWrite):
    """A ``CreateRun`` whose idempotency key another run has: ``run_id`` is that run."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} has this idempotency key")
        self.run_id = run_id


class TickExists(StaleWrite):
    """A ``RecordTick`` found its tick (DAG, nominal time) recorded already: another scheduler,
    or this one before a crash, fired it. Its batch, and the run in it, are not written."""

    def __init__(self, dag: str, nominal: float) -> None:
        when = datetime.fromtimestamp(nominal, UTC).isoformat()
        super().__init__(f"the tick of DAG {dag} at {when} is recorded already")
        self.dag = dag
        self.nominal = nominal


class Receipt:
    """The answer to a batch handed to :meth:`Store.submit`: ``await receipt.wait()`` returns
    once the batch is durable, or raises why it was refused. Any number of tasks may wait on
    one receipt, and callbacks be given it (:meth:`then`); the store settles it on the event
    loop the batch was submitted from."""

    __slots__ = ("_then", "_written", "error")

    def __init__(self) -> None:
        # asyncio's own event (anyio's wraps it): a wait that finds it set returns at once
        self._written = asyncio.Event()
        self.error: BaseException | None = None
        self._then: list[Callable[[BaseException | None], None]] | None = None

    def settle(self, error: BaseException | None = None) -> None:
        self.error = error
        self._written.set()
        then, self._then = self._then, None
        if then is not None:
            for callback in then:
                callback(error)

    def then(self, callback: Callable[[BaseException | None], None]) -> None:
        """Call ``callback`` with the batch's refusal (None once durable) when it is settled,
        at once if it is: what waits on a batch without a task of its own."""
        if self._written.is_set():
            callback(self.error)
        elif self._then is None:
            self._then = [callback]
        else:
            self._then.append(callback)

    @property
    def settled(self) -> bool:
        return self._written.is_set()

    async def wait(self) -> None:
        await self._written.wait()
        if self.error is not None:
            raise self.error


class Store(Protocol):
    def submit(self, ops: Sequence[Operation]) -> Receipt:
        """Queue ``ops`` as one batch, now: batches are written in the order they were
        submitted, each in one transaction. A transition whose current state is not its
        ``expected`` state refuses the batch with :class:`StaleWrite`, and nothing of it is
        written; a terminal state is never overwritten; an operation that carries a ``lease``
        the run no longer has refuses it with :class:`LeaseLost`. The receipt says when it is
        durable, or why not. The contract is async: no callbacks, no futures."""
        ...

    async def apply(self, ops: Sequence[Operation]) -> None:
        """:meth:`submit` ``ops`` and wait for the receipt."""
        ...

    async def get_run(self, run_id: str) -> RunRecord | None: ...

    async def find_run_ids(self, prefix: str, limit: int = 10) -> list[str]:
        """The ids of the runs that start with ``prefix`` (matched as text, no wildcards), in
        order, at most ``limit``."""
        ...

    async def list_runs(
        self,
        *,
        dag: str | None = None,
        states: Sequence[RunState] | None = None,
        limit: int = 100,
        trigger: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        after: tuple[float, str] | None = None,
    ) -> list[RunRecord]:
        """Newest first (``created_at``, then ``id``, descending), filtered by each argument
        given: created in ``[created_after, created_before)``; ``after`` is a cursor, the
        ``(created_at, id)`` of the last run of the previous page."""
        ...

    async def get_jobs(self, run_id: str) -> dict[str, JobRecord]: ...

    async def get_attempts(self, run_id: str) -> list[AttemptRecord]:
        """Every attempt of the run, by job then attempt number."""
        ...

    async def get_events(self, run_id: str) -> list[Event]:
        """The run's append-only event log, in order."""
        ...

    async def events_since(self, run_id: str, seq: int, limit: int = 1000) -> list[Event]:
        """The run's events whose ``seq`` is above ``seq``, in order, at most ``limit``: what an
        event stream or a second replica reads, passing the ``seq`` of the last event it has
        (0 for all of them). An unknown run has none.

        An event's ``seq`` is numbered by the store when its batch commits, from one counter
        for the whole store: it never changes once read, and it grows strictly with every event
        committed, so a run's events are strictly increasing but not consecutive (the events of
        other runs fall in between). An event committed after a read has a greater ``seq`` than
        any event that read returned."""
        ...

    async def events_after(self, seq: int, limit: int = 1000) -> list[Event]:
        """Every run's events whose ``seq`` is above ``seq``, in order, at most ``limit``: the
        store-wide feed that an event stream follows (see :meth:`events_since` for ``seq``)."""
        ...

    async def last_event_seq(self) -> int:
        """The ``seq`` of the last event committed (0 for none): where a feed starts."""
        ...

    async def get_dag_definition(self, dag_hash: str) -> dict[str, Any] | None: ...

    async def claim_run(
        self,
        run_id: str,
        owner: str,
        *,
        expected_owner: str | None,
        at: float,
        expired_after: float | None = None,
    ) -> int:
        """Make ``owner`` the run's owner if its owner is still ``expected_owner`` (and, with
        ``expired_after``, only if the run's lease has expired: no heartbeat for that many
        seconds, by the store's own clock, so that owners' clocks cannot skew it); bump and
        return the epoch. :class:`StaleWrite` if another took it first, or the lease holds."""
        ...

    async def heartbeat(self, leases: Mapping[str, Lease], at: float) -> list[str]:
        """Renew the leases (run id -> lease held) of the runs one owner runs; return the ids
        of those whose lease was lost (another owner claimed the run): their executors must
        stop, writing nothing more."""
        ...

    async def request_cancel(self, run_id: str, reason: str, at: float) -> bool:
        """Ask the owner of an active run, wherever it runs, to cancel it (its host reads the
        request within a second or so, see :meth:`cancel_requests`); False if the run is not
        active (ended, or unknown)."""
        ...

    async def cancel_requests(self, run_ids: Sequence[str]) -> dict[str, str]:
        """The cancel requests (run id -> reason) of those of ``run_ids`` still active."""
        ...

    async def request_job_cancel(self, run_id: str, job_id: str, reason: str, at: float) -> bool:
        """Ask the owner of an active run, wherever it runs, to cancel one of its jobs (the run
        goes on; its host reads the request as it reads a run's, see
        :meth:`job_cancel_requests`); False if the run is not active or the job has ended (or
        is unknown)."""
        ...

    async def job_cancel_requests(self, run_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """The cancel requests of jobs not ended (run id -> job id -> reason) of those of
        ``run_ids`` still active."""
        ...

    # -- the webhook outbox ------------------------------------------------------------------
    async def due_deliveries(self, now: float, limit: int = 100) -> list[DeliveryRecord]:
        """Pending deliveries whose ``next_at`` has come, oldest first."""
        ...

    async def record_delivery(
        self, attempt: DeliveryAttempt, *, state: str, next_at: float | None
    ) -> None:
        """Store one delivery attempt and the delivery's new state, in one transaction."""
        ...

    async def list_deliveries(
        self, run_id: str | None = None
    ) -> list[tuple[DeliveryRecord, list[DeliveryAttempt]]]: ...

    async def redeliver(self, delivery_id: str, now: float) -> bool:
        """Make a delivery pending again, due now; False if there is no such delivery."""
        ...

    async def disable_webhook(self, dag: str, webhook: str, reason: str, at: float) -> None:
        """The endpoint answered 410: its pending deliveries become ``disabled``, and so will
        later ones."""
        ...

    async def disabled_webhooks(self, dag: str) -> set[str]: ...

    # -- schedules ---------------------------------------------------------------------------
    async def last_tick(self, dag: str) -> TickRecord | None:
        """The DAG's tick of the greatest nominal time, started or skipped: where its schedule
        is. Backfills are left out (they fire past times)."""
        ...

    async def list_ticks(self, dag: str | None = None, *, limit: int = 100) -> list[TickRecord]:
        """Ticks (of one DAG, or of all), newest nominal time first, at most ``limit``."""
        ...

    async def skipped_ticks(self) -> dict[tuple[str, str], int]:
        """How many ticks started no run, by (DAG, reason)."""
        ...

    async def set_paused(self, dag: str, paused: bool, at: float) -> None:
        """Pause or resume the DAG's schedule, for good: the setting outlives the process."""
        ...

    async def schedule_pauses(self) -> dict[str, bool]:
        """The DAGs paused or resumed by :meth:`set_paused`, and how; a DAG not here follows its
        file's ``schedule.paused``."""
        ...

    async def schedule_resumed(self) -> dict[str, float]:
        """When each DAG resumed by :meth:`set_paused` (and not paused since) was resumed."""
        ...

    async def aclose(self) -> None: ...
