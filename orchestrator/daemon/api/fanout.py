"""The event stream's fan-out, handed to a process of its own (:mod:`..streamer`).

Writing every event to every client (1,000 clients of a busy daemon take gigabytes a minute)
would hold the engine's event loop; so the daemon's :class:`~.feed.EventFeed` reads each page of
events once from the store and sends it once, on a socket pair, to the streamer process, which
writes it to every client. A client's request is answered here (authenticated, its headers and
what it missed sent); then its socket itself goes over the socket pair (``SCM_RIGHTS``), in order
with the pages: it gets every page sent after it, none before. The streamer reports how many
clients it holds, so that the feed reads nothing while nobody listens. Should the streamer die,
its clients' connections end (they reconnect) and another one is started.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import structlog

from ... import logs
from ...store.base import Event
from .. import streamer

log = structlog.get_logger("orchestrator.api")

_STREAMER = [sys.executable, "-I", "-S", streamer.__file__]  # stdlib only: starts at once
NICE = 10  # the streamer's priority below the engine's: on a busy core the engine goes first
CHANNEL_BUFFER = 4 << 20  # bytes the socket pair holds (capped by the system's wmem_max)
STOP_GRACE = 5.0  # seconds the streamer gets to end its streams when the daemon stops


class Chunk(NamedTuple):
    """Events of one run numbered from ``first``, as the store keeps them: ``events`` the JSON
    of ``[[job, kind, old, new, at, data], ...]``, ``at`` in ``1/per_second`` seconds."""

    run_id: str
    dag: str | None
    first: int
    per_second: int
    events: str


def chunks_of(events: Sequence[Event], dags: Mapping[str, str | None]) -> list[Chunk]:
    """``events`` (their ``data`` redacted) as chunks: each run's consecutive events in one."""
    out: list[Chunk] = []
    group: list[list[Any]] = []
    first = 0
    for i, event in enumerate(events):
        row = [event.job_id, event.kind, event.old, event.new, event.at, logs.redact(event.data)]
        previous = events[i - 1] if i else None
        if previous is None or (previous.run_id, previous.seq + 1) != (event.run_id, event.seq):
            if group:
                out.append(_chunk(events[i - 1].run_id, dags, first, group))
            group, first = [], event.seq
        group.append(row)
    if group:
        out.append(_chunk(events[-1].run_id, dags, first, group))
    return out


def _chunk(run_id: str, dags: Mapping[str, str | None], first: int, rows: list[list[Any]]) -> Chunk:
    return Chunk(run_id, dags.get(run_id), first, 1, json.dumps(rows, separators=(",", ":")))


