"""The connector seam: how the engine talks to one kind of job.

A connector is ``submit / poll / cancel / find / aclose``. ``submit`` returns a *remote
handle*: plain JSON (a ``dict`` of strings, numbers, lists, dicts) holding everything needed to
poll and cancel the job later, even from another process after a restart. Connectors map every
transport error to :mod:`orchestrator.errors`; no aiohttp exception escapes a connector.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import ConfigError, ConnectorError, PermanentError
from ..model.tokens import Substituter, substitute

if TYPE_CHECKING:
    from ..connections import Connection

DEFAULT_SKEW = 5.0
RemoteHandle = dict[str, Any]
"""Plain JSON, enough to poll and cancel the remote job after a restart."""


def _noop() -> None:
    return None


async def _nothing_claimed() -> Sequence[RemoteHandle]:
    return ()


class LookupUndecided(ConnectorError):
    """Raised by :meth:`Connector.find` when the remote's lookup cannot tell whether (or which)
    remote job is the submission's: the job's ``onAmbiguousSubmit`` applies. The message says
    why, in one line. A :class:`ConnectorError`, so that wrappers pass it on as they are."""


class RemoteStatus(StrEnum):
    RUNNING = "running"  # accepted, queued or executing: poll again
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value

    @property
    def terminal(self) -> bool:
        return self is not RemoteStatus.RUNNING


# Submission and PollResult are made once per attempt and per poll on the engine's hot path:
# slotted but not frozen (a frozen dataclass costs five times as much to build). Treat them as
# values all the same.
@dataclass(slots=True)
class Submission:
    """Everything a connector gets to submit one attempt of one job."""

    dag: str
    run_id: str
    job_id: str
    attempt: int
    idempotency_key: str
    params: Mapping[str, Any]  # the job's connector fields, run tokens substituted
    callback_url: str | None = None  # where a remote that can call back should call
    wake: Callable[[], None] = _noop  # ask the engine to poll now (local jobs, callbacks)
    # for find(), set by the engine when it reconciles: the wall time the attempt was written
    # ahead (no remote job started before it is this attempt's), and the handles that other
    # stored attempts (of this run and of others) hold since about then
    not_before: float | None = None
    claimed: Callable[[], Awaitable[Sequence[RemoteHandle]]] = _nothing_claimed


@dataclass(slots=True)
class PollResult:
    status: RemoteStatus
    remote_status: str | None = None  # the remote's own word for the status
    error: str | None = None  # the remote's own error text when it failed
    outputs: Mapping[str, Any] = field(default_factory=dict)
    log_tail: str | None = None
    next_poll: float | None = None  # the remote's hint: seconds before polling again


@dataclass(frozen=True, slots=True)
class CancelResult:
    supported: bool  # False where the API has no way to cancel a job
    message: str = ""


@runtime_checkable
class Connector(Protocol):
    async def submit(self, submission: Submission) -> RemoteHandle: ...

    async def poll(self, handle: RemoteHandle) -> PollResult: ...

    async def cancel(self, handle: RemoteHandle) -> CancelResult: ...

    async def find(self, submission: Submission) -> RemoteHandle | None:
        """Look the submission up on the remote (its key, or a remote job started since
        ``submission.not_before`` that no ``submission.claimed()`` handle holds); ``None`` if
        it is not there. :class:`LookupUndecided` when the lookup cannot tell."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class InlineConnector(Connector, Protocol):
    """The connector of a job type with ``inline``: the engine calls the job in the task that
    runs its attempt, with no handle to poll. ``call`` returns once the job has ended, with its
    outcome as a poll would say it; cancelling the caller (the job's timeout, a cancel) cancels
    the job."""

    async def call(self, submission: Submission) -> PollResult: ...


@dataclass(frozen=True, slots=True)
class PollSchedule:
    """Delay between polls: starts at ``initial``, grows by ``factor`` up to ``cap``, jittered."""

    initial: float = 1.0
    factor: float = 1.5
    cap: float = 30.0

    def delay(self, poll_number: int, rnd: float) -> float:
        """Delay after the ``poll_number``-th poll (1-based); ``rnd`` in [0, 1) jitters ±20%."""
        try:
            base = min(self.cap, self.initial * self.factor ** min(poll_number - 1, 64))
        except OverflowError:
            base = self.cap
        return base * (0.8 + 0.4 * rnd)


