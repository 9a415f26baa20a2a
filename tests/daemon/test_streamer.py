"""The event stream's fan-out process: pages and clients handed over in order, the filters,
the shared gzip compression, slow clients dropped, keep-alives, the end of the streams."""

from __future__ import annotations

import asyncio
import json
import socket
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from orchestrator import logs
from orchestrator.daemon import streamer
from orchestrator.daemon.api.fanout import Chunk, Fanout, chunks_of
from orchestrator.daemon.api.feed import GZIP_HEADER, EventFeed
from orchestrator.store.base import Event

RUN, OTHER = "r1", "r2"


DAGS = {RUN: "d", OTHER: "other"}


def event(seq: int, run: str = RUN, data: dict[str, Any] | None = None) -> Event:
    return Event(seq, run, "j", "job", "queued", "running", 1.5, data or {})


def send(fanout: Fanout, events: list[Event], skip: int = 0) -> None:
    """As the feed does: the events as chunks of the store, each run's in a chunk."""
    fanout.page(skip, chunks_of(events, DAGS))


class Peer:
    """A client's end of a stream handed to the fan-out: what it received, as it comes."""

    def __init__(self) -> None:
        self.ours, self.theirs = socket.socketpair()
        self.ours.setblocking(False)
        self.data = bytearray()
        self.ended = False

    async def read_until(self, done: Callable[[bytes], bool], timeout: float = 10) -> bytes:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while not done(bytes(self.data)):
                piece = await loop.sock_recv(self.ours, 1 << 16)
                if not piece:
                    self.ended = True
                    if not done(bytes(self.data)):
                        raise AssertionError(f"the stream ended: {bytes(self.data)[-200:]!r}")
                self.data += piece
        return bytes(self.data)

    async def read_to_end(self, timeout: float = 10) -> bytes:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while piece := await loop.sock_recv(self.ours, 1 << 16):
                self.data += piece
        self.ended = True
        return bytes(self.data)

    def close(self) -> None:
        self.ours.close()
        self.theirs.close()


def ids(data: bytes) -> list[int]:
    return [int(line[4:]) for line in data.split(b"\n") if line.startswith(b"id: ")]


@pytest.fixture
async def fanout() -> AsyncIterator[Fanout]:
    out = Fanout(nice=0)
    out.start()
    try:
        yield out
    finally:
        await out.aclose()


def hand(fanout: Fanout, peer: Peer, after: int, **kwargs: object) -> None:
    spec: dict[str, object] = {"run": None, "dag": None, "chunked": False, "gzip": False}
    spec.update(kwargs)
    fanout.hand_over(
        peer.theirs,
        after,
        spec["run"],  # type: ignore[arg-type]
        spec["dag"],  # type: ignore[arg-type]
        chunked=bool(spec["chunked"]),
        gzip=bool(spec["gzip"]),
    )
    peer.theirs.close()


async def test_a_client_gets_the_pages_sent_after_it_and_none_before(fanout: Fanout) -> None:
    first, second = Peer(), Peer()
    send(fanout, [event(1), event(2)])
    hand(fanout, first, 2)
    send(fanout, [event(3), event(4)])
    hand(fanout, second, 4)
    send(fanout, [event(5)])
    assert ids(await first.read_until(lambda d: b"id: 5\n" in d)) == [3, 4, 5]
    assert ids(await second.read_until(lambda d: b"id: 5\n" in d)) == [5]
    for peer in (first, second):
        peer.close()


async def test_a_big_page_goes_over_in_parts_and_arrives_whole(fanout: Fanout) -> None:
    peer = Peer()
    hand(fanout, peer, 0)
    send(fanout, [event(seq) for seq in range(1, 5001)])  # some 150 KB: several messages
    got = await peer.read_until(lambda d: b"id: 5000\n" in d)
    assert ids(got) == list(range(1, 5001))
    big = event(5001, data={"log": "x" * 300_000})  # one event bigger than a message
    send(fanout, [big, event(5002)])
    got = await peer.read_until(lambda d: b"id: 5002\n" in d)
    assert b'"data": {"log": "' + b"x" * 300_000 + b'"}}\n\n' in got
    peer.close()


