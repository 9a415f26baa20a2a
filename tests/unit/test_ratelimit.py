"""The token bucket, in virtual time."""

from __future__ import annotations

import math

import anyio
import pytest

from orchestrator.connectors.http.ratelimit import RateLimiter


class FakeTime:
    """A clock that only moves when something sleeps; every sleep is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay
        await anyio.lowlevel.checkpoint()


async def test_spacing_after_burst() -> None:
    t = FakeTime()
    limiter = RateLimiter(2.0, burst=3, clock=t.clock, sleep=t.sleep)
    times = []
    for _ in range(6):
        await limiter.acquire()
        times.append(t.now - 1000.0)
    assert times == pytest.approx([0.0, 0.0, 0.0, 0.5, 1.0, 1.5])
    assert limiter.statistics()["acquired"] == 6


async def test_bucket_refills_while_idle() -> None:
    t = FakeTime()
    limiter = RateLimiter(1.0, burst=2, clock=t.clock, sleep=t.sleep)
    for _ in range(2):
        await limiter.acquire()
    t.now += 10.0  # idle: refills to burst, not beyond
    for _ in range(3):
        await limiter.acquire()
    assert t.sleeps == pytest.approx([1.0])


async def test_fifo_under_concurrency() -> None:
    t = FakeTime()
    limiter = RateLimiter(10.0, burst=1, clock=t.clock, sleep=t.sleep)
    order: list[int] = []

    async def worker(i: int) -> None:
        await limiter.acquire()
        order.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(worker, i)
            await anyio.lowlevel.checkpoint()  # worker i queues before worker i + 1
    assert order == list(range(8))
    assert t.now - 1000.0 == pytest.approx(0.7)


async def test_pause_holds_every_acquire() -> None:
    t = FakeTime()
    limiter = RateLimiter(math.inf, clock=t.clock, sleep=t.sleep)
    await limiter.acquire()
    limiter.pause_until(t.now + 7.0)
    assert limiter.paused_for() == pytest.approx(7.0)
    limiter.pause_until(t.now + 2.0)  # a pause never shrinks
    await limiter.acquire()
    assert t.sleeps == pytest.approx([7.0])
    assert limiter.paused_for() == 0.0
    await limiter.acquire()
    assert t.sleeps == pytest.approx([7.0])


async def test_pause_arriving_while_waiting_for_a_token() -> None:
    t = FakeTime()
    limiter = RateLimiter(1.0, clock=t.clock, sleep=t.sleep)
    await limiter.acquire()

    async def pause_soon() -> None:
        await anyio.lowlevel.checkpoint()
        limiter.pause_for(5.0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(pause_soon)
        await limiter.acquire()  # sleeps 1 s for the token, then finds the pause
    assert t.now - 1000.0 == pytest.approx(6.0)  # paused at t=1 for 5 s


async def test_try_acquire_takes_only_what_needs_no_wait() -> None:
    t = FakeTime()
    limiter = RateLimiter(1.0, burst=2, clock=t.clock, sleep=t.sleep)
    assert limiter.try_acquire()
    assert limiter.try_acquire()
    assert not limiter.try_acquire()  # the bucket is empty; refused without taking anything
    t.now += 1.0
    assert limiter.try_acquire()
    limiter.pause_for(3.0)
    t.now += 1.0
    assert not limiter.try_acquire()  # a token is due, but the connection is paused
    t.now += 2.0
    assert limiter.try_acquire()
    assert limiter.statistics()["acquired"] == 4
    assert t.sleeps == []


async def test_try_acquire_does_not_jump_the_queue() -> None:
    t = FakeTime()
    limiter = RateLimiter(1.0, clock=t.clock, sleep=t.sleep)
    await limiter.acquire()
    order: list[str] = []

    async def waiter() -> None:
        await limiter.acquire()  # holds the lock while it sleeps for its token
        order.append("waiter")

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.lowlevel.checkpoint()
        t.now += 5.0  # a token is due, but the waiter came first
        assert not limiter.try_acquire()
    assert order == ["waiter"]


async def test_no_op_sleep_does_not_spin() -> None:
    """A recording sleep that returns at once: the limiter's own time still moves."""
    recorded: list[float] = []

    async def record(delay: float) -> None:
        recorded.append(delay)

    limiter = RateLimiter(4.0, burst=1, sleep=record)
    with anyio.fail_after(2):
        for _ in range(5):
            await limiter.acquire()
        limiter.pause_for(30.0)
        await limiter.acquire()
    assert len(recorded) == 5
    assert recorded[:4] == pytest.approx([0.25] * 4, abs=0.01)
    assert recorded[4] == pytest.approx(30.0, abs=0.1)


async def test_real_clock_spacing() -> None:
    limiter = RateLimiter(50.0, burst=1)
    start = anyio.current_time()
    for _ in range(4):
        await limiter.acquire()
    assert anyio.current_time() - start >= 0.06 - 0.005


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (float("nan"), 1), (1, 0)])
def test_bad_arguments(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate, burst)
