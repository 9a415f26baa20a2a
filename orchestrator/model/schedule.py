"""A DAG's ``schedule`` as pure functions: when it fires, how late each tick may start, and what
to do with the ticks a stopped scheduler missed. No clock is read here: every function is given
the times it needs, so that the daemon's scheduler and the tests in virtual time ask the same.

Fire times follow Debian cron's rule for daylight saving time, as ``cronsim`` implements it: a
job that would fire in a spring-forward gap fires once, at the transition; a job in a fall-back
repeated hour fires once only; jobs that fire more often than hourly fire every real hour, in
both of a repeated hour's passes.
"""

from __future__ import annotations

import hashlib
import zoneinfo
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from cronsim import CronSim

from .durations import parse_duration
from .validation import CRON_ALIASES

DEFAULT_WINDOW = 86_400.0  # seconds: missed ticks older than this are not caught up
DEFAULT_CAP = 10  # runs created for missed ticks in one evaluation (``catchup: all``)
ON_TIME = 60.0  # seconds: a tick this late is on time, not missed


class Catchup(Enum):
    NONE = "none"  # skip missed ticks (the default for a new DAG)
    LATEST = "latest"  # run the most recent missed tick, skip the others
    ALL = "all"  # run every missed tick, oldest first, a few per evaluation


class Skip(Enum):
    """Why a tick did not start a run (recorded with it, and counted)."""

    CATCHUP = "catchup"  # missed while the scheduler was down, and the policy skips it
    OUTSIDE_WINDOW = "outside window"  # missed longer ago than the catch-up window
    PAUSED = "paused"
    OVERLAP = "overlap"  # the DAG's previous run was still active (decided by the scheduler)
    REFUSED = "refused"  # its run could not start (parameters, connections): logged


@dataclass(frozen=True, slots=True)
class Schedule:
    cron: str  # five fields, or an alias such as @daily
    timezone: str = "UTC"
    catchup: Catchup = Catchup.NONE
    overlap: str = "skip"
    jitter: float = 0.0  # seconds, at most: each tick's delay is fixed by a hash
    paused: bool = False
    window: float = DEFAULT_WINDOW
    cap: int = DEFAULT_CAP

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Schedule:
        """From a DAG's ``schedule`` (already validated)."""
        return cls(
            cron=str(data["cron"]),
            timezone=str(data.get("timezone", "UTC")),
            catchup=Catchup(data.get("catchup", "none")),
            overlap=str(data.get("overlap", "skip")),
            jitter=parse_duration(data["jitter"]) if data.get("jitter") is not None else 0.0,
            paused=bool(data.get("paused", False)),
        )

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def expression(self) -> str:
        return CRON_ALIASES.get(self.cron.strip().lower(), self.cron)


def fire_times(schedule: Schedule, after: datetime) -> Iterator[datetime]:
    """The schedule's nominal fire times strictly after ``after`` (an aware datetime), in its
    time zone, for ever."""
    if after.tzinfo is None:
        raise ValueError("fire_times needs an aware datetime")
    start = after.astimezone(schedule.zone)
    for fire in CronSim(schedule.expression, start):
        if fire > after:  # cronsim may repeat the start itself
            yield fire


def next_fires(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    times = fire_times(schedule, after)
    return [next(times) for _ in range(count)]


def jitter(schedule: Schedule, dag: str, nominal: datetime) -> float:
    """Seconds to wait after ``nominal`` before this tick's run starts: the same for the same DAG
    and tick in every process (a hash, not a random draw), below ``schedule.jitter``, and never
    past the next tick."""
    if schedule.jitter <= 0:
        return 0.0
    following = next(fire_times(schedule, nominal))
    bound = min(schedule.jitter, (following - nominal).total_seconds() * 0.9)
    digest = hashlib.sha256(f"{dag}\0{nominal.isoformat()}".encode()).digest()
    return bound * int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True, slots=True)
class Tick:
    nominal: datetime
    skip: Skip | None = None  # None: start a run for it


def due_ticks(
    schedule: Schedule, last: datetime | None, now: datetime, *, on_time: float = ON_TIME
) -> tuple[list[Tick], datetime | None]:
    """The ticks due since ``last`` (the newest tick recorded, run or skipped; None for a new
    schedule) up to ``now``, each to run or to skip with its reason, oldest first; and the tick
    to record as the newest seen (None if none is due). A tick no later than ``on_time`` seconds
    is on time and runs; older ones were missed and follow ``catchup``, within ``window``; with
    ``catchup: all``, at most ``cap`` missed ticks run per call, the next call takes the rest."""
    if last is None:  # a new schedule: nothing before now was missed
        last = now - timedelta(seconds=on_time)
    due: list[datetime] = []
    for fire in fire_times(schedule, last):
        if fire > now:
            break
        due.append(fire)
    if not due:
        return [], None
    if schedule.paused:
        return [Tick(t, Skip.PAUSED) for t in due], due[-1]
    ticks: list[Tick] = []
    missed = [t for t in due if (now - t).total_seconds() > on_time]
    on_time_ticks = due[len(missed) :]
    oldest = now - timedelta(seconds=schedule.window)
    in_window = [t for t in missed if t >= oldest]
    ticks += [Tick(t, Skip.OUTSIDE_WINDOW) for t in missed if t < oldest]
    if schedule.catchup is Catchup.NONE:
        ticks += [Tick(t, Skip.CATCHUP) for t in in_window]
    elif schedule.catchup is Catchup.LATEST:
        latest = [] if on_time_ticks else in_window[-1:]
        ticks += [Tick(t, Skip.CATCHUP) for t in in_window if t not in latest]
        ticks += [Tick(t) for t in latest]
    else:
        run_now = in_window[: schedule.cap]
        ticks += [Tick(t) for t in run_now]
        if len(in_window) > schedule.cap:  # the rest wait for the next call
            ticks.sort(key=lambda tick: tick.nominal)
            return ticks, run_now[-1]
    ticks += [Tick(t) for t in on_time_ticks]
    ticks.sort(key=lambda tick: tick.nominal)
    return ticks, due[-1]
