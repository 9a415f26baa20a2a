"""The connector seam: how the engine talks to one kind of job.

A connector is ``submit / poll / cancel / find / aclose``. ``submit`` returns a *remote
handle*: plain JSON (a ``dict`` of strings, numbers, lists, dicts) holding everything needed to
poll and cancel the job later, even from another process after a restart. Connectors map every
transport error to :mod:`orchestrator.errors`; no aiohttp exception escapes a connector.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..engine.tokens import Substituter, substitute

if TYPE_CHECKING:
    from ..connections import Connection

RemoteHandle = dict[str, Any]
"""Plain JSON, enough to poll and cancel the remote job after a restart."""


def _noop() -> None:
    return None


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
        """Look the submission's idempotency key up on the remote; ``None`` if absent or the
        API cannot be searched."""
        ...

    async def aclose(self) -> None: ...


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


class ConnectorBase:
    """Defaults for optional parts of the protocol."""

    async def find(self, submission: Submission) -> RemoteHandle | None:
        return None

    async def cancel(self, handle: RemoteHandle) -> CancelResult:
        return CancelResult(supported=False, message="this API has no cancel")

    async def aclose(self) -> None:
        return None
