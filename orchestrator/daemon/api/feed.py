"""The live event stream: ``GET /api/v1/events`` as server-sent events.

One :class:`EventFeed` serves every client of the daemon: it reads what the store committed
(``events_after``) when the host says something changed, encodes each event once and hands the
page to the fan-out (:mod:`.fanout`), a process of its own that writes it to every client, so
that the engine's event loop never pays for the clients. A request is answered here: its
headers, then, with ``Last-Event-ID``, what it missed, from the store, up to the feed's
position; then the client's socket goes to the fan-out, which sends it every event after that
position. Each event has the store's sequence as its ``id``, so nothing is missed and nothing
repeats. A client that cannot keep up (more than the streamer's bound waiting for it, or
nothing taken within :data:`WRITE_TIMEOUT`) is dropped: it reconnects and reads the store. A
comment every :data:`..streamer.KEEP_ALIVE` seconds keeps idle connections (and proxies) open.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import anyio
import structlog
from aiohttp import HttpVersion11, web
from anyio.streams.memory import MemoryObjectReceiveStream

from ... import logs
from ...runtime.host import RunHost
from ...store.base import Event, Store
from ...store.sqlite.rows import chunk_events
from .. import streamer
from ..streamer import WRITE_TIMEOUT
from .context import context
from .document import PREFIX
from .errors import ApiError
from .fanout import Chunk, Fanout, chunks_of

log = structlog.get_logger("orchestrator.api")

DRAIN_POLL = 0.005  # seconds between two looks at a client's unsent bytes before its handover
SETTLE = 0.02  # seconds between a change and the read of its commit
FALLBACK = 0.5  # seconds between two reads while anyone listens, woken or not
PAGE = 1000  # events read from the store at once
CHUNKS = 100  # rows of the event log read at once (each a commit of one run's events)
# gzip's header (RFC 1952): deflate, no name, no time, unknown system; the streamer's raw
# deflate blocks follow it (the stream never ends but with the daemon: no trailer)
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
DAGS_KNOWN = 100_000  # runs whose DAG the feed remembers (for the dag filter), at most


class EventFeed:
    def __init__(self, store: Store, host: RunHost, fanout: Fanout) -> None:
        self.store = store
        self.host = host
        self.fanout = fanout  # writes the pages to every client, in a process of its own
        self.position = 0  # the seq of the last event read (and handed to the fan-out)
        self._wake = anyio.Event()
        self._dags: dict[str, str] = {}  # run id -> DAG name (for the dag filter)

    async def serve(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Read the store's new events for as long as the daemon runs."""
        self.position = await self.store.last_event_seq()
        self.fanout.start()
        try:
            task_status.started()
            with self.host.events.subscribe() as changes:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._woken_by, changes)
                    while True:
                        with anyio.move_on_after(FALLBACK if self.fanout.clients else math.inf):
                            await self._wake.wait()
                        self._wake = anyio.Event()
                        if not self.fanout.clients:  # a client catching up reads the store
                            self.position = await self.store.last_event_seq()
                            continue
                        await anyio.sleep(SETTLE)  # the change's commit, most likely, is in
                        await self._read()
        finally:
            with anyio.CancelScope(shield=True):
                await self.fanout.aclose()  # every stream ends

    def wake(self) -> None:
        self._wake.set()

    async def _woken_by(self, changes: MemoryObjectReceiveStream[Any]) -> None:
        async for _ in changes:
            self._wake.set()

    async def _read(self) -> None:
        """The events after the feed's position, to the streamer: as the store keeps them when
        it can give its rows (nothing decoded here), else decoded and made into chunks."""
        rows_after = getattr(self.store, "event_chunks_after", None)
        while True:
            chunks: list[Chunk] = []
            last = self.position
            if rows_after is not None:
                rows = await rows_after(self.position, CHUNKS)
                for run_id, first, n, text, per_second in rows:
                    dag = self._dags.get(run_id) or await self.dag_of(run_id)
                    chunk = Chunk(run_id, dag, first, per_second, text)
                    if logs.has_secrets() and logs.redact_text(text) != text:
                        chunk = self._redacted(chunk)  # a secret (in any of its forms) in it
                    chunks.append(chunk)
                    last = max(last, first + n - 1)
                more = len(rows) >= CHUNKS
            else:
                events = await self.store.events_after(self.position, PAGE)
                for event in events:
                    if event.run_id not in self._dags:
                        await self.dag_of(event.run_id)
                chunks = chunks_of(events, self._dags)
                last = events[-1].seq if events else last
                more = len(events) >= PAGE
            if chunks:  # no await from here to the new position: a handover sees both or none
                self.fanout.page(self.position, chunks)
            self.position = last
            if not more:
                return

    def _redacted(self, chunk: Chunk) -> Chunk:
        events = chunk_events(chunk.run_id, chunk.first, chunk.events, chunk.per_second)
        return chunks_of(events, {chunk.run_id: chunk.dag})[0]

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
    """The event as the streamer frames it (for what a client missed, sent from here)."""
    return streamer.frame(
        event.seq,
        event.run_id,
        dag,
        event.job_id,
        event.kind,
        event.old,
        event.new,
        event.at,
        logs.redact(event.data),
    )


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
    # one compression serves every client without a filter: gzip when it is accepted
    gzip = run_filter is None and dag_filter is None and _accepts_gzip(request)
    headers = {
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
        "Vary": "Accept-Encoding",
    }
    if gzip:
        headers["Content-Encoding"] = "gzip"
    response = web.StreamResponse(headers=headers)
    chunked = request.version >= HttpVersion11
    if chunked:
        response.enable_chunked_encoding()
    await response.prepare(request)
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if transport is None or sock is None:
        return response  # the client left already

    deflate = zlib.compressobj(streamer.LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS) if gzip else None

    async def send(chunk: bytes) -> None:
        if deflate is not None:  # each write whole, and nothing after depends on it
            chunk = deflate.compress(chunk) + deflate.flush(zlib.Z_FULL_FLUSH)
        with anyio.fail_after(WRITE_TIMEOUT):
            await response.write(chunk)

    sent = since if since is not None else feed.position

    async def catch_up() -> None:
        """What the client has not got up to the feed's position, from the store."""
        nonlocal sent
        while sent < (position := feed.position):
            missed = [e for e in await feed.store.events_after(sent, PAGE) if e.seq <= position]
            if not missed:
                sent = position
                break
            chunks = []
            for event in missed:
                if run_filter is not None and event.run_id != run_filter:
                    continue
                dag = await feed.dag_of(event.run_id)
                if dag_filter is None or dag == dag_filter:
                    chunks.append(_frame(event, dag))
            if chunks:  # a page of the store in one write
                await send(b"".join(chunks))
            sent = missed[-1].seq

    try:
        if gzip:
            await response.write(GZIP_HEADER)
        await catch_up()
        await send(b": connected\n\n")
        with anyio.fail_after(WRITE_TIMEOUT):
            while True:  # all of it out of this process, and nothing new in the feed
                await catch_up()
                if not transport.get_write_buffer_size() and sent >= feed.position:
                    break
                await anyio.sleep(DRAIN_POLL)
    except (TimeoutError, ConnectionError):
        return response  # too slow already, or gone: it reconnects
    if transport.is_closing():
        return response
    # no await from the feed's position to here: the pages after ``sent`` go to the streamer
    # after this client does
    feed.fanout.hand_over(sock, sent, run_filter, dag_filter, chunked=chunked, gzip=gzip)
    feed.wake()
    transport.abort()  # our copy of the socket: closed without a word (the streamer has its own)
    return response


def _accepts_gzip(request: web.Request) -> bool:
    """``Accept-Encoding`` names gzip (or ``*``) without ``q=0``."""
    for item in request.headers.get("Accept-Encoding", "").split(","):
        name, _, params = item.partition(";")
        if name.strip().lower() in ("gzip", "x-gzip", "*"):
            q = params.strip().lower().removeprefix("q=")
            try:
                return not params.strip() or float(q) > 0
            except ValueError:
                return False
    return False
