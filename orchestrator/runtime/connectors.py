"""The connectors one run uses: opened lazily per (job type, connection), closed together,
each seen by the engine through :class:`MaskedConnector` (secrets masked in what remotes send
back)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Mapping
from contextlib import AsyncExitStack
from dataclasses import replace
from types import TracebackType
from typing import Any, TypeVar, cast

from .. import logs
from ..connections import Connection, connection_secrets
from ..connectors.base import (
    CancelResult,
    Connector,
    InlineConnector,
    JobType,
    PollResult,
    RemoteHandle,
    Submission,
)
from ..connectors.registry import job_types
from ..model.dag import DAG


def check_connections(dag: DAG, connections: Mapping[str, Connection]) -> list[str]:
    """Problems with the connections a DAG names, before it runs."""
    problems = []
    types = job_types()
    where = dag.source or f"dag {dag.name!r}"
    for job in dag:
        job_type = types[job.type]
        if not job_type.needs_connection:
            continue
        conn = connections.get(job.connection or "")
        if conn is None:
            known = ", ".join(sorted(connections)) or "none are configured"
            problems.append(
                f"{where}: job {job.id!r}: field 'connection': unknown connection "
                f"{job.connection!r} (known: {known})"
            )
        elif job_type.connection_types and conn.type not in job_type.connection_types:
            needs = " or ".join(job_type.connection_types)
            problems.append(
                f"{where}: job {job.id!r}: field 'connection': connection {conn.name!r} is of type "
                f"{conn.type!r}, job type {job.type!r} needs {needs}"
            )
    return problems


class RedactedError(Exception):
    """A connector's exception whose text held a secret and could not be masked in place."""


def _masked(exc: BaseException) -> BaseException:
    """``exc`` with every secret masked in its message (and a ConnectorError's ``detail``),
    in place so that its type and traceback stay; a new :class:`RedactedError` when its text
    cannot be masked in place."""
    if not logs.has_secrets() or not isinstance(exc, Exception):
        return exc
    text = str(exc)
    if logs.redact_text(text) == text:
        return exc
    exc.args = tuple(logs.redact(a) if isinstance(a, str | dict | list) else a for a in exc.args)
    if hasattr(exc, "detail"):
        exc.detail = logs.redact(exc.detail)
    text = str(exc)
    if logs.redact_text(text) != text:  # an exception that renders itself otherwise
        return RedactedError(f"{type(exc).__name__}: {logs.redact_text(text)}")
    return exc


T = TypeVar("T")


class MaskedConnector:
    """A connector as the engine sees it: the protocol forwarded unchanged, and every text a
    remote sends back (error messages, outputs, log tails, remote statuses, cancel messages) is
    masked before the engine, and so the store, the logs and the output, gets it. Handles pass
    as they are: they must reach the remote job again."""

    __slots__ = ("calls", "inner", "label")

    def __init__(
        self, inner: Connector, label: str = "", calls: Counter[tuple[str, str]] | None = None
    ) -> None:
        self.inner = inner
        self.label = label  # the connection's name (the job type's, without one)
        self.calls = calls if calls is not None else Counter()  # (label, call) -> count

    async def _forward(self, call: str | None, request: Awaitable[T]) -> T:
        """``request``'s answer; what it raises, masked. Counted as ``call`` (and as an
        ``error`` if it raised), unless ``call`` is None."""
        if call is not None:
            self.calls[self.label, call] += 1
        try:
            return await request
        except Exception as exc:
            if call is not None:
                self.calls[self.label, "error"] += 1
            masked = _masked(exc)
            if masked is exc:
                raise
            raise masked from None

    async def submit(self, submission: Submission) -> RemoteHandle:
        return await self._forward("submit", self.inner.submit(submission))

    async def poll(self, handle: RemoteHandle) -> PollResult:
        result = await self._forward("poll", self.inner.poll(handle))
        if not logs.has_secrets():
            return result
        return _masked_result(result)

    async def call(self, submission: Submission) -> PollResult:
        """The call of an inline job type (:class:`InlineConnector`): counted as a submission,
        its outcome masked as a poll's."""
        inner = cast(InlineConnector, self.inner)
        result = await self._forward("submit", inner.call(submission))
        if not logs.has_secrets():
            return result
        return _masked_result(result)

    async def cancel(self, handle: RemoteHandle) -> CancelResult:
        result = await self._forward("cancel", self.inner.cancel(handle))
        message = logs.redact_text(result.message)
        return result if message == result.message else replace(result, message=message)

    async def find(self, submission: Submission) -> RemoteHandle | None:
        return await self._forward(None, self.inner.find(submission))

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _masked_result(result: PollResult) -> PollResult:
    """What a remote said of its job, every secret masked (built field by field: on every poll
    where secrets are known, and ``dataclasses.replace`` takes six times as long)."""
    return PollResult(
        result.status,
        _text(result.remote_status),
        _text(result.error),
        logs.redact(dict(result.outputs)) if result.outputs else result.outputs,
        _text(result.log_tail),
        result.next_poll,
    )


def _text(value: str | None) -> str | None:
    return None if value is None else logs.redact_text(value)


class ConnectorSet:
    """The connectors of one DAG, one per (job type, connection), opened together on entry
    (connectors may own task groups, which must be entered and left by the same task) and closed
    together. ``overrides`` replace a job type's connector (tests hand in fakes)."""

    def __init__(
        self,
        dag: DAG,
        connections: Mapping[str, Connection] | None = None,
        overrides: Mapping[str, Connector] | None = None,
    ) -> None:
        self._dag = dag
        self._connections = dict(connections or {})
        self._overrides = dict(overrides or {})
        self._open: dict[tuple[str, str | None], Connector] = {}
        self._masked: dict[tuple[str, str | None], MaskedConnector] = {}
        self._stack = AsyncExitStack()
        logs.add_secrets(connection_secrets(self._connections))

    async def __aenter__(self) -> ConnectorSet:
        await self._stack.__aenter__()
        try:
            for connector in self._overrides.values():
                await self._enter(connector)
            types = job_types()
            for job in self._dag:
                job_type = types[job.type]
                key = (job_type.name, job.connection if job_type.needs_connection else None)
                if job_type.name in self._overrides or key in self._open:
                    continue
                conn = self._connections.get(key[1]) if key[1] else None
                connector = job_type.open(conn)
                self._open[key] = connector
                await self._enter(connector)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        return await self._stack.__aexit__(et, e, tb)

    async def _enter(self, connector: Connector) -> None:
        if hasattr(connector, "__aenter__"):
            await self._stack.enter_async_context(connector)  # type: ignore[arg-type]
        else:
            self._stack.push_async_callback(connector.aclose)

    def get(self, job_type: JobType, connection: str | None) -> Connector:
        key = (job_type.name, connection if job_type.needs_connection else None)
        masked = self._masked.get(key)
        if masked is None:
            override = self._overrides.get(job_type.name)
            masked = self._masked[key] = MaskedConnector(
                override if override is not None else self._open[key]
            )
        return masked
