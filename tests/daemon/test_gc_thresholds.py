"""The daemon serves with the collector's thresholds it chose for its event loop's lag: its run
host does not raise the first one, as the command line's does (bench_daemon.py: the longest
collection with 10,000 jobs in flight grew from 91 ms to 120-188 ms with it raised)."""

from __future__ import annotations

import gc
from pathlib import Path

import anyio

from orchestrator.daemon.service import GC_THRESHOLDS, Daemon, DaemonConfig


async def test_the_daemon_serves_with_its_own_thresholds(tmp_path: Path) -> None:
    daemon = Daemon(
        DaemonConfig(dags=tmp_path / "dags", connections={}, db=str(tmp_path / "o.db"), port=0)
    )
    (tmp_path / "dags").mkdir()
    before = gc.get_threshold()
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(daemon.serve)
            await daemon.started.wait()
            try:
                serving = gc.get_threshold()
            finally:
                daemon.stop()
    assert serving == GC_THRESHOLDS
    assert gc.get_threshold() == before
