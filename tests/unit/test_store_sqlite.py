"""The SQLite store's own behaviour, beyond the contract suite: durability, migrations, clear
errors that write nothing, a locked database, and an event loop that never waits for SQLite."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator.errors import StoreError
from orchestrator.model.states import AttemptState, JobState, RunState
from orchestrator.store.base import (
    Changes,
    CreateRun,
    JobRow,
    RecordTick,
    RunRecord,
    RunTransition,
    StaleWrite,
    TickExists,
    TickRecord,
)
from orchestrator.store.memory import MemoryStore
from orchestrator.store.open import default_db_path, open_store, sqlite_path, without_password
from orchestrator.store.sqlite import SQLiteStore, migrations
from orchestrator.store.sqlite.migrations import LATEST, MIGRATIONS, statements
from orchestrator.store.sqlite.writer import CHECKPOINT_EVERY
from orchestrator.store.sqlite.writer_checkpoints import _Checkpointer

from ..store_ops import attempt, job, run_lifecycles

J = JobState
TABLES = {"schema_version", "dags", "runs", "jobs", "attempts", "event_chunks", "outbox"}


def create(run_id: str = "r1", jobs: tuple[str, ...] = ("a", "b")) -> CreateRun:
    record = RunRecord(run_id, "d", "hash", {"p": 1}, "manual", RunState.QUEUED, created_at=1.0)
    return CreateRun(record, {"name": "d"}, list(jobs))


def queue(job_id: str = "a", at: float = 2.0) -> Changes:
    return job(J.PENDING, J.QUEUED, job_id, at=at)


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def siblings(path: Path) -> set[str]:
    return {p.name for p in path.parent.iterdir()}


@pytest.fixture
def restore_mode() -> Iterator[list[Path]]:
    """Paths whose permissions a test takes away get them back (so tmp_path can be removed)."""
    paths: list[Path] = []
    yield paths
    for path in paths:
        path.chmod(stat.S_IRWXU)


# -- durability -------------------------------------------------------------------------------


async def test_everything_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with await SQLiteStore.open(path) as store:
        await store.apply([create(), queue()])
        await store.apply(
            [
                RunTransition("r1", RunState.QUEUED, RunState.RUNNING, 2.0),
                job(J.QUEUED, J.SUBMITTING, at=3.0, attempts=1),
                attempt(1, None, "submitting", 3.0),
            ]
        )
        await store.apply([attempt(1, "submitting", "running", 4.0, handle={"id": "x"})])
        await store.claim_run("r1", "me", expected_owner=None, at=5.0)
        before = (
            await store.get_run("r1"),
            await store.get_jobs("r1"),
            await store.get_attempts("r1"),
            await store.get_events("r1"),
        )
    # the writer's close, the last one, checkpoints the log and removes it; aclose does not
    # wait for that (the commits were durable before)
    with anyio.fail_after(10):
        while "state.db-wal" in siblings(path):
            await anyio.sleep(0.01)
    async with await SQLiteStore.open(path) as again:
        after = (
            await again.get_run("r1"),
            await again.get_jobs("r1"),
            await again.get_attempts("r1"),
            await again.get_events("r1"),
        )
        assert after == before
        assert await again.get_dag_definition("hash") == {"name": "d"}
        await again.apply([job(J.SUBMITTING, J.RUNNING, at=6.0, attempts=1)])
        events = await again.get_events("r1")
        assert events[-1].seq > before[3][-1].seq  # seq goes on across a reopen


async def test_aclose_flushes_the_writes_still_queued(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = await SQLiteStore.open(path)
    jobs = tuple(f"j{i}" for i in range(300))
    await store.apply([create(jobs=jobs)])
    receipts = [store.submit([queue(job_id)]) for job_id in jobs]
    await store.aclose()  # without waiting for any of them
    await anyio.sleep(0)  # the answers were scheduled on this loop before aclose returned
    assert [(r.settled, r.error) for r in receipts] == [(True, None)] * len(jobs)
    async with await SQLiteStore.open(path) as again:
        assert {j.state for j in (await again.get_jobs("r1")).values()} == {J.QUEUED}


async def test_job_ids_outside_ascii_are_stored_as_they_are(tmp_path: Path) -> None:
    """A run's jobs, and jobs added to it, are inserted from a JSON array of their ids: ids with
    quotes, backslashes, accents and characters beyond the BMP come back as they went in, and
    as the raw table has them."""
    ids = ("a😀", "é", 'q"uote', "back\\slash", "中文", "\U0001d518x")
    path = tmp_path / "s.db"
    async with await SQLiteStore.open(path) as store:
        await store.apply([create(jobs=ids)])
        await store.apply([Changes("r1", new_jobs=["n😀[0]", "n😀[1]"])])
        assert set(await store.get_jobs("r1")) == {*ids, "n😀[0]", "n😀[1]"}
    with raw(path) as conn:
        stored = {row[0] for row in conn.execute("SELECT job_id FROM jobs")}
    assert stored == {*ids, "n😀[0]", "n😀[1]"}


async def test_a_closed_store_refuses_work(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "s.db")
    await store.aclose()
    await store.aclose()  # twice is fine
    with pytest.raises(StoreError, match="closed"):
        await store.apply([create()])
    with pytest.raises(StoreError, match="closed"):
        await store.get_run("r1")
    receipt = store.submit([create()])
    assert receipt.settled
    assert isinstance(receipt.error, StoreError)


@pytest.mark.parametrize(("durable", "synchronous"), [(False, 1), (True, 2)])
async def test_connection_settings(tmp_path: Path, durable: bool, synchronous: int) -> None:
    async with await SQLiteStore.open(tmp_path / "s.db", durable=durable, busy_timeout=2.5) as s:

        def settings(conn: sqlite3.Connection) -> tuple[Any, ...]:
            return tuple(
                conn.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            )

        # the write connection, in the writer process (a private hook, for tests)
        assert (await s._call("settings"))[:4] == ("wal", synchronous, 1, 2500)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (object(), "a value cannot be stored .*unmarshallable"),  # refused before it is sent
        ({"a": 1}, "a value cannot be stored .*binding parameter"),  # refused by SQLite
    ],
)
async def test_a_value_that_cannot_be_stored_fails_only_its_batch(
    tmp_path: Path, value: Any, message: str
) -> None:
    async with await SQLiteStore.open(tmp_path / "s.db") as store:
        await store.apply([create()])
        bad = Changes("r1", [JobRow("r1", "b", JobState.PENDING, JobState.QUEUED, error=value)])
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.apply, [queue("a")])
            with pytest.raises(StoreError, match=message):
                await store.apply([bad])
        jobs = await store.get_jobs("r1")
        assert (jobs["a"].state, jobs["b"].state) == (J.QUEUED, J.PENDING)
        await store.apply([queue("b")])  # the writer is alive
        assert (await store.get_jobs("r1"))["b"].state is J.QUEUED


class Word(str):
    """A str of a subclass: plain JSON, but not for marshal."""


async def test_a_handle_marshal_cannot_send_is_stored_encoded_by_the_engine(
    tmp_path: Path,
) -> None:
    """Handles and events go to the writer as they are, to be encoded there; a batch that
    marshal refuses goes encoded already, and reads back the same."""
    handle = {"id": Word("remote-1"), "sizes": [1, 2.5], "ok": True, "none": None}
    async with await SQLiteStore.open(tmp_path / "s.db") as store:
        await store.apply([create()])
        await store.apply([attempt(1, None, "submitting", 2.0)])
        await store.apply([attempt(1, "submitting", "running", 3.0, handle=handle)])
        await store.apply([attempt(1, None, "submitting", 4.0, job_id="b")])
        stored = await store.get_attempts("r1")
        events = await store.get_events("r1")
    assert [(a.job_id, a.state, a.handle) for a in stored] == [
        ("a", AttemptState.RUNNING, handle),
        ("b", AttemptState.SUBMITTING, None),
    ]
    moves = [(e.job_id, e.old, e.new, e.data) for e in events if e.kind == "attempt"]
    assert moves == [
        ("a", None, "submitting", {"attempt": 1}),
        ("a", "submitting", "running", {"attempt": 1, "handle": handle}),
        ("b", None, "submitting", {"attempt": 1}),
    ]


@pytest.mark.parametrize("wrapped", [False, True])
async def test_a_handle_that_is_not_json_is_refused_naming_its_job(
    tmp_path: Path, wrapped: bool
) -> None:
    """Encoded by the writer (plain values) or by the engine (a batch marshal refuses): a NaN
    in a handle fails its batch alone, naming the job, and nothing of it is written."""
    handle: dict[str, Any] = {"id": "x", "size": float("nan")}
    if wrapped:
        handle["id"] = Word("x")
    async with await SQLiteStore.open(tmp_path / "s.db") as store:
        await store.apply([create()])
        await store.apply([attempt(1, None, "submitting", 2.0)])
        events = len(await store.get_events("r1"))
        with pytest.raises(StoreError, match="job a: its remote handle cannot be stored"):
            await store.apply([attempt(1, "submitting", "running", 3.0, handle=handle)])
        [stored] = await store.get_attempts("r1")
        assert (stored.state, stored.handle) == (AttemptState.SUBMITTING, None)
        assert len(await store.get_events("r1")) == events
        await store.apply([attempt(1, "submitting", "running", 3.0, handle={"id": "x"})])
        assert (await store.get_attempts("r1"))[0].handle == {"id": "x"}


# -- migrations -------------------------------------------------------------------------------


def schema(path: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    conn = raw(path)
    try:
        objects = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        versions = conn.execute("SELECT version FROM schema_version").fetchall()
    finally:
        conn.close()
    return objects, versions


async def test_a_fresh_database_gets_every_migration(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    await (await SQLiteStore.open(path)).aclose()
    objects, versions = schema(path)
    assert versions == [(LATEST,)]
    assert {name for kind, name, _ in objects if kind == "table"} >= TABLES
    indexes = {name for kind, name, _ in objects if kind == "index"}
    assert {"runs_dag_state", "runs_created", "event_chunks_run"} <= indexes
    assert ("view", "events") in {(kind, name) for kind, name, _ in objects}
    conn = raw(path)
    columns = {r[1] for r in conn.execute("PRAGMA table_info(attempts)")}
    unique = [r for r in conn.execute("PRAGMA index_list(attempts)") if r[2] == 1]
    conn.close()
    assert {"key", "handle", "submitted_at", "accepted_at"} <= columns
    assert unique  # the idempotency key (and the primary key)


async def test_a_current_database_is_opened_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with await SQLiteStore.open(path) as store:
        await store.apply([create()])
    before = schema(path)
    async with await SQLiteStore.open(path) as store:
        assert await store.get_run("r1") is not None
    assert schema(path) == before


async def test_a_version_1_database_keeps_its_events_in_order(tmp_path: Path) -> None:
    """Version 2 moved events into chunks: the events of a version 1 file come through the
    upgrade with their numbers, and the ones written after it follow them."""
    path = tmp_path / "v1.db"
    conn = raw(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (1)")
    for statement in statements(MIGRATIONS[0][1]):
        conn.execute(statement)
    conn.execute("INSERT INTO dags VALUES ('h', 'd', '{}', 0)")
    conn.execute(
        "INSERT INTO runs (id, dag, dag_hash, params, trigger, state, created_at) "
        "VALUES ('r1', 'd', 'h', '{}', 'manual', 'running', 0)"
    )
    conn.execute("INSERT INTO jobs (run_id, job_id, state) VALUES ('r1', 'a', 'queued')")
    conn.executemany(
        "INSERT INTO events (run_id, job_id, kind, old, new, at, data) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            ("r1", None, "run", None, "queued", 1.0, None),
            ("r1", None, "run", "queued", "running", 2.0, None),
            ("r1", "a", "job", "pending", "queued", 3.0, '{"error": "x"}'),
        ],
    )
    conn.commit()
    conn.close()
    async with await SQLiteStore.open(path) as store:
        await store.apply([job(JobState.QUEUED, JobState.SUBMITTING, at=4.0)])
        events = await store.get_events("r1")
        # read on from any of them, across the old chunks (seconds) and the new (microseconds)
        for seq in range(5):
            assert await store.events_since("r1", seq) == events[seq:]
    assert [(e.seq, e.job_id, e.old, e.new, e.at, e.data) for e in events] == [
        (1, None, None, "queued", 1.0, {}),
        (2, None, "queued", "running", 2.0, {}),
        (3, "a", "pending", "queued", 3.0, {"error": "x"}),
        (4, "a", "queued", "submitting", 4.0, {}),
    ]
    conn = raw(path)
    try:  # the view shows one row per event, as the table did, times in seconds (the new
        # chunk's in microseconds, version 3, the old ones' in seconds)
        rows = conn.execute("SELECT seq, job_id, new, at, data FROM events ORDER BY seq").fetchall()
    finally:
        conn.close()
    assert rows == [
        (1, None, "queued", 1.0, None),
        (2, None, "running", 2.0, None),
        (3, "a", "queued", 3.0, '{"error": "x"}'),
        (4, "a", "submitting", 4.0, None),
    ]


async def test_a_version_3_database_gets_the_due_time_of_retries(tmp_path: Path) -> None:
    """Version 4 added ``jobs.retry_at``: the jobs of a version 3 file have none (a resumed
    retry starts at once, as it did), and new rows write it."""
    path = tmp_path / "v3.db"
    conn = raw(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (3)")
    for version, script in MIGRATIONS:
        if version <= 3:
            for statement in statements(script):
                conn.execute(statement)
    conn.execute("INSERT INTO dags VALUES ('h', 'd', '{}', 0)")
    conn.execute(
        "INSERT INTO runs (id, dag, dag_hash, params, trigger, state, created_at) "
        "VALUES ('r1', 'd', 'h', '{}', 'manual', 'running', 0)"
    )
    conn.executemany(
        "INSERT INTO jobs (run_id, job_id, state, attempts) VALUES ('r1', ?, ?, 1)",
        [("a", "retry_wait"), ("b", "running")],
    )
    conn.commit()
    conn.close()
    async with await SQLiteStore.open(path) as store:
        assert (await store.get_jobs("r1"))["a"].retry_at is None
        await store.apply(
            [job(JobState.RUNNING, JobState.RETRY_WAIT, "b", attempts=1, retry_at=9.5)]
        )
        jobs = await store.get_jobs("r1")
    assert {j: (r.state, r.retry_at) for j, r in jobs.items()} == {
        "a": (JobState.RETRY_WAIT, None),
        "b": (JobState.RETRY_WAIT, 9.5),
    }
    assert schema(path)[1] == [(LATEST,)]


async def test_a_version_4_database_gets_schedule_ticks_and_pauses(tmp_path: Path) -> None:
    """Version 5 added the ticks, the pauses and ``runs.nominal_at``: the runs of a version 4
    file have no nominal time (none was started by a schedule), and ticks are written after."""
    path = tmp_path / "v4.db"
    conn = raw(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (4)")
    for version, script in MIGRATIONS:
        if version <= 4:
            for statement in statements(script):
                conn.execute(statement)
    conn.execute("INSERT INTO dags VALUES ('h', 'd', '{}', 0)")
    conn.execute(
        "INSERT INTO runs (id, dag, dag_hash, params, trigger, state, created_at) "
        "VALUES ('r1', 'd', 'h', '{}', 'manual', 'succeeded', 0)"
    )
    conn.commit()
    conn.close()
    tick = TickRecord("d", 60.0, 60.5, "r2", None)
    record = RunRecord(
        "r2", "d", "h", {}, "schedule", RunState.QUEUED, created_at=60.5, nominal_at=60.0
    )
    async with await SQLiteStore.open(path) as store:
        old = await store.get_run("r1")
        assert old is not None
        assert old.nominal_at is None
        assert await store.list_ticks() == []
        assert await store.schedule_pauses() == {}
        await store.apply([RecordTick(tick), CreateRun(record, {"name": "d"}, ["a"])])
        await store.set_paused("d", True, at=61.0)
        with pytest.raises(TickExists):
            await store.apply([RecordTick(tick)])
        assert await store.last_tick("d") == tick
        assert [(r.id, r.nominal_at) for r in await store.list_runs()] == [
            ("r2", 60.0),
            ("r1", None),
        ]
    objects, versions = schema(path)
    assert versions == [(LATEST,)]
    assert {"ticks", "schedule_pauses"} <= {name for kind, name, _ in objects if kind == "table"}
    async with await SQLiteStore.open(path) as store:
        assert await store.schedule_pauses() == {"d": True}


@pytest.mark.parametrize("recorded", [None, 0], ids=["empty-version-table", "version-0"])
async def test_a_version_0_database_is_upgraded(tmp_path: Path, recorded: int | None) -> None:
    path = tmp_path / "old.db"
    conn = raw(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    if recorded is not None:
        conn.execute("INSERT INTO schema_version VALUES (?)", (recorded,))
    conn.close()
    async with await SQLiteStore.open(path) as store:
        await store.apply([create()])
        assert await store.get_run("r1") is not None
    assert schema(path)[1] == [(LATEST,)]


V2 = (
    LATEST + 1,
    """
    ALTER TABLE runs ADD COLUMN note TEXT DEFAULT 'it''s; new';
    CREATE INDEX runs_note ON runs(note);
    """,
)


async def test_an_older_version_is_upgraded_and_keeps_its_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "v1.db"
    async with await SQLiteStore.open(path) as store:  # this orchestrator's last version...
        await store.apply([create()])
    monkeypatch.setattr(migrations, "MIGRATIONS", [*MIGRATIONS, V2])  # ...is a newer one's older
    async with await SQLiteStore.open(path) as store:
        assert await store.get_run("r1") is not None
    conn = raw(path)
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(LATEST + 1,)]
    assert conn.execute("SELECT id, note FROM runs").fetchall() == [("r1", "it's; new")]
    conn.close()


async def test_a_failed_upgrade_leaves_the_database_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "v1.db"
    async with await SQLiteStore.open(path) as store:
        await store.apply([create()])
    before = schema(path)
    broken = (LATEST + 1, "ALTER TABLE runs ADD COLUMN note TEXT; CREATE TABLE runs (x);")
    monkeypatch.setattr(migrations, "MIGRATIONS", [*MIGRATIONS, broken])
    with pytest.raises(StoreError, match=r"v1\.db: table runs already exists"):
        await SQLiteStore.open(path)
    assert schema(path) == before  # the added column was rolled back with the rest


async def test_a_newer_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    await (await SQLiteStore.open(path)).aclose()
    with anyio.fail_after(10):  # the writer's final checkpoint, after aclose returned
        while "new.db-wal" in siblings(path):
            await anyio.sleep(0.01)
    conn = raw(path)
    conn.execute("UPDATE schema_version SET version = ?", (LATEST + 5,))
    conn.close()
    content = path.read_bytes()
    with pytest.raises(StoreError) as caught:
        await SQLiteStore.open(path)
    assert str(caught.value) == (
        f"{path}: database schema version {LATEST + 5} is newer than this orchestrator "
        f"(knows up to {LATEST}); upgrade orchestrator"
    )
    assert path.read_bytes() == content


def writers() -> set[str]:
    """This process's children that run the store's writer (as /proc lists each thread's)."""
    found = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                children = f.read().split()
        except OSError:  # the thread ended meanwhile
            continue
        for pid in children:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                    if b"writer.py" in cmdline.read():
                        found.add(pid)
            except OSError:
                continue
    return found


async def test_another_programs_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "theirs.db"
    conn = raw(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    conn.close()
    content = path.read_bytes()
    running = writers()  # other tests' stores, if any are still open
    with pytest.raises(StoreError, match=r"theirs\.db: not an orchestrator database .*customers"):
        await SQLiteStore.open(path)
    assert path.read_bytes() == content
    assert siblings(path) == {"theirs.db"}  # not even switched to WAL
    assert writers() <= running  # the writer launched while it was opened: ended, waited for


def test_migration_scripts_split_where_sqlite_says() -> None:
    assert list(statements(V2[1])) == [
        "ALTER TABLE runs ADD COLUMN note TEXT DEFAULT 'it''s; new';",
        "CREATE INDEX runs_note ON runs(note);",
    ]
    with pytest.raises(ValueError, match="incomplete"):
        list(statements("CREATE TABLE x (a)"))
    versions = [v for v, _ in MIGRATIONS]
    assert versions == sorted(set(versions))
    assert versions[0] == 1


# -- files that are not a database ------------------------------------------------------------


def real_database_bytes(tmp_path: Path) -> bytes:
    conn = raw(tmp_path / "real.db")
    conn.execute("CREATE TABLE t (x)")
    conn.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * 100)
    conn.close()
    return (tmp_path / "real.db").read_bytes()


@pytest.mark.parametrize("kind", ["text", "truncated", "garbage-after-header"])
async def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path, kind: str) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    path = folder / "bad.db"
    if kind == "text":
        content = b"this is not a database, just some text\n" * 100
    elif kind == "truncated":
        content = real_database_bytes(tmp_path)[:3000]
    else:
        content = real_database_bytes(tmp_path)[:100] + bytes(range(256)) * 40
    path.write_bytes(content)
    with pytest.raises(StoreError, match=r"bad\.db: not an orchestrator database \("):
        await SQLiteStore.open(path)
    assert path.read_bytes() == content  # nothing written
    assert siblings(path) == {"bad.db"}  # no -wal, no -shm, no journal


