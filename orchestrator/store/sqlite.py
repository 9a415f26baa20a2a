"""The SQLite store, the embedded default.

WAL mode, ``synchronous=NORMAL`` (a commit survives a crash of the process; ``durable=True``
uses ``FULL``, which survives a power loss too, at the cost of an fsync per commit), a busy
timeout (5 s by default), ``BEGIN IMMEDIATE`` for every write, foreign keys on. One writer thread
owns the write connection: ``apply`` queues its batch and awaits; the writer takes every batch
waiting, applies each in a savepoint (a compare-and-set failure rolls back that batch only and
fails only its caller), commits once (a group commit), then answers on the caller's event loop.
Reads use their own connection in a worker thread, behind a lock. Nothing blocks the event loop.

Failures are :class:`~orchestrator.errors.StoreError` naming the file: not a database (or
another program's database), not writable, locked by another writer past the busy timeout
(the batches of that transaction fail and nothing of them is written; the store stays usable),
or a schema newer than this orchestrator.
"""

from __future__ import annotations

import asyncio
import json
import operator
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio

from .. import crash
from ..errors import StoreError
from ..states import JOB_REACHABLE, RUN_TRANSITIONS, JobState, RunState
from . import migrations
from .base import (
    LIVE_ATTEMPT_STATES,
    ActiveRunExists,
    AttemptRecord,
    AttemptRow,
    Changes,
    CreateRun,
    DeliveryAttempt,
    DeliveryRecord,
    EnqueueDelivery,
    Event,
    JobRecord,
    JobRow,
    Operation,
    RunRecord,
    RunTransition,
    StaleWrite,
    event_json,
)

T = TypeVar("T")
# The sqlite3 module binds None through its adapter protocol (two failed attribute lookups per
# parameter, most of the cost of binding a row of mostly empty fields) unless an adapter is
# registered for its type: this one returns None itself, so what is stored does not change.
_NONE: dict[None, None] = {}
sqlite3.register_adapter(type(None), _NONE.get)  # a call in C
_ACTIVE = (RunState.QUEUED.value, RunState.RUNNING.value)
MAX_GROUP = 256  # batches in one commit at most
CHECKPOINT_EVERY = 16  # commits between two checkpoints (in the checkpoint thread)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


@dataclass(slots=True)
class _Request:
    ops: Sequence[Operation] | None  # None: a function to run in the write transaction
    fn: Callable[[sqlite3.Connection], Any] | None
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any] | Callable[[BaseException | None], None]