async def test_the_filters_keep_their_run_or_dag_only(fanout: Fanout) -> None:
    by_run, by_dag = Peer(), Peer()
    hand(fanout, by_run, 0, run=RUN)
    hand(fanout, by_dag, 0, dag="other")
    send(fanout, [event(1), event(2, OTHER), event(3), event(4, OTHER)])
    send(fanout, [event(5)])
    assert ids(await by_run.read_until(lambda d: b"id: 5\n" in d)) == [1, 3, 5]
    send(fanout, [event(6, OTHER)])
    assert ids(await by_dag.read_until(lambda d: b"id: 6\n" in d)) == [2, 4, 6]
    for peer in (by_run, by_dag):
        peer.close()


async def test_gzip_clients_share_one_compression_and_each_decodes_its_own_stream(
    fanout: Fanout,
) -> None:
    """As the daemon answers: the gzip header and what it sent itself (its own compression,
    ending in a full flush), then the streamer's shared blocks, as chunks of a chunked answer."""
    early, late = Peer(), Peer()
    for peer, prelude in ((early, b": connected\n\n"), (late, b"id: 2\n\n: connected\n\n")):
        own = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        body = GZIP_HEADER + own.compress(prelude) + own.flush(zlib.Z_FULL_FLUSH)
        peer.theirs.sendall(b"%x\r\n%b\r\n" % (len(body), body))
    hand(fanout, early, 0, chunked=True, gzip=True)
    send(fanout, [event(1), event(2)])
    hand(fanout, late, 2, chunked=True, gzip=True)
    send(fanout, [event(3)])
    send(fanout, [event(4)])
    for peer, expected in ((early, [1, 2, 3, 4]), (late, [2, 3, 4])):
        await peer.read_until(lambda d, e=expected: ids(gunzip(dechunk(d))) == e)
        assert gunzip(dechunk(bytes(peer.data))).count(b": connected\n\n") == 1
        peer.close()


def dechunk(data: bytes) -> bytes:
    """The body of a chunked answer's whole chunks."""
    body, rest = b"", data
    while rest:
        size, _, after = rest.partition(b"\r\n")
        length = int(size, 16)
        if len(after) < length + 2:
            break
        body, rest = body + after[:length], after[length + 2 :]
    return body


def gunzip(body: bytes) -> bytes:
    return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(body)


async def test_a_slow_client_is_dropped_and_the_others_get_everything() -> None:
    fanout = Fanout(nice=0, max_pending=1 << 16)
    fanout.start()
    slow, fast = Peer(), Peer()
    try:
        hand(fanout, slow, 0)
        hand(fanout, fast, 0)
        for start in range(1, 100_001, 1000):  # some 3 MB; the slow one reads nothing
            send(fanout, [event(seq) for seq in range(start, start + 1000)])
            await fast.read_until(lambda d, last=start + 999: f"id: {last}\n".encode() in d)
        got = await slow.read_to_end()  # what its socket held, then the end: it was dropped
        assert len(got) < len(fast.data)
        assert ids(fast.data) == list(range(1, 100_001))
    finally:
        await fanout.aclose()
        slow.close()
        fast.close()


async def test_an_idle_stream_gets_a_keep_alive_comment() -> None:
    fanout = Fanout(nice=0, keep_alive=0.2)
    fanout.start()
    peer = Peer()
    try:
        hand(fanout, peer, 0, chunked=True)
        got = await peer.read_until(lambda d: b": keep-alive\n\n" in d)
        assert got.startswith(b"e\r\n: keep-alive\n\n\r\n")  # a chunk of its own
    finally:
        await fanout.aclose()
        peer.close()


async def test_the_daemon_stopping_ends_every_stream_as_an_answer_ends() -> None:
    fanout = Fanout(nice=0)
    fanout.start()
    peer = Peer()
    hand(fanout, peer, 0, chunked=True)
    send(fanout, [event(1)])
    await peer.read_until(lambda d: b"id: 1\n" in d)
    await fanout.aclose()
    assert (await peer.read_to_end()).endswith(b"\r\n0\r\n\r\n")
    peer.close()


async def test_the_feed_knows_when_nobody_listens(fanout: Fanout) -> None:
    peer = Peer()
    assert fanout.clients == 0
    hand(fanout, peer, 0)
    assert fanout.clients == 1  # at once, before the streamer's word
    send(fanout, [event(1)])
    await peer.read_until(lambda d: b"id: 1\n" in d)
    peer.close()  # the client leaves
    async with asyncio.timeout(10):
        while fanout.clients:
            await asyncio.sleep(0.01)


