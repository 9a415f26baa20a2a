"""What the SQLite store costs, counted in instructions instead of seconds (needs valgrind).

    python tests/bench/bench_instructions.py [--size 10000]

The wall-clock ratio of ``bench_engine.py`` moves by tens of percent from run to run on a shared
machine; the number of instructions executed does not. This runs the first workload of
``bench_engine.py`` three times under callgrind (every thread and process counted): once only
loading and warming up, once with the engine, once with the engine recording the run in a fresh
SQLite store. It prints each run's instructions minus those of the warm-up, and their ratio:
what fraction of the store run's work is the engine's own. Instructions are not time (a cache
miss, a wait for the GIL or for the disk costs time and no instructions): use it to compare two
versions of the code, the wall-clock benchmark to report throughput.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def workload(mode: str, size: int) -> None:
    sys.path.insert(0, HERE)
    import anyio
    from workloads import layered_dag

    from orchestrator import logs
    from orchestrator.runtime.runs import run_dag
    from orchestrator.store.sqlite import SQLiteStore

    dag = layered_dag(size)
    logs.configure("warning", stream=io.StringIO(), json=True)

    async def plain() -> None:
        await run_dag(dag)

    async def stored() -> None:
        with tempfile.TemporaryDirectory() as folder:
            store = await SQLiteStore.open(os.path.join(folder, "bench.db"))
            try:
                await run_dag(dag, store=store)
            finally:
                await store.aclose()

    anyio.run(plain)  # imports and caches warmed in every mode alike
    if mode == "engine":
        anyio.run(plain)
    elif mode == "store":
        anyio.run(stored)


def instructions(mode: str, size: int) -> int:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        "--trace-children=yes",  # the SQLite store's writer process too
        sys.executable,
        os.path.abspath(__file__),
        "--run",
        mode,
        "--size",
        str(size),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    found = re.findall(r"Collected : (\d+)", done.stderr)  # one per process
    if not found:
        raise SystemExit(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
    return sum(int(n) for n in found)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--run", choices=["warmup", "engine", "store"])
    args = parser.parse_args()
    if args.run:
        workload(args.run, args.size)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    base = instructions("warmup", args.size)
    engine = instructions("engine", args.size) - base
    store = instructions("store", args.size) - base
    print(
        f"N={args.size}: engine {engine / 1e6:,.0f}M instructions, engine + SQLite store "
        f"{store / 1e6:,.0f}M: the engine's own work is {engine / store:.1%} of the store run"
    )


if __name__ == "__main__":
    main()
