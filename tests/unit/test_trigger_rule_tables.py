"""Each of Airflow's eleven trigger rules as a table: upstream outcomes → decision.

Columns: total upstream, succeeded, failed, upstream_failed, skipped → run / wait / skip /
upstream_failed. The meanings are Airflow's (TriggerRuleDep), including when a rule gives up
early (all_success turns upstream_failed at the first failure without waiting for the rest).
"""

from __future__ import annotations

import pytest

from orchestrator.states import JobState
from orchestrator.trigger_rules import Decision, TriggerRule, UpstreamCounts, evaluate

RUN, WAIT, SKIP, UF = Decision.RUN, Decision.WAIT, Decision.SKIP, Decision.UPSTREAM_FAILED

TABLES: dict[TriggerRule, list[tuple[tuple[int, int, int, int, int], Decision]]] = {
    TriggerRule.ALL_SUCCESS: [
        ((3, 0, 0, 0, 0), WAIT),
        ((3, 2, 0, 0, 0), WAIT),
        ((3, 3, 0, 0, 0), RUN),
        ((3, 1, 1, 0, 0), UF),  # gives up at the first failure
        ((3, 0, 0, 1, 0), UF),
        ((3, 2, 0, 0, 1), SKIP),
        ((0, 0, 0, 0, 0), RUN),  # no upstream: always ready
    ],
    TriggerRule.ALL_FAILED: [
        ((2, 0, 1, 0, 0), WAIT),
        ((2, 0, 1, 1, 0), RUN),
        ((2, 0, 2, 0, 0), RUN),
        ((2, 1, 0, 0, 0), SKIP),
        ((2, 0, 1, 0, 1), SKIP),
    ],
    TriggerRule.ALL_DONE: [
        ((3, 1, 1, 0, 0), WAIT),
        ((3, 1, 1, 1, 0), RUN),
        ((3, 0, 0, 0, 3), RUN),
        ((3, 3, 0, 0, 0), RUN),
    ],
    TriggerRule.ALL_SKIPPED: [
        ((2, 0, 0, 0, 1), WAIT),
        ((2, 0, 0, 0, 2), RUN),
        ((2, 1, 0, 0, 1), SKIP),
        ((2, 0, 1, 0, 0), SKIP),
        ((2, 0, 0, 1, 0), SKIP),
    ],
    TriggerRule.ONE_SUCCESS: [
        ((3, 0, 0, 0, 0), WAIT),
        ((3, 1, 0, 0, 0), RUN),  # at the first success
        ((3, 0, 2, 0, 0), WAIT),
        ((3, 0, 2, 1, 0), UF),  # all done, none succeeded
        ((3, 0, 1, 0, 2), UF),
        ((3, 0, 0, 0, 3), SKIP),  # all skipped
    ],
    TriggerRule.ONE_FAILED: [
        ((3, 1, 0, 0, 0), WAIT),
        ((3, 1, 1, 0, 0), RUN),  # at the first failure
        ((3, 0, 0, 1, 0), RUN),
        ((3, 2, 0, 0, 1), SKIP),  # all done, none failed
    ],
    TriggerRule.ONE_DONE: [
        ((3, 0, 0, 0, 0), WAIT),
        ((3, 1, 0, 0, 0), RUN),
        ((3, 0, 1, 0, 0), RUN),
        ((3, 0, 0, 1, 0), WAIT),  # upstream_failed is not "done" for one_done (Airflow)
        ((3, 0, 0, 1, 2), SKIP),
    ],
    TriggerRule.NONE_FAILED: [
        ((3, 1, 0, 0, 1), WAIT),
        ((3, 2, 0, 0, 1), RUN),  # skips are fine
        ((3, 0, 0, 0, 3), RUN),
        ((3, 1, 1, 0, 0), UF),
        ((3, 1, 0, 1, 0), UF),
    ],
    TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS: [
        ((3, 1, 0, 0, 1), WAIT),
        ((3, 1, 0, 0, 2), RUN),
        ((3, 0, 0, 0, 3), SKIP),  # none succeeded
        ((3, 1, 1, 0, 0), UF),
        ((3, 0, 0, 1, 0), UF),
    ],
    TriggerRule.NONE_SKIPPED: [
        ((3, 1, 1, 0, 0), WAIT),
        ((3, 1, 1, 1, 0), RUN),  # failures are fine
        ((3, 1, 0, 0, 1), SKIP),
        ((3, 3, 0, 0, 0), RUN),
    ],
    TriggerRule.ALWAYS: [
        ((3, 0, 0, 0, 0), RUN),  # does not wait for upstream at all
        ((3, 0, 3, 0, 0), RUN),
        ((3, 0, 0, 0, 3), RUN),
    ],
}

CASES = [
    pytest.param(rule, counts, expected, id=f"{rule.value}-{'-'.join(map(str, counts))}")
    for rule, rows in TABLES.items()
    for counts, expected in rows
]


def test_every_rule_has_a_table() -> None:
    assert set(TABLES) == set(TriggerRule)


@pytest.mark.parametrize(("rule", "counts", "expected"), CASES)
def test_rule(
    rule: TriggerRule, counts: tuple[int, int, int, int, int], expected: Decision
) -> None:
    total, success, failed, upstream_failed, skipped = counts
    assert (
        evaluate(rule, UpstreamCounts(total, success, failed, upstream_failed, skipped)) is expected
    )


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
def test_outcomes_are_counted(state: JobState, field: str) -> None:
    counts = UpstreamCounts(1)
    counts.add(state)
    assert getattr(counts, field) == 1
    assert counts.done == 1
