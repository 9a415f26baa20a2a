"""What a run needs checked before it starts: its parameters, limits and connections."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from ..connections import Connection
from ..engine.records import Run
from ..errors import ConfigError, DagValidationError
from ..model.dag import DAG
from .connectors import check_connections


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
