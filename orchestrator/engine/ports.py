"""What the engine needs from around it, as Protocols: the run host (or a test) provides them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from typing import Protocol

from ..clock import Clock
from ..connectors.base import Connector, JobType
from ..model.ended import JobEnded, RunEnded
from ..model.states import RunState
from ..store.base import AttemptRecord, Operation, Receipt, RunRecord

__all__ = [
    "CallbackUrls",
    "Clock",
    "ConnectorProvider",
    "EventSink",
    "JobEnded",
    "JobTypes",
    "RunEnded",
    "RunStore",
]


class RunStore(Protocol):
    """What the engine asks of the run store (every backend's ``Store`` is one): batches
    queued in order, each with a receipt that says when it is durable or why it was refused;
    and the attempts of recent runs, to tell its own remote jobs from those others hold."""

    def submit(self, ops: Sequence[Operation]) -> Receipt: ...

    async def list_runs(
        self,
        *,
        dag: str | None = None,
        states: Sequence[RunState] | None = None,
        limit: int = 100,
    ) -> list[RunRecord]: ...

    async def get_attempts(self, run_id: str) -> list[AttemptRecord]: ...


JobTypes = Mapping[str, JobType]  # the job type catalog: a job's ``type`` to its JobType


class ConnectorProvider(Protocol):
    """The connector for a job type and connection, open for the run's whole life."""

    def get(self, job_type: JobType, connection: str | None) -> Connector: ...


class CallbackUrls(Protocol):
    """Where a remote that can call back (a job type with ``callbacks``) should call when an
    attempt's job ends: a URL bound to that one attempt, which makes the engine poll it now."""

    def url(self, run_id: str, job_id: str, attempt: int) -> str: ...


class EventSink(Protocol):
    """Told of the end of each job it watches and of the run's end, as they are recorded (with a
    store only). What it returns is written in the same batch as that end: an outbox row is
    durable exactly when the state change it reports is. :meth:`committed` is called once a
    batch holding operations it returned is durable (a deliverer may then send them)."""

    @property
    def watched(self) -> Set[str]:
        """The ids of the jobs whose end it is told of."""
        ...

    def job_ended(self, event: JobEnded) -> Sequence[Operation]: ...

    def run_ended(self, event: RunEnded) -> Sequence[Operation]: ...

    def committed(self) -> None: ...
