"""References (``{{ job.path }}``) and maps checked when a DAG loads: each problem names the
file, the job and the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.errors import DagValidationError
from orchestrator.model import refs
from orchestrator.model.loader import load_path
from orchestrator.model.tokens import substitute, substitute_shell


def _dag(tmp_path: Path, jobs: dict[str, Any], edges: list[tuple[str, str]], **top: Any) -> Path:
    path = tmp_path / "d.json"
    spec = {
        "name": "d",
        **top,
        "jobs": jobs,
        "jobGraph": {
            "vertices": list(jobs),
            "edges": [{"source": s, "target": t} for s, t in edges],
        },
    }
    path.write_text(json.dumps(spec))
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(DagValidationError) as info:
        load_path(path)
    return info.value.problems


FAKE = {"type": "fake"}


def test_references_to_upstreams_load(tmp_path: Path) -> None:
    path = _dag(
        tmp_path,
        {
            "wrangle": FAKE,
            "mid": FAKE,
            "load": {
                **FAKE,
                "message": '{{ wrangle.jobs[0].id }} {{ jobs["mid"] }}',
                "outputs": {"x": "{{ params.x }}"},
            },
        },
        [("wrangle", "mid"), ("mid", "load")],  # wrangle is an ancestor, not a parent
    )
    (dag,) = load_path(path)
    assert dag.jobs["load"].params["outputs"] == {"x": "{{ params.x }}"}


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        (
            "{{ other.path }}",
            "reference '{{ other.path }}': job 'other' is not upstream of this job",
        ),
        ("{{ ghost.path }}", "reference '{{ ghost.path }}': unknown job 'ghost'"),
        ("{{ a..b }}", "malformed reference '{{ a..b }}': cannot read '..b'"),
        ("{{ a[x] }}", "malformed reference '{{ a[x] }}': cannot read '[x]'"),
        ("{{ }}", "malformed reference '{{ }}': expected a job id, 'params' or 'item'"),
        ("{{ item.x }}", "reference '{{ item.x }}': 'item' is only known in a job that maps"),
    ],
)
def test_a_bad_reference_names_the_job_and_field(tmp_path: Path, field: str, expected: str) -> None:
    path = _dag(
        tmp_path,
        {"a": FAKE, "other": FAKE, "b": {**FAKE, "message": {"deep": ["x", field]}}},
        [("a", "b")],
    )
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}: job 'b': field 'message.deep[1]': {expected}"), problem


@pytest.mark.parametrize(
    ("map_", "params", "expected"),
    [
        (7, {}, "field 'map': expected a list, or one reference to a list"),
        ("files", {}, "field 'map': expected a list, or one reference to a list"),
        ("x {{ a.files }}", {}, "field 'map': expected a list, or one reference to a list"),
        ("{{ params.one }}", {"one": "a string"}, "field 'map': '{{ params.one }}' is not a list"),
        (
            "{{ other.files }}",
            {},
            "field 'map': reference '{{ other.files }}': job 'other' is not upstream",
        ),
        ([1, 2, 3], {}, "field 'map': 3 items, more than the limit of 2 ('mapLimit')"),
    ],
)
def test_a_map_over_something_that_is_not_a_list(
    tmp_path: Path, map_: Any, params: dict[str, Any], expected: str
) -> None:
    path = _dag(
        tmp_path,
        {"a": FAKE, "other": FAKE, "b": {**FAKE, "map": map_, "mapLimit": 2}},
        [("a", "b")],
        params=params,
    )
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}: job 'b': {expected}"), problem


def test_a_map_over_an_upstream_or_a_parameter_loads(tmp_path: Path) -> None:
    path = _dag(
        tmp_path,
        {
            "a": FAKE,
            "b": {**FAKE, "map": "{{ a.files }}", "message": "{{ item.name }}"},
            "c": {**FAKE, "map": "{{ params.regions }}", "message": "{{ item }}"},
            "d": {**FAKE, "map": ["x", "y"]},
        },
        [("a", "b")],
        params={"regions": ["eu", "us"]},
    )
    (dag,) = load_path(path)
    assert dag.jobs["b"].map == "{{ a.files }}"
    assert dag.jobs["d"].map_limit == 1000


def test_substitution_is_one_pass_and_keeps_json_values() -> None:
    tokens = {"runId": "r1", refs.KEY + "a.v": {"k": [1, "$runId"]}, refs.KEY + "a.s": "{{ a.v }}"}
    assert substitute("{{ a.v }}", tokens) == {"k": [1, "$runId"]}
    assert substitute("$runId:{{a.v}}", tokens) == 'r1:{"k": [1, "$runId"]}'
    assert substitute("{{ a.s }} $runId", tokens) == "{{ a.v }} r1"
    assert substitute('{{ "{{" }}x}}', tokens) == "{{x}}"
    script, env = substitute_shell("echo {{ a.s }} '{{ a.v }}' \"$runId\"", tokens)
    assert (
        script
        == 'echo "${ORCHESTRATOR_REF_0}" '
        + "''\"${ORCHESTRATOR_REF_1}\"'' "
        + '"${ORCHESTRATOR_TOKEN_runId}"'
    )
    assert env == {
        "ORCHESTRATOR_REF_0": "{{ a.v }}",
        "ORCHESTRATOR_REF_1": '{"k": [1, "$runId"]}',
        "ORCHESTRATOR_TOKEN_runId": "r1",
    }


def test_outputs_built_in_python_write_their_reference() -> None:
    out = refs.Output("my job", (), source=object())
    assert str(out["a b"][0].c) == '{{ jobs["my job"]["a b"][0].c }}'
    assert refs.parse(out["a b"][0].c.text) == refs.Ref(
        "job", "my job", ("a b", 0, "c"), out["a b"][0].c.text
    )
    assert str(refs.item.name) == "{{ item.name }}"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(value=JSON, prefix=st.text(max_size=10), suffix=st.text(max_size=10))
def test_a_substituted_value_is_data_whatever_it_holds(
    value: Any, prefix: str, suffix: str
) -> None:
    """A value holding '$tokens', '{{ references }}' or quotes comes out as it went in: the
    field that is the reference gets it as it is, a longer string its text, once."""
    tokens = {"runId": "RUN", refs.KEY + "up.v": value}
    assert substitute("{{ up.v }}", tokens) == value
    if not prefix and not suffix:
        return  # the field is the reference: asserted above
    text = refs.as_text(value)
    # the prefix and suffix may hold tokens of their own: substituted as usual, around the value
    expected = (
        substitute(prefix.replace("{", "("), tokens)
        + text
        + substitute(suffix.replace("{", "("), tokens)
    )
    got = substitute(prefix.replace("{", "(") + "{{ up.v }}" + suffix.replace("{", "("), tokens)
    assert got == expected
