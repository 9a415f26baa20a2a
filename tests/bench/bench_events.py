"""The daemon's live event stream (``GET /api/v1/events``) under many clients.

    python tests/bench/bench_events.py [--clients 1000] [--jobs 1000] [--repeat 3]
        [--concurrency 1000] [--duration 0] [--spread 0] [--encoding gzip|identity]

The daemon (``orchestrator serve``, a temporary SQLite database, a folder holding one DAG of
``--jobs`` independent ``fake`` jobs, ``--concurrency`` of them at once, each taking
``--duration`` seconds plus its share of ``--spread``) runs in a process of its own, pinned to
one core; the clients run in this process, on the other core. Where the daemon's children go (the
store's writer, and the event stream's writer, the streamer, which writes the pages to every
client at a lower priority than the engine) is ``--streamer-cpu``: ``clients`` (the default)
moves them to the clients' core, the daemon then on two cores, one of them shared with the
1,000 clients, as a daemon serving remote clients on a two-core machine would run; ``daemon``
leaves them on the daemon's core, the whole daemon on one core (a harder case: the streamer's
writes then wait for the engine, and the engine for them). The clients read as little as they
can while the run goes: each is a bare asyncio
protocol that keeps each piece of the answer with its arrival time, decoded (chunked framing,
gzip) after the run. They accept what ``--encoding`` says (a browser accepts gzip). Each
round runs the same DAG twice, in turn:

- with clients: ``--clients`` streams are connected (each has read ``: connected``), and a
  second later (:data:`SETTLED`: the daemon done with the burst of connections) the run is
  triggered through the API and every client reads until the run's end (its bytes still, the
  first client's decoded stream holding the run's last event);
- without: the run is triggered with no stream open.

Reported, for the rounds with clients: the latency of each (client, event) pair, from the
event's ``at`` (the state change's time, taken just before its commit: the latency is an upper
bound of the commit-to-client time) to the arrival of the chunk that held it here (the same
machine's clock), as p50/p95/p99; and the events every client got, checked against the store
(read again after the run with ``Last-Event-ID``): every event of the run, in order, none
twice. The engine's throughput is the run's duration (``createdAt`` to ``endedAt``, from
``GET /api/v1/runs/{id}``), best of ``--repeat`` each way, and the ratio of the two. Both bars
of the issue are checked: p95 under 500 ms, throughput with clients within 10% of without.
Also reported: the wall time from the trigger to the run's last event at the last client, and
the CPU time each side spent from the trigger until every client's bytes were in (the daemon's:
its process and its children, and its process alone, the engine's; the machine may be shared:
CPU time is the steadier).

``at`` is taken when the engine changes the state, and the change is committed with the run's
next batch: with ``--spread`` (jobs ending one after the other, nothing else to write) a job's
end may wait in the engine until another write, or the run's end, flushes it; the latency
then includes that wait, which is the engine's and not the stream's.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from array import array
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
CLIENT_CPU, DAEMON_CPU = (CPUS[0], CPUS[1]) if len(CPUS) >= 2 else (None, None)
DAG = "bench_events"
FLUSH = "bench_flush"  # one job, run after each round with clients
# one frame: "id: N\nevent: KIND\ndata: {... "new": X, "at": T, ...}\n\n" (the feed's _frame)
FRAME = re.compile(
    rb'id: (\d+)\nevent: (\w+)\ndata: \{"seq": \d+, "run": "([^"]+)"[^\n]*?'
    rb'"new": (null|"\w+"), "at": ([\d.e+-]+)'
)
ENDED = (b'"succeeded"', b'"failed"', b'"cancelled"')


def cpu_seconds(pid: int | None = None, tree: bool = True) -> float:
    """User and system CPU time of a process (this one by default) and its children so far."""
    if pid is None:
        usage = os.times()
        return usage.user + usage.system
    total = 0.0
    for one in (
        pid,
        *(children(pid) if tree else ()),
    ):  # the daemon, its store's writer, its streamer
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def pin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_daemon(
    home: Path, jobs: int, concurrency: int, duration: float, spread: float
) -> tuple[Any, str]:
    folder = home / "dags"
    folder.mkdir()
    names = [f"j{i}" for i in range(jobs)]
    # job i takes duration + spread * i / jobs: their ends spread evenly over ``spread``
    lengths = [round(duration + spread * i / jobs, 3) for i in range(jobs)]
    dag = {
        "name": DAG,
        "concurrency": concurrency,
        "jobs": {n: {"type": "fake", "duration": t} for n, t in zip(names, lengths, strict=True)},
        "jobGraph": {"vertices": names, "edges": []},
    }
    (folder / f"{DAG}.json").write_text(json.dumps(dag))
    one = {
        "name": FLUSH,
        "jobs": {"a": {"type": "fake"}},
        "jobGraph": {"vertices": ["a"], "edges": []},
    }
    (folder / f"{FLUSH}.json").write_text(json.dumps(one))
    port = free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "orchestrator", "serve", "--dags", str(folder)),
            *("--db", str(home / "bench.db"), "--port", str(port), "--log-level", "error"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: pin(DAEMON_CPU),
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=1) as answer:
                if answer.status == 200:
                    return proc, base
        except OSError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("the daemon did not start")


SETTLED = 1.0  # seconds between the last client connected and the trigger
ID = re.compile(rb"(?:^|\n)id: (\d+)\n")


class _Reader(asyncio.Protocol):
    def __init__(self, client: Client) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.closed.set()


@dataclass
class Client:
    """One stream, read as cheaply as can be, so that this side keeps up with the daemon: on
    a bare asyncio protocol (no HTTP client between), each piece of the answer is kept with
    its arrival time as it comes, and decoded (chunked framing, gzip) after the run, when
    :meth:`decode` finds in each piece its whole frames: the seqs of the first and last, and
    their number (the frames' ``at`` are the store's, read once after the run)."""

    pieces: list[bytes] = field(default_factory=list)
    times: array[float] = field(default_factory=lambda: array("d"))
    size: int = 0  # bytes received
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: array[float] = field(default_factory=lambda: array("d"))
    first: array[int] = field(default_factory=lambda: array("q"))
    last: array[int] = field(default_factory=lambda: array("q"))
    count: array[int] = field(default_factory=lambda: array("q"))
    gzip: bool = False

    async def open(self, base: str, gzip: bool) -> asyncio.Transport:
        host, port = base.removeprefix("http://").split(":")
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(lambda: _Reader(self), host, int(port))
        accept = b"gzip" if gzip else b"identity"
        transport.write(
            b"GET /api/v1/events HTTP/1.1\r\nHost: %b\r\nAccept: text/event-stream\r\n"
            b"Accept-Encoding: %b\r\n\r\n" % (host.encode(), accept)
        )
        return transport

    def received(self, piece: bytes) -> None:
        self.times.append(time.time())
        self.pieces.append(piece)
        self.size += len(piece)
        if not self.connected.is_set() and len(self.pieces) < 16:
            self.decode(0)  # the few bytes before ": connected"
            if self.count or b": connected\n" in self._text:
                self.connected.set()

    _text: bytes = b""

    def has(self, seq: int) -> bool:
        """Whether the event ``seq`` came (decoding it all)."""
        self.decode(0)
        return bool(self.last) and self.last[-1] >= seq

    def decode(self, since: float) -> None:
        """Every piece, decoded: the frames whole in each one that arrived after ``since``."""
        self.arrived, self.first, self.last, self.count = (
            array("d"),
            array("q"),
            array("q"),
            array("q"),
        )
        raw = b""
        head = True
        chunked = False
        chunk_left = 0  # bytes of the current chunk still to come (chunked)
        inflate: Any = None
        pending = b""
        text = bytearray()
        for now, piece in zip(self.times, self.pieces, strict=True):
            raw += piece
            if head:
                cut = raw.find(b"\r\n\r\n")
                if cut < 0:
                    continue
                headers = raw[:cut].lower()
                assert headers.startswith(b"http/1.1 200 "), raw[:200]
                chunked = b"transfer-encoding: chunked" in headers
                self.gzip = b"content-encoding: gzip" in headers
                if self.gzip:
                    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
                raw = raw[cut + 4 :]
                head = False
            body = bytearray()
            if chunked:
                while raw:
                    if chunk_left:
                        take = raw[:chunk_left]
                        body += take
                        chunk_left -= len(take)
                        raw = raw[len(take) :]
                        continue
                    line = raw.find(b"\r\n", 2 if raw.startswith(b"\r\n") else 0)
                    if line < 0:
                        break
                    size_line = raw[:line].strip()
                    raw = raw[line + 2 :]
                    chunk_left = int(size_line, 16)
            else:
                body, raw = bytearray(raw), b""
            data = pending + (inflate.decompress(bytes(body)) if inflate else bytes(body))
            text += data
            end = data.rfind(b"\n\n") + 2  # whole frames up to there
            if end < 2:
                pending = data
                continue
            pending = data[end:]
            frames = data.count(b"\nevent: ", 0, end)  # the JSON of data is on one line
            if not frames or now < since:
                continue
            first = ID.search(data, 0, end)
            tail = ID.search(data, max(data.rfind(b"\nid: ", 0, end), 0), end)
            assert first is not None
            assert tail is not None
            self.arrived.append(now)
            self.first.append(int(first.group(1)))
            self.last.append(int(tail.group(1)))
            self.count.append(frames)
        self._text = bytes(text[:200]) if len(text) < 200 else b""

    def check(self, index: dict[int, int], events: int) -> bool:
        """Every event of the run (``index``: seq -> its place in the run), in order, once."""
        expected = 0
        for first, last, count in zip(self.first, self.last, self.count, strict=True):
            if index.get(first) != expected or index.get(last) != expected + count - 1:
                return False
            expected += count
        return expected == events

    def latencies(self, index: dict[int, int], at: list[float]) -> array[float]:
        out = array("d")
        for arrived, first, count in zip(self.arrived, self.first, self.count, strict=True):
            start = index[first]
            out.extend(arrived - t for t in at[start : start + count])
        return out


async def replay(
    session: aiohttp.ClientSession, base: str, after: int, run_id: str
) -> tuple[list[int], list[float]]:
    """The seqs and times (``at``) of ``run_id``'s events, as the store holds them (read by
    the stream from ``Last-Event-ID: after``)."""
    seqs: list[int] = []
    times: list[float] = []
    wanted = run_id.encode()
    headers = {"Last-Event-ID": str(after)}
    async with session.get(f"{base}/api/v1/events", headers=headers) as answer:
        pending = b""
        async for chunk in answer.content.iter_any():
            pending += chunk
            cut = pending.rfind(b"\n\n")
            if cut < 0:
                continue
            whole, pending = pending[: cut + 2], pending[cut + 2 :]
            for match in FRAME.finditer(whole):
                seq, kind, run, new, at = match.groups()
                if run != wanted:
                    continue  # another run's (flush)
                seqs.append(int(seq))
                times.append(float(at))
                if kind == b"run" and new in ENDED:
                    return seqs, times
    raise AssertionError("the replay ended before the run")


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def trigger_and_wait(
    session: aiohttp.ClientSession, base: str, dag: str = DAG
) -> tuple[str, float]:
    """Trigger the DAG; once the run ended, its id and duration (createdAt to endedAt)."""
    async with session.post(f"{base}/api/v1/dags/{dag}/runs") as answer:
        assert answer.status == 201, (answer.status, await answer.text())
        run_id = (await answer.json())["id"]
    while True:  # both ways poll alike (5 times a second)
        await asyncio.sleep(0.2)
        async with session.get(f"{base}/api/v1/runs/{run_id}") as answer:
            run = await answer.json()
        if run["endedAt"] is not None:
            assert run["status"] == "succeeded", run["status"]
            return run_id, parse_time(run["endedAt"]) - parse_time(run["createdAt"])


@dataclass
class Round:
    duration: float
    latencies: array[float] = field(default_factory=lambda: array("d"))
    events: int = 0  # the run's, in the store
    complete: int = 0  # clients that got all of them, in order, once each
    last_seq: int = 0
    # from the trigger to the end of the run's last event at the last client (or to the run's
    # end, without clients): the wall time, and the CPU time of each side (seconds)
    wall: float = 0.0
    cpu_daemon: float = 0.0
    cpu_engine: float = 0.0  # the daemon's own process, without its children
    cpu_clients: float = 0.0
    gzip: int = 0  # clients answered gzip-encoded


@dataclass
class Meter:
    """Wall and CPU time of both sides, from ``start`` to ``stop``."""

    daemon: int
    began: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    def now(self) -> tuple[float, float, float, float]:
        engine = cpu_seconds(self.daemon, tree=False)
        return time.perf_counter(), cpu_seconds(self.daemon), engine, cpu_seconds()

    def start(self) -> None:
        self.began = self.now()

    def stop(self, into: Round) -> None:
        ended = self.now()
        pairs = zip(ended, self.began, strict=True)
        into.wall, into.cpu_daemon, into.cpu_engine, into.cpu_clients = (e - b for e, b in pairs)


async def one_round(base: str, clients: int, after: int, meter: Meter, gzip: bool) -> Round:
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, read_bufsize=1 << 20
    ) as session:
        streams = [Client() for _ in range(clients)]
        transports = [await c.open(base, gzip) for c in streams]
        waiting = [asyncio.create_task(c.connected.wait()) for c in streams]
        await asyncio.wait_for(asyncio.gather(*waiting), 120)
        # connected, and then the run: the daemon done with the burst of 1,000 handovers (their
        # requests answered and collected), as clients connected before a run finds it
        await asyncio.sleep(SETTLED)
        meter.start()
        began = time.time()
        run_id, duration = await trigger_and_wait(session, base)
        truth, at = await replay(session, base, after, run_id)
        # every client's bytes in: the first client has the run's last event, and nothing
        # more came for a while
        seen = -1
        while seen != (seen := sum(c.size for c in streams)) or not streams[0].has(truth[-1]):
            await asyncio.sleep(0.5)
        result = Round(duration)
        meter.stop(result)
        for t in transports:
            t.close()
    await flush(base)
    result.events, result.last_seq = len(truth), truth[-1]
    index = {seq: i for i, seq in enumerate(truth)}
    ends = []
    for c in streams:
        c.decode(began)
        if c.check(index, len(truth)):
            result.complete += 1
            result.latencies.extend(c.latencies(index, at))
            ends.append(c.arrived[-1])
        result.gzip += c.gzip
        c.pieces.clear()
    result.wall = max(ends, default=began) - began  # to the run's end at the last client
    return result


async def bare_round(base: str, after: int, meter: Meter) -> Round:
    async with aiohttp.ClientSession() as session:
        meter.start()
        run_id, duration = await trigger_and_wait(session, base)
        result = Round(duration)
        meter.stop(result)
        truth, _ = await replay(session, base, after, run_id)
    result.events, result.last_seq = len(truth), truth[-1]
    return result


async def flush(base: str) -> None:
    """The streams just closed stay subscribed in the daemon until a write to them fails: a
    one-job run makes them fail, so that the next round has none."""
    async with aiohttp.ClientSession() as session:
        await trigger_and_wait(session, base, FLUSH)
    await asyncio.sleep(0.5)


def quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def move_children(pid: int, cpu: int | None) -> None:
    """Pin the processes ``pid`` started (the streamer, the store's writer) to ``cpu``."""
    if cpu is None:
        return
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            os.sched_setaffinity(int(child), {cpu})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=1000, help="jobs of the run at once")
    parser.add_argument("--duration", type=float, default=0.0, help="each fake job's (s)")
    parser.add_argument(
        "--spread", type=float, default=0.0, help="the jobs' ends spread over this (s) more"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--encoding",
        choices=("gzip", "identity"),
        default="gzip",
        help="what the clients accept (Accept-Encoding), as a browser does: gzip",
    )
    parser.add_argument(
        "--streamer-cpu",
        choices=("daemon", "clients"),
        default="clients",
        help="the core of the daemon's children (the streamer, the store's writer): the "
        "daemon's (the daemon on one core), or the clients' (the daemon on two cores, one of "
        "them shared with the 1,000 clients)",
    )
    args = parser.parse_args()
    pin(CLIENT_CPU)
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start_daemon(
            Path(tmp), args.jobs, args.concurrency, args.duration, args.spread
        )
        with_clients: list[Round] = []
        without: list[Round] = []
        last = 0
        try:
            for _ in range(args.repeat):
                for rounds, go in ((with_clients, True), (without, False)):
                    gc.collect()
                    time.sleep(0.5)  # the daemon idle before each
                    meter = Meter(proc.pid)
                    if args.streamer_cpu == "clients":
                        move_children(proc.pid, CLIENT_CPU)
                    if go:
                        done = asyncio.run(
                            one_round(base, args.clients, last, meter, args.encoding == "gzip")
                        )
                    else:
                        done = asyncio.run(bare_round(base, last, meter))
                    rounds.append(done)
                    last = done.last_seq
        finally:
            proc.terminate()
            proc.wait(30)
    report(args, with_clients, without)


