"""The live event stream: ``GET /api/v1/events`` as server-sent events.

One :class:`EventFeed` serves every client of the daemon: it reads what the store committed
(``events_after``) when the host says something changed, and hands each event to every
subscriber. A client reconnecting with ``Last-Event-ID`` first reads what it missed from the
store, then follows the feed: each event has the store's sequence as its ``id``, so nothing is
missed and nothing repeats. A client that cannot keep up (its buffer full, or a write that
does not go out within :data:`WRITE_TIMEOUT`) is dropped: it reconnects and reads the store.
A comment every :data:`KEEP_ALIVE` seconds keeps idle connections (and proxies) open.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import anyio
import structlog
from aiohttp import web
from anyio.streams.memory import MemoryObjectReceiveStream

from ... import logs
from ...runtime.host import RunHost
from ...store.base import Event, Store
from .context import context
from .document import PREFIX
from .errors import ApiError

log = structlog.get_logger("orchestrator.api")

KEEP_ALIVE = 15.0  # seconds between two comments on an idle stream
WRITE_TIMEOUT = 10.0  # seconds a client may take to accept a write before it is dropped
BUFFER = 10_000  # events waiting for one client, at most
SETTLE = 0.02  # seconds between a change and the read of its commit
FALLBACK = 0.5  # seconds between two reads while anyone listens, woken or not
PAGE = 1000  # events read from the store at once
DAGS_KNOWN = 100_000  # runs whose DAG the feed remembers (for the dag filter), at most


class Framed(NamedTuple):
    """An event as every client is sent it: encoded once, by the feed, for all of them."""

    seq: int
    run_id: str
    dag: str | None
    chunk: bytes


class Page(NamedTuple):
    """The events of one read of the store, handed to every client at once."""

    events: tuple[Framed, ...]
    chunk: bytes  # every event's, joined once: what a client with no filter is sent


class Subscription:
    """One client's pages, and the number of events in them it has not taken yet."""

    __slots__ = ("queued", "receive", "send")

    def __init__(self) -> None:
        # unbounded in pages: its bound is BUFFER events, counted in ``queued``
        self.send, self.receive = anyio.create_memory_object_stream[Page](math.inf)
        self.queued = 0

    def taken(self, page: Page) -> Page:
        self.queued -= len(page.events)
        return page


class EventFeed:
    def __init__(self, store: Store, host: RunHost) -> None:
        self.store = store
        self.host = host
        self.position = 0  # the seq of the last event read
        self._subscribers: list[Subscription] = []
        self._wake = anyio.Event()
        self._dags: dict[str, str] = {}  # run id -> DAG name (for the dag filter)
        self.dropped = 0  # clients dropped for being slow

    async def serve(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Read the store's new events for as long as the daemon runs."""
        self.position = await self.store.last_event_seq()
        task_status.started()
        with self.host.events.subscribe() as changes:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._woken_by, changes)
                while True:
                    with anyio.move_on_after(FALLBACK if self._subscribers else math.inf):
                        await self._wake.wait()
                    self._wake = anyio.Event()
                    if not self._subscribers:
                        self.position = await self.store.last_event_seq()
                        continue
                    await anyio.sleep(SETTLE)  # the change's commit, most likely, is in
                    await self._read()

    async def _woken_by(self, changes: MemoryObjectReceiveStream[Any]) -> None:
        async for _ in changes:
            self._wake.set()

    async def _read(self) -> None:
        while True:
            events = await self.store.events_after(self.position, PAGE)
            framed = []
            for event in events:  # encoded once for every client (no await once handed out)
                dag = await self.dag_of(event.run_id)
                framed.append(Framed(event.seq, event.run_id, dag, _frame(event, dag)))
            if framed:  # one page for every client, not one item per event and client
                page = Page(tuple(framed), b"".join(f.chunk for f in framed))
                for subscription in list(self._subscribers):
                    if subscription.queued + len(framed) > BUFFER:
                        self.dropped += 1  # too slow: dropped, it reads the store again
                        self._drop(subscription)
                        continue
                    try:
                        subscription.send.send_nowait(page)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                        self._drop(subscription)
                    else:
                        subscription.queued += len(framed)
            if events:
                self.position = events[-1].seq
            if len(events) < PAGE:
                return

    def _drop(self, subscription: Subscription) -> None:
        if subscription in self._subscribers:
            self._subscribers.remove(subscription)
        subscription.send.close()

    @contextmanager
    def subscribe(self) -> Iterator[tuple[int, Subscription]]:
        """The feed's position now and the pages of every event after it."""
        subscription = Subscription()
        self._subscribers.append(subscription)
        self._wake.set()
        try:
            with subscription.receive:
                yield self.position, subscription
        finally:
            self._drop(subscription)

    def close(self) -> None:
        """The daemon stops: every stream ends."""
        for subscription in list(self._subscribers):
            self._drop(subscription)

    async def dag_of(self, run_id: str) -> str | None:
        dag = self._dags.get(run_id)
        if dag is None:
            record = await self.store.get_run(run_id)
            if record is None:
                return None
            if len(self._dags) >= DAGS_KNOWN:  # a long-lived daemon sees runs without end
                self._dags.clear()
            dag = self._dags[run_id] = record.dag
        return dag


