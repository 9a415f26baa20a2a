"""The connectors one run uses: opened lazily per (job type, connection), closed together."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AsyncExitStack
from types import TracebackType

from ..connections import Connection
from ..connectors.base import Connector, JobType
from ..connectors.registry import job_types
from ..dag import DAG


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
        self._stack = AsyncExitStack()

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
        override = self._overrides.get(job_type.name)
        if override is not None:
            return override
        return self._open[(job_type.name, connection if job_type.needs_connection else None)]
