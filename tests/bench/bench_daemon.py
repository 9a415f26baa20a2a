"""The daemon at scale: 10,000 remote jobs in flight in one daemon process, and the tick delay
of 100 DAGs on a one-minute cron.

    python tests/bench/bench_daemon.py [--jobs 10000] [--dags 100] [--minutes 2]
        [--rate 1000] [--burst 100] [--hold 180] [--window 60]
        [--skip-jobs] [--skip-baseline] [--skip-ticks] [--slow-steps MS] [--gc-freeze]
        [--gc-threshold A,B,C]

Each part runs in a process of its own (a fresh interpreter, so that its memory is its own),
pinned to one core; the simulator (``orchestrator simulate``, another process) and this parent
process share the other core:

1. **In flight.** One DAG of ``--jobs`` independent ``http`` jobs of the generic simulator (DAG
   concurrency ``--jobs``: the default is 64 at a time), each running there for ``--hold``
   seconds, scheduled by a cron that fires once: the next minute boundary at least 20 s away
   (the part waits for it). The daemon (``Daemon`` in the child process, a SQLite store in a
   temporary folder) submits and polls them through one connection limited to ``--rate``
   requests per second (burst ``--burst``). Once all are running (the daemon's
   ``orchestrator_jobs{state="running"}`` gauge), it is watched ``--window`` seconds more; then
   the simulator is asked how many of its jobs are running, and the daemon is stopped (the
   remote jobs are let go). Reported: the process's resident memory (RSS, from
   ``/proc/self/statm``: its peak, sampled every 0.5 s while jobs are in flight, minus the RSS
   once the daemon started, its folder loaded, before the tick) per job in flight; the objects
   the garbage collector tracks; the event-loop lag (the daemon's own ``watch_loop_lag``
   samples, one every 0.5 s) from the tick to the stop, and in the window alone (every job in
   flight); the simulator's request rate (its counters, read every second by the parent)
   against the connection's limit; the ramp (tick to all running).
2. **Baseline** (same run, same simulator, same job count): a bare asyncio task per job, with
   one aiohttp session, submitting and then polling on the engine's poll schedule (1 s, x1.5,
   at most 30 s), no store, no rate limit; its RSS growth per job, measured the same way.
3. **Ticks.** ``--dags`` DAGs on ``* * * * *``, one ``fake`` job each, in a fresh daemon:
   ``--minutes`` minute boundaries pass. Reported: p50, p99, max and min of (start - nominal
   time) of every tick, as the scheduler hands them to the daemon's metrics, and the loop lag.

``--slow-steps MS`` (a diagnosis, not a figure: it costs a little) lists every step of the
event loop of MS or more, with the coroutines of the task as the step left them, and every
garbage collection of MS or more. ``--gc-freeze`` calls ``gc.freeze()`` and
``--gc-threshold A,B,C`` calls ``gc.set_threshold(A, B, C)`` in the daemon's process once it
started, before the tick (experiments: the daemon does neither).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

import aiohttp
import anyio
from bench_http import CLIENT_CPU, SIMULATOR_CPU, TOKEN, free_port, pin, start_simulator

from orchestrator import logs
from orchestrator.connections import Connection
from orchestrator.connectors.base import PollSchedule
from orchestrator.daemon.metrics import DaemonMetrics
from orchestrator.daemon.service import Daemon, DaemonConfig

HOLD_NAME = "hold"  # the simulator's rule target: jobs of this name run --hold seconds
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    """This process's resident set, bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def run_queue_wait() -> float:
    """Seconds this thread has waited for a CPU while it could run (``schedstat``): what
    other threads and processes on the machine took from it."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except OSError:
        return math.nan


def quantile(samples: list[float], q: float) -> float:
    """Nearest rank, as :meth:`DaemonMetrics.lag_quantile`."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]