def _frame(event: Event, dag: str | None) -> bytes:
    data = {
        "seq": event.seq,
        "run": event.run_id,
        "dag": dag,
        "job": event.job_id,
        "kind": event.kind,
        "old": event.old,
        "new": event.new,
        "at": event.at,
        "data": logs.redact(event.data),
    }
    return f"id: {event.seq}\nevent: {event.kind}\ndata: {json.dumps(data)}\n\n".encode()


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/events", stream)


async def stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: every run's (or ``run``'s, or ``dag``'s) events as they are
    committed; from ``Last-Event-ID`` on, read from the store first."""
    api = context(request)
    feed = api.feed
    run_filter = request.query.get("run")
    dag_filter = request.query.get("dag")
    last_id = request.headers.get("Last-Event-ID")
    since: int | None = None
    if last_id is not None:
        if not (last_id.isascii() and last_id.isdigit() and len(last_id) <= 18):
            raise ApiError(400, "Last-Event-ID: expected an event's id", field="Last-Event-ID")
        since = int(last_id)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
        }
    )
    await response.prepare(request)

    async def frame(event: Event) -> bytes | None:
        """The event as sent, or None when the filters leave it out."""
        if run_filter is not None and event.run_id != run_filter:
            return None
        dag = await feed.dag_of(event.run_id)
        if dag_filter is not None and dag != dag_filter:
            return None
        return _frame(event, dag)

    async def send(chunk: bytes) -> None:
        with anyio.fail_after(WRITE_TIMEOUT):
            await response.write(chunk)

    filtered = run_filter is not None or dag_filter is not None
    sent = since if since is not None else 0
    try:
        with feed.subscribe() as (position, subscription):
            if since is not None:  # what it missed, from the store, up to the feed's position
                while sent < position:
                    missed = await feed.store.events_after(sent, PAGE)
                    missed = [e for e in missed if e.seq <= position]
                    if not missed:
                        break
                    for event in missed:
                        if (chunk := await frame(event)) is not None:
                            await send(chunk)
                    sent = missed[-1].seq
            await send(b": connected\n\n")
            while True:
                with anyio.move_on_after(KEEP_ALIVE) as idle:
                    page = subscription.taken(await subscription.receive.receive())
                if idle.cancelled_caught:
                    await send(b": keep-alive\n\n")
                    continue
                chunks = []
                while True:  # this page and every one waiting behind it, in one write
                    if filtered or page.events[0].seq <= sent:
                        for item in page.events:
                            if item.seq > sent:
                                if (run_filter is None or item.run_id == run_filter) and (
                                    dag_filter is None or item.dag == dag_filter
                                ):
                                    chunks.append(item.chunk)
                                sent = item.seq
                    else:  # all of it, as the feed joined it
                        chunks.append(page.chunk)
                        sent = page.events[-1].seq
                    try:
                        page = subscription.taken(subscription.receive.receive_nowait())
                    except anyio.WouldBlock:
                        break
                if chunks:
                    await send(b"".join(chunks))
    except (anyio.EndOfStream, anyio.ClosedResourceError, TimeoutError):
        pass  # dropped (slow), or the daemon stops: the client reconnects
    except ConnectionResetError:
        pass  # the client left
    return response
