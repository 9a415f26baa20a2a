"""Airflow's eleven trigger rules as one pure function of upstream outcome counts.

The counts follow Airflow's ``_UpstreamTIStates``: ``cancelled`` and ``unknown`` upstream jobs
count as failures (they did not succeed and were not skipped).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .states import JobState


class TriggerRule(StrEnum):
    ALL_SUCCESS = "all_success"
    ALL_FAILED = "all_failed"
    ALL_DONE = "all_done"
    ALL_SKIPPED = "all_skipped"
    ONE_SUCCESS = "one_success"
    ONE_FAILED = "one_failed"
    ONE_DONE = "one_done"
    NONE_FAILED = "none_failed"
    NONE_FAILED_MIN_ONE_SUCCESS = "none_failed_min_one_success"
    NONE_SKIPPED = "none_skipped"
    ALWAYS = "always"

    def __str__(self) -> str:
        return self.value


class Decision(StrEnum):
    RUN = "run"
    WAIT = "wait"
    SKIP = "skip"
    UPSTREAM_FAILED = "upstream_failed"


@dataclass(slots=True)
class UpstreamCounts:
    """Outcomes of a job's upstream jobs so far; ``total`` is the number of upstream jobs."""

    total: int
    success: int = 0
    failed: int = 0
    upstream_failed: int = 0
    skipped: int = 0

    @property
    def done(self) -> int:
        return self.success + self.failed + self.upstream_failed + self.skipped

    def add(self, state: JobState) -> None:
        if state is JobState.SUCCEEDED:
            self.success += 1
        elif state is JobState.SKIPPED:
            self.skipped += 1
        elif state is JobState.UPSTREAM_FAILED:
            self.upstream_failed += 1
        else:  # failed, cancelled, unknown
            self.failed += 1


def evaluate(rule: TriggerRule, c: UpstreamCounts) -> Decision:
    """Decide what a job with ``rule`` does given its upstream outcomes ``c``."""
    all_done = c.done == c.total
    failures = c.failed + c.upstream_failed
    R = TriggerRule
    if rule is R.ALWAYS or c.total == 0:  # Airflow: a job without upstream is always ready
        return Decision.RUN
    if rule is R.ALL_SUCCESS:
        if failures:
            return Decision.UPSTREAM_FAILED
        if c.skipped:
            return Decision.SKIP
        return Decision.RUN if c.success == c.total else Decision.WAIT
    if rule is R.ALL_FAILED:
        if c.success or c.skipped:
            return Decision.SKIP
        return Decision.RUN if failures == c.total else Decision.WAIT
    if rule is R.ALL_DONE:
        return Decision.RUN if all_done else Decision.WAIT
    if rule is R.ALL_SKIPPED:
        if c.success or failures:
            return Decision.SKIP
        return Decision.RUN if c.skipped == c.total else Decision.WAIT
    if rule is R.ONE_SUCCESS:
        if c.success:
            return Decision.RUN
        if all_done:
            return Decision.SKIP if c.skipped == c.total else Decision.UPSTREAM_FAILED
        return Decision.WAIT
    if rule is R.ONE_FAILED:
        if failures:
            return Decision.RUN
        return Decision.SKIP if all_done else Decision.WAIT
    if rule is R.ONE_DONE:
        if c.success or c.failed:
            return Decision.RUN
        return Decision.SKIP if all_done else Decision.WAIT
    if rule is R.NONE_FAILED:
        if failures:
            return Decision.UPSTREAM_FAILED
        return Decision.RUN if all_done else Decision.WAIT
    if rule is R.NONE_FAILED_MIN_ONE_SUCCESS:
        if failures:
            return Decision.UPSTREAM_FAILED
        if not all_done:
            return Decision.WAIT
        return Decision.SKIP if c.skipped == c.total else Decision.RUN
    if rule is R.NONE_SKIPPED:
        if c.skipped:
            return Decision.SKIP
        return Decision.RUN if all_done else Decision.WAIT
    raise AssertionError(f"unhandled trigger rule {rule!r}")  # pragma: no cover
