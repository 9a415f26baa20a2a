"""Checks a DAG before anything runs; every problem names the file, the job and the field."""

from __future__ import annotations

import difflib
import inspect
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..errors import DagValidationError
from ..printable import name_problem
from . import refs, states
from .durations import parse_duration
from .graph import find_cycle
from .trigger_rules import TriggerRule
from .webhook_definitions import validate_webhooks

if TYPE_CHECKING:  # the DAG imports this module to validate itself
    from .dag import DAG

ENGINE_FIELDS = frozenset(
    {
        "type",
        "connection",
        "triggerRule",
        "retries",
        "timeout",
        "priority",
        "pool",
        "webhooks",
        "onAmbiguousSubmit",
        "description",
        "map",
        "mapLimit",
    }
)
# the words onAmbiguousSubmit takes, as validation shows them
AMBIGUOUS_POLICIES = tuple(policy.value for policy in states.AMBIGUOUS_POLICIES)

MAX_JOBS = 100_000
OVERLAP_POLICIES = ("skip", "queue", "queue_all", "cancel_previous", "allow")
"""What a new run does while one of its DAG is active (``schedule.overlap``, ``--overlap``)."""
CATCHUP_POLICIES = ("none", "latest", "all")
CRON_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MAX_CYCLE_SHOWN = 10  # a longer cycle shows its first and last few jobs and its length


def _where(dag: DAG) -> str:
    return dag.source or f"dag {dag.name!r}"


_catalog: Callable[[], Mapping[str, Any]] | None = None


def use_job_types(catalog: Callable[[], Mapping[str, Any]]) -> None:
    """The job types that DAGs are checked against (name -> job type), handed in by the
    package's composition root (``orchestrator/__init__``): the model does not import the
    connectors."""
    global _catalog
    _catalog = catalog


def validate_dag(dag: DAG, known_types: Iterable[str] | None = None) -> None:
    if _catalog is None:
        raise RuntimeError("no job types to validate against: import orchestrator first")
    types = _catalog()  # a job type's connector module is imported when it is looked up
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
        if (problem := name_problem("pool name", pool)) is not None:
            bad(None, f"field 'pools': {problem}")
        elif not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            bad(None, f"field 'pools.{pool}': expected a whole number >= 1, got {limit!r}")
    if dag.schedule is not None:
        for problem in schedule_problems(dag.schedule):
            bad(None, problem)
    if not isinstance(dag.fail_fast, bool):
        bad(None, f"field 'failFast': expected true or false, got {dag.fail_fast!r}")

    for problem in validate_webhooks(dag.webhooks, ""):
        bad(None, problem)
    for job in dag.jobs.values():
        _validate_job(dag, job, types, allowed, lambda m, j=job.id: bad(j, m))
        for problem in validate_webhooks(job.webhooks, ""):
            bad(job.id, problem)

    unknown_nodes = [n for n in dag.vertices if n not in dag.jobs]
    for node in unknown_nodes:
        sources = dag.upstream(node)
        targets = dag.downstream(node)
        edge = (
            f"{sources[0]!r} -> {node!r}"
            if sources
            else f"{node!r} -> {targets[0]!r}"
            if targets
            else repr(node)
        )
        bad(None, f"jobGraph: edge {edge} names unknown vertex {node!r}")
    if not unknown_nodes and (cycle := find_cycle(dag.successors)) is not None:
        bad(None, f"jobGraph: cycle {cycle_text(cycle)}")
    elif not unknown_nodes:
        for job in dag.jobs.values():
            for problem in reference_problems(dag, job):
                bad(job.id, problem)
    if problems:
        raise DagValidationError(problems)


