"""Crash points for tests: ``ORCHESTRATOR_CRASH_AT=<point>[:<n>]`` ends the process at once
(``os._exit(CRASH_EXIT)``) the n-th time (default the first) it reaches that point.

Points: ``before_submit`` (the attempt is stored as submitting, no request has left),
``after_accept`` (the remote accepted the job, its handle is not stored), ``after_store`` (the
handle is stored), ``mid_poll`` (between two polls), ``mid_commit`` (inside a store transaction,
before it commits).
"""

from __future__ import annotations

import os

POINTS = ("before_submit", "after_accept", "after_store", "mid_poll", "mid_commit")
CRASH_EXIT = 70

_target: str | None = None
_remaining = 0


def _load() -> None:
    global _target, _remaining
    spec = os.environ.get("ORCHESTRATOR_CRASH_AT", "")
    point, _, count = spec.partition(":")
    if point and point not in POINTS:
        raise ValueError(
            f"ORCHESTRATOR_CRASH_AT: unknown point {point!r} (one of {', '.join(POINTS)})"
        )
    _target = point or None
    _remaining = int(count) if count else 1


_load()


def remaining(point: str) -> int:
    """How many more times ``point`` may be reached before the process ends (0: never); for a
    crash point reached in another process (the SQLite store's writer)."""
    return _remaining if _target == point else 0


def end_now() -> None:
    """End the process at once, as a crash point does."""
    os._exit(CRASH_EXIT)


def reached(point: str) -> None:
    """Call at a crash point; ends the process if the environment names it."""
    global _remaining
    if _target != point:
        return
    _remaining -= 1
    if _remaining <= 0:
        end_now()
