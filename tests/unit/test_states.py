"""The one table of legal job and run transitions; terminal states have no way out."""

from __future__ import annotations

import itertools

import pytest

from orchestrator.model import validation
from orchestrator.model.retry import Outcome
from orchestrator.model.states import (
    AMBIGUOUS_POLICIES,
    JOB_TERMINAL,
    RUN_TERMINAL,
    AttemptState,
    IllegalTransition,
    JobState,
    Reconcile,
    RunState,
    check_job_transition,
    check_run_transition,
    job_transition_allowed,
    run_transition_allowed,
)

J, R = JobState, RunState

JOB_LEGAL = {
    (J.PENDING, J.QUEUED),
    (J.PENDING, J.SKIPPED),
    (J.PENDING, J.UPSTREAM_FAILED),
    (J.PENDING, J.CANCELLED),
    (J.QUEUED, J.SUBMITTING),
    (J.QUEUED, J.CANCELLED),
    (J.SUBMITTING, J.RUNNING),
    (J.SUBMITTING, J.SUCCEEDED),
    (J.SUBMITTING, J.FAILED),
    (J.SUBMITTING, J.RETRY_WAIT),
    (J.SUBMITTING, J.CANCELLED),
    (J.SUBMITTING, J.UNKNOWN),
    (J.RUNNING, J.SUCCEEDED),
    (J.RUNNING, J.FAILED),
    (J.RUNNING, J.RETRY_WAIT),
    (J.RUNNING, J.CANCELLED),
    (J.RUNNING, J.UNKNOWN),
    (J.RETRY_WAIT, J.QUEUED),
    (J.RETRY_WAIT, J.CANCELLED),
}
JOB_ILLEGAL = sorted(set(itertools.product(JobState, JobState)) - JOB_LEGAL)

RUN_LEGAL = {
    (R.QUEUED, R.RUNNING),
    (R.QUEUED, R.CANCELLED),
    (R.RUNNING, R.SUCCEEDED),
    (R.RUNNING, R.FAILED),
    (R.RUNNING, R.CANCELLED),
}
RUN_ILLEGAL = sorted(set(itertools.product(RunState, RunState)) - RUN_LEGAL)


def _id(pair: tuple[JobState | RunState, JobState | RunState]) -> str:
    return f"{pair[0]}->{pair[1]}"


def test_terminal_job_states() -> None:
    assert {s for s in JobState if s.terminal} == {
        J.SUCCEEDED,
        J.FAILED,
        J.UPSTREAM_FAILED,
        J.SKIPPED,
        J.CANCELLED,
        J.UNKNOWN,
    }
    assert frozenset(s for s in JobState if s.terminal) == JOB_TERMINAL


def test_terminal_run_states() -> None:
    assert {s for s in RunState if s.terminal} == {R.SUCCEEDED, R.FAILED, R.CANCELLED}
    assert frozenset(s for s in RunState if s.terminal) == RUN_TERMINAL


@pytest.mark.parametrize("terminal", sorted(JOB_TERMINAL))
@pytest.mark.parametrize("new", list(JobState))
def test_terminal_job_state_has_no_way_out(terminal: JobState, new: JobState) -> None:
    # a late remote answer never overwrites a terminal state
    assert not job_transition_allowed(terminal, new)
    with pytest.raises(IllegalTransition):
        check_job_transition(terminal, new)


@pytest.mark.parametrize("terminal", sorted(RUN_TERMINAL))
@pytest.mark.parametrize("new", list(RunState))
def test_terminal_run_state_has_no_way_out(terminal: RunState, new: RunState) -> None:
    assert not run_transition_allowed(terminal, new)
    with pytest.raises(IllegalTransition):
        check_run_transition(terminal, new)


@pytest.mark.parametrize(("current", "new"), sorted(JOB_LEGAL), ids=_id)
def test_legal_job_transition(current: JobState, new: JobState) -> None:
    assert job_transition_allowed(current, new)
    check_job_transition(current, new)  # does not raise