async def test_a_folder_is_not_a_database(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"not an orchestrator database \(it is a folder\)"):
        await SQLiteStore.open(tmp_path)


# -- files that cannot be written -------------------------------------------------------------


async def test_a_folder_that_is_not_writable(tmp_path: Path, restore_mode: list[Path]) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    restore_mode.append(folder)
    if os.access(folder, os.W_OK):
        pytest.skip("this user writes a read-only folder anyway (root): permissions do not bind")
    with pytest.raises(StoreError, match=r"cannot write .*ro: permission denied"):
        await SQLiteStore.open(folder / "s.db")
    assert list(folder.iterdir()) == []


async def test_a_file_that_is_not_writable(tmp_path: Path, restore_mode: list[Path]) -> None:
    path = tmp_path / "ro.db"
    await (await SQLiteStore.open(path)).aclose()
    path.chmod(stat.S_IRUSR)
    restore_mode.append(path)
    if os.access(path, os.W_OK):
        pytest.skip("this user writes a read-only file anyway (root): permissions do not bind")
    with pytest.raises(StoreError, match=r"cannot write .*ro\.db: permission denied"):
        await SQLiteStore.open(path)


async def test_the_permission_check_names_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check above, for root too: what ``os.access`` refuses is refused before SQLite."""
    folder = tmp_path / "ro"
    folder.mkdir()
    real_access = os.access

    def access(path: Any, mode: int, **kwargs: Any) -> bool:
        return Path(path) != folder and real_access(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", access)
    with pytest.raises(StoreError) as caught:
        await SQLiteStore.open(folder / "s.db")
    assert str(caught.value) == f"{folder / 's.db'}: cannot write {folder}: permission denied"
    assert list(folder.iterdir()) == []


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
async def test_a_place_where_no_file_can_be_made(tmp_path: Path) -> None:
    """Holds for root too: no one creates files in /proc."""
    with pytest.raises(StoreError, match=r"^/proc/orchestrator\.db: cannot write"):
        await SQLiteStore.open("/proc/orchestrator.db")


# -- a locked database ------------------------------------------------------------------------


async def test_a_locked_database_fails_the_batch_writes_nothing_and_recovers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locked.db"
    store = await SQLiteStore.open(path, busy_timeout=1.5)
    await store.apply([create()])
    events_before = await store.get_events("r1")
    gaps: list[float] = []
    other = raw(path)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock past the timeout
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_tick, gaps, 0.01)
            with pytest.raises(StoreError, match=r"locked\.db: database is locked"):
                await store.apply([queue("a"), queue("b")])
            tg.cancel_scope.cancel()
        # reads go on meanwhile (WAL): a reader never waits for the writer
        assert (await store.get_jobs("r1"))["a"].state is J.PENDING
    finally:
        other.execute("ROLLBACK")
        other.close()
    # the loop kept running while the writer waited out its 1.5 s (a loaded machine may still
    # hold the process back a while, hence the margin)
    assert max(gaps) < 1.0
    jobs = await store.get_jobs("r1")
    assert (jobs["a"].state, jobs["b"].state) == (J.PENDING, J.PENDING)  # nothing half-written
    assert await store.get_events("r1") == events_before
    await store.apply([queue("a", at=3.0)])  # usable again
    assert (await store.get_jobs("r1"))["a"].state is J.QUEUED
    await store.aclose()


async def test_a_current_database_opens_while_another_writes(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    await (await SQLiteStore.open(path)).aclose()
    other = raw(path)
    other.execute("BEGIN IMMEDIATE")
    try:
        async with await SQLiteStore.open(path, busy_timeout=0.1) as store:
            assert await store.list_runs() == []  # no migration to run: no lock to wait for
    finally:
        other.execute("ROLLBACK")
        other.close()


async def test_a_fresh_database_locked_during_its_migration(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    other = raw(path)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match=r"fresh\.db: database is locked"):
            await SQLiteStore.open(path, busy_timeout=0.1)
    finally:
        other.execute("ROLLBACK")
        other.close()
    conn = raw(path)
    assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []  # nothing migrated
    conn.close()
    async with await SQLiteStore.open(path) as store:  # the next try migrates
        await store.apply([create()])


# -- the event loop never waits ---------------------------------------------------------------


async def _tick(gaps: list[float], every: float) -> None:
    last = time.monotonic()
    while True:
        await anyio.sleep(every)
        now = time.monotonic()
        gaps.append(now - last)
        last = now


async def test_the_event_loop_never_blocks_on_5000_writes(tmp_path: Path) -> None:
    jobs = tuple(f"j{i}" for i in range(1000))  # x 5 batches = 5,000 operations
    async with await SQLiteStore.open(tmp_path / "g.db") as store:
        await store.apply([create(jobs=jobs)])
        gaps: list[float] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_tick, gaps, 0.01)
            await run_lifecycles(store, jobs)
            for _ in range(5):  # reads too
                assert len(await store.get_events("r1")) > 5000
            tg.cancel_scope.cancel()
        stats = store.statistics()
        assert stats["batches"] == 1 + 5 * len(jobs)
        assert stats["commits"] < stats["batches"]
        assert len(gaps) > 3, "the loop never got a turn"
        # wall-clock gaps: a loaded machine may hold the process back, hence the margin
        assert max(gaps) < 1.0, f"the loop was blocked for {max(gaps):.3f} s"
        assert {j.state for j in (await store.get_jobs("r1")).values()} == {J.SUCCEEDED}


async def test_blocking_work_runs_off_the_loop_thread(tmp_path: Path) -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []
    async with await SQLiteStore.open(tmp_path / "s.db") as store:
        await store.apply([create()])
        await store._query(lambda conn: seen.append(threading.get_ident()))
        writer_pid = (await store._call("settings"))[-1]
    assert loop_thread not in seen
    assert writer_pid != os.getpid()  # writes: in the writer process


@pytest.mark.skipif(not hasattr(os, "eventfd"), reason="eventfd is Linux's")
async def test_the_writer_waits_on_its_wake_up_counter_not_on_the_pipe(tmp_path: Path) -> None:
    """A write to a pipe wakes its reader on the writing process's core (a "sync" wake-up): the
    writer waits on an eventfd that the engine signals after each write, and on the pipe only
    for its end, so that it runs on a free core beside the event loop."""
    async with await SQLiteStore.open(tmp_path / "s.db") as store:
        await store.apply([create()])
        pid = (await store._call("settings"))[-1]
        links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        assert "anon_inode:[eventfd]" in links

        def waiting_in() -> str:
            with open(f"/proc/{pid}/wchan") as f:
                return f.read()

        deadline = time.monotonic() + 10
        while "poll" not in waiting_in() and time.monotonic() < deadline:
            await anyio.sleep(0.01)  # it answered, and goes back to wait
        if waiting_in() in ("", "0"):  # running, or a kernel that does not say
            pytest.skip("this kernel does not show where the writer waits")
        assert "poll" in waiting_in(), waiting_in()  # not in pipe_read
        await store.apply([queue("a")])  # woken by the counter
        assert (await store.get_jobs("r1"))["a"].state is J.QUEUED


async def test_a_batch_larger_than_the_pipe_is_sent_in_parts(tmp_path: Path) -> None:
    """The pipe holds 1 MiB: the rest of a larger batch is sent by the sender's thread as the
    writer reads, each part signalled on the writer's wake-up counter."""
    error = "x" * (12 << 20)
    async with await SQLiteStore.open(tmp_path / "s.db") as store:
        await store.apply([create()])
        pid = (await store._call("settings"))[-1]
        try:
            with anyio.fail_after(60):
                await store.apply(
                    [Changes("r1", [JobRow("r1", "a", J.PENDING, J.QUEUED, error=error)])]
                )
                await store.apply([queue("b")])
        except TimeoutError:  # the writer waits for the rest: ended, so that the store closes
            os.kill(pid, signal.SIGKILL)
            raise
        jobs = await store.get_jobs("r1")
    assert (jobs["a"].state, jobs["a"].error) == (J.QUEUED, error)
    assert jobs["b"].state is J.QUEUED


