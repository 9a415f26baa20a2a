"""Engine against a plain aiohttp client, both driving the generic `http` simulator; the engine
without a store and with the SQLite store.

    python tests/bench/bench_http.py [--jobs 1000] [--concurrency 100] [--repeat 3]
        [--writer-cpu any|client|simulator] [--no-pin] [--connector]

Each of N jobs submits (POST /jobs) and polls once (GET /jobs/{id}: the simulator's jobs take no
time, so the first poll answers done). The simulator runs in its own process
(`orchestrator simulate`). The baseline is a plain aiohttp client making the same two requests
per job at the same concurrency, with one session. The third contender is the engine recording
the run in a SQLite store, a new file each round (opening and closing it timed: a user of
`orchestrator run` pays them). Reported: jobs per second for each (best of ``--repeat``, the
three run by turns in each round), each one's share of the plain client, the store's share of
the engine without it, and the median of the per-round ratios; ``--connector`` adds the `http`
job type's connector called without the engine, as the plain client's requests are made. The
simulator and the clients run on separate cores; the store's writer process where the system puts
it (``--writer-cpu``), or, ``--no-pin``, nothing is pinned. The concurrency is issue #18's: 100
requests at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from typing import Any

import aiohttp
import anyio

from orchestrator import logs
from orchestrator.connections import Connection
from orchestrator.connectors.base import RemoteStatus, Submission
from orchestrator.connectors.rest import RestConnector
from orchestrator.model.dag import DAG, Job
from orchestrator.model.states import RunState
from orchestrator.runtime.connectors import MaskedConnector
from orchestrator.runtime.runs import run_dag
from orchestrator.store.sqlite import SQLiteStore
from orchestrator.store.sqlite.client import Launched, WriterClient

TOKEN = "sim-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin(cpu: int | None) -> None:
    """Run this process on one core (the simulator on its own, the clients on another), so
    that the two sides do not take each other's core by turns; no-op on one core."""
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
CLIENT_CPU, SIMULATOR_CPU = (CPUS[0], CPUS[1]) if len(CPUS) >= 2 else (None, None)
# where the store's writer process runs: "any" core, where the system puts it, as it is run
# (nothing pins it: the clients are pinned here only so that they do not take the simulator's
# core, and the writer would inherit their core); "client", pinned to the clients' core, as
# when a user pins the engine's process to one core; "simulator", pinned beside the simulator
# (the second core, which a remote API on another machine leaves free)
WRITER_CPUS: set[int] | None = None


def process_cpu(pid: int) -> float:
    """CPU seconds (user and system) a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


WRITER_CPU_USED: list[float] = []  # the writer's CPU seconds in each store round
LAUNCHED: list[int] = []  # the process ids of the store's writers, as they are launched


def start_simulator(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "simulate",
            "--port",
            str(port),
            "--log-level",
            "error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: pin(SIMULATOR_CPU),
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the simulator did not start")


def reset_simulator(base: str) -> None:
    """Forget earlier jobs; jobs named "bench" take no time (the first poll answers done)."""
    import json
    import urllib.request

    for path, body in (
        ("/_sim/reset", {}),
        ("/_sim/behaviour", {"target": "bench", "duration": 0}),
    ):
        request = urllib.request.Request(
            base + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=5).read()


def job_fields() -> dict[str, Any]:
    return {
        "submit": {"method": "POST", "path": "/jobs", "body": {"name": "bench"}},
        "idPath": "$.id",
        "poll": {"method": "GET", "path": "/jobs/{id}"},
        "statusPath": "$.state",
        "running": ["queued", "running"],
        "success": ["done"],
        "failure": ["error", "cancelled"],
    }


async def plain_client(base: str, n: int, concurrency: int) -> None:
    limit = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one(i: int) -> None:
            async with limit:
                key = {"Idempotency-Key": f"plain/{i}"}
                async with session.post(f"{base}/jobs", json={"name": "bench"}, headers=key) as r:
                    job = await r.json()
                async with session.get(f"{base}/jobs/{job['id']}") as r:
                    state = (await r.json())["state"]
                    assert state == "done", state

        await asyncio.gather(*(one(i) for i in range(n)))


def build_dag(n: int, concurrency: int) -> DAG:
    """Built and validated once, outside the timed part (the plain client has no DAG)."""
    with DAG("bench_http", concurrency=concurrency) as dag:
        for i in range(n):
            Job(f"j{i}", "http", connection="sim", **job_fields())
    dag.validate()
    return dag


async def engine(base: str, dag: DAG, concurrency: int, store_path: str | None = None) -> None:
    connection = Connection("sim", "http", base, {"token": TOKEN}, max_connections=concurrency)
    if store_path is None:
        run = await run_dag(dag, connections={"sim": connection})
    else:
        store = await SQLiteStore.open(store_path)
        pid = LAUNCHED[-1] if LAUNCHED else None  # the writer this store launched
        try:
            run = await run_dag(dag, connections={"sim": connection}, store=store)
            if pid is not None:  # its start and its work (its last checkpoint comes after)
                WRITER_CPU_USED.append(process_cpu(pid))
        finally:
            await store.aclose()
    assert run.state is RunState.SUCCEEDED, run.error


async def connector_alone(base: str, n: int, concurrency: int) -> None:
    """The `http` job type's connector as the engine gets it (masked), called by coroutines as
    the plain client's requests are made: what the connector costs, without the engine."""
    connection = Connection("sim", "http", base, {"token": TOKEN}, max_connections=concurrency)
    inner = RestConnector(connection)
    connector = MaskedConnector(inner, "sim")
    limit = asyncio.Semaphore(concurrency)
    params = job_fields()

    async def one(i: int) -> None:
        async with limit:
            submission = Submission("bench_http", "bench", f"j{i}", 1, f"bench/j{i}/1", params)
            handle = await connector.submit(submission)
            result = await connector.poll(handle)
            assert result.status is RemoteStatus.SUCCEEDED, result

    try:
        await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        await inner.aclose()


