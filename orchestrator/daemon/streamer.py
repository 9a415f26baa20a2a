"""The event stream's writer: a process of its own, so that the fan-out never holds the engine.

The daemon (:mod:`orchestrator.daemon.api.fanout`) starts this file as a script (``python -I
-S streamer.py FD CONFIG``, see :func:`main`); it imports the standard library only. ``FD`` is
its end of a ``SOCK_SEQPACKET`` socket pair, on which the daemon sends, in order, each a message:

- ``P`` + a page of events, read once from the store by the daemon's feed, as the store keeps
  them (see :meth:`Batch.add`: decoded and framed here, not in the engine's process); a page
  bigger than a message comes in parts, ``p`` + bytes, ended by its ``P``;
- ``C`` + the JSON of ``{"after", "run", "dag", "chunked"}`` with one file descriptor: a client's
  socket, handed over once the daemon authenticated the request, answered its headers and sent
  what the client missed (up to the seq ``after``); from here on it gets every event after
  ``after`` (that its ``run`` and ``dag`` filters keep), and the daemon's copy of it is closed;
- ``Q``: the daemon stops; every stream ends (the last chunk of a chunked answer), then this.

The pages that come within :data:`INTERVAL` of the last write make one batch, written to each
client in one send (clients without filters get the same bytes, joined once). A client whose
unsent bytes pass :data:`MAX_PENDING`, or whose socket takes nothing for :data:`WRITE_TIMEOUT`,
is dropped: it reconnects and reads the store. One with nothing sent for :data:`KEEP_ALIVE`
seconds gets a comment. Clients that accept gzip (and filter nothing) share one compression:
each batch is compressed once, ending with a full flush, so that any client may start at any
batch. The process runs at a lower priority (``nice``) than the engine's: on a busy core the
engine's work goes first, the streams take the rest. It ignores SIGINT, SIGTERM and SIGHUP (the
daemon ends it, after its own shutdown): the end of the socket pair (``Q``, or the daemon's
death) ends it.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import selectors
import signal
import socket
import sys
import time
import zlib
from typing import Any

KEEP_ALIVE = 15.0  # seconds between two comments on an idle stream
WRITE_TIMEOUT = 10.0  # seconds a client may take nothing before it is dropped
MAX_PENDING = 4 << 20  # bytes waiting for one client, at most (some 20,000 events)
MAX_MESSAGE = 1 << 16  # bytes of a message on the socket pair (bigger pages come in parts)
INTERVAL = 0.05  # seconds between two writes to the clients, at least (pages wait, joined)
TICK = 1.0  # seconds between two checks of the clocks above

_string = json.encoder.encode_basestring_ascii  # what json.dumps uses for a str (in C)
LEVEL = 6  # zlib's compression level for gzip clients (some 15 times fewer bytes than JSON)


class Client:
    __slots__ = ("after", "chunked", "dag", "gzip", "pending", "run", "sock", "stalled", "wrote")

    def __init__(
        self,
        sock: socket.socket,
        after: int,
        run: str | None,
        dag: str | None,
        chunked: bool,
        gzip: bool,
    ) -> None:
        self.sock = sock
        self.gzip = gzip  # its answer is gzip-encoded (the daemon sent its header already)
        self.after = after  # the seq of the last event it was sent (or was sent before this)
        self.run = run
        self.dag = dag
        self.chunked = chunked
        self.pending = bytearray()  # what its socket did not take yet
        self.wrote = time.monotonic()  # the last time anything went out to it
        self.stalled = 0.0  # since when its socket takes nothing (with pending bytes)


class Batch:
    """The events of the pages read at once: their seqs, runs, DAGs and frames' offsets."""

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.runs: list[str] = []
        self.dags: list[str | None] = []
        self.ends: list[int] = []  # each frame's end in ``data``
        self.parts: list[bytes] = []

    def add(self, page: bytes) -> None:
        """A page: the JSON of ``{"skip", "chunks": [[run, dag, first, per_second, length],
        ...]}``, a newline, then each chunk's events as the store keeps them (the JSON of
        ``[[job, kind, old, new, at, data], ...]``, ``length`` bytes each): decoded and framed
        here, not in the engine's process; the events up to seq ``skip`` were sent before."""
        head, _, body = page.partition(b"\n")
        spec = json.loads(head)
        skip = spec["skip"]
        offset = 0
        end = self.ends[-1] if self.ends else 0
        for run, dag, first, per_second, length in spec["chunks"]:
            events = json.loads(body[offset : offset + length])
            offset += length
            for seq, (job, kind, old, new, at, data) in enumerate(events, first):
                if seq <= skip:
                    continue
                if per_second != 1:
                    at = at / per_second
                if isinstance(data, str):  # chunks written before data was a JSON object
                    data = json.loads(data)
                chunk = frame(seq, run, dag, job, kind, old, new, at, dict(data) if data else {})
                self.seqs.append(seq)
                self.runs.append(run)
                self.dags.append(dag)
                end += len(chunk)
                self.ends.append(end)
                self.parts.append(chunk)