def sim_call(base: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base + path,
        data=data,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def prepare_simulator(base: str, hold: float) -> None:
    sim_call(base, "/_sim/reset", {})
    sim_call(base, "/_sim/behaviour", {"target": HOLD_NAME, "duration": hold})


def running_at_simulator(base: str) -> int:
    jobs = sim_call(base, "/jobs")["data"]
    return sum(1 for j in jobs if j["state"] in ("queued", "running"))


def http_job() -> dict[str, Any]:
    return {
        "type": "http",
        "connection": "sim",
        "submit": {"method": "POST", "path": "/jobs", "body": {"name": HOLD_NAME}},
        "idPath": "$.id",
        "poll": {"method": "GET", "path": "/jobs/{id}"},
        "statusPath": "$.state",
        "running": ["queued", "running"],
        "success": ["done"],
        "failure": ["error", "cancelled"],
    }


def once_cron(lead: float = 20.0) -> tuple[str, float]:
    """A cron that fires once (in a year's time again): the first minute boundary at least
    ``lead`` seconds away, and that time."""
    at = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    if (at - datetime.now(UTC)).total_seconds() < lead:
        at += timedelta(minutes=1)
    return f"{at.minute} {at.hour} {at.day} {at.month} *", at.timestamp()


class RecordingMetrics(DaemonMetrics):
    """The daemon's metrics, keeping every tick delay as well (the histogram has buckets)."""

    def __init__(self) -> None:
        super().__init__(lag_samples=100_000)
        self.delays: list[float] = []

    def tick_started(self, delay: float) -> None:
        super().tick_started(delay)
        self.delays.append(delay)

    def in_flight(self) -> int:
        """The ``orchestrator_jobs_in_flight`` gauge (jobs submitting or running)."""
        return self._gauge("orchestrator_jobs_in_flight ")

    def running(self) -> int:
        """Jobs whose submission the remote acknowledged, not yet ended."""
        return self._gauge('orchestrator_jobs{state="running"} ')

    def _gauge(self, prefix: str) -> int:
        for line in self.render().decode().splitlines():
            if line.startswith(prefix):
                return int(float(line.split()[1]))
        return 0


def new_daemon(folder: Path, connections: dict[str, Connection]) -> Daemon:
    daemon = Daemon(
        DaemonConfig(
            dags=folder, connections=connections, db=str(folder.parent / "bench.db"), port=0
        )
    )
    daemon.metrics = RecordingMetrics()
    return daemon


# -- the parts, each in a child process --------------------------------------------------------


async def part_in_flight(args: argparse.Namespace, base: str) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="orchestrator-bench-daemon-"))
    folder = work / "dags"
    folder.mkdir()
    cron, nominal = once_cron()
    job = http_job()
    dag = {
        "name": "fleet",
        "schedule": {"cron": cron},
        "concurrency": args.jobs,  # all at once (the default is 64 jobs of a run at a time)
        "jobs": {f"j{i}": job for i in range(args.jobs)},
    }
    (folder / "fleet.json").write_text(json.dumps(dag))
    connection = Connection(
        "sim",
        "http",
        base,
        {"token": TOKEN},
        rate=args.rate,
        burst=args.burst,
        max_connections=args.max_connections,
    )
    daemon = new_daemon(folder, {"sim": connection})
    metrics = daemon.metrics
    assert isinstance(metrics, RecordingMetrics)
    out: dict[str, Any] = {"cron": cron, "nominal": nominal}
    async with anyio.create_task_group() as tg:
        tg.start_soon(daemon.serve)
        await daemon.started.wait()
        gc.collect()
        out["rss_before"] = before = rss()
        out["objects_before"] = len(gc.get_objects())
        if args.gc_freeze:
            gc.freeze()  # what the daemon has loaded is left out of every collection
        if args.gc_threshold:
            gc.set_threshold(*(int(t) for t in args.gc_threshold.split(",")))
        await anyio.sleep(max(0.0, nominal - time.time()))
        lag_from = len(metrics.lag_samples())
        waited = run_queue_wait()
        peak, count, reached = before, 0, None
        deadline = time.time() + args.hold - args.window - 5
        while time.time() < deadline:
            await anyio.sleep(0.5)
            peak = max(peak, rss())
            count = metrics.running()
            out["in_flight_max"] = max(out.get("in_flight_max", 0), metrics.in_flight())
            if count >= args.jobs:
                reached = time.time()
                break
        if reached is None:
            out["error"] = f"only {count} of {args.jobs} running after {args.hold} s"
        else:
            out["ramp"] = reached - nominal
            window_from = len(metrics.lag_samples())
            end = time.time() + args.window
            while time.time() < end:
                await anyio.sleep(0.5)
                peak = max(peak, rss())
                out["in_flight_max"] = max(out["in_flight_max"], metrics.in_flight())
            out["window_lags"] = metrics.lag_samples()[window_from:]
        out["lags"] = metrics.lag_samples()[lag_from:]
        out["gc"] = gc_summary(nominal, time.time())
        out["run_queue_wait"] = run_queue_wait() - waited
        out["span"] = time.time() - nominal
        out["objects_peak"] = len(gc.get_objects())
        out["rss_peak"] = peak
        out["in_flight_at_end"] = metrics.in_flight()
        out["at_simulator"] = await anyio.to_thread.run_sync(running_at_simulator, base)
        out["stopped_at"] = time.time()
        daemon.stop("the benchmark is over")
    out["tick_delays"] = metrics.delays
    return out


