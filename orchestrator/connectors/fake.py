"""An in-memory fake remote job API whose jobs take a set time and end a set way.

Job type ``fake`` (no connection needed). Fields:

- ``duration``: how long the job runs (``0`` ends it at the first poll), default ``0``;
- ``outcome``: ``"success"`` (default) or ``"failure"``;
- ``failTimes``: the first N attempts fail, later ones succeed (to show retries);
- ``message``: the error text of a failure; ``outputs``: what a success returns;
- ``hang``: never ends by itself (for cancellation and timeout tests);
- ``submitError``: the submit request itself is refused;
- ``submitAmbiguous``: the connection drops after the request was sent (nothing was created).

Tests build a :class:`FakeRemote` with a :class:`~orchestrator.clock.FakeClock` and hand the
engine ``FakeConnector(remote)`` to count what it received.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..clock import Clock, RealClock
from ..connections import Connection
from ..errors import NotFoundError, PermanentError, TransientError
from ..model.durations import parse_duration
from .base import (
    CancelResult,
    ConnectorBase,
    JobType,
    PollResult,
    PollSchedule,
    RemoteHandle,
    RemoteStatus,
    Submission,
)


@dataclass(slots=True)
class FakeJob:
    id: str
    key: str
    ends_at: float
    fails: bool
    message: str
    outputs: Mapping[str, Any]
    hang: bool = False
    cancelled: bool = False


@dataclass
class FakeRemote:
    """The remote side: every job it accepted, and counters of what it received."""

    clock: Clock = field(default_factory=RealClock)
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    submissions: collections.Counter[str] = field(default_factory=collections.Counter)
    cancels: list[str] = field(default_factory=list)
    polls: int = 0
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def running(self) -> list[FakeJob]:
        now = self.clock.monotonic()
        return [j for j in self.jobs.values() if not j.cancelled and (j.hang or j.ends_at > now)]


def _duration(value: Any) -> float:
    if value in (0, 0.0, "0", None):
        return 0.0
    return parse_duration(value)


class FakeConnector(ConnectorBase):
    def __init__(self, remote: FakeRemote | None = None) -> None:
        self.remote = remote or FakeRemote()

    async def submit(self, submission: Submission) -> RemoteHandle:
        p = submission.params
        if p.get("submitError"):
            raise PermanentError("fake remote refused the submission")
        if p.get("submitAmbiguous"):
            raise TransientError("connection reset after sending", ambiguous=True)
        remote = self.remote
        job_id = f"fake-{next(remote._ids)}"
        remote.submissions[submission.idempotency_key] += 1
        remote.jobs[job_id] = FakeJob(
            id=job_id,
            key=submission.idempotency_key,
            ends_at=remote.clock.monotonic() + _duration(p.get("duration", 0)),
            fails=p.get("outcome", "success") == "failure"
            or submission.attempt <= int(p.get("failTimes", 0)),
            message=str(p.get("message", "fake job failed")),
            outputs=p.get("outputs") or {},
            hang=bool(p.get("hang", False)),
        )
        return {"id": job_id}

    async def poll(self, handle: RemoteHandle) -> PollResult:
        remote = self.remote
        remote.polls += 1
        job = remote.jobs.get(handle["id"])
        if job is None:
            raise NotFoundError(f"fake remote has no job {handle['id']!r}")
        if job.cancelled:
            return PollResult(RemoteStatus.CANCELLED, remote_status="cancelled")
        now = remote.clock.monotonic()
        if job.hang or now < job.ends_at:
            return PollResult(
                RemoteStatus.RUNNING,
                remote_status="running",
                next_poll=None if job.hang else job.ends_at - now,
            )
        if job.fails:
            return PollResult(RemoteStatus.FAILED, remote_status="failed", error=job.message)
        return PollResult(RemoteStatus.SUCCEEDED, "done", None, job.outputs)

    async def cancel(self, handle: RemoteHandle) -> CancelResult:
        job = self.remote.jobs.get(handle["id"])
        if job is None:
            raise NotFoundError(f"fake remote has no job {handle['id']!r}")
        self.remote.cancels.append(job.id)
        job.cancelled = True
        return CancelResult(True, "cancelled")

    async def find(self, submission: Submission) -> RemoteHandle | None:
        for job in self.remote.jobs.values():
            if job.key == submission.idempotency_key:
                return {"id": job.id}
        return None


def _validate(params: Mapping[str, Any]) -> list[str]:
    problems = []
    try:
        _duration(params.get("duration", 0))
    except ValueError as exc:
        problems.append(f"field 'duration': {exc}")
    if params.get("outcome", "success") not in ("success", "failure"):
        problems.append(
            f"field 'outcome': expected 'success' or 'failure', got {params['outcome']!r}"
        )
    fail_times = params.get("failTimes", 0)
    if not isinstance(fail_times, int) or isinstance(fail_times, bool) or fail_times < 0:
        problems.append(f"field 'failTimes': expected a whole number >= 0, got {fail_times!r}")
    if "outputs" in params and not isinstance(params["outputs"], dict):
        problems.append("field 'outputs': expected an object")
    return problems


def _open(connection: Connection | None) -> FakeConnector:
    return FakeConnector()


JOB_TYPES = (
    JobType(
        name="fake",
        open=_open,
        optional=(
            "duration",
            "outcome",
            "failTimes",
            "message",
            "outputs",
            "hang",
            "submitError",
            "submitAmbiguous",
        ),
        needs_connection=False,
        validate=_validate,
        poll=PollSchedule(initial=0.1, factor=1.5, cap=2.0),
        dedup_by_key=False,
    ),
)
