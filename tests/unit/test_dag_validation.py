"""DAG loading and validation: every problem names the file, the job and the field."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import DagError, DagValidationError
from orchestrator.model.dag import DAG, Job
from orchestrator.model.loader import dag_from_json, load_one, load_path
from orchestrator.model.trigger_rules import TriggerRule


def _spec(
    jobs: dict[str, Any], edges: Iterable[tuple[Any, Any]] = (), **top: Any
) -> dict[str, Any]:
    vertices = list(jobs)
    return {
        "name": "d",
        **top,
        "jobs": jobs,
        "jobGraph": {
            "vertices": vertices,
            "edges": [{"source": s, "target": t} for s, t in edges],
        },
    }


def _write(tmp_path: Path, data: Any, name: str = "dag.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(DagValidationError) as info:
        load_path(path)
    assert info.value.problems, "a validation error lists its problems"
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def _one_problem(path: Path) -> str:
    problems = _problems(path)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}: ")
    return problems[0]


FAKE = {"type": "fake"}


# -- a valid DAG ---------------------------------------------------------------------------


def test_valid_json_dag_loads(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        _spec(
            {
                "a": {"type": "command", "command": ["echo", "$runId"], "timeout": "5m"},
                "b": {"type": "fake", "duration": "1s", "triggerRule": "one_success"},
                "c": {"type": "command", "command": "echo done", "retries": 3, "pool": "p"},
            },
            [("a", "b"), ("b", "c")],
            pools={"p": 1},
        ),
    )
    (dag,) = load_path(path)
    assert dag.source == str(path)
    assert list(dag.jobs) == ["a", "b", "c"]
    assert set(dag.graph.edges) == {("a", "b"), ("b", "c")}
    assert dag.jobs["b"].rule is TriggerRule.ONE_SUCCESS
    assert dag.jobs["a"].timeout_seconds == 300.0
    assert dag.jobs["c"].retry_policy.attempts == 3
    assert dag.jobs["c"].pools == ("p",)
    assert dag.upstream("c") == ["b"]
    assert list(dag.topological()) == ["a", "b", "c"]
    assert load_one(path).name == "d"


def test_integer_vertices_load_to_the_same_model_as_strings(tmp_path: Path) -> None:
    jobs_int = {"1": FAKE, "2": FAKE, "3": {"type": "fake", "triggerRule": "all_done"}}
    ints = {
        "name": "d",
        "jobs": jobs_int,
        "jobGraph": {
            "vertices": [1, 2, 3],
            "edges": [{"source": 1, "target": 2}, {"source": 2, "target": 3}],
        },
    }
    strings = _spec(jobs_int, [("1", "2"), ("2", "3")])
    (a,) = load_path(_write(tmp_path, ints, "ints.json"))
    (b,) = load_path(_write(tmp_path, strings, "strings.json"))
    assert list(a.jobs) == list(b.jobs) == ["1", "2", "3"]
    assert set(a.graph.edges) == set(b.graph.edges) == {("1", "2"), ("2", "3")}
    assert sorted(a.graph.nodes) == sorted(b.graph.nodes)
    assert [j.type for j in a] == [j.type for j in b]
    assert [j.rule for j in a] == [j.rule for j in b]
    assert a.upstream("3") == b.upstream("3") == ["2"]
    # the integer is kept only to write the graph back as it was read
    assert [j.vertex for j in a] == [1, 2, 3]
    assert [j.vertex for j in b] == ["1", "2", "3"]


# -- each problem, from a JSON file --------------------------------------------------------


def test_cycle_names_its_path(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        _spec({"a": FAKE, "b": FAKE, "c": FAKE}, [("a", "b"), ("b", "c"), ("c", "a")]),
    )
    assert _one_problem(path) == f"{path}: jobGraph: cycle a -> b -> c -> a"


def test_cycle_not_through_the_first_job(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        _spec({"a": FAKE, "b": FAKE, "c": FAKE}, [("a", "b"), ("b", "c"), ("c", "b")]),
    )
    assert _one_problem(path) == f"{path}: jobGraph: cycle b -> c -> b"


def test_self_loop_is_a_cycle(tmp_path: Path) -> None:
    path = _write(tmp_path, _spec({"a": FAKE}, [("a", "a")]))
    assert _one_problem(path) == f"{path}: jobGraph: cycle a -> a"


def test_cycle_with_integer_vertices(tmp_path: Path) -> None:
    data = {
        "name": "d",
        "jobs": {"1": FAKE, "2": FAKE},
        "jobGraph": {
            "vertices": [1, 2],
            "edges": [{"source": 1, "target": 2}, {"source": 2, "target": 1}],
        },
    }
    path = _write(tmp_path, data)
    assert _one_problem(path) == f"{path}: jobGraph: cycle 1 -> 2 -> 1"


@pytest.mark.parametrize(
    ("edge", "expected"),
    [
        (("a", "ghost"), "edge 'a' -> 'ghost' names unknown vertex 'ghost'"),
        (("ghost", "a"), "edge 'ghost' -> 'a' names unknown vertex 'ghost'"),
    ],
)
def test_edge_to_unknown_vertex(tmp_path: Path, edge: tuple[str, str], expected: str) -> None:
    path = _write(tmp_path, _spec({"a": FAKE}, [edge]))
    assert _one_problem(path) == f"{path}: jobGraph: {expected}"


def test_vertex_without_a_job(tmp_path: Path) -> None:
    data = _spec({"a": FAKE})
    data["jobGraph"]["vertices"].append("b")
    path = _write(tmp_path, data)
    assert _one_problem(path) == f"{path}: jobGraph.vertices: vertex 'b' has no job in 'jobs'"


def test_unknown_job_type(tmp_path: Path) -> None:
    path = _write(tmp_path, _spec({"a": {"type": "ftp.upload"}}))
    problem = _one_problem(path)
    assert problem.startswith(f"{path}: job 'a': field 'type': unknown job type 'ftp.upload'")
    assert "command" in problem  # lists the known types
    assert "fake" in problem


def test_missing_type(tmp_path: Path) -> None:
    path = _write(tmp_path, _spec({"a": {"command": ["true"]}}))
    assert _problems(path) == [
        f"{path}: job 'a': field 'type': required, a string",
        f"{path}: jobGraph.vertices: vertex 'a' has no job in 'jobs'",  # the job was dropped
    ]


def test_missing_required_field(tmp_path: Path) -> None:
    path = _write(tmp_path, _spec({"build": {"type": "command"}}))
    assert _one_problem(path) == (
        f"{path}: job 'build': field 'command': required for job type 'command'"
    )


@pytest.mark.parametrize(
    ("spec", "field_message"),
    [
        ({"type": "command", "command": []}, "field 'command': expected a non-empty list"),
        ({"type": "command", "command": "  "}, "field 'command': empty"),
        ({"type": "command", "command": ["x"], "grace": "soon"}, "field 'grace': bad duration"),
        ({"type": "fake", "duration": "5x"}, "field 'duration': bad duration '5x'"),
        ({"type": "fake", "outcome": "maybe"}, "field 'outcome': expected 'success' or"),
        ({"type": "fake", "failTimes": -1}, "field 'failTimes': expected a whole number >= 0"),
    ],
)
def test_connector_field_checks(tmp_path: Path, spec: dict[str, Any], field_message: str) -> None:
    path = _write(tmp_path, _spec({"a": spec}))
    assert _one_problem(path).startswith(f"{path}: job 'a': {field_message}")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"type": "command", "command": ["true"], "image": "x"},
            "field 'image': not a field of job type 'command'",
        ),
        ({"type": "fake", "command": ["true"]}, "field 'command': not a field of job type 'fake'"),
    ],
)
def test_field_not_allowed_for_the_job_type(
    tmp_path: Path, spec: dict[str, Any], message: str
) -> None:
    path = _write(tmp_path, _spec({"a": spec}))
    assert _one_problem(path) == f"{path}: job 'a': {message}"


def test_python_job_in_json_has_no_callable(tmp_path: Path) -> None:
    path = _write(tmp_path, _spec({"a": {"type": "python"}}))
    assert _one_problem(path) == f"{path}: job 'a': field 'call': a python job needs a callable"


def test_python_job_in_json_with_a_call_string_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, _spec({"a": {"type": "python", "call": "mod.fn"}}))
    assert _one_problem(path).startswith(f"{path}: job 'a': field 'call': ")


@pytest.mark.parametrize("name", ["id", "trigger_rule", "vertex"])
def test_json_field_named_like_a_job_argument(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path, _spec({"a": {"type": "fake", name: "x"}}))
    assert _one_problem(path).startswith(f"{path}: job 'a': field {name!r}: ")


def test_bad_trigger_rule(tmp_path: Path) -> None:
    path = _write(tmp_path, _spec({"a": FAKE, "b": {"type": "fake", "triggerRule": "any"}}))
    problem = _one_problem(path)
    assert problem.startswith(f"{path}: job 'b': field 'triggerRule': bad trigger rule 'any'")
    assert "none_failed_min_one_success" in problem


@pytest.mark.parametrize("timeout", ["soon", "0", 0, -5, "1h 30m", True])
def test_bad_job_timeout(tmp_path: Path, timeout: Any) -> None:
    path = _write(tmp_path, _spec({"a": {"type": "fake", "timeout": timeout}}))
    assert _one_problem(path).startswith(
        f"{path}: job 'a': field 'timeout': bad duration {timeout!r}"
    )


@pytest.mark.parametrize("timeout", ["soon", "-1", 0])
def test_bad_dag_timeout(tmp_path: Path, timeout: Any) -> None:
    path = _write(tmp_path, _spec({"a": FAKE}, timeout=timeout))
    assert _one_problem(path).startswith(f"{path}: field 'timeout': bad duration {timeout!r}")


@pytest.mark.parametrize(
    ("retries", "message"),
    [
        ({"attempts": 0}, "field 'retries.attempts': expected a whole number >= 1, got 0"),
        ({"backoff": 0.5}, "field 'retries.backoff': expected a number >= 1, got 0.5"),
        ({"base": "x"}, "field 'retries.base': bad duration 'x'"),
        ({"cap": 0}, "field 'retries.cap': bad duration 0"),
        ({"jitter": 1}, "field 'retries.jitter': expected true or false, got 1"),
        ({"retryOn": ["oops"]}, "field 'retries.retryOn': values must be among"),
        ({"when": "always"}, "field 'retries': unknown field 'when'"),
        ("many", "field 'retries': expected an object or a number of attempts"),
        (0, "field 'retries.attempts': expected a whole number >= 1, got 0"),
    ],
)
def test_bad_retries(tmp_path: Path, retries: Any, message: str) -> None:
    path = _write(tmp_path, _spec({"a": {"type": "fake", "retries": retries}}))
    assert _one_problem(path).startswith(f"{path}: job 'a': {message}")


def test_unknown_pool(tmp_path: Path) -> None:
    path = _write(tmp_path, _spec({"a": {"type": "fake", "pool": "gpu"}}, pools={"db": 1}))
    assert _one_problem(path) == (
        f"{path}: job 'a': field 'pool': unknown pool 'gpu' (declare it in the DAG's 'pools')"
    )


def test_bad_pool_limit(tmp_path: Path) -> None:
    path = _write(tmp_path, _spec({"a": {"type": "fake", "pool": "db"}}, pools={"db": 0}))
    assert _one_problem(path) == f"{path}: field 'pools.db': expected a whole number >= 1, got 0"


def test_bad_on_ambiguous_submit(tmp_path: Path) -> None:
    path = _write(tmp_path, _spec({"a": {"type": "fake", "onAmbiguousSubmit": "retry"}}))
    assert _one_problem(path) == (
        f"{path}: job 'a': field 'onAmbiguousSubmit': expected one of resubmit, unknown, fail, "
        "got 'retry'"
    )


@pytest.mark.parametrize("policy", ["resubmit", "unknown", "fail"])
def test_good_on_ambiguous_submit(tmp_path: Path, policy: str) -> None:
    path = _write(tmp_path, _spec({"a": {"type": "fake", "onAmbiguousSubmit": policy}}))
    (dag,) = load_path(path)
    assert dag.jobs["a"].on_ambiguous_submit == policy


def test_bad_priority_and_concurrency(tmp_path: Path) -> None:
    path = _write(tmp_path, _spec({"a": {"type": "fake", "priority": "high"}}, concurrency=0))
    assert _problems(path) == [
        f"{path}: field 'concurrency': expected a whole number >= 1, got 0",
        f"{path}: job 'a': field 'priority': expected a whole number, got 'high'",
    ]


def test_bad_webhook(tmp_path: Path) -> None:
    hook = {"name": "ops", "url": "ftp://x", "triggerEvent": "onRunStart"}
    path = _write(tmp_path, _spec({"a": FAKE}, webhooks=[hook]))
    problems = _problems(path)
    at = f"{path}: webhook 'ops'"
    assert problems == [
        f"{at}: field 'triggerEvent': 'onRunStart' is not one of onJobSuccess, onJobFailure, "
        "onJobDone",
        f"{at}: field 'url': 'ftp://x' is not an http or https URL",
    ]


def test_several_problems_reported_together(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        _spec(
            {
                "a": {"type": "command", "triggerRule": "sometimes", "timeout": "later"},
                "b": {"type": "nope"},
                "c": {"type": "fake", "pool": "gpu", "retries": {"attempts": -1}},
            },
            [("a", "b"), ("b", "c"), ("c", "a")],
            timeout="forever",
        ),
    )
    problems = _problems(path)
    assert all(p.startswith(f"{path}: ") for p in problems)
    body = [p.removeprefix(f"{path}: ") for p in problems]
    assert body[0].startswith("field 'timeout': bad duration 'forever'")
    expected_starts = [
        "job 'a': field 'command': required for job type 'command'",
        "job 'a': field 'triggerRule': bad trigger rule 'sometimes'",
        "job 'a': field 'timeout': bad duration 'later'",
        "job 'b': field 'type': unknown job type 'nope'",
        "job 'c': field 'retries.attempts': expected a whole number >= 1, got -1",
        "job 'c': field 'pool': unknown pool 'gpu'",
        "jobGraph: cycle a -> b -> c -> a",
    ]
    assert len(body) == 1 + len(expected_starts)
    for start in expected_starts:
        assert any(p.startswith(start) for p in body), start


def test_shape_problems_reported_together(tmp_path: Path) -> None:
    data = {
        "name": 7,
        "owner": "me",
        "params": [],
        "jobs": {"a": "fake", "b": {"type": 3}},
        "jobGraph": {"vertices": [True], "edges": [{"source": "a"}]},
    }
    path = _write(tmp_path, data)
    assert _problems(path) == [
        f"{path}: unknown field 'owner'",
        f"{path}: field 'name': required, a string",
        f"{path}: field 'params': expected an object",
        f"{path}: job 'a': expected an object",
        f"{path}: job 'b': field 'type': required, a string",
        f"{path}: jobGraph.vertices: True is not a string or an integer",
        f"{path}: jobGraph.edges[0]: expected an object with 'source' and 'target'",
    ]


def test_no_jobs(tmp_path: Path) -> None:
    path = _write(tmp_path, {"name": "d", "jobs": {}})
    assert _one_problem(path) == f"{path}: the DAG has no jobs"


def test_bad_dag_name(tmp_path: Path) -> None:
    path = _write(tmp_path, _spec({"a": FAKE}, name="no spaces please"))
    assert _one_problem(path).startswith(f"{path}: field 'name': expected a name of letters")


# -- file-level errors ---------------------------------------------------------------------


def test_json_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path, '{\n  "name": "d",\n  "jobs": {,}\n}\n')
    with pytest.raises(DagError) as info:
        load_path(path)
    assert not isinstance(info.value, DagValidationError)
    assert str(info.value).startswith(f"{path}: line 3 column 12: ")


@pytest.mark.parametrize("top", [[], "dag", 3, None])
def test_non_object_top_level(tmp_path: Path, top: Any) -> None:
    path = _write(tmp_path, top if top != "dag" else '"dag"')
    assert _one_problem(path) == f"{path}: expected a JSON object at the top level"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes('{"name": "caf\xe9"}'.encode("latin-1"))
    with pytest.raises(DagError, match=f"^{path}: not UTF-8 text"):
        load_path(path)


def test_missing_file_and_wrong_suffix(tmp_path: Path) -> None:
    with pytest.raises(DagError, match="no such file"):
        load_path(tmp_path / "absent.json")
    path = _write(tmp_path, "name: d", "dag.yaml")
    with pytest.raises(DagError, match=r"expected a \.json or \.py DAG file"):
        load_path(path)


def test_dag_from_json_uses_the_given_source() -> None:
    with pytest.raises(DagValidationError) as info:
        dag_from_json({"name": "d", "jobs": {"a": {"type": 1}}}, source="inline")
    assert info.value.problems == ["inline: job 'a': field 'type': required, a string"]


# -- Python DAG files ----------------------------------------------------------------------

PY_DAG = """
from orchestrator import DAG, Job

