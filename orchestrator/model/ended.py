"""The end of a job or of a run, as the engine tells it to its event sink
(:class:`~orchestrator.engine.ports.EventSink`): frozen values, below the engine and the webhooks
so that a sink (the webhook outbox) reads them without importing the engine."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .states import JobState, RunState


@dataclass(frozen=True, slots=True)
class JobEnded:
    """A job reached a terminal state (its run still going)."""

    dag: str
    run_id: str
    run_state: RunState
    job_id: str
    state: JobState
    error: str | None
    handle: Mapping[str, Any] | None  # of its last attempt, None if it never reached a remote
    attempt: int
    started_at: float | None
    ended_at: float | None
    at: float  # when the end was recorded


@dataclass(frozen=True, slots=True)
class RunEnded:
    """A run reached a terminal state."""

    dag: str
    run_id: str
    state: RunState
    error: str | None
    started_at: float | None
    ended_at: float | None
    at: float