class SQLiteStore:
    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0, durable: bool = False
    ) -> None:
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self._synchronous = "FULL" if durable else "NORMAL"
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._read: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self._stats = {"batches": 0, "commits": 0}
        self._events = _Events()  # of the transaction being written
        self._checkpointer: _Checkpointer | None = None
        self._auto_checkpoint = False
        self._closed = False

    # -- opening -------------------------------------------------------------------------
    @classmethod
    async def open(cls, path: str | os.PathLike[str], **kwargs: Any) -> SQLiteStore:
        """Open (creating or upgrading) the database at ``path`` and start the writer."""
        store = cls(path, **kwargs)
        await anyio.to_thread.run_sync(store._open)
        return store

    async def __aenter__(self) -> SQLiteStore:
        if self._writer is None and not self._closed:
            await anyio.to_thread.run_sync(self._open)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(
                self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            migrations.schema_version(conn, self.path)  # before anything is written
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA cache_size = -65536")  # 64 MiB of pages: writes stay in memory
            conn.execute("PRAGMA temp_store = MEMORY")
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, sqlite3.Error):
                raise self._error(exc) from None
            raise
        return conn

    def _error(self, exc: sqlite3.Error) -> StoreError:
        text = str(exc)
        if "file is not a database" in text or "malformed" in text:
            return StoreError(f"{self.path}: not an orchestrator database ({text})")
        if "readonly" in text or "unable to open" in text or "disk I/O" in text:
            return StoreError(f"{self.path}: cannot write {self.path} ({text})")
        return StoreError(f"{self.path}: {text}")

    def _open(self) -> None:
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            reason = (exc.strerror or type(exc).__name__).lower()
            raise StoreError(f"{self.path}: cannot write {directory}: {reason}") from None
        if self.path.is_dir():
            raise StoreError(f"{self.path}: not an orchestrator database (it is a folder)")
        if self.path.exists() and not os.access(self.path, os.W_OK):
            raise StoreError(f"cannot write {self.path}: permission denied")
        if not os.access(directory, os.W_OK | os.X_OK):  # the file, its -wal and -shm files
            raise StoreError(f"{self.path}: cannot write {directory}: permission denied")
        write = self._connect()
        try:
            self._migrate(write)
            self._read = self._connect()
            checkpoint = self._connect()
        except BaseException:
            write.close()
            if self._read is not None:
                self._read.close()
            raise
        write.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpoint thread does it
        self._checkpointer = _Checkpointer(checkpoint)
        self._writer = threading.Thread(
            target=self._write_loop, args=(write,), name="orchestrator-store", daemon=True
        )
        self._writer.start()

    def _migrate(self, conn: sqlite3.Connection) -> None:
        try:
            migrations.migrate(conn, self.path)
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._checkpointer is not None:
            await anyio.to_thread.run_sync(self._checkpointer.close)
        if self._writer is not None:
            self._queue.put(None)
            await anyio.to_thread.run_sync(self._writer.join)  # its close checkpoints
        if self._read is not None:
            await anyio.to_thread.run_sync(self._close_read)

    def _close_read(self) -> None:
        assert self._read is not None
        with self._read_lock:  # after the read in flight, if any
            self._read.close()

    def statistics(self) -> dict[str, int]:
        """``batches`` applied (or refused) in committed transactions and ``commits``: fewer
        commits than batches is group commit at work."""
        return dict(self._stats)

    # -- writing -------------------------------------------------------------------------
    async def apply(self, ops: Sequence[Operation]) -> None:
        await self._submit(ops, None)

    def apply_nowait(
        self, ops: Sequence[Operation], done: Callable[[BaseException | None], None]
    ) -> None:
        if self._closed or self._writer is None:
            done(StoreError(f"{self.path}: the store is closed"))
            return
        self._queue.put(_Request(ops, None, asyncio.get_running_loop(), done))

    async def _write_fn(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        result: T = await self._submit(None, fn)
        return result

    async def _submit(
        self, ops: Sequence[Operation] | None, fn: Callable[[sqlite3.Connection], Any] | None
    ) -> Any:
        if self._closed or self._writer is None:
            raise StoreError(f"{self.path}: the store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put(_Request(ops, fn, loop, future))
        return await asyncio.shield(future)

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                group = [first]
                stop = False
                while len(group) < MAX_GROUP:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stop = True
                        break
                    group.append(item)
                self._commit_group(conn, group)
                if stop:
                    return
        finally:
            conn.close()

    def _commit_group(self, conn: sqlite3.Connection, group: list[_Request]) -> None:
        """One transaction for the whole group. Fast path without savepoints; if a batch fails
        its compare-and-set, the transaction is redone with a savepoint per batch so that only
        that batch fails."""
        checkpointer = self._checkpointer
        if checkpointer is not None and checkpointer.failed and not self._auto_checkpoint:
            conn.execute("PRAGMA wal_autocheckpoint = 1000")  # back to SQLite's own
            self._auto_checkpoint = True
        try:
            try:
                results = self._run_group(conn, group, savepoints=False)
            except _BatchFailed:
                conn.execute("ROLLBACK")
                results = self._run_group(conn, group, savepoints=True)
            crash.reached("mid_commit")
            conn.execute("COMMIT")
            if checkpointer is not None:
                checkpointer.committed()
            self._stats["commits"] += 1
            self._stats["batches"] += len(group)
        except Exception as exc:  # the database failed (locked, full, I/O): the whole group fails
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            results = [(False, self._group_failure(exc)) for _ in group]
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, bool, Any]]] = {}
        for request, (ok, value) in zip(group, results, strict=True):
            by_loop.setdefault(request.loop, []).append((request.future, ok, value))
        for loop, settled in by_loop.items():  # one wake-up of each loop per commit
            try:
                loop.call_soon_threadsafe(_settle_all, settled)
            except RuntimeError:  # that loop is closed: nobody waits any more
                pass

    def _group_failure(self, exc: Exception) -> Exception:
        """One exception per caller (a shared one would collect every caller's traceback)."""
        if isinstance(exc, sqlite3.Error):
            failure = self._error(exc)
        else:  # pragma: no cover - a bug of this module: still answer every caller
            failure = StoreError(f"{self.path}: the write failed ({exc!r})")
        failure.__cause__ = exc
        return failure

    def _run_group(
        self, conn: sqlite3.Connection, group: list[_Request], *, savepoints: bool
    ) -> list[tuple[bool, Any]]:
        results: list[tuple[bool, Any]] = []
        self._events = _Events()
        conn.execute("BEGIN IMMEDIATE")
        for i, request in enumerate(group):
            if savepoints:
                conn.execute(f"SAVEPOINT b{i}")
            mark = self._events.mark() if savepoints else None
            try:
                if request.ops is not None:
                    self._apply_ops(conn, request.ops)
                    value = None
                else:
                    assert request.fn is not None
                    value = request.fn(conn)
            except Exception as exc:
                if not _fault_of_the_batch(exc):
                    raise  # a fault of the database: the whole group fails
                if not savepoints:
                    raise _BatchFailed from exc
                conn.execute(f"ROLLBACK TO b{i}")
                conn.execute(f"RELEASE b{i}")
                assert mark is not None
                self._events.rollback(mark)
                error: Exception = (
                    exc if not isinstance(exc, sqlite3.IntegrityError) else StaleWrite(str(exc))
                )
                results.append((False, error))
                continue
            if savepoints:
                conn.execute(f"RELEASE b{i}")
            results.append((True, value))
        if self._events.by_run:
            self._events.write(conn)
        return results

    def _apply_ops(self, conn: sqlite3.Connection, ops: Sequence[Operation]) -> None:
        for op in ops:
            if isinstance(op, Changes):
                self._changes(conn, op)
            elif isinstance(op, RunTransition):
                self._run_transition(conn, op)
            elif isinstance(op, CreateRun):
                self._create_run(conn, op)
            else:
                self._enqueue(conn, op)

    def _changes(self, conn: sqlite3.Connection, op: Changes) -> None:
        """One ``executemany`` per statement: the rows go to SQLite as they are."""
        jobs = op.jobs
        if jobs:
            if not JOB_REACHABLE.issuperset(map(_MOVE, jobs)):
                raise StaleWrite(_unreachable(jobs))
            if _write_rows(conn, _JOB_UPDATE, jobs) != len(jobs):
                raise StaleWrite(_stale_job(conn, jobs))
        attempts = op.attempts
        if attempts:
            inserts = [a for a in attempts if a.expected is None]
            if inserts:
                try:
                    _write_rows(conn, _ATTEMPT_INSERT, inserts)
                except sqlite3.IntegrityError as exc:  # the attempt or its key exists
                    key = inserts[0].key if len(inserts) == 1 else f"{len(inserts)} attempts"
                    raise StaleWrite(f"attempt {key}: {exc}") from None
            if len(inserts) < len(attempts):
                updates = [a for a in attempts if a.expected is not None]
                if _write_rows(conn, _ATTEMPT_UPDATE, updates) != len(updates):
                    raise StaleWrite(_stale_attempt(conn, updates))
        if op.events:
            self._events.extend(op.run_id, op.events)

    def _create_run(self, conn: sqlite3.Connection, op: CreateRun) -> None:
        run = op.run
        if op.exclusive:
            row = conn.execute(
                "SELECT id FROM runs WHERE dag = ? AND state IN (?, ?) ORDER BY created_at LIMIT 1",
                (run.dag, *_ACTIVE),
            ).fetchone()
            if row is not None:
                raise ActiveRunExists(row[0])
        conn.execute(
            "INSERT OR IGNORE INTO dags (hash, name, definition, created_at) VALUES (?, ?, ?, ?)",
            (
                run.dag_hash,
                run.dag,
                op.definition_json or _dumps(op.dag_definition),
                run.created_at,
            ),
        )
        try:
            conn.execute(
                "INSERT INTO runs (id, dag, dag_hash, params, trigger, state, owner, epoch, "
                "heartbeat_at, "
                "created_at, started_at, ended_at, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                "?, ?, ?)",
                (
                    run.id,
                    run.dag,
                    run.dag_hash,
                    _dumps(run.params),
                    run.trigger,
                    run.state.value,
                    run.owner,
                    run.epoch,
                    run.heartbeat_at,
                    run.created_at,
                    run.started_at,
                    run.ended_at,
                    run.error,
                ),
            )
        except sqlite3.IntegrityError:
            raise StaleWrite(f"run {run.id} exists") from None
        conn.executemany(
            "INSERT INTO jobs (run_id, job_id, state) VALUES (?, ?, 'pending')",
            [(run.id, job_id) for job_id in op.job_ids],
        )
        self._events.extend(
            run.id, [event_json(None, "run", None, run.state.value, run.created_at)]
        )

    def _run_transition(self, conn: sqlite3.Connection, op: RunTransition) -> None:
        if op.new not in RUN_TRANSITIONS[op.expected]:
            raise StaleWrite(
                f"run {op.run_id}: {op.expected.value} -> {op.new.value} is not a transition"
            )
        sets = ["state = ?"]
        args: list[Any] = [op.new.value]
        if op.error is not None:
            sets.append("error = ?")
            args.append(op.error)
        if op.new is RunState.RUNNING:
            sets.append("started_at = COALESCE(started_at, ?)")
            args.append(op.at)
        if op.new.terminal:
            sets.append("ended_at = ?")
            args.append(op.at)
        cursor = conn.execute(
            f"UPDATE runs SET {', '.join(sets)} WHERE id = ? AND state = ?",
            (*args, op.run_id, op.expected.value),
        )
        if cursor.rowcount != 1:
            raise StaleWrite(f"run {op.run_id}: expected {op.expected.value}")
        event = event_json(None, "run", op.expected.value, op.new.value, op.at)
        self._events.extend(op.run_id, [event])

    def _enqueue(self, conn: sqlite3.Connection, op: EnqueueDelivery) -> None:
        d = op.delivery
        disabled = conn.execute(
            "SELECT 1 FROM disabled_webhooks WHERE dag = ? AND webhook = ?", (d.dag, d.webhook)
        ).fetchone()
        try:
            conn.execute(
                "INSERT INTO outbox (id, run_id, job_id, dag, webhook, event, url, method, "
                "headers, body, "
                "secret_refs, ssl_verification, state, attempts, next_at, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    d.id,
                    d.run_id,
                    d.job_id,
                    d.dag,
                    d.webhook,
                    d.event,
                    d.url,
                    d.method,
                    _dumps(d.headers),
                    d.body,
                    _dumps(d.secret_refs),
                    int(d.ssl_verification),
                    "disabled" if disabled else d.state,
                    d.attempts,
                    d.next_at,
                    d.created_at,
                ),
            )
        except sqlite3.IntegrityError:
            raise StaleWrite(f"delivery {d.id} exists") from None

    # -- reading -------------------------------------------------------------------------
    async def _query(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            assert self._read is not None
            with self._read_lock:
                try:
                    return fn(self._read)
                except sqlite3.Error as exc:
                    raise self._error(exc) from None

        if self._closed:
            raise StoreError(f"{self.path}: the store is closed")
        return await anyio.to_thread.run_sync(run)

    # rows are decoded into records in the worker thread too: a long event log decoded on the
    # loop would stall it as surely as the query would

    async def get_run(self, run_id: str) -> RunRecord | None:
        def read(conn: sqlite3.Connection) -> RunRecord | None:
            row = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
            return _run(row) if row else None

        return await self._query(read)

    async def list_runs(
        self, *, dag: str | None = None, states: Sequence[RunState] | None = None, limit: int = 100
    ) -> list[RunRecord]:
        where, args = [], []
        if dag is not None:
            where.append("dag = ?")
            args.append(dag)
        if states is not None:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            args.extend(s.value for s in states)
        sql = f"SELECT {_RUN_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        return await self._query(lambda c: [_run(r) for r in c.execute(sql, (*args, limit))])

    async def get_jobs(self, run_id: str) -> dict[str, JobRecord]:
        def read(conn: sqlite3.Connection) -> dict[str, JobRecord]:
            rows = conn.execute(
                "SELECT job_id, state, attempts, error, remote_status, outputs, log_tail, notes, "
                "started_at, ended_at FROM jobs WHERE run_id = ? ORDER BY rowid",
                (run_id,),
            )
            return {
                r[0]: JobRecord(
                    run_id,
                    r[0],
                    JobState(r[1]),
                    r[2],
                    r[3],
                    r[4],
                    json.loads(r[5]) if r[5] else {},
                    r[6],
                    json.loads(r[7]) if r[7] else [],
                    r[8],
                    r[9],
                )
                for r in rows
            }

        return await self._query(read)

    async def get_attempts(self, run_id: str) -> list[AttemptRecord]:
        def read(conn: sqlite3.Connection) -> list[AttemptRecord]:
            rows = conn.execute(
                "SELECT job_id, attempt, key, state, handle, submitted_at, accepted_at, ended_at, "
                "error FROM attempts WHERE run_id = ? ORDER BY job_id, attempt",
                (run_id,),
            )
            return [
                AttemptRecord(
                    run_id,
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    json.loads(r[4]) if r[4] else None,
                    r[5],
                    r[6],
                    r[7],
                    r[8],
                )
                for r in rows
            ]

        return await self._query(read)

    async def get_events(self, run_id: str) -> list[Event]:
        def read(conn: sqlite3.Connection) -> list[Event]:
            rows = conn.execute(
                "SELECT first, events FROM event_chunks WHERE run_id = ? ORDER BY first",
                (run_id,),
            )
            return [
                Event(
                    first + i,
                    run_id,
                    e[0],
                    e[1],
                    e[2],
                    e[3],
                    e[4],
                    _event_data(e[5]),
                )
                for first, chunk in rows
                for i, e in enumerate(json.loads(chunk))
            ]

        return await self._query(read)

    async def get_dag_definition(self, dag_hash: str) -> dict[str, Any] | None:
        def read(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute("SELECT definition FROM dags WHERE hash = ?", (dag_hash,)).fetchone()
            return json.loads(row[0]) if row else None

        return await self._query(read)

    async def claim_run(
        self, run_id: str, owner: str, *, expected_owner: str | None, at: float
    ) -> int:
        def claim(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "UPDATE runs SET owner = ?, epoch = epoch + 1, heartbeat_at = ? WHERE id = ? AND "
                "owner IS ?",
                (owner, at, run_id, expected_owner),
            )
            if cursor.rowcount != 1:
                raise StaleWrite(f"run {run_id} is not owned by {expected_owner}")
            return int(conn.execute("SELECT epoch FROM runs WHERE id = ?", (run_id,)).fetchone()[0])

        return await self._write_fn(claim)

    async def heartbeat(self, run_ids: Sequence[str], owner: str, at: float) -> None:
        def beat(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE runs SET heartbeat_at = ? WHERE id = ? AND owner = ?",
                [(at, r, owner) for r in run_ids],
            )

        await self._write_fn(beat)

    # -- outbox --------------------------------------------------------------------------
    async def due_deliveries(self, now: float, limit: int = 100) -> list[DeliveryRecord]:
        sql = (
            f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE state = 'pending' AND (next_at IS NULL "
            "OR next_at <= ?) ORDER BY COALESCE(next_at, 0), created_at LIMIT ?"
        )
        return await self._query(lambda c: [_delivery(r) for r in c.execute(sql, (now, limit))])

    async def record_delivery(
        self, attempt: DeliveryAttempt, *, state: str, next_at: float | None
    ) -> None:
        def record(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO delivery_attempts (delivery_id, number, at, status, "
                "error, duration) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    attempt.delivery_id,
                    attempt.number,
                    attempt.at,
                    attempt.status,
                    attempt.error,
                    attempt.duration,
                ),
            )
            conn.execute(
                "UPDATE outbox SET state = ?, attempts = MAX(attempts, ?), next_at = ?, "
                "last_status = ?, last_error = ?, "
                "delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END WHERE id = "
                "?",
                (
                    state,
                    attempt.number,
                    next_at,
                    attempt.status,
                    attempt.error,
                    state,
                    attempt.at,
                    attempt.delivery_id,
                ),
            )

        await self._write_fn(record)

    async def list_deliveries(
        self, run_id: str | None = None
    ) -> list[tuple[DeliveryRecord, list[DeliveryAttempt]]]:
        def read(conn: sqlite3.Connection) -> list[tuple[DeliveryRecord, list[DeliveryAttempt]]]:
            sql = f"SELECT {_OUTBOX_COLUMNS} FROM outbox"
            args: tuple[Any, ...] = ()
            if run_id is not None:
                sql += " WHERE run_id = ?"
                args = (run_id,)
            conn.execute("BEGIN")  # one snapshot for the deliveries and their attempts
            try:
                return _deliveries_with_attempts(conn, sql + " ORDER BY created_at, rowid", args)
            finally:
                conn.execute("COMMIT")

        return await self._query(read)

    async def redeliver(self, delivery_id: str, now: float) -> bool:
        def again(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE outbox SET state = 'pending', next_at = ? WHERE id = ?", (now, delivery_id)
            )
            return cursor.rowcount == 1

        return await self._write_fn(again)

    async def disable_webhook(self, dag: str, webhook: str, reason: str, at: float) -> None:
        def disable(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO disabled_webhooks (dag, webhook, reason, at) VALUES (?, "
                "?, ?, ?)",
                (dag, webhook, reason, at),
            )
            conn.execute(
                "UPDATE outbox SET state = 'disabled', last_error = ? WHERE dag = ? AND webhook = "
                "? AND state = 'pending'",
                (reason, dag, webhook),
            )

        await self._write_fn(disable)

    async def disabled_webhooks(self, dag: str) -> set[str]:
        rows = await self._query(
            lambda c: c.execute(
                "SELECT webhook FROM disabled_webhooks WHERE dag = ?", (dag,)
            ).fetchall()
        )
        return {r[0] for r in rows}


_RUN_COLUMNS = (
    "id, dag, dag_hash, params, trigger, state, created_at, owner, epoch, heartbeat_at, "
    "started_at, ended_at, error"
)
_OUTBOX_COLUMNS = (
    "id, run_id, job_id, dag, webhook, event, url, method, headers, body, secret_refs, "
    "ssl_verification, "
    "created_at, state, attempts, next_at, last_status, last_error, delivered_at"
)


def _run(r: Any) -> RunRecord:
    return RunRecord(
        r[0],
        r[1],
        r[2],
        json.loads(r[3]),
        r[4],
        RunState(r[5]),
        r[6],
        r[7],
        r[8],
        r[9],
        r[10],
        r[11],
        r[12],
    )


def _delivery(r: Any) -> DeliveryRecord:
    return DeliveryRecord(
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        r[5],
        r[6],
        r[7],
        json.loads(r[8]),
        bytes(r[9]),
        json.loads(r[10]),
        bool(r[11]),
        r[12],
        r[13],
        r[14],
        r[15],
        r[16],
        r[17],
        r[18],
    )


def _deliveries_with_attempts(
    conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]
) -> list[tuple[DeliveryRecord, list[DeliveryAttempt]]]:
    out = []
    for d in [_delivery(r) for r in conn.execute(sql, args).fetchall()]:
        attempts = [
            DeliveryAttempt(d.id, r[0], r[1], r[2], r[3], r[4])
            for r in conn.execute(
                "SELECT number, at, status, error, duration FROM delivery_attempts WHERE "
                "delivery_id = ? ORDER BY number",
                (d.id,),
            ).fetchall()
        ]
        out.append((d, attempts))
    return out


class _Events:
    """The events of the transaction being written, by run, in order: each batch's already
    JSON (encoded as the batch is applied, so that an event that cannot be encoded fails its
    own batch only)."""

    __slots__ = ("by_run",)

    def __init__(self) -> None:
        self.by_run: dict[str, tuple[list[str], list[int]]] = {}  # JSON pieces, their counts

    def extend(self, run_id: str, events: Sequence[str]) -> None:
        """``events`` as :func:`~orchestrator.store.base.event_json` makes them."""
        pieces, counts = self.by_run.setdefault(run_id, ([], []))
        pieces.append(",".join(events))
        counts.append(len(events))

    def mark(self) -> dict[str, int]:
        return {run_id: len(pieces) for run_id, (pieces, _) in self.by_run.items()}

    def rollback(self, mark: dict[str, int]) -> None:
        for run_id in list(self.by_run):
            if run_id in mark:
                pieces, counts = self.by_run[run_id]
                del pieces[mark[run_id] :]
                del counts[mark[run_id] :]
            else:
                del self.by_run[run_id]

    def write(self, conn: sqlite3.Connection) -> None:
        """One chunk row per run, numbered on from the last event written: a JSON array of
        ``[job_id, kind, old, new, at, data]``; the ``events`` view shows one row per event."""
        row = conn.execute(
            "SELECT first + n FROM event_chunks ORDER BY first DESC LIMIT 1"
        ).fetchone()
        seq = row[0] if row else 1
        rows = []
        for run_id, (pieces, counts) in self.by_run.items():
            n = sum(counts)
            if n:
                rows.append((seq, run_id, n, f"[{','.join(pieces)}]"))
                seq += n
        conn.executemany(
            "INSERT INTO event_chunks (first, run_id, n, events) VALUES (?, ?, ?, ?)", rows
        )


# the rows of Changes bind as they are: ?N is the row's field N
_JOB_UPDATE = (
    "UPDATE jobs SET state = ?4, attempts = ?5, error = ?6, remote_status = ?7, outputs = ?8, "
    "log_tail = ?9, notes = ?10, started_at = ?11, ended_at = ?12 "
    "WHERE run_id = ?1 AND job_id = ?2 AND state = ?3"
)
_ATTEMPT_INSERT = (
    "INSERT INTO attempts (run_id, job_id, attempt, key, state, handle, submitted_at, "
    "accepted_at, ended_at, error) VALUES (?1, ?2, ?3, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
)
_ATTEMPT_UPDATE = (
    "UPDATE attempts SET state = ?6, handle = COALESCE(?7, handle), "
    "accepted_at = COALESCE(?9, accepted_at), ended_at = ?10, error = COALESCE(?11, error) "
    "WHERE run_id = ?1 AND job_id = ?2 AND attempt = ?3 AND state = ?4 "
    "AND ?4 IN ('submitting', 'running')"
)
_MOVE = operator.itemgetter(2, 3)  # (expected, state) of a JobRow


def _unreachable(rows: list[JobRow]) -> str:
    row = next(r for r in rows if (r.expected, r.state) not in JOB_REACHABLE)
    return f"job {row.run_id}/{row.job_id}: {row.expected} -> {row.state} is not a transition"


def _stale_job(conn: sqlite3.Connection, rows: list[JobRow]) -> str:
    """Which row's compare-and-set failed (read inside the transaction, before its rollback)."""
    for row in rows:
        found = conn.execute(
            "SELECT state FROM jobs WHERE run_id = ? AND job_id = ?", (row.run_id, row.job_id)
        ).fetchone()
        if found is None:
            return f"job {row.run_id}/{row.job_id} does not exist"
        if found[0] != row.state:  # not written
            return f"job {row.run_id}/{row.job_id}: expected {row.expected}, found {found[0]}"
    return f"{len(rows)} jobs: a compare-and-set found another state"


def _stale_attempt(conn: sqlite3.Connection, rows: list[AttemptRow]) -> str:
    for row in rows:
        name = f"attempt {row.run_id}/{row.job_id}/{row.attempt}"
        found = conn.execute(
            "SELECT state FROM attempts WHERE run_id = ? AND job_id = ? AND attempt = ?",
            (row.run_id, row.job_id, row.attempt),
        ).fetchone()
        if found is None:
            return f"{name} does not exist"
        if row.expected not in LIVE_ATTEMPT_STATES:
            return f"{name} already ended ({row.expected})"
        if found[0] != row.state:
            return f"{name}: expected {row.expected}, found {found[0]}"
    return f"{len(rows)} attempts: a compare-and-set found another state"


def _event_data(data: Any) -> dict[str, Any]:
    """An event's data in a chunk: an object, or (in chunks written before) JSON text."""
    if isinstance(data, str):
        data = json.loads(data)
    return dict(data) if data else {}


def _write_rows(conn: sqlite3.Connection, sql: str, rows: Sequence[tuple[Any, ...]]) -> int:
    """How many rows were written (a compare-and-set that finds another state writes none).
    The rows go as plain tuples: the sqlite3 module reads a tuple subclass (a JobRow) item by
    item through the sequence protocol, several times slower."""
    if len(rows) == 1:
        return int(conn.execute(sql, tuple(rows[0])).rowcount)
    return int(conn.executemany(sql, map(tuple, rows)).rowcount)


class _Checkpointer:
    """Copies the write-ahead log into the database file in a thread of its own (a ``PASSIVE``
    checkpoint every :data:`CHECKPOINT_EVERY` commits), so that no commit of the writer waits
    for that copy and its fsyncs. A passive checkpoint blocks neither writers nor readers. If
    it fails, the writer goes back to SQLite's automatic checkpoints."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._due = threading.Event()
        self._commits = 0
        self._stopping = False
        self.failed = False
        self._thread = threading.Thread(
            target=self._run, name="orchestrator-checkpoint", daemon=True
        )
        self._thread.start()

    def committed(self) -> None:
        """Called by the writer after each commit."""
        self._commits += 1
        if self._commits >= CHECKPOINT_EVERY:
            self._commits = 0
            self._due.set()

    def _run(self) -> None:
        try:
            while True:
                self._due.wait()
                self._due.clear()
                if self._stopping:
                    return
                try:
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        raise
        except sqlite3.Error:
            self.failed = True
        finally:
            self._conn.close()

    def close(self) -> None:
        self._stopping = True
        self._due.set()
        self._thread.join()


class _BatchFailed(Exception):
    """A batch of the fast path failed: redo the group with savepoints."""


def _fault_of_the_batch(exc: Exception) -> bool:
    """A stale compare-and-set, a duplicate row or a value that cannot be stored (or bound)
    fails its own batch; any other database error (locked, full, I/O) fails the whole
    transaction."""
    if isinstance(
        exc,
        sqlite3.IntegrityError
        | sqlite3.DataError
        | sqlite3.InterfaceError
        | sqlite3.ProgrammingError,  # a value of a type SQLite cannot bind
    ):
        return True
    return not isinstance(exc, sqlite3.Error)


def _settle_all(settled: list[tuple[Any, bool, Any]]) -> None:
    callbacks = []
    for future, ok, value in settled:
        if not isinstance(future, asyncio.Future):
            callbacks.append((future, None if ok else value))  # apply_nowait's callback
        elif future.cancelled():
            continue
        elif ok:
            future.set_result(value)
        else:
            future.set_exception(value)
    failed: BaseException | None = None
    for callback, outcome in callbacks:  # one callback that raises does not starve the others
        try:
            callback(outcome)
        except Exception as exc:
            failed = failed or exc
    if failed is not None:
        raise failed  # the event loop's exception handler reports it