async def work(ctx):
    return ctx.run_id

with DAG("from_python", params={"region": "02"}) as dag:
    extract = Job("extract", type="command", command=["echo", "$region"])
    transform = Job("transform", type="python", call=work)
    load = Job("load", type="fake", duration="1s", trigger_rule="none_failed")
    extract >> transform >> load
"""


def test_python_dag_file_loads(tmp_path: Path) -> None:
    path = _write(tmp_path, PY_DAG, "my_dag.py")
    (dag,) = load_path(path)
    assert dag.name == "from_python"
    assert dag.source == str(path)
    assert set(dag.graph.edges) == {("extract", "transform"), ("transform", "load")}
    assert dag.jobs["load"].rule is TriggerRule.NONE_FAILED
    assert dag.jobs["transform"].call is not None
    assert dag.jobs["transform"].call.__name__ == "work"


def test_python_dag_file_with_two_dags(tmp_path: Path) -> None:
    text = """
from orchestrator import DAG, Job
with DAG("one") as first:
    Job("a", "fake")
with DAG("two") as second:
    Job("b", "fake")
"""
    path = _write(tmp_path, text, "two.py")
    assert sorted(d.name for d in load_path(path)) == ["one", "two"]
    assert load_one(path, "two").name == "two"
    with pytest.raises(DagError, match="defines 2 DAGs"):
        load_one(path)
    with pytest.raises(DagError, match="no DAG named 'three'"):
        load_one(path, "three")


def test_invalid_python_dag_file_names_the_file(tmp_path: Path) -> None:
    text = """