async def part_baseline(args: argparse.Namespace, base: str) -> dict[str, Any]:
    """A bare asyncio task per job and one aiohttp session: submit, then poll on the engine's
    schedule until told to stop."""
    schedule = PollSchedule()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    connector = aiohttp.TCPConnector(limit=args.max_connections)
    submitted = 0
    stop = asyncio.Event()
    gc.collect()
    before = rss()
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one(i: int) -> None:
            nonlocal submitted
            key = {"Idempotency-Key": f"baseline/{i}"}
            async with session.post(f"{base}/jobs", json={"name": HOLD_NAME}, headers=key) as r:
                job_id = (await r.json())["id"]
            submitted += 1
            polls = 0
            while not stop.is_set():
                polls += 1
                await asyncio.sleep(schedule.delay(polls, 0.5))
                async with session.get(f"{base}/jobs/{job_id}") as r:
                    if (await r.json())["state"] not in ("queued", "running"):
                        return

        tasks = [asyncio.create_task(one(i)) for i in range(args.jobs)]
        started = time.time()
        peak = before
        while submitted < args.jobs and time.time() < started + args.hold - 5:
            await asyncio.sleep(0.5)
            peak = max(peak, rss())
        ramp = time.time() - started
        for _ in range(int(args.window / 0.5)):
            await asyncio.sleep(0.5)
            peak = max(peak, rss())
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"rss_before": before, "rss_peak": peak, "submitted": submitted, "ramp": ramp}


async def part_ticks(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="orchestrator-bench-ticks-"))
    folder = work / "dags"
    folder.mkdir()
    for i in range(args.dags):
        dag = {
            "name": f"tick{i:03d}",
            "schedule": {"cron": "* * * * *"},
            "jobs": {"noop": {"type": "fake"}},
        }
        (folder / f"tick{i:03d}.json").write_text(json.dumps(dag))
    daemon = new_daemon(folder, {})
    metrics = daemon.metrics
    assert isinstance(metrics, RecordingMetrics)
    async with anyio.create_task_group() as tg:
        tg.start_soon(daemon.serve)
        await daemon.started.wait()
        lag_from = len(metrics.lag_samples())
        started = time.time()
        expected = args.dags * args.minutes
        # every boundary, and at most 30 s after the last one for its ticks to start
        last = (math.floor(started / 60) + args.minutes) * 60
        while len(metrics.delays) < expected and time.time() < last + 30:
            await anyio.sleep(0.5)
        await anyio.sleep(1.0)  # a tick late beyond the count would show
        daemon.stop("the benchmark is over")
    return {
        "delays": metrics.delays,
        "expected": expected,
        "lags": metrics.lag_samples()[lag_from:],
    }


SLOW: list[tuple[float, float, str]] = []  # (when, seconds, what) of slow loop steps


