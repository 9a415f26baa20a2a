"""Every validation error names the file and the job or field, and all are reported at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator import DAG, DagError, DagValidationError, Job, load_path


def write(
    tmp_path: Path, jobs: dict[str, Any], edges: list[tuple[Any, Any]] = (), **extra: Any
) -> Path:  # type: ignore[assignment]
    data = {
        "name": "v",
        **extra,
        "jobs": jobs,
        "jobGraph": {
            "vertices": list(jobs),
            "edges": [{"source": s, "target": t} for s, t in edges],
        },
    }
    path = tmp_path / "dag.json"
    path.write_text(json.dumps(data))
    return path


FAKE = {"type": "fake"}


@pytest.mark.parametrize(
    ("jobs", "edges", "extra", "message"),
    [
        (
            {"a": FAKE, "b": FAKE, "c": FAKE},
            [("a", "b"), ("b", "c"), ("c", "a")],
            {},
            "jobGraph: cycle a -> b -> c -> a",
        ),
        (
            {"a": FAKE},
            [("a", "ghost")],
            {},
            "jobGraph: edge 'a' -> 'ghost' names unknown vertex 'ghost'",
        ),
        ({"a": {"type": "teleport"}}, [], {}, "job 'a': field 'type': unknown job type 'teleport'"),
        (
            {"a": {"type": "command"}},
            [],
            {},
            "job 'a': field 'command': required for job type 'command'",
        ),
        (
            {"a": {**FAKE, "triggerRule": "most_success"}},
            [],
            {},
            "job 'a': field 'triggerRule': bad trigger rule 'most_success'",
        ),
        (
            {"a": {**FAKE, "timeout": "soon"}},
            [],
            {},
            "job 'a': field 'timeout': bad duration 'soon'",
        ),
        ({"a": FAKE}, [], {"timeout": "-5m"}, "field 'timeout': bad duration '-5m'"),
        ({"a": {**FAKE, "retries": {"attempts": 0}}}, [], {}, "job 'a': field 'retries.attempts'"),
        ({"a": {**FAKE, "pool": "gpu"}}, [], {}, "job 'a': field 'pool': unknown pool 'gpu'"),
        (
            {"a": {**FAKE, "colour": "blue"}},
            [],
            {},
            "job 'a': field 'colour': not a field of job type 'fake'",
        ),
        (
            {"a": {**FAKE, "onAmbiguousSubmit": "maybe"}},
            [],
            {},
            "job 'a': field 'onAmbiguousSubmit'",
        ),
    ],
)
def test_each_error_names_file_and_job_or_field(
    tmp_path: Path,
    jobs: dict[str, Any],
    edges: list[tuple[str, str]],
    extra: dict[str, Any],
    message: str,
) -> None:
    path = write(tmp_path, jobs, edges, **extra)
    with pytest.raises(DagError) as info:
        load_path(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_duplicate_job_id_in_python() -> None:
    with DAG("dup", source="dags/dup.py") as dag:
        Job("a", "fake")
        Job("a", "fake")
    with pytest.raises(DagValidationError, match=r"dags/dup\.py: job 'a': duplicate job id"):
        dag.validate()


def test_all_problems_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {"a": {"type": "nope"}, "b": {**FAKE, "timeout": "x"}, "c": {**FAKE, "triggerRule": "y"}},
    )
    with pytest.raises(DagValidationError) as info:
        load_path(path)
    assert len(info.value.problems) == 3


def test_integer_vertices_load_like_strings(tmp_path: Path) -> None:
    path = write(tmp_path, {"1": FAKE, "2": FAKE}, [(1, 2)])
    data = json.loads(path.read_text())
    data["jobGraph"]["vertices"] = [1, 2]
    path.write_text(json.dumps(data))
    (dag,) = load_path(path)
    assert dag.upstream("2") == ["1"]
    assert dag.jobs["1"].vertex == 1


def test_bad_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"name": "x",\n "jobs": {,}}')
    with pytest.raises(DagError, match=r"broken.json: line 2 column 11"):
        load_path(path)
