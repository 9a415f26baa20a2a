"""The SQLite store's own behaviour: migrations, durability, and clear errors that write nothing."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import anyio
import pytest

from orchestrator.errors import StoreError
from orchestrator.states import JobState, RunState
from orchestrator.store.base import CreateRun, JobTransition, RunRecord
from orchestrator.store.migrations import LATEST
from orchestrator.store.open import default_db_path, open_store
from orchestrator.store.sqlite import SQLiteStore


def create(run_id: str = "r1", jobs: tuple[str, ...] = ("a", "b")) -> CreateRun:
    record = RunRecord(run_id, "d", "hash", {}, "manual", RunState.QUEUED, created_at=1.0)
    return CreateRun(record, {"name": "d"}, list(jobs))


async def test_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await SQLiteStore.open(path)
    await store.apply([create(), JobTransition("r1", "a", JobState.PENDING, JobState.QUEUED, 2.0)])
    await store.aclose()
    again = await SQLiteStore.open(path)
    jobs = await again.get_jobs("r1")
    assert jobs["a"].state is JobState.QUEUED
    assert [e.new for e in await again.get_events("r1")] == ["queued", "queued"]
    await again.aclose()


async def test_fresh_database_gets_the_latest_schema(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "s.db")
    await store.aclose()
    conn = sqlite3.connect(tmp_path / "s.db")
    assert conn.execute("SELECT version FROM schema_version").fetchone() == (LATEST,)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


async def test_an_older_database_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (0)")
    conn.commit()
    conn.close()
    store = await SQLiteStore.open(path)
    await store.apply([create()])
    assert (await store.get_run("r1")) is not None
    await store.aclose()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version FROM schema_version").fetchone() == (LATEST,)
    conn.close()


async def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    store = await SQLiteStore.open(path)
    await store.aclose()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_version SET version = ?", (LATEST + 5,))
    conn.commit()
    conn.close()
    with pytest.raises(
        StoreError, match=f"schema version {LATEST + 5} is newer than this orchestrator"
    ):
        await SQLiteStore.open(path)


async def test_a_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"this is not a database, just some text" * 100)
    with pytest.raises(StoreError, match=r"corrupt\.db: not an orchestrator database"):
        await SQLiteStore.open(path)
    assert path.read_bytes().startswith(b"this is not a database")  # nothing written


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere: permissions do not bind")
async def test_a_folder_that_is_not_writable(tmp_path: Path) -> None:  # pragma: no cover - root
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    with pytest.raises(StoreError, match="permission denied"):
        await SQLiteStore.open(folder / "s.db")


async def test_a_read_only_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    store = await SQLiteStore.open(path)
    await store.aclose()
    path.chmod(0o400)
    try:
        if os.access(path, os.W_OK):
            pytest.skip("this user can write a read-only file (root)")
        with pytest.raises(StoreError, match="cannot write"):
            await SQLiteStore.open(path)
    finally:
        path.chmod(0o600)


async def test_a_locked_database_fails_the_batch_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    store = await SQLiteStore.open(path, busy_timeout=0.2)
    await store.apply([create()])
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with pytest.raises(StoreError, match="database is locked"):
            await store.apply([JobTransition("r1", "a", JobState.PENDING, JobState.QUEUED, 2.0)])
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert (await store.get_jobs("r1"))["a"].state is JobState.PENDING  # nothing half-written
    await store.apply([JobTransition("r1", "a", JobState.PENDING, JobState.QUEUED, 3.0)])
    assert (await store.get_jobs("r1"))["a"].state is JobState.QUEUED  # usable again
    await store.aclose()


async def test_group_commit_and_the_loop_never_blocks(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "g.db")
    await store.apply([create(jobs=tuple(f"j{i}" for i in range(2000)))])
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        while True:
            await anyio.sleep(0.002)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        async with anyio.create_task_group() as writers:
            for i in range(2000):
                writers.start_soon(
                    store.apply,
                    [JobTransition("r1", f"j{i}", JobState.PENDING, JobState.QUEUED, 2.0)],
                )
        tg.cancel_scope.cancel()
    stats = store.statistics()
    assert stats["batches"] == 2001
    assert stats["commits"] < stats["batches"]  # batches shared commits
    assert gaps, "the loop never got a turn"
    assert max(gaps) < 0.2
    assert {j.state for j in (await store.get_jobs("r1")).values()} == {JobState.QUEUED}
    await store.aclose()


async def test_open_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_HOME", str(tmp_path / "home"))
    assert default_db_path() == tmp_path / "home" / "orchestrator.db"
    store = await open_store()
    await store.aclose()
    assert default_db_path().exists()
    for url in (f"sqlite:///{tmp_path}/a.db", str(tmp_path / "b.db")):
        s = await open_store(url)
        await s.aclose()
    memory = await open_store("memory:")
    await memory.aclose()
    with pytest.raises(
        StoreError, match=r"postgresql://u:\*\*\*@h/db: the PostgreSQL store is not built yet"
    ):
        await open_store("postgresql://u:secret@h/db")
    with pytest.raises(StoreError, match="unknown store"):
        await open_store("redis://h")