def frame(
    seq: int,
    run: str,
    dag: str | None,
    job: str | None,
    kind: str,
    old: str | None,
    new: str,
    at: float,
    data: Any,
) -> bytes:
    """One event as the stream sends it (its ``data`` redacted already): the JSON of ``{"seq",
    "run", "dag", "job", "kind", "old", "new", "at", "data"}`` as :func:`json.dumps` writes it,
    each value encoded alone (a quarter of the time of a dict's)."""
    text = (
        f'{{"seq": {_value(seq)}, "run": {_value(run)}, "dag": {_value(dag)}, '
        f'"job": {_value(job)}, "kind": {_value(kind)}, "old": {_value(old)}, '
        f'"new": {_value(new)}, "at": {_value(at)}, '
        f'"data": {json.dumps(data) if data else "{}"}}}'
    )
    return f"id: {seq}\nevent: {kind}\ndata: {text}\n\n".encode()


def _value(value: Any) -> str:
    """``value`` as :func:`json.dumps` writes it."""
    kind = type(value)
    if kind is str:
        return _string(value)
    if value is None:
        return "null"
    if kind is int or (kind is float and math.isfinite(value)):
        return repr(value)
    return json.dumps(value)


class Streamer:
    def __init__(self, channel: socket.socket) -> None:
        self.channel = channel
        self.selector = selectors.DefaultSelector()
        self.clients: dict[int, Client] = {}
        self.partial = bytearray()  # a page's parts so far
        self.batch = Batch()  # the pages not written yet
        self.next_write = 0.0  # the batch waits until then
        # one compression for every gzip client: each batch ends with a full flush, so that
        # the next one is independent of it and any client may start there
        self.deflate = zlib.compressobj(LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        self.seen = 0  # clients handed over so far
        self.reported = (0, 0)  # (clients, seen) as last told to the daemon
        self.open = True

    def serve(self) -> None:
        self.channel.setblocking(False)
        self.selector.register(self.channel, selectors.EVENT_READ, None)
        next_tick = time.monotonic() + TICK
        while self.open:
            wake = next_tick if not self.batch.seqs else min(next_tick, self.next_write)
            for key, mask in self.selector.select(max(0.0, wake - time.monotonic())):
                if key.data is None:
                    self._read_channel()
                    if not self.open:
                        break
                elif key.fd in self.clients:
                    client = self.clients[key.fd]
                    if mask & selectors.EVENT_READ:
                        self._read_client(client)
                    if mask & selectors.EVENT_WRITE and key.fd in self.clients:
                        self._send(client, b"")
            now = time.monotonic()
            if self.batch.seqs and now >= self.next_write:
                self._write_batch()
            if now >= next_tick:
                next_tick = now + TICK
                self._check_clocks(now)
            self._report()
        self._write_batch()
        self._end_all()

    def _report(self) -> None:
        """``N`` + ``[clients, handovers seen]`` when it changed: the daemon's feed reads the
        store only while someone listens."""
        state = (len(self.clients), self.seen)
        if state == self.reported or not self.open:
            return
        try:
            self.channel.send(b"N" + json.dumps(state).encode())
        except BlockingIOError:
            return  # told at the next turn
        except OSError:
            self.open = False
            return
        self.reported = state

    def _read_channel(self) -> None:
        """Every message waiting: pages gathered in the batch, clients added in their order."""
        while True:
            try:
                message, fds, _, _ = socket.recv_fds(self.channel, MAX_MESSAGE, 1)
            except BlockingIOError:
                break
            except OSError:
                message, fds = b"", []
            if not message:  # the daemon is gone
                self.open = False
                break
            kind = message[:1]
            if kind == b"p":  # a part of a page too big for one message
                self.partial += message[1:]
            elif kind == b"P":
                self.batch.add(bytes(self.partial) + message[1:] if self.partial else message[1:])
                self.partial.clear()
            elif kind == b"C":
                self._write_batch()  # what came before it is not its
                self._add(json.loads(message[1:]), fds)
            elif kind == b"Q":
                self.open = False
                break

    def _add(self, spec: dict[str, Any], fds: list[int]) -> None:
        self.seen += 1
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            return
        sock = socket.socket(fileno=fds[0])
        sock.setblocking(False)
        client = Client(
            sock,
            int(spec["after"]),
            spec["run"],
            spec["dag"],
            bool(spec["chunked"]),
            bool(spec.get("gzip")),
        )
        self.clients[sock.fileno()] = client
        self.selector.register(sock, selectors.EVENT_READ, client)

    def _write_batch(self) -> None:
        """The batch to every client, in one send each; the next batch waits :data:`INTERVAL`
        (the pages that come meanwhile join it: fewer, larger writes)."""
        batch, self.batch = self.batch, Batch()
        if not batch.seqs:
            return
        self.next_write = time.monotonic() + INTERVAL
        data = b"".join(batch.parts)
        whole: dict[tuple[bool, bool], bytes] = {}  # (chunked, gzip) -> every event, as sent
        for client in list(self.clients.values()):
            if client.after >= batch.seqs[-1]:
                continue
            form = (client.chunked, client.gzip)
            if client.run is None and client.dag is None:
                if client.after < batch.seqs[0]:
                    if form not in whole:
                        encoded = _encode(data, client.gzip, self.deflate)
                        whole[form] = _chunk(encoded, client.chunked)
                    out = whole[form]
                else:  # it was handed over in the middle of these events: the rest
                    start = bisect.bisect_right(batch.seqs, client.after)
                    rest = _encode(data[batch.ends[start - 1] :], client.gzip)
                    out = _chunk(rest, client.chunked)
            else:
                out = _chunk(_encode(_filtered(batch, data, client), client.gzip), client.chunked)
            client.after = batch.seqs[-1]
            if out:
                self._send(client, out)

    def _send(self, client: Client, data: bytes) -> None:
        """Write ``data`` after what waits; what the socket does not take waits, in bounds."""
        pending = client.pending
        if pending:
            if len(pending) + len(data) > MAX_PENDING:
                self._drop(client)  # too slow: it reconnects and reads the store
                return
            pending += data
            data = bytes(pending)
            pending.clear()
        if not data:
            return
        try:
            sent = client.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._drop(client)
            return
        now = time.monotonic()
        waiting = bool(client.stalled)  # watched for writability
        if sent:
            client.wrote = now
            client.stalled = 0.0
        if sent < len(data):
            if len(data) - sent > MAX_PENDING:
                self._drop(client)
                return
            pending += data[sent:]
            client.stalled = client.stalled or now
            if not waiting:
                events = selectors.EVENT_READ | selectors.EVENT_WRITE
                self.selector.modify(client.sock, events, client)
        elif waiting:
            client.stalled = 0.0
            self.selector.modify(client.sock, selectors.EVENT_READ, client)

    def _read_client(self, client: Client) -> None:
        """A client sends nothing on a stream: its end (or an error) is what this sees."""
        try:
            data = client.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)

    def _check_clocks(self, now: float) -> None:
        for client in list(self.clients.values()):
            if client.pending:
                if now - client.stalled > WRITE_TIMEOUT:
                    self._drop(client)
            elif now - client.wrote >= KEEP_ALIVE:
                comment = _KEEP_ALIVE_GZIP if client.gzip else _KEEP_ALIVE
                self._send(client, _chunk(comment, client.chunked))

    def _drop(self, client: Client) -> None:
        fd = client.sock.fileno()
        if self.clients.pop(fd, None) is not None:
            self.selector.unregister(client.sock)
        client.sock.close()

    def _end_all(self) -> None:
        """The daemon stops: each stream ends as an answer ends (best effort, never waiting)."""
        for client in list(self.clients.values()):
            if client.chunked and not client.pending:
                try:
                    client.sock.send(b"0\r\n\r\n")
                except OSError:
                    pass
            self._drop(client)


