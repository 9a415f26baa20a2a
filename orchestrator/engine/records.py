"""What the engine knows of a run and its jobs while it executes them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ..clock import iso as iso  # where views and the command line find it
from ..model.states import JobState, RunState
from ..model.trigger_rules import TriggerRule, UpstreamCounts

if TYPE_CHECKING:
    from ..connectors.base import JobType
    from ..model.dag import DAG, Job
    from ..model.retry import RetryPolicy
    from ..model.states import AttemptState
    from ..store.base import AttemptRow, JobEvent


class Wakeable(Protocol):
    """What :meth:`JobRun.wake` sets: the event a job's next poll waits for, or what cancels
    its inline call once the job is cancelled (see :mod:`.inline`)."""

    def set(self) -> None: ...


class JobRun:
    """One job in one run: its state, attempts and results."""

    __slots__ = (
        "adopt",
        "attempt_row",
        "attempt_stored",
        "attempts",
        "cancel_reason",
        "children",
        "counts",
        "dirty",
        "ended_at",
        "error",
        "handle",
        "has_tokens",
        "held",
        "id",
        "job",
        "job_type",
        "log_tail",
        "notes",
        "outputs",
        "policy",
        "pools",
        "priority",
        "queued_event",
        "remote_status",
        "retry_at",
        "rule",
        "started_at",
        "state",
        "stored_state",
        "timeout",
        "wake_event",
        "woken",
    )

    def __init__(self, job: Job, job_type: JobType, pools: tuple[str, ...]) -> None:
        self.id = job.id
        self.job = job
        self.job_type = job_type
        self.state = JobState.PENDING
        self.rule: TriggerRule = job.rule
        self.policy: RetryPolicy = job.retry_policy
        self.timeout = job.timeout_seconds
        self.priority = job.priority
        self.pools = pools
        self.children: list[JobRun] = []
        self.counts = UpstreamCounts(0)
        self.attempts = 0
        self.error: str | None = None
        self.handle: dict[str, Any] | None = None
        self.remote_status: str | None = None
        self.outputs: dict[str, Any] = {}
        self.log_tail: str | None = None
        self.notes: list[str] = []
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.retry_at: float | None = None  # in retry_wait: its next attempt's due time (wall)
        self.held = False
        self.adopt = False  # in flight when the process stopped: follow it, never resubmit
        self.cancel_reason: str | None = None  # this job alone was cancelled (cancel_job)
        # what the store has (see RunExecutor._changes): the job's state as last written, the
        # current attempt as it is now and its state as last written (None: not yet), and
        # what changed since
        self.stored_state = JobState.PENDING
        self.attempt_row: AttemptRow | None = None
        self.attempt_stored: AttemptState | None = None
        self.dirty = 0  # DIRTY_JOB | DIRTY_ATTEMPT
        # its step to `queued`, while it waits to be written with the job's next (journal.py)
        self.queued_event: JobEvent | None = None
        self.wake_event: Wakeable | None = None
        self.woken = False
        self.has_tokens = job.has_tokens

    def wake(self) -> None:
        """Called by a connector (or a callback) to ask for an immediate poll."""
        self.woken = True
        if self.wake_event is not None:
            self.wake_event.set()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "type": self.job.type,
            "status": self.state.value,
            "attempts": self.attempts,
            "error": self.error,
            "startedAt": iso(self.started_at),
            "endedAt": iso(self.ended_at),
        }
        if self.handle is not None:
            out["remote"] = self.handle
        if self.remote_status is not None:
            out["remoteStatus"] = self.remote_status
        if self.outputs:
            out["outputs"] = self.outputs
        if self.log_tail:
            out["logTail"] = self.log_tail
        if self.notes:
            out["notes"] = self.notes
        return out


class Run:
    """One execution of a DAG."""

    def __init__(
        self, run_id: str, dag: DAG, params: dict[str, Any], trigger: str = "manual"
    ) -> None:
        self.id = run_id
        self.dag = dag
        self.params = params
        self.trigger = trigger
        self.state = RunState.QUEUED
        self.error: str | None = None
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.jobs: dict[str, JobRun] = {}

    def to_json(self) -> dict[str, Any]:
        from ..model.formats import job_graph

        return {
            "id": self.id,
            "dag": self.dag.name,
            "status": self.state.value,
            "reason": self.error,
            "params": self.params,
            "trigger": self.trigger,
            "startedAt": iso(self.started_at),
            "endedAt": iso(self.ended_at),
            "jobs": {"data": [self.jobs[j].to_json() for j in self.dag.topological()]},
            "jobGraph": job_graph(self.dag),
        }
