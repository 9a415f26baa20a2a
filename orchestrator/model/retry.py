"""Retry policy and backoff delays: pure, exponential with full jitter.

``delay(n) = uniform(0, min(cap, base * factor ** (n - 1)))`` for the n-th retry (AWS's "full
jitter"). The random source is passed in so that tests are deterministic.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeGuard

from .durations import MAX_DURATION, format_duration, parse_duration

MAX_ATTEMPTS = 1000
"""At most this many attempts per job: more is a typo that would retry for ever."""


class Outcome(StrEnum):
    """Why an attempt did not succeed; a retry policy names which of these retry."""

    FAILED = "failed"  # the job ran and reported failure
    TIMEOUT = "timeout"  # the job's timeout ended the attempt
    ERROR = "error"  # the connector could not submit or follow the job

    def __str__(self) -> str:
        return self.value


ALL_OUTCOMES = frozenset(Outcome)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 1
    base: float = 1.0
    factor: float = 2.0
    cap: float = 300.0
    jitter: bool = True
    retry_on: frozenset[Outcome] = field(default=ALL_OUTCOMES)

    def problem(self) -> str | None:
        """What is out of bounds in this policy (``"retries.field: ..."``), or ``None``."""
        attempts, factor = self.attempts, self.factor
        if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
            return f"retries.attempts: expected a whole number >= 1, got {attempts!r}"
        if attempts > MAX_ATTEMPTS:
            return f"retries.attempts: at most {MAX_ATTEMPTS}, got {attempts}"
        if not _number_within(factor, 1.0, sys.float_info.max):
            return f"retries.backoff: expected a finite number >= 1, got {factor!r}"
        for name in ("base", "cap"):
            value = getattr(self, name)
            if not _number_within(value, 0.0, MAX_DURATION) or value == 0:
                return f"retries.{name}: expected a positive duration up to 30 days, got {value!r}"
        return None

    def should_retry(self, attempt: int, outcome: Outcome) -> bool:
        return attempt < self.attempts and outcome in self.retry_on

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        try:
            ceiling = min(self.cap, self.base * self.factor ** min(attempt - 1, 64))
        except OverflowError:  # a huge backoff: the cap is the ceiling
            ceiling = self.cap
        if not self.jitter:
            return ceiling
        return (rng or random).uniform(0.0, ceiling)

    @classmethod
    def from_json(cls, data: Any) -> RetryPolicy:
        """Build from the JSON form; ``ValueError`` names the bad field."""
        if isinstance(data, int) and not isinstance(data, bool):
            data = {"attempts": data}
        if not isinstance(data, dict):
            raise ValueError("retries: expected an object or a number of attempts")
        unknown = set(data) - {"attempts", "base", "backoff", "factor", "cap", "jitter", "retryOn"}
        if unknown:
            raise ValueError(f"retries: unknown field {sorted(unknown)[0]!r}")
        attempts = data.get("attempts", 1)
        if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
            raise ValueError(f"retries.attempts: expected a whole number >= 1, got {attempts!r}")
        factor = data.get("factor", data.get("backoff", 2.0))
        if not _number_within(factor, 1.0, sys.float_info.max):
            raise ValueError(f"retries.backoff: expected a number >= 1, got {factor!r}")
        try:
            base = parse_duration(data.get("base", 1.0))
        except ValueError as exc:
            raise ValueError(f"retries.base: {exc}") from None
        try:
            cap = parse_duration(data.get("cap", 300.0))
        except ValueError as exc:
            raise ValueError(f"retries.cap: {exc}") from None
        jitter = data.get("jitter", True)
        if not isinstance(jitter, bool):
            raise ValueError(f"retries.jitter: expected true or false, got {jitter!r}")
        retry_on_raw = data.get("retryOn", [o.value for o in Outcome])
        if not isinstance(retry_on_raw, list):
            raise ValueError("retries.retryOn: expected a list")
        try:
            retry_on = frozenset(Outcome(o) for o in retry_on_raw)
        except ValueError:
            names = ", ".join(o.value for o in Outcome)
            raise ValueError(f"retries.retryOn: values must be among {names}") from None
        policy = cls(attempts, base, float(factor), cap, jitter, retry_on)
        problem = policy.problem()
        if problem is not None:
            raise ValueError(problem)
        return policy

    def to_json(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "base": format_duration(self.base),
            "backoff": self.factor,
            "cap": format_duration(self.cap),
            "jitter": self.jitter,
            "retryOn": sorted(o.value for o in self.retry_on),
        }


def _number_within(value: object, low: float, high: float) -> TypeGuard[int | float]:
    """Whether ``value`` is a real number (not a bool, not NaN) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return low <= float(value) <= high  # False for NaN
    except OverflowError:
        return False
