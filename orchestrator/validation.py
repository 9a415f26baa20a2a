"""Checks a DAG before anything runs; every problem names the file, the job and the field."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import networkx as nx

from .dag import AMBIGUOUS_POLICIES, DAG, ENGINE_FIELDS
from .durations import parse_duration
from .errors import DagValidationError, PermanentError
from .retry import RetryPolicy
from .trigger_rules import TriggerRule
from .webhooks.definitions import validate_webhooks
from .webhooks.guard import Egress, check_literal

MAX_JOBS = 100_000


def _where(dag: DAG) -> str:
    return dag.source or f"dag {dag.name!r}"


def validate_dag(dag: DAG, known_types: Iterable[str] | None = None) -> None:
    from .connectors.registry import job_types

    types = job_types()
    allowed = set(known_types) if known_types is not None else set(types)
    where = _where(dag)
    problems: list[str] = []

    def bad(job: str | None, message: str) -> None:
        problems.append(f"{where}: job {job!r}: {message}" if job else f"{where}: {message}")

    if (
        not isinstance(dag.name, str)
        or not dag.name
        or not dag.name.replace("_", "").replace("-", "").replace(".", "").isalnum()
    ):
        bad(
            None,
            f"field 'name': expected a name of letters, digits, '_', '-', '.', got {dag.name!r}",
        )
    if len(dag.jobs) > MAX_JOBS:
        bad(None, f"{len(dag.jobs)} jobs is more than the limit of {MAX_JOBS}")
    if not dag.jobs:
        bad(None, "the DAG has no jobs")
    for dup in dag._duplicates:
        bad(dup, "duplicate job id")
    if dag.timeout is not None:
        try:
            parse_duration(dag.timeout)
        except ValueError as exc:
            bad(None, f"field 'timeout': {exc}")
    if dag.concurrency is not None and (
        not isinstance(dag.concurrency, int)
        or isinstance(dag.concurrency, bool)
        or dag.concurrency < 1
    ):
        bad(None, f"field 'concurrency': expected a whole number >= 1, got {dag.concurrency!r}")
    for pool, limit in dag.pools.items():
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            bad(None, f"field 'pools.{pool}': expected a whole number >= 1, got {limit!r}")
    if not isinstance(dag.fail_fast, bool):
        bad(None, f"field 'failFast': expected true or false, got {dag.fail_fast!r}")

    for problem in validate_webhooks(dag.webhooks, ""):
        bad(None, problem)
    for job in dag.jobs.values():
        _validate_job(dag, job, types, allowed, lambda m, j=job.id: bad(j, m))
        for problem in validate_webhooks(job.webhooks, ""):
            bad(job.id, problem)
    egress = Egress.from_env()
    for job_id, hooks in [(None, dag.webhooks)] + [(j.id, j.webhooks) for j in dag.jobs.values()]:
        for hook in hooks:
            url = hook.get("url") if isinstance(hook, dict) else None
            host = urlsplit(url).hostname if isinstance(url, str) else None
            if host:
                try:
                    check_literal(host, egress)
                except PermanentError as exc:
                    bad(job_id, f"webhook {hook.get('name')!r}: field 'url': {exc}")

    unknown_nodes = [n for n in dag.graph.nodes if n not in dag.jobs]
    for node in unknown_nodes:
        sources = [s for s in dag.graph.predecessors(node)]
        targets = [t for t in dag.graph.successors(node)]
        edge = (
            f"{sources[0]!r} -> {node!r}"
            if sources
            else f"{node!r} -> {targets[0]!r}"
            if targets
            else repr(node)
        )
        bad(None, f"jobGraph: edge {edge} names unknown vertex {node!r}")
    if not unknown_nodes and not nx.is_directed_acyclic_graph(dag.graph):
        # find_cycle is slow on big graphs: only ask it once we know there is a cycle
        cycle = nx.find_cycle(dag.graph)
        path = [str(edge[0]) for edge in cycle] + [str(cycle[0][0])]
        bad(None, f"jobGraph: cycle {' -> '.join(path)}")
    if problems:
        raise DagValidationError(problems)


def _validate_job(dag: DAG, job: Any, types: dict[str, Any], allowed: set[str], bad: Any) -> None:
    if not isinstance(job.id, str) or not job.id:
        bad("field 'id': expected a non-empty string")
    job_type = types.get(job.type) if job.type in allowed else None
    if job_type is None:
        names = ", ".join(sorted(allowed))
        bad(f"field 'type': unknown job type {job.type!r} (known: {names})")
    else:
        if job_type.needs_connection and not job.connection:
            bad(f"field 'connection': required for job type {job.type!r}")
        for name in job_type.required:
            if name not in job.params:
                bad(f"field {name!r}: required for job type {job.type!r}")
        if job_type.optional is not None:
            for name in job.params:
                if name not in job_type.required and name not in job_type.optional:
                    bad(f"field {name!r}: not a field of job type {job.type!r}")
        if job.type == "python" and job.call is None:
            bad("field 'call': a python job needs a callable")
        for problem in job_type.validate(job.params):
            bad(problem)
    try:
        TriggerRule(job.trigger_rule)
    except ValueError:
        rules = ", ".join(r.value for r in TriggerRule)
        bad(f"field 'triggerRule': bad trigger rule {job.trigger_rule!r} (one of: {rules})")
    if job.retries is not None and not isinstance(job.retries, RetryPolicy):
        try:
            job.retry_policy  # noqa: B018 - parses
        except ValueError as exc:
            name, _, message = str(exc).partition(": ")
            bad(f"field {name!r}: {message}")
    if job.timeout is not None:
        try:
            parse_duration(job.timeout)
        except ValueError as exc:
            bad(f"field 'timeout': {exc}")
    if not isinstance(job.priority, int) or isinstance(job.priority, bool):
        bad(f"field 'priority': expected a whole number, got {job.priority!r}")
    for pool in job.pools:
        if pool not in dag.pools:
            bad(f"field 'pool': unknown pool {pool!r} (declare it in the DAG's 'pools')")
    if job.on_ambiguous_submit is not None and job.on_ambiguous_submit not in AMBIGUOUS_POLICIES:
        bad(
            f"field 'onAmbiguousSubmit': expected one of {', '.join(AMBIGUOUS_POLICIES)}, "
            f"got {job.on_ambiguous_submit!r}"
        )
    for name in job.params:
        if name in ENGINE_FIELDS:
            bad(f"field {name!r}: is an engine field, not a connector field")
