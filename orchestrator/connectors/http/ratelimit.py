"""A token bucket per connection: ``rate`` requests per second, bursts of ``burst``.

Waiters are served first come, first served: one waiter at a time holds the (fair) lock and
sleeps until its token is due, so a steady stream of newcomers cannot starve an old waiter.
``pause_until`` stops every request of the connection until a time, for a 429 with
``Retry-After``.

Time is the injected ``clock``, but never less than the time the limiter knows it has waited:
with a ``sleep`` that returns at once (tests that record sleeps) the bucket still fills and the
pause still ends, instead of spinning.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

__all__ = ["RateLimiter"]

_EPSILON = 1e-9  # float slack when a refill lands a hair under one token


class RateLimiter:
    """Token bucket: ``rate`` tokens per second (``math.inf``: no limit), ``burst`` at most.

    The bucket starts full. ``acquire()`` takes one token, waiting its turn (FIFO) while the
    bucket is empty or the limiter is paused.
    """

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        if not rate > 0:  # also refuses NaN
            raise ValueError(f"rate must be positive, not {rate!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst!r}")
        self.rate = float(rate)
        self._unlimited = math.isinf(self.rate)
        self.burst = int(burst)
        self._clock = clock
        self._sleep = sleep
        self._lock = anyio.Lock()
        self._floor = clock()  # the limiter's time never runs behind what it has slept
        self._tokens = float(burst)
        self._updated = self._floor
        self._paused_until = -math.inf
        self._acquired = 0
        self._waits = 0
        self._waited = 0.0

    def now(self) -> float:
        """The limiter's time: its clock, or later if it knows more time has passed."""
        now = self._clock()
        if now > self._floor:
            self._floor = now
        return self._floor

    async def sleep(self, delay: float) -> None:
        """Sleep with the injected ``sleep``; the limiter's time moves on by ``delay``."""
        if delay <= 0:
            return
        start = self.now()
        await self._sleep(delay)
        self._floor = max(self._floor, start + delay)

    def pause_until(self, t: float) -> None:
        """Hold every ``acquire`` until ``t`` (the limiter's clock). A pause only ever grows."""
        self._paused_until = max(self._paused_until, t)

    def pause_for(self, delay: float) -> None:
        """Hold every ``acquire`` for ``delay`` seconds from now."""
        if delay > 0:
            self.pause_until(self.now() + delay)

    def paused_for(self) -> float:
        """Seconds left in the current pause (0.0 when not paused)."""
        if self._paused_until == -math.inf:
            return 0.0  # never paused: no need to read the clock
        return max(0.0, self._paused_until - self.now())

    def try_acquire(self) -> bool:
        """Take one token if that needs no wait (not paused, nobody waiting, a token in the
        bucket); ``False`` leaves the bucket as it was. The caller's fast path: no coroutine."""
        if self._lock.locked():
            return False  # someone is waiting: newcomers queue behind them
        now = self.now()
        if now < self._paused_until or not self._take(now):
            return False
        self._acquired += 1
        return True

    async def acquire(self) -> None:
        """Take one token, waiting for the pause to end and the token to be due."""
        if self.try_acquire():
            return
        async with self._lock:
            while True:
                now = self.now()
                if now < self._paused_until:
                    await self._wait(self._paused_until - now)
                    continue
                if self._take(now):
                    break
                await self._wait((1.0 - self._tokens) / self.rate)
            self._acquired += 1

    def _take(self, now: float) -> bool:
        """Refill the bucket up to ``now`` and take a token if there is one."""
        if self._unlimited:
            return True
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
        self._updated = max(self._updated, now)
        if self._tokens >= 1.0 - _EPSILON:
            self._tokens = max(0.0, self._tokens - 1.0)
            return True
        return False

    async def _wait(self, delay: float) -> None:
        self._waits += 1
        self._waited += delay
        await self.sleep(delay)

    def statistics(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "burst": self.burst,
            "acquired": self._acquired,
            "waits": self._waits,
            "waited_seconds": self._waited,
            "paused_for": self.paused_for(),
        }
