"""Job, run and attempt states, the one table of legal transitions, and what resume decides
for an attempt whose submission may or may not have reached its remote.

Pure: no I/O. Every state write in the engine (and, later, the store) goes through
:func:`check_job_transition` / :func:`check_run_transition`; a terminal state is never
overwritten. The values of these enums are what the store holds.
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    SUBMITTING = "submitting"
    RUNNING = "running"
    RETRY_WAIT = "retry_wait"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UPSTREAM_FAILED = "upstream_failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value

    @property
    def terminal(self) -> bool:
        return self in JOB_TERMINAL


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value

    @property
    def terminal(self) -> bool:
        return self in RUN_TERMINAL


class AttemptState(StrEnum):
    """One attempt as stored: ``submitting`` is written before its request leaves, ``running``
    with the remote's handle; the others are how it ended."""

    SUBMITTING = "submitting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the remote job failed
    TIMEOUT = "timeout"  # the job's timeout ended it
    ERROR = "error"  # it could not be submitted or followed
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"  # its submission's outcome is unknown and policy forbids resending it

    def __str__(self) -> str:
        return self.value

    @property
    def live(self) -> bool:
        """The attempt may still move on (a stored one is followed again on resume)."""
        return self in ATTEMPT_LIVE


class Reconcile(StrEnum):
    """What is decided for an attempt whose submission may or may not have reached its remote
    (an ambiguous answer, or a ``submitting`` attempt found on resume): adopt the remote job
    that the lookup found, else the job's ``onAmbiguousSubmit`` policy (the other three, whose
    values are the policy's words)."""

    ADOPT = "adopt"  # follow the remote job found, submit nothing
    RESUBMIT = "resubmit"  # send the same attempt again, with the same idempotency key
    UNKNOWN = "unknown"  # the job ends unknown, nothing is sent again
    FAIL = "fail"  # the attempt fails (retries apply), nothing is sent again

    def __str__(self) -> str:
        return self.value


AMBIGUOUS_POLICIES = (Reconcile.RESUBMIT, Reconcile.UNKNOWN, Reconcile.FAIL)
"""The decisions ``onAmbiguousSubmit`` may name."""

JOB_TERMINAL = frozenset(
    {
        JobState.SUCCEEDED,
        JobState.FAILED,
        JobState.UPSTREAM_FAILED,
        JobState.SKIPPED,
        JobState.CANCELLED,
        JobState.UNKNOWN,
    }
)
RUN_TERMINAL = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED})
ATTEMPT_LIVE = frozenset({AttemptState.SUBMITTING, AttemptState.RUNNING})

_J = JobState
JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    _J.PENDING: frozenset({_J.QUEUED, _J.SKIPPED, _J.UPSTREAM_FAILED, _J.CANCELLED}),
    _J.QUEUED: frozenset({_J.SUBMITTING, _J.CANCELLED}),
    _J.SUBMITTING: frozenset(
        {_J.RUNNING, _J.RETRY_WAIT, _J.FAILED, _J.CANCELLED, _J.UNKNOWN, _J.SUCCEEDED}
    ),
    _J.RUNNING: frozenset({_J.SUCCEEDED, _J.FAILED, _J.RETRY_WAIT, _J.CANCELLED, _J.UNKNOWN}),
    _J.RETRY_WAIT: frozenset({_J.QUEUED, _J.CANCELLED}),
    **{state: frozenset() for state in JOB_TERMINAL},
}


def _reachable() -> frozenset[tuple[str, str]]:
    pairs: set[tuple[str, str]] = set()
    for start in JobState:
        seen: set[JobState] = set()
        todo = list(JOB_TRANSITIONS[start])
        while todo:
            state = todo.pop()
            if state not in seen:
                seen.add(state)
                todo.extend(JOB_TRANSITIONS[state])
        if not start.terminal:
            seen.add(start)  # no step, other fields moved on
        pairs.update((start.value, state.value) for state in seen)
    return frozenset(pairs)


JOB_REACHABLE = _reachable()
"""``(old, new)`` state values where ``new`` follows from ``old`` in zero or more steps of
:data:`JOB_TRANSITIONS` (zero only for a state that is not terminal): what one stored row may
move."""


_R = RunState
RUN_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    _R.QUEUED: frozenset({_R.RUNNING, _R.CANCELLED}),
    _R.RUNNING: frozenset({_R.SUCCEEDED, _R.FAILED, _R.CANCELLED}),
    **{state: frozenset() for state in RUN_TERMINAL},
}


class IllegalTransition(ValueError):
    """A write tried to move a job or run along an edge the table does not have."""


def job_transition_allowed(current: JobState, new: JobState) -> bool:
    return new in JOB_TRANSITIONS[current]


def check_job_transition(current: JobState, new: JobState) -> None:
    if new not in JOB_TRANSITIONS[current]:
        raise IllegalTransition(f"job cannot go from {current.value} to {new.value}")


def run_transition_allowed(current: RunState, new: RunState) -> bool:
    return new in RUN_TRANSITIONS[current]


def check_run_transition(current: RunState, new: RunState) -> None:
    if new not in RUN_TRANSITIONS[current]:
        raise IllegalTransition(f"run cannot go from {current.value} to {new.value}")
