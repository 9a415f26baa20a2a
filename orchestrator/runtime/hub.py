"""The connectors of a run host: one per (job type, connection), shared by every run of the
host, so that a connection's HTTP client, rate limit and connection pool are one, whatever the
number of runs using it.

Connectors may own task groups, which must be entered and left by one task: the hub opens each
connector in a task of its own (the opener), on the first run that needs it, and closes them all
in that task when the host ends.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .. import logs
from ..connections import Connection, connection_secrets
from ..connectors.base import Connector, JobType
from ..connectors.registry import job_types
from ..model.dag import DAG
from .connectors import MaskedConnector

Key = tuple[str, str | None]  # (job type, connection)
_Request = tuple[Key, Callable[[], Connector], anyio.Event]


class ConnectorHub:
    """Opens connectors on first use and keeps them for the host's life. ``overrides`` replace a
    job type's connector (tests hand in fakes)."""

    def __init__(
        self,
        connections: Mapping[str, Connection] | None = None,
        overrides: Mapping[str, Connector] | None = None,
        *,
        job_types: Mapping[str, JobType] | None = None,
    ) -> None:
        self.connections = dict(connections or {})
        self._types = job_types
        self._overrides = dict(overrides or {})
        self._open: dict[Key, Connector] = {}
        self._failed: dict[Key, BaseException] = {}
        self._masked: dict[Key, MaskedConnector] = {}
        # the calls of the remotes, by connection (the job type's name without one): submit,
        # poll, cancel, and the errors they raised, for the daemon's metrics
        self.calls: Counter[tuple[str, str]] = Counter()
        self._send: MemoryObjectSendStream[_Request] | None = None
        logs.add_secrets(connection_secrets(self.connections))

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The opener: run it in the host's task group; once :meth:`close` is called it closes
        every connector it opened, in this task, and returns."""
        send: MemoryObjectSendStream[_Request]
        receive: MemoryObjectReceiveStream[_Request]
        send, receive = anyio.create_memory_object_stream(math.inf)
        async with receive, AsyncExitStack() as stack:
            for connector in self._overrides.values():
                await _enter(stack, connector)
            self._send = send
            task_status.started()
            try:
                async for key, factory, opened in receive:
                    try:
                        if key not in self._open:
                            connector = factory()
                            await _enter(stack, connector)
                            self._open[key] = connector
                    except Exception as exc:
                        self._failed[key] = exc
                    opened.set()
            finally:  # closed here too: a host cancelled from outside may not get to close()
                self._send = None
                send.close()

    def close(self) -> None:
        """No more connectors: the opener closes those it opened and ends."""
        if self._send is not None:
            self._send.close()

    def key(self, job_type: JobType, connection: str | None) -> Key:
        return (job_type.name, connection if job_type.needs_connection else None)

    async def open_for(self, dag: DAG) -> ConnectorHub:
        """Open what ``dag``'s jobs need (each connector once per host); the hub, which a run's
        executor asks for its connectors (``get``)."""
        types = self._types if self._types is not None else job_types()
        for type_name, connection in {(job.type, job.connection): None for job in dag}:
            job_type = types[type_name]
            key = self.key(job_type, connection)
            if job_type.name in self._overrides or key in self._open:
                continue
            if self._send is None:
                raise RuntimeError("the connector hub is not serving (enter its host first)")
            conn = self.connections.get(key[1]) if key[1] else None
            opened = anyio.Event()
            self._send.send_nowait((key, _factory(job_type, conn), opened))
            await opened.wait()
            failure = self._failed.pop(key, None)
            if failure is not None:
                raise failure
        return self

    def get(self, job_type: JobType, connection: str | None) -> Connector:
        key = self.key(job_type, connection)
        masked = self._masked.get(key)
        if masked is None:
            override = self._overrides.get(job_type.name)
            masked = self._masked[key] = MaskedConnector(
                override if override is not None else self._open[key],
                key[1] or key[0],
                self.calls,
            )
        return masked


def _factory(job_type: JobType, conn: Connection | None) -> Callable[[], Connector]:
    return lambda: job_type.open(conn)


async def _enter(stack: AsyncExitStack, connector: Any) -> None:
    if hasattr(connector, "__aenter__"):
        await stack.enter_async_context(connector)
    else:
        stack.push_async_callback(connector.aclose)
