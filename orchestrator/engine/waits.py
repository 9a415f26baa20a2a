"""Jobs waiting for a retry (a part of the run executor): they hold no worker and no slot, in a
heap by due time, woken by one timer task that runs only while some wait."""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any

import anyio

from ..clock import Clock
from ..model.states import JobState
from .records import JobRun


class RetryWaits:
    """The due-time queue (its state is the executor's, set up by its constructor)."""

    _clock: Clock
    _due: list[tuple[float, int, JobRun]]
    _timing: bool
    _timer: anyio.CancelScope | None
    _seq: Any
    _tg: Any

    if TYPE_CHECKING:

        def _queue(self, jr: JobRun) -> None: ...

    def _wait_retry(self, jr: JobRun, delay: float) -> None:
        """Hold ``jr`` in the due-time queue until its next attempt is due: a waiting retry
        holds no worker and no slot. Then it is queued like any ready job."""
        entry = (self._clock.monotonic() + delay, next(self._seq), jr)
        heapq.heappush(self._due, entry)
        if not self._timing:
            self._timing = True
            self._tg.start_soon(self._wake_due)
        elif self._due[0] is entry and self._timer is not None:
            self._timer.cancel()  # due before the one it sleeps for

    async def _wake_due(self) -> None:
        """The timer of the due-time queue: sleeps until the first due time, queues what is
        due, and ends when no retry waits (the next one starts it again)."""
        due = self._due
        try:
            while due:
                wait = due[0][0] - self._clock.monotonic()
                if wait > 0:
                    with anyio.CancelScope() as self._timer:
                        await self._clock.sleep(wait)
                    self._timer = None
                    continue
                jr = heapq.heappop(due)[2]
                if jr.state is JobState.RETRY_WAIT:
                    self._queue(jr)  # back in line like any ready job: slots and pools apply
        finally:
            self._timing = False
            self._timer = None