def place_writers() -> None:
    """Launch the store's writer process on ``WRITER_CPUS``: the thread that launches it takes
    those cores for the launch, so that the process starts there. A process inherits the cores
    of the thread that starts it and is placed among them when it executes its program: set
    after, its interpreter would start on the clients' core, beside the store's opening, and
    move off only when the system rebalances."""
    launch = WriterClient.launch

    def launch_placed() -> Launched:
        if WRITER_CPUS is None:
            launched = launch()
        else:
            own = os.sched_getaffinity(0)  # this thread's (0: the calling thread, on Linux)
            os.sched_setaffinity(0, WRITER_CPUS)
            try:
                launched = launch()
            finally:
                os.sched_setaffinity(0, own)
        LAUNCHED.append(launched.process.pid)
        return launched

    WriterClient.launch = staticmethod(launch_placed)  # type: ignore[method-assign]


NAMES = ("plain aiohttp client", "engine (http job type)", "engine, SQLite store")
ALONE = "http connector, no engine"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--writer-cpu",
        choices=("any", "client", "simulator"),
        default="any",
        help="the core of the SQLite store's writer process (default: where the system puts it)",
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="pin nothing: the system places all three processes"
    )
    parser.add_argument(
        "--connector",
        action="store_true",
        help="a fourth contender: the http job type's connector called without the engine",
    )
    args = parser.parse_args()
    global CLIENT_CPU, SIMULATOR_CPU, WRITER_CPUS
    if args.no_pin:
        CLIENT_CPU = SIMULATOR_CPU = None
        args.writer_cpu = "any (nothing pinned)"
    elif SIMULATOR_CPU is not None and args.writer_cpu != "client":
        WRITER_CPUS = {SIMULATOR_CPU} if args.writer_cpu == "simulator" else set(CPUS)
    place_writers()
    logs.configure("warning", stream=io.StringIO(), json=True)
    pin(CLIENT_CPU)
    port = free_port()
    sim = start_simulator(port)
    base = f"http://127.0.0.1:{port}/generic"
    dag = build_dag(args.jobs, args.concurrency)
    names = (*NAMES, ALONE) if args.connector else NAMES
    times: dict[str, list[float]] = {name: [] for name in names}
    cpus: dict[str, list[float]] = {name: [] for name in names}  # this process's CPU seconds
    simulator_cpus: dict[str, list[float]] = {name: [] for name in names}  # the simulator's
    try:
        with tempfile.TemporaryDirectory(prefix="bench-http-") as folder:
            for round_ in range(args.repeat):
                store_path = os.path.join(folder, f"bench-{round_}.db")
                contenders = (
                    partial(plain_client, base, args.jobs, args.concurrency),
                    partial(engine, base, dag, args.concurrency),
                    partial(engine, base, dag, args.concurrency, store_path),
                    partial(connector_alone, base, args.jobs, args.concurrency),
                )
                for name, fn in zip(names, contenders[: len(names)], strict=True):
                    reset_simulator(base)
                    gc.collect()  # no side pays for the garbage of the one before
                    start, cpu = time.perf_counter(), time.process_time()
                    sim_cpu = process_cpu(sim.pid)
                    anyio.run(fn)
                    times[name].append(time.perf_counter() - start)
                    cpus[name].append(time.process_time() - cpu)
                    simulator_cpus[name].append(process_cpu(sim.pid) - sim_cpu)
    finally:
        sim.terminate()
        sim.wait(10)
    plain, ours, stored = (times[name] for name in NAMES)
    print(f"{'client':26} {'jobs':>6} {'conc.':>6} {'jobs/s':>9} {'vs plain client':>16}")
    for name in names:
        t = min(times[name])
        rate, share = args.jobs / t, min(plain) / t
        print(f"{name:26} {args.jobs:6d} {args.concurrency:6d} {rate:9,.0f} {share:15.1%}")
    print(
        f"the store's run against the engine's without it: {min(ours) / min(stored):.1%} "
        f"(the store's writer on the cores of: {args.writer_cpu})"
    )

    # CPU per job moves less than wall time on a machine that others load: what each side costs
    per_job = {name: min(cpus[name]) / args.jobs * 1e6 for name in names}
    writer = min(WRITER_CPU_USED, default=0.0) / args.jobs * 1e6
    print(
        f"CPU per job, least of the rounds: plain {per_job[NAMES[0]]:.0f} µs, engine "
        f"{per_job[NAMES[1]]:.0f} µs, with the store {per_job[NAMES[2]]:.0f} µs and its writer "
        f"process {writer:.0f} µs"
        + (f"; the connector without the engine {per_job[ALONE]:.0f} µs" if args.connector else "")
    )
    served = {name: min(simulator_cpus[name]) / args.jobs * 1e6 for name in names}
    print(
        "the simulator's CPU per job, least of the rounds: "
        + ", ".join(f"{name} {served[name]:.0f} µs" for name in names)
    )

    # each round runs all three, one after the other: the median of the rounds' ratios is the
    # figure least moved by a lucky or unlucky run of either side
    def paired(a: list[float], b: list[float]) -> float:
        return statistics.median(x / y for x, y in zip(a, b, strict=True))

    print(
        f"best of {args.repeat} each (above); medians of the rounds' ratios: engine/plain "
        f"{paired(plain, ours):.1%}, store/plain {paired(plain, stored):.1%}, "
        f"store/engine {paired(ours, stored):.1%}"
    )
    os._exit(0)


if __name__ == "__main__":
    main()
