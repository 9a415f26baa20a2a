"""Loading DAG files: JSON (``*.json``) and Python modules (``*.py``)."""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import DagError, DagValidationError
from .dag import DAG, Job
from .refs import DEFAULT_MAP_LIMIT
from .validation import ENGINE_FIELDS

_DAG_FIELDS = frozenset(
    {
        "name",
        "description",
        "schedule",
        "params",
        "webhooks",
        "jobs",
        "jobGraph",
        "failFast",
        "concurrency",
        "pools",
        "timeout",
    }
)
MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_DEPTH = 64
"""JSON arrays and objects nest at most this deep in a DAG file (the engine recurses on them)."""


def load_path(path: str | Path) -> list[DAG]:
    """Every DAG a file defines, validated. Raises :class:`DagError` naming the file."""
    p = Path(path)
    if not p.is_file():
        raise DagError(f"{p}: no such file")
    if p.suffix == ".json":
        dags = [load_json_file(p)]
    elif p.suffix == ".py":
        dags = load_python_file(p)
    else:
        raise DagError(f"{p}: expected a .json or .py DAG file")
    for dag in dags:
        dag.validate()
    return dags


def load_one(path: str | Path, name: str | None = None) -> DAG:
    dags = load_path(path)
    if name is not None:
        for dag in dags:
            if dag.name == name:
                return dag
        raise DagError(f"{path}: no DAG named {name!r} (found: {', '.join(d.name for d in dags)})")
    if len(dags) != 1:
        names = ", ".join(d.name for d in dags)
        raise DagError(f"{path}: defines {len(dags)} DAGs ({names}); choose one with --dag NAME")
    return dags[0]


def load_json_file(path: Path) -> DAG:
    if path.stat().st_size > MAX_FILE_BYTES:
        raise DagError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DagError(f"{path}: not UTF-8 text ({exc.reason})") from None
    data, duplicates = parse_json(text, str(path))
    return dag_from_json(data, source=str(path), duplicates=duplicates)


Duplicates = Sequence[tuple[dict[str, Any], str]]
"""Each JSON object that repeats a key, with the repeated key (the later value won)."""


