"""SQLite store throughput: single-operation batches per second, as a wide DAG sends them.

    python tests/bench/bench_store.py [--jobs 400] [--repeat 3]

Workload: ``--jobs`` jobs, each taken from pending to succeeded in five single-operation batches
by 200 concurrent writers (``tests/store_ops.py``). Reported: batches per second (best of
``--repeat``) and batches per commit (how much the writer groups).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

import anyio
from store_ops import run_lifecycles

from orchestrator.model.states import RunState
from orchestrator.store.base import CreateRun, RunRecord
from orchestrator.store.sqlite import SQLiteStore


async def once(path: Path, jobs: tuple[str, ...]) -> tuple[float, dict[str, int]]:
    record = RunRecord("r1", "d", "hash", {}, "manual", RunState.QUEUED, created_at=1.0)
    async with await SQLiteStore.open(path) as store:
        await store.apply([CreateRun(record, {"name": "d"}, list(jobs))])
        started = time.perf_counter()
        await run_lifecycles(store, jobs)
        elapsed = time.perf_counter() - started
        stats = store.statistics()
    return elapsed, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    jobs = tuple(f"j{i}" for i in range(args.jobs))
    batches = 5 * len(jobs)
    best: tuple[float, dict[str, int]] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            result = anyio.run(once, Path(tmp) / f"bench-{i}.db", jobs)
            if best is None or result[0] < best[0]:
                best = result
    assert best is not None
    elapsed, stats = best
    print(
        f"SQLite store: {batches / elapsed:,.0f} single-operation batches/s "
        f"({batches} batches, {stats['batches'] / stats['commits']:.1f} a commit, "
        f"best of {args.repeat})"
    )


if __name__ == "__main__":
    main()