def _validate_job(
    dag: DAG, job: Any, types: Mapping[str, Any], allowed: set[str], bad: Any
) -> None:
    if not isinstance(job.id, str) or not job.id:
        bad("field 'id': expected a non-empty string")
    elif (problem := name_problem("id", job.id)) is not None:
        bad(f"field 'id': {problem}")
    if isinstance(job.connection, str) and (problem := name_problem("name", job.connection)):
        bad(f"field 'connection': {problem}")
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
        if job.type == "python" and (problem := call_problem(job.call)) is not None:
            bad(f"field 'call': {problem}")
        for problem in job_type.validate(job.params):
            bad(problem)
    try:
        TriggerRule(job.trigger_rule)
    except ValueError:
        rules = ", ".join(r.value for r in TriggerRule)
        bad(f"field 'triggerRule': bad trigger rule {job.trigger_rule!r} (one of: {rules})")
    if job.retries is not None:
        try:
            problem = job.retry_policy.problem()  # parses the JSON form, bounds a RetryPolicy
        except ValueError as exc:
            problem = str(exc)
        if problem is not None:
            name, _, message = problem.partition(": ")
            bad(f"field {name!r}: {message}")
    if job.timeout is not None:
        try:
            parse_duration(job.timeout)
        except ValueError as exc:
            bad(f"field 'timeout': {exc}")
    if not isinstance(job.priority, int) or isinstance(job.priority, bool):
        bad(f"field 'priority': expected a whole number, got {job.priority!r}")
    for pool in job.pools:
        if (problem := name_problem("pool name", pool)) is not None:
            bad(f"field 'pool': {problem}")
        elif pool not in dag.pools:
            bad(f"field 'pool': unknown pool {pool!r} (declare it in the DAG's 'pools')")
    if job.on_ambiguous_submit is not None and job.on_ambiguous_submit not in AMBIGUOUS_POLICIES:
        bad(
            f"field 'onAmbiguousSubmit': expected one of {', '.join(AMBIGUOUS_POLICIES)}, "
            f"got {job.on_ambiguous_submit!r}"
        )
    for name in job.params:
        if name in ENGINE_FIELDS:
            bad(f"field {name!r}: is an engine field, not a connector field")


# -- pure checks, each returning the problem or None -------------------------------------------


def call_problem(call: object) -> str | None:
    """Why ``call`` cannot be a python job's callable (taking the one JobContext argument)."""
    if call is None:
        return "a python job needs a callable"
    if not callable(call):
        return f"a python job needs a callable, got {type(call).__name__} {call!r:.60}"
    try:
        inspect.signature(call).bind(None)
    except TypeError:
        name = getattr(call, "__qualname__", repr(call))
        return f"{name} must take one argument (the job's JobContext)"
    except ValueError:
        pass  # no signature to read (some builtins): let the call tell
    return None


def cycle_text(path: list[Any]) -> str:
    """``a -> b -> c -> a``; a cycle of more than :data:`MAX_CYCLE_SHOWN` jobs shows its
    first and last few: ``of 5000 jobs: j0 -> ... -> j4 -> ... (4990 more) -> j4995 -> ...``."""
    shown = [_shown(node) for node in path]
    if len(shown) <= MAX_CYCLE_SHOWN:
        return " -> ".join([*shown, shown[0]])
    half = MAX_CYCLE_SHOWN // 2
    middle = f"... ({len(shown) - 2 * half} more)"
    return f"of {len(shown)} jobs: " + " -> ".join(
        [*shown[:half], middle, *shown[-half:], shown[0]]
    )


def _shown(node: object) -> str:
    text = str(node)
    return text if text.isprintable() else repr(text)


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value in choices:
            return None
        return f"{value!r} is not one of {', '.join(choices)}"

    return check


def _cron_problem(value: Any) -> str | None:
    from cronsim import CronSim, CronSimError  # only DAGs with a schedule pay its import

    if not isinstance(value, str):
        return f"expected a cron expression string, got {value!r}"
    expression = CRON_ALIASES.get(value.strip().lower(), value)
    if len(expression) > 200:
        return "a cron expression of more than 200 characters"
    try:
        CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        aliases = ", ".join(CRON_ALIASES)
        return f"bad cron expression {value!r}: {exc} (five fields, or one of {aliases})"
    return None


def _timezone_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return f"expected an IANA time zone name such as 'Europe/Berlin', got {value!r}"
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return f"unknown time zone {value!r} (an IANA name such as 'Europe/Berlin' or 'UTC')"
    return None


