"""Engine against a plain aiohttp client, both driving the generic `http` simulator.

    python tests/bench/bench_http.py [--jobs 1000] [--concurrency 32] [--repeat 3]

Each of N jobs submits (POST /jobs) and polls once (GET /jobs/{id}: the simulator's jobs take no
time, so the first poll answers done). The simulator runs in its own process
(`orchestrator simulate`). The baseline is a plain aiohttp client making the same two requests
per job at the same concurrency, with one session. Reported: jobs per second for both (best of
``--repeat``, alternating the two), the engine's share of the baseline, and the median of the
per-round ratios. The simulator and the clients run on separate cores.
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
import time
from typing import Any

import aiohttp
import anyio

from orchestrator import logs
from orchestrator.connections import Connection
from orchestrator.model.dag import DAG, Job
from orchestrator.model.states import RunState
from orchestrator.runtime.runs import run_dag

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


async def engine(base: str, dag: DAG, concurrency: int) -> None:
    connection = Connection("sim", "http", base, {"token": TOKEN}, max_connections=concurrency)
    run = await run_dag(dag, connections={"sim": connection})
    assert run.state is RunState.SUCCEEDED, run.error


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logs.configure("warning", stream=io.StringIO(), json=True)
    pin(CLIENT_CPU)
    port = free_port()
    sim = start_simulator(port)
    base = f"http://127.0.0.1:{port}/generic"
    dag = build_dag(args.jobs, args.concurrency)
    work = {plain_client: args.jobs, engine: dag}
    names = ("plain aiohttp client", "engine (http job type)")
    times: dict[str, list[float]] = {name: [] for name in names}
    try:
        for _ in range(args.repeat):
            for name, fn in zip(names, (plain_client, engine), strict=True):
                reset_simulator(base)
                gc.collect()  # neither side pays for the garbage of the one before
                start = time.perf_counter()
                anyio.run(fn, base, work[fn], args.concurrency)
                times[name].append(time.perf_counter() - start)
    finally:
        sim.terminate()
        sim.wait(10)
    plain, ours = (times[name] for name in names)
    print(f"{'client':26} {'jobs':>6} {'conc.':>6} {'jobs/s':>9} {'vs plain client':>16}")
    for name in names:
        t = min(times[name])
        rate, share = args.jobs / t, min(plain) / t
        print(f"{name:26} {args.jobs:6d} {args.concurrency:6d} {rate:9,.0f} {share:15.1%}")
    # each round runs both, one after the other: the median of the rounds' ratios is the
    # figure least moved by a lucky or unlucky run of either side
    paired = statistics.median(p / e for p, e in zip(plain, ours, strict=True))
    print(f"best of {args.repeat} each (above); median of the rounds' ratios: {paired:.1%}")
    os._exit(0)


if __name__ == "__main__":
    main()
