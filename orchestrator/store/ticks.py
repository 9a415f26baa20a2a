"""What the store keeps of a DAG's schedule: each tick, recorded once under its unique key (DAG,
nominal time) in the transaction that creates its run.

A scheduler writes :class:`RecordTick` in the same batch as the ``CreateRun`` of the tick's run:
the two are committed together or not at all, and a tick already recorded refuses the batch
(:class:`~orchestrator.store.base.TickExists`). So no tick runs twice, even if the scheduler
crashes between deciding and starting, or two schedulers fire the same tick.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TickRecord:
    """One tick of a DAG's schedule: the run it started, or why it started none. Exactly one of
    ``run_id`` and ``skipped`` is set."""

    dag: str
    nominal: float  # the tick's nominal fire time, UTC epoch seconds: with dag, its key
    recorded_at: float
    run_id: str | None  # the run it started; None when skipped
    skipped: str | None  # why it started no run: a Skip value ("overlap", "paused", ...)
    backfill: bool = False  # fired by a backfill of past times, not by the schedule itself

    def __post_init__(self) -> None:
        if not math.isfinite(self.nominal):
            raise ValueError(f"tick of {self.dag}: its nominal time is {self.nominal}")
        if (self.run_id is None) == (self.skipped is None):
            raise ValueError(
                f"tick of {self.dag} at {self.nominal}: a tick either started a run or was "
                f"skipped (run_id={self.run_id!r}, skipped={self.skipped!r})"
            )


@dataclass(slots=True)
class RecordTick:
    """Record a tick, in the transaction of the batch (with the ``CreateRun`` of its run, if it
    started one). A tick whose (DAG, nominal time) is recorded already refuses the whole batch
    with ``TickExists``: nothing of it is written."""

    tick: TickRecord
