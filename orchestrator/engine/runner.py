"""Running one DAG to its end in this process."""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from collections.abc import Mapping
from typing import Any

from ..clock import Clock
from ..connections import Connection
from ..connectors.base import Connector
from ..dag import DAG
from ..errors import ConfigError, DagValidationError
from ..store.base import Store
from .connectors import ConnectorSet, check_connections
from .executor import Observer, RunExecutor
from .records import Run


def resolve_params(dag: DAG, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The DAG's declared parameters with ``given`` values; an undeclared name is an error."""
    params = dict(dag.params)
    for name, value in (given or {}).items():
        if name not in dag.params:
            declared = ", ".join(sorted(dag.params)) or "none"
            raise ConfigError(
                f"unknown parameter {name!r} for DAG {dag.name!r} (declared: {declared})"
            )
        params[name] = value
    return params


def concurrency_problem(value: object) -> str | None:
    """Why ``value`` is not a concurrency limit (a whole number >= 1), or ``None``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return f"expected a whole number >= 1, got {value!r}"
    return None


def check_limits(concurrency: object, connections: Mapping[str, Connection]) -> None:
    """Refuse a run-wide or per-connection concurrency below 1: no job could ever start."""
    problems = []
    if concurrency is not None and (problem := concurrency_problem(concurrency)):
        problems.append(f"concurrency: {problem}")
    for name, conn in connections.items():
        if conn.concurrency is not None and (problem := concurrency_problem(conn.concurrency)):
            problems.append(f"connection {name!r}: field 'concurrency': {problem}")
    if problems:
        raise ConfigError("; ".join(problems))


def new_run_id() -> str:
    return uuid.uuid4().hex


def prepare_run(
    dag: DAG,
    *,
    params: Mapping[str, Any] | None = None,
    connections: Mapping[str, Connection] | None = None,
    run_id: str | None = None,
    trigger: str = "manual",
    concurrency: int | None = None,
) -> Run:
    """Check everything a run needs before it starts; raise on the first kind of problem."""
    check_limits(concurrency, connections or {})
    resolved = resolve_params(dag, params)
    problems = check_connections(dag, connections or {})
    if problems:
        raise DagValidationError(problems)
    return Run(run_id or new_run_id(), dag, resolved, trigger)


async def run_dag(
    dag: DAG,
    *,
    params: Mapping[str, Any] | None = None,
    connections: Mapping[str, Connection] | None = None,
    connectors: Mapping[str, Connector] | None = None,
    clock: Clock | None = None,
    concurrency: int | None = None,
    observers: list[Observer] | None = None,
    rng: random.Random | None = None,
    run_id: str | None = None,
    store: Store | None = None,
    webhook_wait: float = 10.0,
) -> Run:
    """Run ``dag`` to its end and return the finished :class:`Run`.

    ``connectors`` replaces the connector of a job type (tests pass fakes). With a ``store``
    the run is recorded there (and can be resumed). Webhooks are delivered through the store's
    outbox (an in-memory one if none is given); the call waits up to ``webhook_wait`` seconds
    for them.
    """
    conns = dict(connections or {})
    run = prepare_run(dag, params=params, connections=conns, run_id=run_id, concurrency=concurrency)
    has_hooks = bool(dag.webhooks) or any(job.webhooks for job in dag)
    if store is None and has_hooks:
        from ..store.memory import MemoryStore

        store = MemoryStore()  # webhooks go through an outbox
    stored = None
    if store is not None:
        from ..store.owner import this_owner
        from .durable import send_new_run

        # stored while the connectors and the executor are set up; awaited before any job
        stored = send_new_run(store, run, owner=this_owner(), at=time.time(), exclusive=False)
    limits = {c.name: c.concurrency for c in conns.values() if c.concurrency}
    deliverer = None
    if store is not None and has_hooks:
        from ..webhooks.deliver import Deliverer

        deliverer = Deliverer(store)
    async with (
        ConnectorSet(dag, conns, connectors) as connector_set,
        deliverer or contextlib.nullcontext(),
    ):
        executor = RunExecutor(
            run,
            connector_set,
            clock=clock,
            concurrency=concurrency,
            connection_limits=limits,
            rng=rng,
            observers=observers,
            store=store,
        )
        if deliverer is not None:
            executor.on_deliveries = deliverer.notify
        if stored is not None:
            await stored
        await executor.execute()
        if deliverer is not None:
            await deliverer.drain(run.id, webhook_wait)
        return run