@pytest.mark.parametrize(("current", "new"), JOB_ILLEGAL, ids=_id)
def test_illegal_job_transition(current: JobState, new: JobState) -> None:
    assert not job_transition_allowed(current, new)
    with pytest.raises(IllegalTransition) as info:
        check_job_transition(current, new)
    assert str(info.value) == f"job cannot go from {current.value} to {new.value}"


@pytest.mark.parametrize(("current", "new"), sorted(RUN_LEGAL), ids=_id)
def test_legal_run_transition(current: RunState, new: RunState) -> None:
    assert run_transition_allowed(current, new)
    check_run_transition(current, new)


@pytest.mark.parametrize(("current", "new"), RUN_ILLEGAL, ids=_id)
def test_illegal_run_transition(current: RunState, new: RunState) -> None:
    assert not run_transition_allowed(current, new)
    with pytest.raises(IllegalTransition) as info:
        check_run_transition(current, new)
    assert str(info.value) == f"run cannot go from {current.value} to {new.value}"


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (J.PENDING, J.RUNNING),  # must queue and submit first
        (J.QUEUED, J.RUNNING),
        (J.RUNNING, J.QUEUED),  # a retry goes through retry_wait
        (J.RETRY_WAIT, J.RUNNING),
        (J.SUCCEEDED, J.FAILED),  # a late answer after success
        (J.CANCELLED, J.SUCCEEDED),  # a late answer after cancel
        (J.UNKNOWN, J.QUEUED),  # unknown may not be resubmitted
    ],
    ids=_id,
)
def test_notable_illegal_job_transitions_name_both_states(current: JobState, new: JobState) -> None:
    with pytest.raises(IllegalTransition, match=f"from {current.value} to {new.value}$"):
        check_job_transition(current, new)


def test_no_state_moves_to_itself_or_back_to_pending() -> None:
    for state in JobState:
        assert not job_transition_allowed(state, state)
        assert not job_transition_allowed(state, J.PENDING)
    for run_state in RunState:
        assert not run_transition_allowed(run_state, run_state)
        assert not run_transition_allowed(run_state, R.QUEUED)


def test_every_non_terminal_job_state_can_be_cancelled() -> None:
    for state in JobState:
        if not state.terminal:
            assert job_transition_allowed(state, J.CANCELLED), state


def test_illegal_transition_is_a_value_error() -> None:
    assert issubclass(IllegalTransition, ValueError)


def test_states_print_as_their_values() -> None:
    assert str(J.UPSTREAM_FAILED) == "upstream_failed"
    assert f"{R.RUNNING}" == "running"
    assert J("retry_wait") is J.RETRY_WAIT


def test_attempt_states_are_an_enum_of_the_stored_values() -> None:
    # the values are what the store holds: changing one needs a data migration
    assert [s.value for s in AttemptState] == [
        "submitting",
        "running",
        "succeeded",
        "failed",
        "timeout",
        "error",
        "cancelled",
        "unknown",
    ]
    assert {s for s in AttemptState if s.live} == {AttemptState.SUBMITTING, AttemptState.RUNNING}
    assert AttemptState("running") is AttemptState.RUNNING
    assert f"{AttemptState.TIMEOUT}" == "timeout"
    # every way an attempt can fail is a way it can end
    assert {AttemptState(outcome.value) for outcome in Outcome} <= set(AttemptState)


def test_the_reconcile_decision_is_an_enum_whose_policies_are_onambiguoussubmit() -> None:
    assert [d.value for d in Reconcile] == ["adopt", "resubmit", "unknown", "fail"]
    assert AMBIGUOUS_POLICIES == (Reconcile.RESUBMIT, Reconcile.UNKNOWN, Reconcile.FAIL)
    assert validation.AMBIGUOUS_POLICIES == ("resubmit", "unknown", "fail")  # as it names them
    assert Reconcile("unknown") is Reconcile.UNKNOWN
