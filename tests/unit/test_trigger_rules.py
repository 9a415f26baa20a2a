"""Trigger rules: upstream outcome counts to a decision, with Airflow's meaning for each rule."""

from __future__ import annotations

import pytest

from orchestrator.model.states import JobState
from orchestrator.model.trigger_rules import Decision, TriggerRule, UpstreamCounts, evaluate

R = TriggerRule
RUN, WAIT, SKIP, UF = Decision.RUN, Decision.WAIT, Decision.SKIP, Decision.UPSTREAM_FAILED

# (total, success, failed, upstream_failed, skipped) -> decision, per rule
TABLES: dict[TriggerRule, list[tuple[tuple[int, int, int, int, int], Decision]]] = {
    R.ALL_SUCCESS: [
        ((3, 0, 0, 0, 0), WAIT),  # nothing done yet
        ((3, 2, 0, 0, 0), WAIT),  # waits until all succeed
        ((3, 3, 0, 0, 0), RUN),
        ((1, 1, 0, 0, 0), RUN),
        ((3, 1, 1, 0, 0), UF),  # upstream_failed at the first failure, before all are done
        ((3, 0, 0, 1, 0), UF),  # an upstream_failed upstream propagates
        ((3, 0, 0, 0, 1), SKIP),  # skipped as soon as one upstream skipped
        ((3, 2, 0, 0, 1), SKIP),
        ((3, 1, 1, 0, 1), UF),  # a failure outweighs a skip
    ],
    R.ALL_FAILED: [
        ((3, 0, 0, 0, 0), WAIT),
        ((3, 0, 2, 0, 0), WAIT),
        ((3, 0, 3, 0, 0), RUN),
        ((3, 0, 1, 2, 0), RUN),  # upstream_failed counts as failed
        ((3, 0, 0, 3, 0), RUN),
        ((3, 1, 0, 0, 0), SKIP),  # one success already rules it out
        ((3, 0, 1, 0, 1), SKIP),  # so does one skip
        ((3, 0, 2, 0, 1), SKIP),
    ],
    R.ALL_DONE: [
        ((3, 0, 0, 0, 0), WAIT),
        ((3, 1, 1, 0, 0), WAIT),
        ((3, 1, 1, 0, 1), RUN),
        ((3, 0, 3, 0, 0), RUN),
        ((3, 0, 0, 3, 0), RUN),
        ((3, 0, 0, 0, 3), RUN),
        ((3, 3, 0, 0, 0), RUN),
    ],
    R.ALL_SKIPPED: [
        ((3, 0, 0, 0, 0), WAIT),
        ((3, 0, 0, 0, 2), WAIT),
        ((3, 0, 0, 0, 3), RUN),
        ((3, 1, 0, 0, 0), SKIP),  # one success: not all skipped
        ((3, 0, 1, 0, 0), SKIP),
        ((3, 0, 0, 1, 2), SKIP),
    ],
    R.ONE_SUCCESS: [
        ((3, 0, 0, 0, 0), WAIT),
        ((3, 1, 0, 0, 0), RUN),  # runs at the first success
        ((3, 1, 2, 0, 0), RUN),
        ((3, 1, 0, 0, 2), RUN),
        ((3, 0, 2, 0, 0), WAIT),  # one still running may succeed
        ((3, 0, 0, 0, 2), WAIT),
        ((3, 0, 3, 0, 0), UF),  # all done without a success
        ((3, 0, 1, 1, 1), UF),
        ((3, 0, 0, 0, 3), SKIP),  # all skipped
    ],
    R.ONE_FAILED: [
        ((3, 0, 0, 0, 0), WAIT),
        ((3, 0, 1, 0, 0), RUN),  # runs at the first failure
        ((3, 0, 0, 1, 0), RUN),
        ((3, 2, 0, 0, 0), WAIT),
        ((3, 3, 0, 0, 0), SKIP),  # all done without a failure
        ((3, 2, 0, 0, 1), SKIP),
        ((3, 0, 0, 0, 3), SKIP),
    ],
    R.ONE_DONE: [
        ((3, 0, 0, 0, 0), WAIT),
        ((3, 1, 0, 0, 0), RUN),  # a success or a failure is "done"
        ((3, 0, 1, 0, 0), RUN),
        ((3, 0, 0, 1, 0), WAIT),  # upstream_failed and skipped are not, as in Airflow
        ((3, 0, 0, 0, 2), WAIT),
        ((3, 0, 0, 3, 0), SKIP),
        ((3, 0, 0, 1, 2), SKIP),
        ((3, 0, 0, 0, 3), SKIP),
    ],
    R.NONE_FAILED: [
        ((3, 0, 0, 0, 0), WAIT),
        ((3, 2, 0, 0, 0), WAIT),
        ((3, 3, 0, 0, 0), RUN),
        ((3, 1, 0, 0, 2), RUN),
        ((3, 0, 0, 0, 3), RUN),  # all skipped still runs
        ((3, 1, 1, 0, 0), UF),  # at the first failure
        ((3, 0, 0, 1, 0), UF),
    ],
    R.NONE_FAILED_MIN_ONE_SUCCESS: [
        ((3, 0, 0, 0, 0), WAIT),
        ((3, 1, 0, 0, 1), WAIT),
        ((3, 0, 0, 0, 2), WAIT),
        ((3, 1, 0, 0, 2), RUN),
        ((3, 3, 0, 0, 0), RUN),
        ((3, 0, 0, 0, 3), SKIP),  # all skipped: no success
        ((3, 0, 1, 0, 0), UF),
        ((3, 2, 0, 1, 0), UF),
    ],
    R.NONE_SKIPPED: [
        ((3, 0, 0, 0, 0), WAIT),
        ((3, 1, 1, 0, 0), WAIT),
        ((3, 1, 1, 1, 0), RUN),
        ((3, 0, 3, 0, 0), RUN),
        ((3, 0, 0, 0, 1), SKIP),  # at the first skip
        ((3, 2, 0, 0, 1), SKIP),
    ],
    R.ALWAYS: [
        ((3, 0, 0, 0, 0), RUN),  # at once, before anything upstream ends
        ((3, 1, 1, 0, 0), RUN),
        ((3, 0, 3, 0, 0), RUN),
        ((3, 0, 0, 3, 0), RUN),
        ((3, 0, 0, 0, 3), RUN),
    ],
}