def _duration_problem(value: Any) -> str | None:
    try:
        parse_duration(value)
    except ValueError as exc:
        return str(exc)
    return None


def _boolean_problem(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"expected true or false, got {value!r}"


SCHEDULE_FIELDS: Mapping[str, Callable[[Any], str | None]] = {
    "cron": _cron_problem,
    "timezone": _timezone_problem,
    "catchup": _one_of(CATCHUP_POLICIES),
    "overlap": _one_of(OVERLAP_POLICIES),
    "jitter": _duration_problem,
    "paused": _boolean_problem,
}
"""Each field of a DAG's ``schedule`` and its check (the one ``run`` applies too)."""


def schedule_field_problem(name: str, value: Any) -> str | None:
    """The problem with ``schedule.<name> = value``, or ``None``."""
    check = SCHEDULE_FIELDS.get(name)
    if check is None:
        close = difflib.get_close_matches(name, SCHEDULE_FIELDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"not a schedule field{hint}; known: {', '.join(SCHEDULE_FIELDS)}"
    return check(value)


def schedule_problems(schedule: Mapping[str, Any]) -> list[str]:
    """Every problem of a DAG's ``schedule``, each naming its field."""
    problems = []
    for name, value in schedule.items():
        if (problem := schedule_field_problem(str(name), value)) is not None:
            problems.append(f"field 'schedule.{name}': {problem}")
    return problems


# -- references and maps (:mod:`.refs`) --------------------------------------------------------


def ancestors(dag: DAG, job_id: str) -> set[str]:
    """Every job upstream of ``job_id``, near or far."""
    seen: set[str] = set()
    todo = [job_id]
    while todo:
        for parent in dag.upstream(todo.pop()):
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return seen


def reference_problems(dag: DAG, job: Any) -> list[str]:
    """What is wrong with a job's references and its ``map`` (the graph is known good)."""
    if not refs.has_braces(job.params) and job.map is None:
        return []
    known: list[set[str]] = []

    def upstream() -> set[str]:
        if not known:
            known.append(ancestors(dag, job.id))
        return known[0]

    mapped = job.map is not None
    out = refs.problems(job.params, dag.jobs, upstream, mapped=mapped)
    if mapped:
        taken = sorted(j for j in dag.jobs if j.startswith(job.id + "[") and j.endswith("]"))
        if taken:
            out.append(f"job id {taken[0]!r} is the id of one of this job's instances (map)")
    if mapped:
        out.extend(_map_problems(dag, job, upstream))
    return out


def _map_problems(dag: DAG, job: Any, upstream: Callable[[], set[str]]) -> list[str]:
    value, limit = job.map, job.map_limit
    out = []
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_JOBS:
        out.append(f"field 'mapLimit': expected a whole number from 1 to {MAX_JOBS}, got {limit!r}")
        limit = refs.DEFAULT_MAP_LIMIT
    if isinstance(value, list):
        if len(value) > limit:
            out.append(
                f"field 'map': {len(value)} items, more than the limit of {limit} ('mapLimit')"
            )
        return out
    whole = refs.PATTERN.fullmatch(value) if isinstance(value, str) else None
    if whole is None:
        return [
            *out,
            "field 'map': expected a list, or one reference to a list ({{ job.path }} or "
            f"{{{{ params.name }}}}), got {value!r}",
        ]
    out.extend(refs.problems({"map": value}, dag.jobs, upstream, mapped=False))
    try:
        ref = refs.parse(whole.group(1))
    except refs.RefError:
        return out  # said above
    if isinstance(ref, refs.Literal):
        out.append(
            f"field 'map': expected a list, or one reference to a list, got the text {ref.value!r}"
        )
    elif ref.root == "params":
        try:
            default = refs.resolve(ref, lambda job: None, {"params": dag.params})
        except refs.RefError:
            return out  # the run's parameters may hold it: checked when the job expands
        if not isinstance(default, list):
            out.append(
                f"field 'map': {str(ref)!r} is not a list (the DAG's parameters give it "
                f"{type(default).__name__} {default!r})"
            )
    return out