def parse_json(text: str, source: str) -> tuple[Any, Duplicates]:
    """The JSON document and its repeated keys; :class:`DagError` names ``source`` and says
    what is wrong in one line (syntax, nesting deeper than :data:`MAX_DEPTH`, a huge number)."""
    duplicates: list[tuple[dict[str, Any], str]] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(items)
        if len(obj) != len(items):
            seen: set[str] = set()
            for key, _ in items:
                if key in seen:
                    duplicates.append((obj, key))
                seen.add(key)
        return obj

    try:
        data = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        raise DagError(f"{source}: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise DagError(f"{source}: nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise DagError(f"{source}: {exc}") from None
    if _depth_exceeds(data, MAX_DEPTH):
        raise DagError(f"{source}: nested more than {MAX_DEPTH} levels deep")
    return data, duplicates


def _depth_exceeds(data: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than ``limit`` deep (without recursing)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > limit:
                return True
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    return False


def dag_from_json(data: Any, *, source: str = "<json>", duplicates: Duplicates = ()) -> DAG:
    """Build a DAG from the JSON form; every shape problem is collected and reported at once.

    ``duplicates`` are the keys :func:`parse_json` saw twice in one object: each is a problem.
    """
    problems: list[str] = []

    def bad(message: str) -> None:
        problems.append(f"{source}: {message}")

    if not isinstance(data, dict):
        raise DagValidationError([f"{source}: expected a JSON object at the top level"])
    for problem in _duplicate_problems(data, duplicates):
        bad(problem)
    for key in data:
        if key not in _DAG_FIELDS:
            bad(f"unknown field {key!r}")
    name = data.get("name")
    if not isinstance(name, str):
        bad("field 'name': required, a string")
        name = "?"
    params = data.get("params", {})
    if not isinstance(params, dict):
        bad("field 'params': expected an object")
        params = {}
    pools = data.get("pools", {})
    if not isinstance(pools, dict):
        bad("field 'pools': expected an object of pool name to limit")
        pools = {}
    webhooks = data.get("webhooks", [])
    if not isinstance(webhooks, list):
        bad("field 'webhooks': expected a list")
        webhooks = []
    schedule = data.get("schedule")
    if schedule is not None and not isinstance(schedule, dict):
        bad("field 'schedule': expected an object")
        schedule = None
    dag = DAG(
        name,
        params=params,
        fail_fast=data.get("failFast", False),
        concurrency=data.get("concurrency"),
        pools=pools,
        timeout=data.get("timeout"),
        schedule=schedule,
        webhooks=webhooks,
        description=data.get("description"),
        source=source,
    )
    jobs = data.get("jobs")
    if not isinstance(jobs, dict):
        bad("field 'jobs': required, an object of job id to job")
        jobs = {}
    for job_id, spec in jobs.items():
        if not isinstance(spec, dict):
            bad(f"job {job_id!r}: expected an object")
            continue
        job_type = spec.get("type")
        if not isinstance(job_type, str):
            bad(f"job {job_id!r}: field 'type': required, a string")
            continue
        pool = spec.get("pool")
        job_webhooks = spec.get("webhooks", [])
        if not isinstance(job_webhooks, list):
            bad(f"job {job_id!r}: field 'webhooks': expected a list")
            job_webhooks = []
        priority = spec.get("priority", 0)
        job = Job(
            job_id,
            job_type,
            connection=spec.get("connection"),
            trigger_rule=spec.get("triggerRule", "all_success"),
            retries=spec.get("retries"),
            timeout=spec.get("timeout"),
            priority=priority,
            pool=pool,
            on_ambiguous_submit=spec.get("onAmbiguousSubmit"),
            description=spec.get("description"),
            webhooks=job_webhooks,
            map=spec.get("map"),
            map_limit=spec.get("mapLimit", DEFAULT_MAP_LIMIT),
        )
        # the job type's fields, as they are: never taken for Job's own arguments
        job.params = {k: v for k, v in spec.items() if k not in ENGINE_FIELDS}
        dag.add(job)
    _read_job_graph(data.get("jobGraph"), dag, bad)
    if problems:
        raise DagValidationError(problems)
    return dag


def _duplicate_problems(data: dict[str, Any], duplicates: Duplicates) -> list[str]:
    jobs = data.get("jobs")
    owners = {id(spec): job_id for job_id, spec in jobs.items()} if isinstance(jobs, dict) else {}
    problems = []
    for obj, key in duplicates:
        if obj is jobs:
            problems.append(f"job {key!r}: duplicate job id (it appears twice in 'jobs')")
        elif obj is data:
            problems.append(f"field {key!r}: appears twice")
        elif id(obj) in owners:
            problems.append(f"job {owners[id(obj)]!r}: field {key!r}: appears twice")
        else:
            problems.append(f"key {key!r} appears twice in one object")
    return problems


def _read_job_graph(graph: Any, dag: DAG, bad: Any) -> None:
    if graph is None:
        return  # no edges: every job is a root
    if not isinstance(graph, dict):
        bad("field 'jobGraph': expected an object with 'vertices' and 'edges'")
        return
    vertices = graph.get("vertices", [])
    edges = graph.get("edges", [])
    if not isinstance(vertices, list):
        bad("field 'jobGraph.vertices': expected a list")
        vertices = []
    if not isinstance(edges, list):
        bad("field 'jobGraph.edges': expected a list")
        edges = []
    seen: set[str] = set()
    for v in vertices:
        if isinstance(v, bool) or not isinstance(v, str | int):
            bad(f"jobGraph.vertices: {v!r} is not a string or an integer")
        elif str(v) in seen:
            bad(f"jobGraph.vertices: vertex {v!r} is listed twice")
        elif str(v) not in dag.jobs:
            bad(f"jobGraph.vertices: vertex {v!r} has no job in 'jobs'")
        else:
            dag.jobs[str(v)].vertex = v
        if isinstance(v, str | int) and not isinstance(v, bool):
            seen.add(str(v))
    for i, edge in enumerate(edges):
        if not isinstance(edge, dict) or "source" not in edge or "target" not in edge:
            bad(f"jobGraph.edges[{i}]: expected an object with 'source' and 'target'")
            continue
        s, t = edge["source"], edge["target"]
        if any(isinstance(x, bool) or not isinstance(x, str | int) for x in (s, t)):
            bad(f"jobGraph.edges[{i}]: source and target must be strings or integers")
            continue
        dag.add_edge(str(s), str(t))


class _SourceLoader(importlib.machinery.SourceFileLoader):
    """Compiles the file as it is now, never through ``__pycache__``: a cached ``.pyc`` is
    checked against the source's mtime in whole seconds and its size, so a DAG file rewritten
    within a second at the same size (a daemon reloading an edit) would run the old code."""

    def get_code(self, fullname: str) -> Any:
        path = self.get_filename(fullname)
        return self.source_to_code(self.get_data(path), path)


def load_python_file(path: Path) -> list[DAG]:
    # named after the file, the same in every process: a python job's ``call`` is stored as
    # ``module.function``, and a run is resumed (in another process) only if that matches
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    module_name = f"orchestrator_dag_{digest}"
    loader = _SourceLoader(module_name, str(path))
    spec = importlib.util.spec_from_file_location(module_name, path, loader=loader)
    if spec is None or spec.loader is None:
        raise DagError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except DagError:
        raise
    except Exception as exc:
        raise DagError(f"{path}: importing failed: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.modules.pop(module_name, None)
    found: dict[int, tuple[str, DAG]] = {}  # one DAG bound to two variables is one DAG
    for variable, value in vars(module).items():
        if isinstance(value, DAG):
            found.setdefault(id(value), (variable, value))
    if not found:
        raise DagError(f"{path}: defines no DAG (make one with `with DAG(...) as dag:`)")
    by_name: dict[str, str] = {}
    for variable, dag in found.values():
        if isinstance(dag.name, str) and dag.name in by_name:  # (validate checks the name)
            raise DagError(
                f"{path}: two DAGs are named {dag.name!r} (variables {by_name[dag.name]!r} and "
                f"{variable!r}); give each DAG its own name"
            )
        by_name[str(dag.name)] = variable
    dags = [dag for _, dag in found.values()]
    for dag in dags:
        dag.source = dag.source or str(path)
    return dags