def watch_slow_steps(threshold: float) -> None:
    """Time every step of the event loop (``Handle._run``) and keep those of ``threshold``
    seconds or more, naming the task's chain of coroutines as the step left it: where the
    loop's time goes when its lag is high (``--slow-steps``, a diagnosis, not a figure)."""
    from asyncio import events

    run = events.Handle._run

    def timed(handle: events.Handle) -> None:
        start = time.perf_counter()
        run(handle)
        took = time.perf_counter() - start
        if took >= threshold:
            SLOW.append((time.time(), took, describe(handle)))

    events.Handle._run = timed  # type: ignore[method-assign,assignment]


GC: list[tuple[float, int, float, float]] = []  # (when, generation, seconds, CPU seconds)


def watch_gc(threshold: float | None) -> None:
    """Time every pass of the garbage collector (into ``GC``); those of ``threshold`` seconds
    or more also go with the slow steps (a step is slow because a collection ran in it)."""
    started: list[float] = [0.0, 0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[:] = time.perf_counter(), time.thread_time()
            return
        took = time.perf_counter() - started[0]
        GC.append((time.time(), info["generation"], took, time.thread_time() - started[1]))
        if threshold is not None and took >= threshold:
            what = f"gc generation {info['generation']}, {info['collected']} collected"
            SLOW.append((time.time(), took, what))

    gc.callbacks.append(callback)


def gc_summary(since: float, until: float) -> dict[str, list[float]]:
    """Per generation: the count, the total, the longest of the passes in the span, and the
    CPU time of the longest (less than its time when another process had the core)."""
    out: dict[str, list[float]] = {}
    for when, generation, took, cpu in GC:
        if since <= when <= until:
            row = out.setdefault(str(generation), [0, 0.0, 0.0, 0.0])
            row[0] += 1
            row[1] += took
            if took > row[2]:
                row[2:] = took, cpu
    return out


def describe(handle: asyncio.Handle) -> str:
    task = getattr(handle._callback, "__self__", None)  # type: ignore[attr-defined]
    if not isinstance(task, asyncio.Task):
        return repr(handle)[:200]
    names: list[str] = []
    coro: Any = task.get_coro()
    while coro is not None and hasattr(coro, "cr_code"):
        frame = coro.cr_frame
        line = f":{frame.f_lineno}" if frame is not None else ""
        names.append(f"{coro.cr_code.co_qualname}{line}")
        coro = coro.cr_await
    return " > ".join(names) or repr(task)[:200]


def child(args: argparse.Namespace) -> None:
    logs.configure("warning", stream=io.StringIO(), json=True)
    if args.slow_steps:
        watch_slow_steps(args.slow_steps / 1000)
    watch_gc(args.slow_steps / 1000 if args.slow_steps else None)
    pin(CLIENT_CPU)
    base = f"http://127.0.0.1:{args.sim_port}/generic"
    part = {"in-flight": part_in_flight, "baseline": part_baseline}.get(args.child)
    result = anyio.run(part, args, base) if part is not None else anyio.run(part_ticks, args)
    result["slow_steps"] = SLOW
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)


# -- the parent ----------------------------------------------------------------------------


class RateWatch:
    """Reads the simulator's request count every second, in a thread of the parent process."""

    def __init__(self, base: str, jobs: int) -> None:
        self.base = base
        self.jobs = jobs
        self.all_submitted: float | None = None  # when the simulator had every job
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RateWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            asked = time.time()
            try:
                counters = sim_call(self.base, "/_sim/counters")
            except OSError:
                continue
            now = (asked + time.time()) / 2  # the counters are of about the middle of the call
            self.samples.append((now, sum(counters["requests"].values())))
            if self.all_submitted is None and len(counters["submissions"]) >= self.jobs:
                self.all_submitted = now

    def peak(self, seconds: float, until: float | None = None) -> tuple[float, int]:
        """The highest request rate over any ``seconds`` (requests per second), and the total."""
        samples = [s for s in self.samples if until is None or s[0] <= until]
        best = 0.0
        for i, (t0, n0) in enumerate(samples):
            for t1, n1 in samples[i + 1 :]:
                if t1 - t0 >= seconds:
                    best = max(best, (n1 - n0) / (t1 - t0))
                    break
        return best, (samples[-1][1] if samples else 0)


