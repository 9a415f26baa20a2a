"""How a run that ran to its end ended: a pure function of its jobs' states and trigger rules.

A run fails when a job failed (``failed``, a timeout included, ``unknown``, ``upstream_failed``)
and no failure handler took care of it, or when a final job (one with no dependents) did not
succeed or skip. A failure handler is a job whose trigger rule is ``one_failed`` or
``all_failed`` and that succeeded: it handles the failed jobs upstream of it whose failure
reached it, directly or through ``upstream_failed`` jobs.

Airflow's rule, final jobs only, reported success for a run whose jobs failed when its last
job was an ``all_done`` cleanup; Prefect and Dagster fail such a run, and so does this one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .states import JobState
from .trigger_rules import TriggerRule

FAILURES = frozenset({JobState.FAILED, JobState.UNKNOWN, JobState.UPSTREAM_FAILED})
"""The job states that fail the run unless handled."""
HANDLERS = frozenset({TriggerRule.ONE_FAILED, TriggerRule.ALL_FAILED})
"""The trigger rules of failure handlers."""
NAMED = 5  # the jobs a reason names


def run_failure(
    jobs: Mapping[str, tuple[JobState, TriggerRule]], edges: Iterable[tuple[str, str]]
) -> str | None:
    """Why a run whose ``jobs`` (id -> state and trigger rule, in DAG order) linked by
    ``edges`` (upstream, downstream) all ended has failed, or ``None`` if it succeeded."""
    parents: dict[str, list[str]] = {}
    has_children: set[str] = set()
    for upstream, downstream in edges:
        parents.setdefault(downstream, []).append(upstream)
        has_children.add(upstream)
    failed = [job for job, (state, _) in jobs.items() if state in FAILURES]
    if failed:
        handled = _handled(jobs, parents)
        failed = [job for job in failed if job not in handled]
        if failed:
            return f"{len(failed)} job(s) failed: {_first(failed)}"
    ok = (JobState.SUCCEEDED, JobState.SKIPPED)
    bad = [job for job, (state, _) in jobs.items() if job not in has_children and state not in ok]
    if bad:
        return f"{len(bad)} final job(s) did not succeed: {_first(bad)}"
    return None


def _handled(
    jobs: Mapping[str, tuple[JobState, TriggerRule]], parents: Mapping[str, list[str]]
) -> set[str]:
    """The failed jobs a succeeded failure handler ran for: its failed parents, and upstream
    of an ``upstream_failed`` one, the failures that made it so."""
    handled: set[str] = set()
    for job, (state, rule) in jobs.items():
        if rule not in HANDLERS or state is not JobState.SUCCEEDED:
            continue
        stack = [p for p in parents.get(job, ()) if jobs[p][0] in FAILURES]
        while stack:
            failure = stack.pop()
            if failure in handled:
                continue
            handled.add(failure)
            if jobs[failure][0] is JobState.UPSTREAM_FAILED:
                stack.extend(p for p in parents.get(failure, ()) if jobs[p][0] in FAILURES)
    return handled


def _first(jobs: list[str]) -> str:
    more = f", ... ({len(jobs) - NAMED} more)" if len(jobs) > NAMED else ""
    return ", ".join(jobs[:NAMED]) + more