class Fanout:
    """The daemon's side of the streamer: pages and clients go out in order, never blocking."""

    def __init__(self, nice: int = NICE, **settings: float) -> None:
        """``settings``: the streamer's ``keep_alive``, ``write_timeout`` and ``max_pending``
        (tests shorten them)."""
        self.config = json.dumps({"nice": nice, **settings})
        self.clients = 0  # as the streamer last reported, plus those handed over since
        self._handed = 0  # clients handed over to this streamer
        self._reported = 0  # the handovers the streamer had seen at its last report
        self._queue: deque[tuple[bytes, int | None]] = deque()  # waiting for room
        self._process: subprocess.Popen[bytes] | None = None
        self._channel: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CHANNEL_BUFFER)
            theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CHANNEL_BUFFER)
            self._process = subprocess.Popen(
                [*_STREAMER, str(theirs.fileno()), self.config],
                pass_fds=(theirs.fileno(),),
                close_fds=True,
                process_group=0,  # a Ctrl-C is the daemon's to handle: it ends the streamer
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self._channel = ours
        self.clients = self._handed = self._reported = 0
        self._loop.add_reader(ours, self._on_report)

    def page(self, skip: int, chunks: Sequence[Chunk]) -> None:
        """Every client (that its filters let) gets the events of ``chunks`` after the seq
        ``skip``, sent once to the streamer, which decodes and frames them."""
        texts = [c.events.encode() for c in chunks]
        head = {
            "skip": skip,
            "chunks": [
                [c.run_id, c.dag, c.first, c.per_second, len(t)]
                for c, t in zip(chunks, texts, strict=True)
            ],
        }
        page = json.dumps(head, separators=(",", ":")).encode() + b"\n" + b"".join(texts)
        room = streamer.MAX_MESSAGE - 1
        while len(page) > room:
            self._send(b"p" + page[:room])
            page = page[room:]
        self._send(b"P" + page)

    def hand_over(
        self,
        sock: socket.socket,
        after: int,
        run: str | None,
        dag: str | None,
        *,
        chunked: bool,
        gzip: bool,
    ) -> None:
        """The streamer writes to ``sock`` from here on: every event after seq ``after`` (and
        whose run and DAG match the filters given), as a chunked answer's chunks if
        ``chunked``, gzip-encoded if ``gzip`` (the answer's gzip header and what was sent
        before ended with a full flush). The caller closes its own copy of the socket."""
        spec = {"after": after, "run": run, "dag": dag, "chunked": chunked, "gzip": gzip}
        self._send(b"C" + json.dumps(spec).encode(), os.dup(sock.fileno()))
        self._handed += 1
        self.clients += 1

    async def aclose(self) -> None:
        """Every stream ends; the streamer exits (killed after :data:`STOP_GRACE`)."""
        self._closing = True
        process = self._process
        self._send(b"Q")
        for _ in range(int(STOP_GRACE / 0.05)):
            if not self._queue:
                break
            await asyncio.sleep(0.05)
        self._close_channel()
        if process is not None:
            for _ in range(int(STOP_GRACE / 0.05)):
                if process.poll() is not None:
                    break
                await asyncio.sleep(0.05)
            else:
                process.kill()
                process.wait()

    def _send(self, message: bytes, fd: int | None = None) -> None:
        """In order: at once if nothing waits and the socket pair has room, else queued."""
        if self._channel is None:
            if fd is not None:
                os.close(fd)
            return
        self._queue.append((message, fd))
        if len(self._queue) == 1:
            self._flush()

    def _flush(self) -> None:
        channel = self._channel
        while self._queue and channel is not None:
            message, fd = self._queue[0]
            try:
                if fd is None:
                    channel.send(message)
                else:
                    socket.send_fds(channel, [message], [fd])
            except BlockingIOError:
                assert self._loop is not None
                self._loop.add_writer(channel, self._flush)
                return
            except OSError as exc:
                self._lost(f"the event streamer cannot be written to ({exc})")
                return
            self._queue.popleft()
            if fd is not None:
                os.close(fd)
        if channel is not None and self._loop is not None:
            self._loop.remove_writer(channel)

    def _on_report(self) -> None:
        """``N`` + the JSON of ``[clients, handovers seen]``, sent when its clients change."""
        assert self._channel is not None
        while True:
            try:
                message = self._channel.recv(256)
            except BlockingIOError:
                return
            except OSError:
                message = b""
            if not message:
                self._lost("the event streamer exited")
                return
            if message[:1] == b"N":
                clients, seen = json.loads(message[1:])
                self._reported = seen
                # clients handed over since its report are not counted in it
                self.clients = clients + (self._handed - seen)

    def _lost(self, why: str) -> None:
        self._close_channel()
        if self._closing:
            return
        log.error("api.streamer_lost", reason=why)  # its clients reconnect to the next one
        if self._process is not None:
            self._process.kill()
            self._process.wait()
        self.start()

    def _close_channel(self) -> None:
        channel, self._channel = self._channel, None
        for _, fd in self._queue:
            if fd is not None:
                os.close(fd)
        self._queue.clear()
        if channel is not None:
            if self._loop is not None:
                self._loop.remove_reader(channel)
                self._loop.remove_writer(channel)
            channel.close()