def _filtered(batch: Batch, data: bytes, client: Client) -> bytes:
    parts = []
    start = bisect.bisect_right(batch.seqs, client.after)
    for i in range(start, len(batch.seqs)):
        if (client.run is None or batch.runs[i] == client.run) and (
            client.dag is None or batch.dags[i] == client.dag
        ):
            parts.append(data[batch.ends[i - 1] if i else 0 : batch.ends[i]])
    return b"".join(parts)


def _encode(data: bytes, gzip: bool, shared: Any = None) -> bytes:
    """``data`` as a gzip client is sent it, for ``gzip``: raw deflate blocks that end with a
    full flush (so that they depend on nothing before them, and nothing after depends on
    them), from the ``shared`` compressor or a new one; else as it is."""
    if not gzip or not data:
        return data
    deflate = shared or zlib.compressobj(LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return bytes(deflate.compress(data) + deflate.flush(zlib.Z_FULL_FLUSH))


def _chunk(data: bytes, chunked: bool) -> bytes:
    """``data`` as one chunk of a chunked answer, or as it is."""
    if not chunked or not data:
        return data
    return b"%x\r\n%b\r\n" % (len(data), data)


_KEEP_ALIVE = b": keep-alive\n\n"
_KEEP_ALIVE_GZIP = _encode(_KEEP_ALIVE, True)


def main(argv: list[str]) -> None:
    """``streamer.py FD CONFIG``: the socket pair's descriptor, and the JSON of ``{"nice",
    "keep_alive", "write_timeout", "max_pending", "interval"}`` (each optional: this module's
    defaults)."""
    global KEEP_ALIVE, WRITE_TIMEOUT, MAX_PENDING, INTERVAL, TICK
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_IGN)
    fd, config = int(argv[1]), json.loads(argv[2])
    KEEP_ALIVE = float(config.get("keep_alive", KEEP_ALIVE))
    WRITE_TIMEOUT = float(config.get("write_timeout", WRITE_TIMEOUT))
    MAX_PENDING = int(config.get("max_pending", MAX_PENDING))
    INTERVAL = float(config.get("interval", INTERVAL))
    TICK = min(TICK, KEEP_ALIVE / 4, WRITE_TIMEOUT / 4)
    if nice := int(config.get("nice", 0)):
        try:
            os.nice(nice)
        except OSError:
            pass
    Streamer(socket.socket(fileno=fd)).serve()


if __name__ == "__main__":
    main(sys.argv)