from orchestrator import DAG, Job
with DAG("bad") as dag:
    a = Job("a", "command")
    b = Job("b", "fake", timeout="whenever")
    a >> b >> a
"""
    path = _write(tmp_path, text, "bad_dag.py")
    assert _problems(path) == [
        f"{path}: job 'a': field 'command': required for job type 'command'",
        f"{path}: job 'b': field 'timeout': bad duration 'whenever' "
        "(use seconds or e.g. '90s', '5m', '2h', '1h30m')",
        f"{path}: jobGraph: cycle a -> b -> a",
    ]


def test_python_file_defining_no_dag(tmp_path: Path) -> None:
    path = _write(tmp_path, "X = 1\n", "empty.py")
    with pytest.raises(DagError, match=f"^{path}: defines no DAG"):
        load_path(path)


def test_python_file_that_fails_to_import(tmp_path: Path) -> None:
    path = _write(tmp_path, "raise RuntimeError('boom')\n", "broken.py")
    with pytest.raises(DagError, match=f"^{path}: importing failed: RuntimeError: boom"):
        load_path(path)


# -- the Python API ------------------------------------------------------------------------


def test_python_api_edges() -> None:
    with DAG("edges") as dag:
        a, b, c, d, e = (Job(name, "fake") for name in "abcde")
        a >> b
        [a, b] >> c
        d << c  # c -> d
        [e] << a  # a -> e
        assert (a >> [d, e]) == [d, e]
    assert set(dag.graph.edges) == {
        ("a", "b"),
        ("a", "c"),
        ("b", "c"),
        ("c", "d"),
        ("a", "e"),
        ("a", "d"),
    }
    assert sorted(dag.upstream("c")) == ["a", "b"]
    assert sorted(dag.downstream("a")) == ["b", "c", "d", "e"]
    dag.validate()


def test_jobs_join_only_the_dag_they_are_made_in() -> None:
    outside = Job("outside", "fake")
    with DAG("inner") as dag:
        inside = Job("inside", "fake")
    assert outside.dag is None
    assert inside.dag is dag
    assert list(dag.jobs) == ["inside"]
    with pytest.raises(ValueError, match="make jobs inside `with DAG"):
        outside >> Job("other", "fake")


def test_duplicate_job_id() -> None:
    with DAG("dups") as dag:
        Job("a", "fake")
        Job("a", "command", command=["true"])
        Job("b", "fake")
    with pytest.raises(DagValidationError) as info:
        dag.validate()
    assert info.value.problems == ["dag 'dups': job 'a': duplicate job id"]
    assert dag.jobs["a"].type == "fake"  # the first one is kept


def test_python_api_cycle() -> None:
    with DAG("loop") as dag:
        a, b, c = Job("a", "fake"), Job("b", "fake"), Job("c", "fake")
        a >> b >> c >> a
    with pytest.raises(DagValidationError) as info:
        dag.validate()
    assert info.value.problems == ["dag 'loop': jobGraph: cycle a -> b -> c -> a"]


def test_python_api_edge_to_unknown_vertex() -> None:
    with DAG("ghost") as dag:
        Job("a", "fake")
    dag.add_edge("a", "ghost")
    with pytest.raises(DagValidationError) as info:
        dag.validate()
    assert info.value.problems == [
        "dag 'ghost': jobGraph: edge 'a' -> 'ghost' names unknown vertex 'ghost'"
    ]


def test_python_api_reports_every_problem() -> None:
    with DAG("many", timeout="never", pools={"db": 1}) as dag:
        Job("a", "nope")
        Job("b", "command")
        Job("c", "fake", trigger_rule="whenever", retries={"attempts": "x"})
        Job("d", "fake", timeout=0, pool=["db", "gpu"], on_ambiguous_submit="guess")
        Job("e", "fake", triggerRule="all_done")  # an engine field passed as a connector field
        Job("f", "python")
    with pytest.raises(DagValidationError) as info:
        dag.validate()
    where = "dag 'many'"
    problems = info.value.problems
    assert problems[0].startswith(f"{where}: field 'timeout': bad duration 'never'")
    expected_starts = [
        "job 'a': field 'type': unknown job type 'nope'",
        "job 'b': field 'command': required for job type 'command'",
        "job 'c': field 'triggerRule': bad trigger rule 'whenever'",
        "job 'c': field 'retries.attempts': expected a whole number >= 1, got 'x'",
        "job 'd': field 'timeout': bad duration 0",
        "job 'd': field 'pool': unknown pool 'gpu'",
        "job 'd': field 'onAmbiguousSubmit': expected one of resubmit, unknown, fail, got 'guess'",
        "job 'e': field 'triggerRule': not a field of job type 'fake'",
        "job 'e': field 'triggerRule': is an engine field, not a connector field",
        "job 'f': field 'call': a python job needs a callable",
    ]
    body = [p.removeprefix(f"{where}: ") for p in problems[1:]]
    assert len(body) == len(expected_starts), problems
    for got, start in zip(body, expected_starts, strict=True):
        assert got.startswith(start), (got, start)


def test_known_types_restricts_the_job_types() -> None:
    with DAG("restricted") as dag:
        Job("a", "command", command=["true"])
    dag.validate()
    with pytest.raises(DagValidationError, match=r"unknown job type 'command' \(known: fake\)"):
        dag.validate(known_types=["fake"])


def test_thousands_of_problems_list_the_first_fifty_and_count_the_rest() -> None:
    from orchestrator.errors import DagValidationError

    error = DagValidationError([f"problem {i}" for i in range(3000)])
    lines = str(error).splitlines()
    assert lines[:2] == ["problem 0", "problem 1"]
    assert len(lines) == 51
    assert lines[-1] == "... and 2950 more problems (3000 in all)"
    assert len(error.problems) == 3000  # all kept for whoever reads them


def test_a_python_dag_file_rewritten_within_a_second_loads_its_new_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a cached .pyc is checked against the source's mtime in whole seconds and its size: the
    # loader must not use one, or a daemon reloading a quick edit would run the old code
    monkeypatch.setattr("sys.dont_write_bytecode", False)
    path = tmp_path / "flow.py"
    source = "from orchestrator import DAG, Job\nwith DAG({!r}) as dag:\n    Job('a', 'fake')\n"
    path.write_text(source.format("one"))
    assert [d.name for d in load_path(path)] == ["one"]
    path.write_text(source.format("two"))
    assert [d.name for d in load_path(path)] == ["two"]
    assert not (tmp_path / "__pycache__").exists()