def run_child(args: argparse.Namespace, part: str, port: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", part, "--sim-port", str(port)]
    names = ("jobs", "dags", "minutes", "rate", "burst", "max_connections", "hold", "window")
    for name in (*names, "slow_steps"):
        command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    if args.gc_freeze:
        command.append("--gc-freeze")
    if args.gc_threshold:
        command += ["--gc-threshold", args.gc_threshold]
    proc = subprocess.run(command, stdout=subprocess.PIPE, check=True)
    result = dict(json.loads(proc.stdout.decode().strip().splitlines()[-1]))
    for when, took, what in result.pop("slow_steps"):
        stamp = datetime.fromtimestamp(when, UTC).strftime("%H:%M:%S.%f")[:-3]
        print(f"   [{part}] slow step {took * 1000:7.1f} ms at {stamp}: {what}")
    return result


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def report_in_flight(args: argparse.Namespace, r: dict[str, Any], watch: RateWatch) -> None:
    n = args.jobs
    grown = r["rss_peak"] - r["rss_before"]
    print(f"== {n} jobs in flight in one daemon (one DAG, cron {r['cron']!r}, fired once)")
    if "error" in r:
        print(f"   NOT REACHED: {r['error']}")
    else:
        print(f"   ramp: all {n} running {r['ramp']:.1f} s after the tick's nominal time")
    print(f"   in flight at peak (orchestrator_jobs_in_flight): {r['in_flight_max']}")
    print(f"   running at the simulator at the end of the window: {r['at_simulator']}")
    print(
        f"   RSS {r['rss_before'] / 2**20:.1f} MiB before the tick, peak "
        f"{r['rss_peak'] / 2**20:.1f} MiB: +{grown / 2**20:.1f} MiB, "
        f"{grown / n / 1024:.1f} KiB per job in flight (bar: < 20)"
    )
    print(
        f"   objects the garbage collector tracks: {r['objects_before']:,} before the tick, "
        f"{r['objects_peak']:,} at the end of the window "
        f"({(r['objects_peak'] - r['objects_before']) / n:.0f} per job)"
    )
    passes = "; ".join(
        f"generation {g}: {int(c)} passes, {t:.2f} s in all, longest {ms(m).strip()} "
        f"({ms(cpu).strip()} CPU)"
        for g, (c, t, m, cpu) in sorted(r["gc"].items())
    )
    print(f"   garbage collections, tick to stop: {passes}")
    print(
        f"   the daemon's loop thread waited {r['run_queue_wait']:.2f} s of {r['span']:.0f} s "
        "for its core (run queue: other threads and processes had it, the daemon's own store "
        "writer, pinned to the same core, among them)"
    )
    lags = r["lags"]
    print(
        f"   loop lag, tick to stop ({len(lags)} samples): p50 {ms(quantile(lags, 0.5))}, "
        f"p99 {ms(quantile(lags, 0.99))}, max {ms(max(lags, default=math.nan))} (bar: p99 < 100 ms)"
    )
    window = r.get("window_lags", [])
    if window:
        print(
            f"   loop lag, all in flight ({len(window)} samples over {args.window:.0f} s): "
            f"p50 {ms(quantile(window, 0.5))}, p99 {ms(quantile(window, 0.99))}, "
            f"max {ms(max(window))}"
        )
    if watch.all_submitted is not None:
        print(
            f"   all {n} submitted at the simulator "
            f"{watch.all_submitted - r['nominal']:.1f} s after the nominal time"
        )
    span = 30.0
    peak, total = watch.peak(span, until=r["stopped_at"])
    print(
        f"   requests at the simulator: {total}; peak rate over {span:g} s {peak:,.0f}/s "
        f"(connection limit {args.rate:g}/s, burst {args.burst}: at most "
        f"{args.rate + args.burst / span:,.0f}/s over {span:g} s)"
    )
    # a sample's time: the samples before it, each 0.5 s plus its lag, from the tick
    at = [sum(0.5 + lag for lag in lags[:i]) for i in range(len(lags))]
    worst = sorted(range(len(lags)), key=lambda i: -lags[i])[:5]
    print(
        "   worst lags: " + ", ".join(f"{lags[i] * 1000:.0f} ms at +{at[i]:.0f} s" for i in worst)
    )
    print(f"   tick delay of the fleet DAG: {', '.join(f'{d:.3f} s' for d in r['tick_delays'])}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--dags", type=int, default=100)
    parser.add_argument("--minutes", type=int, default=2, help="minute boundaries to watch")
    parser.add_argument("--rate", type=float, default=1000.0, help="connection requests/s")
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--max-connections", type=int, default=64)
    parser.add_argument("--hold", type=float, default=180.0, help="seconds a job runs")
    parser.add_argument("--window", type=float, default=60.0, help="seconds watched at peak")
    parser.add_argument("--skip-jobs", action="store_true")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--skip-ticks", action="store_true")
    parser.add_argument(
        "--slow-steps",
        type=float,
        default=0.0,
        help="list the event loop's steps of this many ms or more (a diagnosis; 0: off)",
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() once the daemon started, before the tick (an experiment)",
    )
    parser.add_argument(
        "--gc-threshold",
        help="gc.set_threshold(A, B, C) given as A,B,C in the daemon's process once it started, "
        "before the tick (an experiment; the default is 700,10,10)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--sim-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    pin(SIMULATOR_CPU)  # the parent only watches: it shares the simulator's core
    port = free_port()
    base = f"http://127.0.0.1:{port}/generic"
    print(
        f"cores: daemon {CLIENT_CPU}, simulator {SIMULATOR_CPU}; python {sys.version.split()[0]}; "
        f"load average {os.getloadavg()[0]:.2f} (other processes share the machine)"
    )
    sim = start_simulator(port)
    try:
        if not args.skip_jobs:
            prepare_simulator(base, args.hold)
            with RateWatch(base, args.jobs) as watch:
                result = run_child(args, "in-flight", port)
            report_in_flight(args, result, watch)
        if not args.skip_baseline:
            prepare_simulator(base, args.hold)
            b = run_child(args, "baseline", port)
            grown = b["rss_peak"] - b["rss_before"]
            print(
                f"== baseline: bare asyncio task + aiohttp poll loop per job, {b['submitted']} "
                f"submitted in {b['ramp']:.1f} s: RSS +{grown / 2**20:.1f} MiB, "
                f"{grown / args.jobs / 1024:.1f} KiB per job"
            )
        if not args.skip_ticks:
            t = run_child(args, "ticks", port)
            d, lags = t["delays"], t["lags"]
            print(
                f"== tick delay, {args.dags} DAGs on '* * * * *', {args.minutes} minute "
                f"boundaries: {len(d)} ticks of {t['expected']} expected"
            )
            print(
                f"   actual - nominal: p50 {ms(quantile(d, 0.5))}, p99 {ms(quantile(d, 0.99))}, "
                f"max {ms(max(d, default=math.nan))}, min {ms(min(d, default=math.nan))} "
                "(bar: p99 < 1 s)"
            )
            if len(d) >= args.dags > 1:
                first = d[: args.dags]  # the first boundary's ticks, in the order they started
                step = (first[-1] - first[0]) / (args.dags - 1)
                print(
                    f"   the first boundary's ticks "
                    f"started {ms(first[0])} to {ms(first[-1])} late, {step * 1000:.1f} ms per DAG"
                )
            print(
                f"   loop lag ({len(lags)} samples): p50 {ms(quantile(lags, 0.5))}, "
                f"p99 {ms(quantile(lags, 0.99))}, max {ms(max(lags, default=math.nan))}"
            )
    finally:
        sim.terminate()
        sim.wait(10)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
