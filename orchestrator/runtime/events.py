"""What a run host publishes as its runs go: frozen records, one per state change of a run or a
job, for live views (the terminal, next the daemon's event stream). A subscriber that falls
behind loses nothing it cannot read again: the store keeps every event (``events_since``)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..model.states import JobState, RunState


@dataclass(frozen=True, slots=True)
class RunChanged:
    run_id: str
    dag: str
    old: RunState | None  # None: the run starts in this host (new or resumed)
    new: RunState
    at: float
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class JobChanged:
    run_id: str
    job_id: str
    old: JobState
    new: JobState
    attempt: int
    at: float
    error: str | None = None


HostEvent = RunChanged | JobChanged


class Publisher:
    """Hands each event to every subscriber's stream. A subscriber's stream holds up to
    ``buffer`` events; one that is full drops the event for that subscriber alone (and counts
    it), so that a slow reader never holds a run back."""

    def __init__(self, buffer: int = 10_000) -> None:
        self._buffer = buffer
        self._streams: list[MemoryObjectSendStream[HostEvent]] = []
        self.dropped = 0

    @property
    def listening(self) -> bool:
        return bool(self._streams)

    def publish(self, event: HostEvent) -> None:
        for stream in list(self._streams):
            try:
                stream.send_nowait(event)
            except anyio.WouldBlock:
                self.dropped += 1
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._streams.remove(stream)

    @contextmanager
    def subscribe(
        self, buffer: int | None = None
    ) -> Iterator[MemoryObjectReceiveStream[HostEvent]]:
        """``with host.events.subscribe() as events: async for event in events: ...``;
        ``buffer`` replaces the publisher's for this subscriber (0: unbounded, for one that
        must see every event and keeps up on the whole, such as the daemon's metrics)."""
        send: MemoryObjectSendStream[HostEvent]
        receive: MemoryObjectReceiveStream[HostEvent]
        buffer = self._buffer if buffer is None else buffer
        size = buffer if buffer > 0 else math.inf
        send, receive = anyio.create_memory_object_stream(size)
        self._streams.append(send)
        try:
            with receive:
                yield receive
        finally:
            if send in self._streams:
                self._streams.remove(send)
            send.close()

    def close(self) -> None:
        """The host ends: every subscriber's iteration ends."""
        for stream in self._streams:
            stream.close()
        self._streams.clear()