Validator = Callable[[Mapping[str, Any]], list[str]]
ConnectorFactory = Callable[["Connection | None"], Connector]


def _no_problems(params: Mapping[str, Any]) -> list[str]:
    return []


@dataclass(frozen=True, slots=True)
class JobType:
    """A job type: its fields, how to check them, and how to open its connector.

    ``validate`` returns problems as ``"field 'x': what is wrong"`` strings. ``open`` is called
    once per run and connection with the named connection (``None`` for local job types).
    ``substitute`` puts the ``$tokens`` into its fields at each attempt (data, never code).
    """

    name: str
    open: ConnectorFactory
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] | None = None  # None: any other field is allowed
    needs_connection: bool = True
    connection_types: tuple[str, ...] = ()  # connection `type`s this job type accepts
    validate: Validator = _no_problems
    can_cancel: bool = True
    poll: PollSchedule = PollSchedule()
    dedup_by_key: bool = False  # the remote deduplicates submissions by idempotency key
    substitute: Substituter = substitute
    # onAmbiguousSubmit when the job sets none: "unknown" where nothing can be looked up, so
    # that a crash never sends a job twice
    ambiguous_default: str = "resubmit"
    # the connector asks the remote to call ``Submission.callback_url`` when the job ends: the
    # engine gives it one (when it has them) and then polls only as a fallback
    callbacks: bool = False
    # its connector is an :class:`InlineConnector`: each attempt is called, not submitted and
    # polled (written ahead and recorded all the same)
    inline: bool = False


def remote_job_type(
    name: str,
    connector: Callable[[Connection], Connector],
    *,
    connection_type: str,
    required: tuple[str, ...] = (),
    optional: tuple[str, ...] | None = None,
    validate: Validator = _no_problems,
    can_cancel: bool = True,
    poll: PollSchedule = PollSchedule(),
    ambiguous_default: str = "resubmit",
    callbacks: bool = False,
) -> JobType:
    """The job type of a remote API: it takes a connection of ``connection_type`` and opens
    ``connector(connection)`` on it."""

    def open_connector(connection: Connection | None) -> Connector:
        if connection is None:  # pragma: no cover - validation requires a connection
            raise ConnectorError(f"the {name} job type needs a connection")
        return connector(connection)

    return JobType(
        name=name,
        open=open_connector,
        required=required,
        optional=optional,
        connection_types=(connection_type,),
        validate=validate,
        can_cancel=can_cancel,
        poll=poll,
        ambiguous_default=ambiguous_default,
        callbacks=callbacks,
    )


def remote_id(value: Any, *, job_type: str, field: str) -> str | int:
    """A remote's id as it may be kept in a handle: a non-empty string without control
    characters, or an integer (not a bool, NaN, infinity or any other float, list or object);
    :class:`~orchestrator.errors.PermanentError` naming the job type and field otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip() and value.isprintable() and len(value) <= 1000:
        return value
    if isinstance(value, float) and not math.isfinite(value):
        shown = "NaN" if math.isnan(value) else repr(value)
    else:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:59] + "…"
    raise PermanentError(
        f"{job_type}: the remote answered field {field!r} with {shown}, which is not an id "
        "(a non-empty string or an integer)"
    )


def wall_time(value: Any) -> float | None:
    """Seconds since the epoch of an ISO 8601 time from a remote (``Z`` or an offset; none is
    UTC); ``None`` when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def clock_skew(connection: Connection) -> float:
    """The connection option ``clock_skew`` (seconds, default 5): how far the remote's clock
    may be from ours when a lookup compares its start times with the write-ahead time."""
    options = connection.options
    value = options.get("clock_skew", options.get("find_skew", DEFAULT_SKEW))
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 3600:
        raise ConfigError(
            f"connection {connection.name!r}: option 'clock_skew' must be seconds from 0 to 3600"
        )
    return float(value)


def after(started: float | None, not_before: float | None, skew: float) -> bool:
    """Whether a remote job that started at ``started`` (wall seconds) may be the attempt
    written ahead at ``not_before``, allowing ``skew`` seconds between the two clocks."""
    return started is not None and (not_before is None or started >= not_before - skew)


class ConnectorBase:
    """Defaults for optional parts of the protocol."""

    async def find(self, submission: Submission) -> RemoteHandle | None:
        return None

    async def cancel(self, handle: RemoteHandle) -> CancelResult:
        return CancelResult(supported=False, message="this API has no cancel")

    async def aclose(self) -> None:
        return None
