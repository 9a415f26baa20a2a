"""Crash points for tests: ``ORCHESTRATOR_CRASH_AT=<point>[:<n>]`` ends the process at once
(``os._exit(CRASH_EXIT)``) the n-th time (default the first) it reaches that point.

Points: ``before_submit`` (the attempt is stored as submitting, no request has left),
``after_accept`` (the remote accepted the job, its handle is not stored), ``after_store`` (the
handle is stored), ``mid_poll`` (between two polls), ``mid_commit`` (inside a store transaction,
before it commits), ``after_tick`` (the daemon recorded a tick and its run, the run has not
started), ``after_expand`` (a mapped job's instances are stored, none is submitted).
"""

from __future__ import annotations

import os

from .errors import ConfigError

POINTS = (
    "before_submit",
    "after_accept",
    "after_store",
    "mid_poll",
    "mid_commit",
    "after_tick",
    "after_expand",
)
CRASH_EXIT = 70
ENV = "ORCHESTRATOR_CRASH_AT"

_target: str | None = None
_remaining = 0
_problem: str | None = None  # why the environment's crash point is not one; reported by check()


def _load() -> None:
    """Read the environment; a bad value disables crash points and is kept for :func:`check`
    (never raised at import: ``orchestrator --help`` must work whatever the environment)."""
    global _target, _remaining, _problem
    spec = os.environ.get(ENV, "")
    point, sep, count = spec.partition(":")
    _target, _remaining, _problem = None, 0, None
    if point and point not in POINTS:
        _problem = f"{ENV}: unknown point {point!r} (one of {', '.join(POINTS)})"
    elif sep and not (count.isascii() and count.isdigit() and int(count) >= 1):
        _problem = f"{ENV}: the count after ':' must be a whole number >= 1, got {count!r}"
    elif point:
        _target = point
        _remaining = int(count) if count else 1


def check() -> None:
    """Raise :class:`ConfigError` if ``ORCHESTRATOR_CRASH_AT`` names no crash point."""
    if _problem is not None:
        raise ConfigError(_problem)


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
