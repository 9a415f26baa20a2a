"""The run outcome, a pure function of the jobs' end states, trigger rules and edges."""

from __future__ import annotations

import pytest

from orchestrator.model.outcome import run_failure
from orchestrator.model.states import JobState
from orchestrator.model.trigger_rules import TriggerRule

J, T = JobState, TriggerRule
OK, ALL_SUCCESS = J.SUCCEEDED, T.ALL_SUCCESS


@pytest.mark.parametrize(
    ("jobs", "edges", "reason"),
    [
        ({"a": (OK, ALL_SUCCESS)}, [], None),
        (
            {"a": (J.UNKNOWN, ALL_SUCCESS), "z": (OK, T.ALL_DONE)},
            [("a", "z")],
            "1 job(s) failed: a",
        ),
        ({"a": (J.UNKNOWN, ALL_SUCCESS), "h": (OK, T.ONE_FAILED)}, [("a", "h")], None),
        # a handler that did not run (skipped) handles nothing
        (
            {"a": (J.FAILED, ALL_SUCCESS), "h": (J.SKIPPED, T.ONE_FAILED)},
            [("a", "h")],
            "1 job(s) failed: a",
        ),
        # an all_done job that failed after a failure: its own failure is not handled by a
        # handler of the job before it
        (
            {"a": (J.FAILED, ALL_SUCCESS), "c": (J.FAILED, T.ALL_DONE), "h": (OK, T.ONE_FAILED)},
            [("a", "c"), ("c", "h")],
            "1 job(s) failed: a",
        ),
        # a cancelled final job (no failure state) fails the run as a final job
        ({"a": (J.CANCELLED, ALL_SUCCESS)}, [], "1 final job(s) did not succeed: a"),
        # named in DAG order, the first five
        (
            {f"j{n}": (J.FAILED, ALL_SUCCESS) for n in (3, 1, 7, 2, 9, 4, 8)},
            [],
            "7 job(s) failed: j3, j1, j7, j2, j9, ... (2 more)",
        ),
    ],
)
def test_run_failure(
    jobs: dict[str, tuple[JobState, TriggerRule]], edges: list[tuple[str, str]], reason: str | None
) -> None:
    assert run_failure(jobs, edges) == reason