async def test_a_streamer_that_died_is_replaced(fanout: Fanout) -> None:
    gone = Peer()
    hand(fanout, gone, 0)
    process = fanout._process
    assert process is not None
    process.kill()
    await gone.read_to_end()  # its clients' streams end: they reconnect
    async with asyncio.timeout(10):
        while fanout._process is process:
            await asyncio.sleep(0.01)
    peer = Peer()
    hand(fanout, peer, 0)
    send(fanout, [event(1)])
    assert ids(await peer.read_until(lambda d: b"id: 1\n" in d)) == [1]
    gone.close()
    peer.close()


async def test_chunks_as_the_store_keeps_them_are_decoded_by_the_streamer(
    fanout: Fanout,
) -> None:
    """A row of the event log: ``at`` in 1/per_second seconds, its events up to ``skip`` sent
    before (the feed's position fell inside it), data written as JSON text by older versions."""
    peer = Peer()
    hand(fanout, peer, 0)
    rows = [
        ["a", "job", None, "queued", 1_500_000, {}],
        ["a", "job", "queued", "running", 2_250_000, '{"k": 1}'],
    ]
    rows.append([None, "run", "running", "succeeded", 3_000_000, None])
    fanout.page(10, [Chunk(RUN, "d", 10, 1_000_000, json.dumps(rows))])
    got = await peer.read_until(lambda d: b"id: 12\n" in d)
    frames = [json.loads(line[6:]) for line in got.split(b"\n") if line.startswith(b"data: ")]
    assert [(f["seq"], f["job"], f["new"], f["at"], f["data"]) for f in frames] == [
        (11, "a", "running", 2.25, {"k": 1}),
        (12, None, "succeeded", 3.0, {}),
    ]
    assert frames[0] == {
        "seq": 11,
        "run": RUN,
        "dag": "d",
        "job": "a",
        "kind": "job",
        "old": "queued",
        "new": "running",
        "at": 2.25,
        "data": {"k": 1},
    }
    peer.close()


@pytest.mark.parametrize(
    "values",
    [
        (1, "r", "d", "j", "job", "queued", "running", 1.5, {}),
        (2, 'r\u00e9"\\\n\u2028', None, None, "run", None, "x", 1765000000.123456, {"k": [1, "é"]}),
        (3, "r", "d", "j", "job", "a", "b", 17, {"x": None, "y": 1e22}),
        (4, "r", "d", "j", "attempt", "a", "b", 1e-7, {"n": True}),
    ],
)
def test_a_frame_is_the_json_of_the_event_as_json_dumps_writes_it(values: tuple[Any, ...]) -> None:
    keys = ("seq", "run", "dag", "job", "kind", "old", "new", "at", "data")
    event = dict(zip(keys, values, strict=True))
    expected = f"id: {values[0]}\nevent: {values[4]}\ndata: {json.dumps(event)}\n\n".encode()
    assert streamer.frame(*values) == expected


def test_a_row_of_the_store_holding_a_secret_goes_to_the_streamer_redacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(logs, "_SECRETS", set())
    monkeypatch.setattr(logs, "_SHAPES", set())
    monkeypatch.setattr(logs, "_PATTERN", None, raising=False)
    secret = "tok-3c9f2a7b51d8e6"
    logs.add_secrets([secret])
    rows = [["a", "attempt", None, "running", 1_500_000, {"url": f"https://x/?t={secret}"}]]
    rows.append(["a", "job", "queued", "running", 2_000_000, {}])
    text = json.dumps(rows)
    assert logs.redact_text(text) != text  # what the feed looks for, in the row as stored
    feed = EventFeed.__new__(EventFeed)
    chunk = feed._redacted(Chunk(RUN, "d", 7, 1_000_000, text))
    assert secret not in chunk.events
    assert (chunk.run_id, chunk.dag, chunk.first, chunk.per_second) == (RUN, "d", 7, 1)
    assert json.loads(chunk.events) == [
        ["a", "attempt", None, "running", 1.5, {"url": "https://x/?t=***"}],
        ["a", "job", "queued", "running", 2.0, {}],
    ]
