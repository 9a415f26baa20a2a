"""The SQLite store, the embedded default.

WAL mode, ``synchronous=NORMAL`` (a commit survives a crash of the process; ``durable=True``
uses ``FULL``, which survives a power loss too, at the cost of an fsync per commit), a busy
timeout (5 s by default), ``BEGIN IMMEDIATE`` for every write, foreign keys on. One writer owns
the write connection: a process of its own (:mod:`orchestrator.store.sqlite.writer`), so that
the event loop and the writing run side by side on two cores. ``apply`` sends its batch down a
pipe (through :mod:`orchestrator.store.sqlite.client`, the writer's end in this process) and
awaits; the writer takes every batch waiting, applies each (a compare-and-set failure rolls
back that batch only and fails only its caller), commits once (a group commit), then answers;
the event loop reads the answers from the writer's pipe itself (a reader callback: no thread
hands them over) and settles its callers. Reads use their own connection in a worker thread,
behind a lock (:mod:`orchestrator.store.sqlite.rows` decodes their rows). Nothing blocks the
event loop: a batch that does not fit in the pipe waits in a sender thread.

Failures are :class:`~orchestrator.errors.StoreError` naming the file: not a database (or
another program's database), not writable, locked by another writer past the busy timeout
(the batches of that transaction fail and nothing of them is written; the store stays usable),
a schema newer than this orchestrator, or a writer process that ended.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio

from ...errors import StoreError
from ...model.states import JOB_TERMINAL, AttemptState, JobState, RunState
from ..base import (
    AttemptRecord,
    DeliveryAttempt,
    DeliveryRecord,
    Event,
    JobRecord,
    Lease,
    Operation,
    Receipt,
    RunRecord,
)
from . import migrations, writer
from .client import WriterClient
from .rows import (
    OUTBOX_COLUMNS,
    RUN_COLUMNS,
    after_prefix,
    chunk_events,
    deliveries_with_attempts,
    delivery_record,
    run_record,
)
from .schedules import ScheduleReads

__all__ = ["SQLiteStore"]

T = TypeVar("T")


_JOB_ENDED = [s.value for s in JOB_TERMINAL]  # the states a job ends in, as stored


class SQLiteStore(ScheduleReads):
    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0, durable: bool = False
    ) -> None:
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self._synchronous = "FULL" if durable else "NORMAL"
        self._writer: WriterClient | None = None
        self._read: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self._closed = False

    # -- opening -------------------------------------------------------------------------
    @classmethod
    async def open(cls, path: str | os.PathLike[str], **kwargs: Any) -> SQLiteStore:
        """Open (creating or upgrading) the database at ``path`` and start the writer."""
        store = cls(path, **kwargs)
        await anyio.to_thread.run_sync(store._open)
        store._listen(asyncio.get_running_loop())
        return store

    async def __aenter__(self) -> SQLiteStore:
        if self._writer is None and not self._closed:
            await anyio.to_thread.run_sync(self._open)
            self._listen(asyncio.get_running_loop())
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
            conn.execute("PRAGMA foreign_keys = ON")
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, sqlite3.Error):
                raise self._error(exc) from None
            raise
        return conn

    def _error(self, exc: sqlite3.Error) -> StoreError:
        return StoreError(writer.error_text(str(self.path), str(exc)))

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
        launched = WriterClient.launch()  # its interpreter starts while the database opens
        conn: sqlite3.Connection | None = None
        try:
            conn = self._connect()
            self._migrate(conn)
            self._writer = WriterClient.start(
                self.path, launched, busy_timeout=self._busy_timeout, synchronous=self._synchronous
            )
        except BaseException:
            if self._writer is None:
                WriterClient.abandon(launched)
            if conn is not None:
                conn.close()
            raise
        self._read = conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        try:
            migrations.migrate(conn, self.path)
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def _listen(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._writer is not None:
            self._writer.listen(loop)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        writer = self._writer
        if writer is not None:
            writer.refuse()
        # the read connection first: the last connection to close checkpoints the log, and
        # that one should be the writer's, which nothing waits for
        if self._read is not None:
            await anyio.to_thread.run_sync(self._close_read)
        if writer is not None:
            writer.listen(asyncio.get_running_loop())  # its last answers: read on this loop
            await anyio.to_thread.run_sync(writer.stop)

    def _close_read(self) -> None:
        assert self._read is not None
        with self._read_lock:  # after the read in flight, if any
            self._read.close()

    def statistics(self) -> dict[str, int]:
        """``batches`` applied (or refused) in committed transactions and ``commits``: fewer
        commits than batches is group commit at work."""
        if self._writer is None:
            return {"batches": 0, "commits": 0}
        return self._writer.statistics()

    # -- writing: through the writer process ---------------------------------------------
    def _client(self) -> WriterClient:
        if self._closed or self._writer is None:
            raise StoreError(f"{self.path}: the store is closed")
        return self._writer

    async def apply(self, ops: Sequence[Operation]) -> None:
        await self._client().apply(ops)

    def submit(self, ops: Sequence[Operation]) -> Receipt:
        try:
            writer = self._client()
        except StoreError as exc:
            receipt = Receipt()
            receipt.settle(exc)
            return receipt
        return writer.submit(ops)

    async def _call(self, kind: str, *args: Any) -> Any:
        """One of the writer's other writes, by name, in its own batch."""
        return await self._client().call(kind, *args)

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
            row = conn.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
            return run_record(row) if row else None

        return await self._query(read)

    async def find_run_ids(self, prefix: str, limit: int = 10) -> list[str]:
        # a range of the primary key, never LIKE: a '%' or '_' in the prefix is a character
        low, high = prefix, after_prefix(prefix)
        sql = "SELECT id FROM runs WHERE id >= ?" + (" AND id < ?" if high is not None else "")
        args = (low, high) if high is not None else (low,)
        return await self._query(
            lambda c: [r[0] for r in c.execute(f"{sql} ORDER BY id LIMIT ?", (*args, limit))]
        )

    async def list_runs(
        self,
        *,
        dag: str | None = None,
        states: Sequence[RunState] | None = None,
        limit: int = 100,
        trigger: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        after: tuple[float, str] | None = None,
    ) -> list[RunRecord]:
        where: list[str] = []
        args: list[Any] = []
        for sql_test, value in (
            ("dag = ?", dag),
            ("trigger = ?", trigger),
            ("created_at >= ?", created_after),
            ("created_at < ?", created_before),
        ):
            if value is not None:
                where.append(sql_test)
                args.append(value)
        if states is not None:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            args.extend(s.value for s in states)
        if after is not None:  # the cursor: the runs listed after this one
            where.append("(created_at < ? OR (created_at = ? AND id < ?))")
            args.extend((after[0], after[0], after[1]))
        sql = f"SELECT {RUN_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        return await self._query(lambda c: [run_record(r) for r in c.execute(sql, (*args, limit))])

    async def get_jobs(self, run_id: str) -> dict[str, JobRecord]:
        def read(conn: sqlite3.Connection) -> dict[str, JobRecord]:
            rows = conn.execute(
                "SELECT job_id, state, attempts, error, remote_status, outputs, log_tail, notes, "
                "started_at, ended_at, retry_at FROM jobs WHERE run_id = ? ORDER BY rowid",
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
                    r[10],
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
                    AttemptState(r[3]),
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
                "SELECT first, events, per_second FROM event_chunks WHERE run_id = ? "
                "ORDER BY first",
                (run_id,),
            )
            return [event for row in rows for event in chunk_events(run_id, *row)]

        return await self._query(read)

    async def events_since(self, run_id: str, seq: int, limit: int = 1000) -> list[Event]:
        return await self._events(
            "run_id = ?1 AND first >= COALESCE((SELECT first FROM event_chunks WHERE run_id = ?1 "
            "AND first <= ?2 ORDER BY first DESC LIMIT 1), ?2)",
            (run_id, seq),
            seq,
            limit,
        )

    async def events_after(self, seq: int, limit: int = 1000) -> list[Event]:
        return await self._events(
            "first >= COALESCE((SELECT first FROM event_chunks WHERE first <= ?1 "
            "ORDER BY first DESC LIMIT 1), ?1)",
            (seq,),
            seq,
            limit,
        )

    async def event_chunks_after(self, seq: int, limit: int = 100) -> list[tuple[Any, ...]]:
        """The event log's rows holding the events after ``seq``, as stored: ``(run_id,
        first, n, events, per_second)`` (see :func:`.rows.chunk_events`), up to ``limit`` rows,
        for a reader that decodes them in another process (the daemon's event stream); the
        first row may hold events up to ``seq`` too."""
        sql = (
            "SELECT run_id, first, n, events, per_second FROM event_chunks WHERE first >= "
            "COALESCE((SELECT first FROM event_chunks WHERE first <= ?1 "
            "ORDER BY first DESC LIMIT 1), ?1) ORDER BY first LIMIT ?2"
        )

        def read(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return [tuple(row) for row in conn.execute(sql, (seq, limit))]

        return await self._query(read)

    async def _events(self, where: str, args: tuple[Any, ...], seq: int, limit: int) -> list[Event]:
        """The events after ``seq`` of the chunks ``where`` selects: from the chunk that holds
        ``seq + 1`` (the last one starting at or before ``seq``, whose events up to ``seq`` are
        skipped) on, chunk by chunk until ``limit``."""
        columns = "run_id, first, events, per_second"
        sql = f"SELECT {columns} FROM event_chunks WHERE {where} ORDER BY first"

        def read(conn: sqlite3.Connection) -> list[Event]:
            out: list[Event] = []
            if limit <= 0:
                return out
            rows = conn.execute(sql, args)
            try:
                for row in rows:
                    out.extend(e for e in chunk_events(*row) if e.seq > seq)
                    if len(out) >= limit:
                        break
            finally:
                rows.close()
            return out[:limit]

        return await self._query(read)

    async def last_event_seq(self) -> int:
        sql = "SELECT first + n - 1 FROM event_chunks ORDER BY first DESC LIMIT 1"
        row = await self._query(lambda c: c.execute(sql).fetchone())
        return int(row[0]) if row else 0

    async def get_dag_definition(self, dag_hash: str) -> dict[str, Any] | None:
        def read(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute("SELECT definition FROM dags WHERE hash = ?", (dag_hash,)).fetchone()
            return json.loads(row[0]) if row else None

        return await self._query(read)

    async def claim_run(
        self,
        run_id: str,
        owner: str,
        *,
        expected_owner: str | None,
        at: float,
        expired_after: float | None = None,
    ) -> int:
        epoch: int = await self._call("claim_run", run_id, owner, expected_owner, at, expired_after)
        return epoch

    async def heartbeat(self, leases: Mapping[str, Lease], at: float) -> list[str]:
        lost: list[str] = await self._call(
            "heartbeat", [(run_id, *lease) for run_id, lease in leases.items()], at
        )
        return lost

    # -- outbox --------------------------------------------------------------------------
    async def due_deliveries(self, now: float, limit: int = 100) -> list[DeliveryRecord]:
        sql = (
            f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE state = 'pending' AND (next_at IS NULL "
            "OR next_at <= ?) ORDER BY COALESCE(next_at, 0), created_at LIMIT ?"
        )
        return await self._query(
            lambda c: [delivery_record(r) for r in c.execute(sql, (now, limit))]
        )

    async def record_delivery(
        self, attempt: DeliveryAttempt, *, state: str, next_at: float | None
    ) -> None:
        row = (
            attempt.delivery_id,
            attempt.number,
            attempt.at,
            attempt.status,
            attempt.error,
            attempt.duration,
        )
        await self._call("record_delivery", row, state, next_at)

    async def list_deliveries(
        self, run_id: str | None = None
    ) -> list[tuple[DeliveryRecord, list[DeliveryAttempt]]]:
        def read(conn: sqlite3.Connection) -> list[tuple[DeliveryRecord, list[DeliveryAttempt]]]:
            sql = f"SELECT {OUTBOX_COLUMNS} FROM outbox"
            args: tuple[Any, ...] = ()
            if run_id is not None:
                sql += " WHERE run_id = ?"
                args = (run_id,)
            conn.execute("BEGIN")  # one snapshot for the deliveries and their attempts
            try:
                return deliveries_with_attempts(conn, sql + " ORDER BY created_at, rowid", args)
            finally:
                conn.execute("COMMIT")

        return await self._query(read)

    async def redeliver(self, delivery_id: str, now: float) -> bool:
        found: bool = await self._call("redeliver", delivery_id, now)
        return found

    async def disable_webhook(self, dag: str, webhook: str, reason: str, at: float) -> None:
        await self._call("disable_webhook", dag, webhook, reason, at)

    async def disabled_webhooks(self, dag: str) -> set[str]:
        rows = await self._query(
            lambda c: c.execute(
                "SELECT webhook FROM disabled_webhooks WHERE dag = ?", (dag,)
            ).fetchall()
        )
        return {r[0] for r in rows}

    async def request_cancel(self, run_id: str, reason: str, at: float) -> bool:
        return bool(await self._call("request_cancel", run_id, reason, at))

    async def cancel_requests(self, run_ids: Sequence[str]) -> dict[str, str]:
        if not run_ids:
            return {}
        marks = ", ".join("?" * len(run_ids))
        sql = (
            f"SELECT id, cancel_requested FROM runs WHERE id IN ({marks}) "
            "AND cancel_requested IS NOT NULL AND state IN ('queued', 'running')"
        )
        rows = await self._query(lambda c: c.execute(sql, tuple(run_ids)).fetchall())
        return {run_id: reason for run_id, reason in rows}

    async def request_job_cancel(self, run_id: str, job_id: str, reason: str, at: float) -> bool:
        return bool(await self._call("request_job_cancel", run_id, job_id, reason, _JOB_ENDED))

    async def job_cancel_requests(self, run_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        if not run_ids:
            return {}
        marks = ", ".join("?" * len(run_ids))
        ended = ", ".join("?" * len(_JOB_ENDED))
        sql = (  # the partial index jobs_cancel_requested: the requested jobs only
            "SELECT j.run_id, j.job_id, j.cancel_requested FROM jobs AS j "
            "JOIN runs AS r ON r.id = j.run_id "
            f"WHERE j.run_id IN ({marks}) AND j.cancel_requested IS NOT NULL "
            f"AND j.state NOT IN ({ended}) AND r.state IN ('queued', 'running')"
        )
        args = (*run_ids, *_JOB_ENDED)
        rows = await self._query(lambda c: c.execute(sql, args).fetchall())
        found: dict[str, dict[str, str]] = {}
        for run_id, job_id, reason in rows:
            found.setdefault(run_id, {})[job_id] = reason
        return found
