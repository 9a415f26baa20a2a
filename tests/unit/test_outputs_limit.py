"""The outputs limit's shortcut: outputs it lets through without encoding them are under the
limit however their JSON escapes them; anything else is measured."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.engine.references import MAX_OUTPUT_BYTES, _surely_small, outputs_problem

SCALARS = (
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False)
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.text(max_size=1100)
)


def encoded_size(outputs: dict[str, object]) -> int:
    return len(json.dumps(outputs, default=repr))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=1100), SCALARS, max_size=70))
def test_what_the_shortcut_lets_through_is_under_the_limit(outputs: dict[str, object]) -> None:
    if _surely_small(outputs):
        assert encoded_size(outputs) <= MAX_OUTPUT_BYTES


def test_the_worst_case_it_lets_through() -> None:
    # 64 keys and values of 1 KiB, every character escaped as \\u00XX: 6 bytes each
    outputs = {f"{i:02d}" + "\x01" * 1022: "\x01" * 1024 for i in range(64)}
    assert _surely_small(outputs)
    assert encoded_size(outputs) <= MAX_OUTPUT_BYTES


def test_outputs_beyond_the_shortcut_are_measured() -> None:
    many = {f"k{i}": "x" * 1024 for i in range(1100)}  # 1,100 keys: over 1 MiB
    assert not _surely_small(many)
    problem = outputs_problem(many)
    assert problem is not None
    assert "more than the limit of 1,048,576" in problem
    assert not _surely_small({"n": 10**30})  # a number of 31 digits: measured
    assert outputs_problem({"n": 10**30}) is None
    assert not _surely_small({"rows": [1, 2]})  # a container: measured
    assert outputs_problem({"rows": [1, 2]}) is None
    assert _surely_small({"result": None, "ok": True, "x": 1.5, "s": "done"})