def test_every_rule_has_a_table() -> None:
    assert set(TABLES) == set(TriggerRule)
    assert len(TriggerRule) == 11


@pytest.mark.parametrize(
    ("rule", "counts", "expected"),
    [
        pytest.param(rule, counts, expected, id=f"{rule}-{'/'.join(map(str, counts))}")
        for rule, rows in TABLES.items()
        for counts, expected in rows
    ],
)
def test_decision(
    rule: TriggerRule, counts: tuple[int, int, int, int, int], expected: Decision
) -> None:
    assert evaluate(rule, UpstreamCounts(*counts)) is expected


@pytest.mark.parametrize("rule", list(TriggerRule))
def test_job_without_upstream_always_runs(rule: TriggerRule) -> None:
    assert evaluate(rule, UpstreamCounts(0)) is Decision.RUN


@pytest.mark.parametrize("rule", list(TriggerRule))
def test_rule_names_are_airflows(rule: TriggerRule) -> None:
    assert TriggerRule(rule.value) is rule
    assert str(rule) == rule.value


@pytest.mark.parametrize(
    ("state", "field"),
    [
        (JobState.SUCCEEDED, "success"),
        (JobState.FAILED, "failed"),
        (JobState.CANCELLED, "failed"),
        (JobState.UNKNOWN, "failed"),
        (JobState.UPSTREAM_FAILED, "upstream_failed"),
        (JobState.SKIPPED, "skipped"),
    ],
)
def test_add_counts_each_terminal_state(state: JobState, field: str) -> None:
    counts = UpstreamCounts(2)
    counts.add(state)
    fields = {"success": 0, "failed": 0, "upstream_failed": 0, "skipped": 0}
    fields[field] = 1
    assert counts == UpstreamCounts(2, **fields)
    assert counts.done == 1


def test_add_accumulates() -> None:
    counts = UpstreamCounts(5)
    for state in (
        JobState.SUCCEEDED,
        JobState.SUCCEEDED,
        JobState.CANCELLED,
        JobState.SKIPPED,
        JobState.UNKNOWN,
    ):
        counts.add(state)
    assert counts == UpstreamCounts(5, success=2, failed=2, upstream_failed=0, skipped=1)
    assert counts.done == 5


@pytest.mark.parametrize("state", [JobState.CANCELLED, JobState.UNKNOWN])
def test_cancelled_or_unknown_upstream_fails_all_success(state: JobState) -> None:
    counts = UpstreamCounts(2)
    counts.add(JobState.SUCCEEDED)
    counts.add(state)
    assert evaluate(TriggerRule.ALL_SUCCESS, counts) is Decision.UPSTREAM_FAILED
    assert evaluate(TriggerRule.ONE_FAILED, counts) is Decision.RUN
    assert evaluate(TriggerRule.ALL_DONE, counts) is Decision.RUN
