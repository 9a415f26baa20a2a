"""Time, injected: the real clock, and a fake one for deterministic tests.

The engine never calls ``time`` or ``anyio.sleep`` directly; it asks its :class:`Clock`, so that
tests of retries, backoff and timeouts run in virtual time.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Protocol

import anyio
import anyio.abc
import anyio.lowlevel


def iso(ts: float | None) -> str | None:
    """``ts`` (seconds since the epoch) as ISO 8601 in UTC, to the millisecond."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def time(self) -> float:
        """Wall-clock seconds since the epoch, for timestamps."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    async def wait(self, event: anyio.Event, timeout: float) -> None:
        """Return when ``event`` is set or ``timeout`` seconds have passed."""
        ...

    def deadline(self, seconds: float | None) -> anyio.CancelScope:
        """A cancel scope that cancels itself after ``seconds`` (never if ``None``)."""
        ...


class RealClock:
    # the functions themselves: read on every state change, a method around them is one call
    # more
    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    async def wait(self, event: anyio.Event, timeout: float) -> None:
        with anyio.move_on_after(timeout):
            await event.wait()

    def deadline(self, seconds: float | None) -> anyio.CancelScope:
        if seconds is None:
            return anyio.CancelScope()
        return anyio.CancelScope(deadline=anyio.current_time() + seconds)


class FakeClock:
    """Virtual time that jumps ahead whenever every task is waiting on it.

    Use as ``async with FakeClock() as clock:``. A driver task yields to the event loop a few
    times; if nothing else became runnable it advances time to the next timer. Tests that also
    do real I/O should use the real clock.
    """

    def __init__(self, start: float = 1_000.0, *, wall_start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cancelled: set[int] = set()
        self._tg: anyio.abc.TaskGroup | None = None
        self.settle = 12  # loop turns without progress before time jumps
        self.sleeps: list[float] = []  # every sleep asked for, in order
        self.waits: list[float] = []  # every timeout of a wait (poll delays), in order

    async def __aenter__(self) -> FakeClock:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._drive)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        return await self._tg.__aexit__(et, e, tb)

    async def _drive(self) -> None:
        while True:
            # every turn of the loop also polls I/O, so ready sockets and finished threads get
            # their turn before time jumps
            for _ in range(self.settle):
                await anyio.lowlevel.checkpoint()
            self._fire_next()

    def _fire_next(self) -> None:
        while self._timers:
            when, seq, callback = heapq.heappop(self._timers)
            if seq in self._cancelled:
                self._cancelled.discard(seq)
                continue
            self._now = max(self._now, when)
            callback()
            # fire every timer due at the same instant
            while self._timers and self._timers[0][0] <= self._now:
                when, seq, callback = heapq.heappop(self._timers)
                if seq in self._cancelled:
                    self._cancelled.discard(seq)
                    continue
                callback()
            return

    def advance(self, seconds: float) -> None:
        """Move time forward by hand, firing the timers that fall due."""
        target = self._now + seconds
        while self._timers and self._timers[0][0] <= target:
            self._fire_next()
        self._now = target

    def _schedule(self, delay: float, callback: Callable[[], None]) -> int:
        seq = next(self._seq)
        heapq.heappush(self._timers, (self._now + max(0.0, delay), seq, callback))
        return seq

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now + self._wall_offset

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        event = anyio.Event()
        seq = self._schedule(seconds, event.set)
        try:
            await event.wait()
        finally:
            if not event.is_set():
                self._cancelled.add(seq)

    async def wait(self, event: anyio.Event, timeout: float) -> None:
        self.waits.append(timeout)
        seq = self._schedule(timeout, event.set)
        try:
            await event.wait()
        finally:
            self._cancelled.add(seq)

    def deadline(self, seconds: float | None) -> anyio.CancelScope:
        scope = anyio.CancelScope()
        if seconds is not None:
            self._schedule(seconds, scope.cancel)
        return scope