def test_a_store_moves_to_the_next_event_loop(tmp_path: Path) -> None:
    """The writer's answers are read on the loop the store is used from: once the loop that
    opened it has ended, the next loop takes them over."""
    path = tmp_path / "loops.db"

    async def first() -> SQLiteStore:
        store = await SQLiteStore.open(path)
        await store.apply([create()])
        return store

    async def second(store: SQLiteStore) -> dict[str, Any]:
        with anyio.fail_after(10):  # an answer read by nobody would hang
            async with store:
                await store.apply([queue()])
                return await store.get_jobs("r1")

    store = asyncio.run(first())
    assert asyncio.run(second(store))["a"].state is J.QUEUED


def test_a_store_answers_a_loop_in_another_thread(tmp_path: Path) -> None:
    """While the loop that reads the answers runs, a caller on another thread's loop gets its
    answers handed over to its own loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        opened = asyncio.run_coroutine_threadsafe(SQLiteStore.open(tmp_path / "t.db"), loop)
        store = opened.result(timeout=10)

        async def elsewhere() -> dict[str, Any]:
            with anyio.fail_after(10):
                await store.apply([create(), queue()])
                return await store.get_jobs("r1")

        jobs = asyncio.run(elsewhere())
        assert jobs["a"].state is J.QUEUED
        assert store._writer is not None
        assert (
            store._writer._answer_loop is loop
        )  # still read there, handed over to the caller's loop
        asyncio.run_coroutine_threadsafe(store.aclose(), loop).result(timeout=10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


# -- opening from a URL -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///abs/path.db", Path("/abs/path.db")),
        ("sqlite:relative.db", Path("relative.db")),
        ("sqlite:sub/relative.db", Path("sub/relative.db")),
        ("plain.db", Path("plain.db")),
        ("./with:colon.db", Path("./with:colon.db")),
        ("/abs/plain.db", Path("/abs/plain.db")),
        ("~/x.db", Path("~/x.db").expanduser()),
    ],
)
def test_sqlite_urls(url: str, expected: Path) -> None:
    assert sqlite_path(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://u:secret@h/db", r"^postgresql://u:\*\*\*@h/db: the PostgreSQL store is not"),
        ("postgres://h/db", "PostgreSQL store is not built yet"),
        ("redis://u:p@ss@h:6379", r"^redis://u:\*\*\*@h:6379: unknown store"),
        ("memroy:", r"^memroy:: unknown store"),
        ("sqlite://host/x.db", "unknown store"),
        ("sqlite:", "no database file named"),
    ],
)
def test_urls_that_are_refused(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as caught:
        sqlite_path(url)
    assert "secret" not in str(caught.value)


def test_passwords_are_masked() -> None:
    assert without_password("postgresql://me:pw@db:5432/x") == "postgresql://me:***@db:5432/x"
    assert without_password("postgresql://me@db/x") == "postgresql://me@db/x"
    assert without_password("memory:") == "memory:"


async def test_open_store_opens_each_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home" / "orchestrator"
    monkeypatch.setenv("ORCHESTRATOR_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    assert default_db_path() == home / "orchestrator.db"
    store = await open_store()
    assert isinstance(store, SQLiteStore)
    await store.aclose()
    assert (home / "orchestrator.db").is_file()
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    memory = await open_store("memory:")
    assert isinstance(memory, MemoryStore)
    await memory.aclose()
    for url, file in [
        (f"sqlite:///{tmp_path}/a.db", tmp_path / "a.db"),
        ("sqlite:b.db", tmp_path / "b.db"),
        (str(tmp_path / "c.db"), tmp_path / "c.db"),
    ]:
        opened = await open_store(url)
        await opened.apply([create()])
        await opened.aclose()
        assert file.is_file()
    with pytest.raises(StoreError, match="PostgreSQL store is not built yet"):
        await open_store("postgresql://u:secret@h/db")


def test_the_default_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCHESTRATOR_HOME", raising=False)
    assert default_db_path() == Path.home() / ".local/state/orchestrator/orchestrator.db"


async def test_a_stale_write_is_not_a_store_error(tmp_path: Path) -> None:
    """The engine tells a lost run (StaleWrite) from a broken database (StoreError)."""
    async with await SQLiteStore.open(tmp_path / "s.db") as store:
        await store.apply([create()])
        with pytest.raises(StaleWrite) as caught:
            await store.apply([job(J.QUEUED, J.SUBMITTING, at=2.0)])
        assert not isinstance(caught.value, StoreError)


async def test_the_log_is_checkpointed_by_its_own_thread(tmp_path: Path) -> None:
    """The writer's commits leave the write-ahead log alone; every CHECKPOINT_EVERY commits the
    checkpoint thread copies it into the database file, while the store stays open."""
    path = tmp_path / "c.db"
    jobs = tuple(f"job-{i:05d}" for i in range(2000))  # pages enough to see the file grow
    async with await SQLiteStore.open(path) as store:
        autocheckpoint = (await store._call("settings"))[4]
        assert autocheckpoint == 0
        before = path.stat().st_size
        await store.apply([create(jobs=jobs)])
        for i in range(CHECKPOINT_EVERY):
            await store.apply([job(J.PENDING, J.QUEUED, jobs[i])])
        with anyio.fail_after(10):
            while path.stat().st_size <= before:
                await anyio.sleep(0.01)
        assert len(await store.get_jobs("r1")) == len(jobs)


async def test_a_failed_checkpoint_thread_hands_checkpoints_back_to_sqlite(tmp_path: Path) -> None:
    async with await SQLiteStore.open(tmp_path / "f.db") as store:
        await store._call("checkpoints_failed")  # as after an error in the checkpoint thread
        await store.apply([create()])
        autocheckpoint = (await store._call("settings"))[4]
    assert autocheckpoint == 1000


def test_the_checkpoint_connection_opens_with_the_first_checkpoint() -> None:
    """The checkpoint thread and its connection start once a checkpoint is due, not with the
    writer (whose start the engine's first commit waits for); a connection that cannot be
    opened then hands checkpoints back to SQLite, as a failed thread does."""
    opened: list[int] = []

    def connect() -> sqlite3.Connection:
        opened.append(1)
        raise sqlite3.OperationalError("unable to open database file")

    checkpointer = _Checkpointer(connect)
    for _ in range(CHECKPOINT_EVERY - 1):
        checkpointer.committed()
    assert (opened, checkpointer.failed) == ([], False)
    checkpointer.committed()
    checkpointer.close()  # joins the thread
    assert (opened, checkpointer.failed) == ([1], True)


async def test_lease_expiry_is_judged_on_the_stores_clock(tmp_path: Path) -> None:
    """A claimant whose clock runs an hour ahead does not take a run whose lease holds."""
    async with await SQLiteStore.open(tmp_path / "lease.db") as store:
        await store.apply([create()])
        now = time.time()
        await store.claim_run("r1", "a", expected_owner=None, at=now)
        with pytest.raises(StaleWrite, match="its lease has not expired"):
            await store.claim_run("r1", "b", expected_owner="a", at=now + 3600, expired_after=30)
