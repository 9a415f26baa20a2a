"""Fan-out at run time: one job mapped over N items (``fake`` jobs, instantaneous), against the
same N jobs written in the DAG, in one process and one run.

    python tests/bench/bench_fanout.py [--items 10000] [--repeat 3]

Mapped: ``src`` (a ``fake`` job) >> ``fan`` (``map: {{ params.items }}``, N items) >> ``join``.
Static: ``src`` >> N ``fake`` jobs >> ``join``, the same jobs declared one by one (the
baseline: what a DAG without ``map`` costs). Each runs with the SQLite store (a new file each
time) and without, alternating, best of ``--repeat``.

Reported: the expansion time (from the mapped job leaving ``queued`` to its first instance
leaving ``queued``: its list read, N instances made, their rows inserted and committed), the
memory one instance holds (tracemalloc: what the run holds after the expansion minus before,
over N; beside it what one job written in a DAG holds before any run: its ``Job`` and its place
in the graph), and the run time of both DAGs.
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import tempfile
import time
import tracemalloc
from collections.abc import Callable

import anyio

from orchestrator import DAG, Job, JobRun, JobState, RunState, logs, run_dag
from orchestrator.store.sqlite import SQLiteStore


def mapped_dag(n: int) -> DAG:
    with DAG("mapped", params={"items": list(range(n))}) as dag:
        src = Job("src", "fake")
        fan = Job("fan", "fake", map="{{ params.items }}", map_limit=n, message="{{ item }}")
        src >> fan >> Job("join", "fake")
    dag.validate()
    return dag


def static_dag(n: int) -> DAG:
    with DAG("static") as dag:
        src = Job("src", "fake")
        join = Job("join", "fake")
        for i in range(n):
            src >> Job(f"fan[{i}]", "fake", message=str(i)) >> join
    dag.validate()
    return dag


class Probe:
    """Times and traced memory at the mapped job's expansion (or, in the static DAG, at the
    end of ``src``, when its N dependents are queued)."""

    def __init__(self, memory: bool) -> None:
        self.memory = memory
        self.start = self.end = 0.0
        self.before = self.after = 0

    def __call__(self, jr: JobRun, old: JobState) -> None:
        first = jr.id in ("fan", "src") and old is JobState.QUEUED
        if first and not self.start:
            self.start = time.perf_counter()
            if self.memory:
                gc.collect()
                self.before = tracemalloc.get_traced_memory()[0]
        elif jr.id.startswith("fan[") and old is JobState.QUEUED and not self.end:
            self.end = time.perf_counter()
            if self.memory:
                gc.collect()
                self.after = tracemalloc.get_traced_memory()[0]


def once(dag: DAG, folder: str | None, memory: bool = False) -> tuple[float, Probe]:
    """One run: its wall time and what the probe saw."""
    probe = Probe(memory)

    async def go() -> None:
        store = None
        if folder is not None:
            store = await SQLiteStore.open(os.path.join(folder, f"b-{time.monotonic_ns()}.db"))
        try:
            run = await run_dag(dag, store=store, observers=[probe])
        finally:
            if store is not None:
                await store.aclose()
        assert run.state is RunState.SUCCEEDED, run.error

    gc.collect()
    if memory:
        tracemalloc.start()
    began = time.perf_counter()
    anyio.run(go)
    took = time.perf_counter() - began
    if memory:
        tracemalloc.stop()
    return took, probe


def best(runs: list[tuple[float, Probe]], key: Callable[[tuple[float, Probe]], float]) -> float:
    return min(key(r) for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.items
    logs.configure("warning", stream=io.StringIO(), json=True)
    dags = {"mapped": mapped_dag(n), "static": static_dag(n)}
    folder = tempfile.mkdtemp(prefix="orchestrator-fanout-")
    results: dict[tuple[str, bool], list[tuple[float, Probe]]] = {}
    for _ in range(args.repeat):  # alternating: the machine's drift moves all alike
        for name, dag in dags.items():
            for stored in (False, True):
                results.setdefault((name, stored), []).append(once(dag, folder if stored else None))
    probe = once(dags["mapped"], None, memory=True)[1]
    gc.collect()
    tracemalloc.start()
    static_dag(n)  # what N jobs written in a DAG hold: their Job objects and graph entries
    declared = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(f"{n:,} items, best of {args.repeat}; load {os.getloadavg()[0]:.2f}")
    print(f"{'':22} {'run (s)':>9} {'jobs/s':>9} {'expansion (ms)':>15}")
    for (name, stored), runs in results.items():
        took = best(runs, lambda r: r[0])
        expansion = best(runs, lambda r: r[1].end - r[1].start) * 1000
        label = f"{name}{' + SQLite' if stored else ''}"
        print(f"{label:22} {took:9.3f} {n / took:9,.0f} {expansion:15.1f}")
    for stored in (False, True):
        mapped = best(results[("mapped", stored)], lambda r: r[0])
        static = best(results[("static", stored)], lambda r: r[0])
        print(f"run time, mapped / static{' (SQLite)' if stored else ''}: {mapped / static:.2f}")
    print(
        f"memory per instance (its job and its run record): {(probe.after - probe.before) / n:,.0f}"
        f" bytes; per job written in a DAG (its Job and graph entry): {declared / n:,.0f} bytes"
    )


if __name__ == "__main__":
    main()