def report(args: argparse.Namespace, with_clients: list[Round], without: list[Round]) -> None:
    latencies = sorted(x for r in with_clients for x in r.latencies)
    p50, p95, p99 = (quantile(latencies, q) for q in (0.50, 0.95, 0.99))
    events = {r.events for r in with_clients + without}
    complete = min(r.complete for r in with_clients)
    print(
        f"daemon on cpu {DAEMON_CPU}, its children on the {args.streamer_cpu}' cpu, clients on "
        f"cpu {CLIENT_CPU}; {args.jobs} fake jobs "
        f"(duration {args.duration}s + up to {args.spread}s, {args.concurrency} at once), "
        f"{args.clients} clients (accepting {args.encoding}, "
        f"{min(r.gzip for r in with_clients)} answered gzip), "
        f"{sorted(events)} events a run"
    )
    print(f"{'':16} {'run time (s)':>29} {'':>7}   {'trigger -> last event read':>26}")
    print(
        f"{'run':16} {'best':>8} {'all':>20} {'jobs/s':>7}   "
        f"{'wall s':>7} {'CPU daemon':>10} {'engine':>7} {'clients':>7}"
    )
    for name, rounds in (("with clients", with_clients), ("without clients", without)):
        times = [r.duration for r in rounds]
        listed = " ".join(f"{t:.3f}" for t in times)
        wall, daemon, engine, clients = (
            statistics.median(getattr(r, f) for r in rounds)
            for f in ("wall", "cpu_daemon", "cpu_engine", "cpu_clients")
        )
        print(
            f"{name:16} {min(times):8.3f} {listed:>20} {args.jobs / min(times):7,.0f}   "
            f"{wall:7.2f} {daemon:10.2f} {engine:7.2f} {clients:7.2f}"
        )
    best_with = min(r.duration for r in with_clients)
    best_without = min(r.duration for r in without)
    ratio = best_without / best_with
    pairs = zip(with_clients, without, strict=True)
    paired = statistics.median(bare.duration / w.duration for w, bare in pairs)
    print(
        f"throughput with clients / without: {ratio:.1%} (best of {args.repeat} each); "
        f"median of the rounds' ratios: {paired:.1%}"
    )
    print(
        f"latency, event's at -> client, over {len(latencies):,} (client, event) pairs: "
        f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms"
    )
    print(
        f"clients with every event of the run, in order, none twice: {complete} of "
        f"{args.clients} (worst round)"
    )
    print(f"bar p95 < 500 ms: {'met' if p95 < 0.5 else 'MISSED'}")
    print(f"bar throughput within 10%: {'met' if ratio >= 0.9 else 'MISSED'}")
    print(f"bar every client every event once: {'met' if complete == args.clients else 'MISSED'}")


if __name__ == "__main__":
    main()
