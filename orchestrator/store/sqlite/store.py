"""The SQLite store, the embedded default.

WAL mode, ``synchronous=NORMAL`` (a commit survives a crash of the process; ``durable=True``
uses ``FULL``, which survives a power loss too, at the cost of an fsync per commit), a busy
timeout (5 s by default), ``BEGIN IMMEDIATE`` for every write, foreign keys on. One writer owns
the write connection: a process of its own (:mod:`orchestrator.store.sqlite.writer`), so that
the event loop and the writing run side by side on two cores. ``apply`` sends its batch down a
pipe and awaits; the writer takes every batch waiting, applies each (a compare-and-set failure
rolls back that batch only and fails only its caller), commits once (a group commit), then
answers; the event loop reads the answers from the writer's pipe itself (a reader callback:
no thread hands them over) and settles its callers. Reads use their own connection in a worker
thread, behind a lock. Nothing blocks the event loop: a batch that does not fit in the pipe
waits in a sender thread.

Failures are :class:`~orchestrator.errors.StoreError` naming the file: not a database (or
another program's database), not writable, locked by another writer past the busy timeout
(the batches of that transaction fail and nothing of them is written; the store stays usable),
a schema newer than this orchestrator, or a writer process that ended.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import json
import os
import select
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio

from ... import crash
from ...errors import StoreError
from ...states import JOB_REACHABLE, RUN_TRANSITIONS, AttemptState, JobState, RunState
from ..base import (
    ActiveRunExists,
    AttemptRecord,
    Changes,
    CreateRun,
    DeliveryAttempt,
    DeliveryRecord,
    Event,
    JobRecord,
    Lease,
    LeaseLost,
    Operation,
    RunRecord,
    RunTransition,
    StaleWrite,
)
from . import migrations, writer
from .writer import Frames, frame

__all__ = ["SQLiteStore"]

T = TypeVar("T")
_WRITER = [sys.executable, "-I", "-S", writer.__file__]  # stdlib only: starts at once
_PIPE_SIZE = 1 << 20  # bytes a pipe holds (Linux), so that a batch seldom waits to be sent


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _encode_ops(ops: Sequence[Operation]) -> list[tuple[Any, ...]]:
    """The operations as the writer process takes them: plain data (see the writer module)."""
    out: list[tuple[Any, ...]] = []
    for op in ops:
        if isinstance(op, Changes):
            out.append(
                (
                    "changes",
                    op.run_id,
                    list(map(tuple, op.jobs)),
                    list(map(tuple, op.attempts)),
                    op.events,
                    tuple(op.lease) if op.lease is not None else None,
                )
            )
        elif isinstance(op, RunTransition):
            lease = tuple(op.lease) if op.lease is not None else None
            out.append(("run", op.run_id, op.expected.value, op.new.value, op.at, op.error, lease))
        elif isinstance(op, CreateRun):
            run = op.run
            row = (
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
            )
            definition = op.definition_json or _dumps(op.dag_definition)
            out.append(("create", row, definition, list(op.job_ids), op.exclusive))
        else:
            d = op.delivery
            outbox = (
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
                d.state,
                d.attempts,
                d.next_at,
                d.created_at,
            )
            out.append(("enqueue", outbox))
    return out


class _Sender:
    """Writes frames to the writer's pipe without blocking: what the pipe cannot take now
    waits, in order, for a thread that sends it as the writer reads."""

    def __init__(self, pipe: Any) -> None:
        self._pipe = pipe
        self._fd: int = pipe.fileno()
        self._backlog: list[bytes] = []
        self._wake = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None

    def send(self, data: bytes) -> None:
        """Called with the store's lock held (one sender at a time)."""
        if not self._backlog:
            try:
                sent = os.write(self._fd, data)
            except BlockingIOError:
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        with self._wake:
            self._backlog.append(data)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._drain, name="orchestrator-store-send", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def _drain(self) -> None:
        while True:
            with self._wake:
                while not self._backlog and not self._closing:
                    self._wake.wait()
                if not self._backlog:
                    return
                data = self._backlog[0]
            view = memoryview(data)
            try:
                while view:
                    select.select([], [self._fd], [])
                    try:
                        view = view[os.write(self._fd, view) :]
                    except BlockingIOError:
                        pass
            except OSError:  # the writer is gone: the answer thread fails what waits
                with self._wake:
                    self._backlog.clear()
                return
            with self._wake:
                self._backlog.pop(0)

    def close(self) -> None:
        """Send what waits, then end the writer's input."""
        with self._wake:
            self._closing = True
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join()
        self._pipe.close()


@dataclass(slots=True)
class _Request:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any] | Callable[[BaseException | None], None]


class SQLiteStore:
    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0, durable: bool = False
    ) -> None:
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self._synchronous = "FULL" if durable else "NORMAL"
        self._process: subprocess.Popen[bytes] | None = None
        self._sender: _Sender | None = None
        self._answers: Frames | None = None  # the writer's answers, read on an event loop
        self._answer_loop: asyncio.AbstractEventLoop | None = None
        self._finished = threading.Event()  # the writer answered its last (or ended)
        self._pending: dict[int, _Request] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()  # the pending requests, the order of what is sent
        self._ended: StoreError | None = None  # the writer process ended
        self._read: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self._stats = {"batches": 0, "commits": 0}
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
        if self._process is None and not self._closed:
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
        conn = self._connect()
        try:
            self._migrate(conn)
            self._start_writer()
        except BaseException:
            conn.close()
            raise
        self._read = conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        try:
            migrations.migrate(conn, self.path)
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def _start_writer(self) -> None:
        # A process group of its own: a Ctrl-C on the terminal, `timeout`, `kill -- -PGID`
        # signal the engine's group, and the writer must outlive the engine's shutdown to
        # record it (it also ignores SIGINT, SIGTERM and SIGHUP, for systemd and docker, which
        # signal every process of the service). It ends at the end of its input: when the
        # engine closes the store or dies.
        process = subprocess.Popen(
            _WRITER,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            close_fds=True,
            process_group=0,
        )
        assert process.stdin is not None
        assert process.stdout is not None
        config = {
            "path": str(self.path),
            "parent": os.getpid(),
            "busy_timeout": self._busy_timeout,
            "synchronous": self._synchronous,
            "crash_mid_commit": crash.remaining("mid_commit"),
            "job_reachable": [list(pair) for pair in JOB_REACHABLE],
            "run_transitions": {
                old.value: [new.value for new in news] for old, news in RUN_TRANSITIONS.items()
            },
        }
        try:
            os.write(process.stdin.fileno(), frame(config))  # its answer: read on the loop
        except OSError as exc:
            process.kill()
            process.wait()
            process.stdin.close()
            process.stdout.close()
            why = f"{self.path}: the store's writer process did not start ({exc})"
            raise StoreError(why) from None
        answers = Frames(process.stdout.fileno())
        os.set_blocking(answers.fd, False)
        fd = process.stdin.fileno()
        try:
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
        except OSError:  # a system without it, or above its limit: the default size
            pass
        os.set_blocking(fd, False)
        self._process = process
        self._sender = _Sender(process.stdin)
        self._answers = answers

    def _listen(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read the writer's answers on ``loop``, the one the store is used from. A store used
        from another loop while this one runs (in another thread) is answered through it; one
        used after its loop stopped moves to the loop it is used from now."""
        with self._lock:
            current = self._answer_loop
            if current is loop or self._answers is None or self._finished.is_set():
                return
            if current is not None:
                if current.is_running():
                    return
                if not current.is_closed():
                    current.remove_reader(self._answers.fd)
            loop.add_reader(self._answers.fd, self._on_answers, loop)
            self._answer_loop = loop

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        # the read connection first: the last connection to close checkpoints the log, and
        # that one should be the writer's, which nothing waits for
        if self._read is not None:
            await anyio.to_thread.run_sync(self._close_read)
        if self._process is not None:
            self._listen(asyncio.get_running_loop())  # its last answers: read on this loop
            await anyio.to_thread.run_sync(self._stop_writer)

    def _stop_writer(self) -> None:
        """The writer commits what it has and answers, then closes its connection (which
        checkpoints the log) and exits on its own: nothing here waits for that checkpoint."""
        assert self._sender is not None
        self._sender.close()
        self._finished.wait()

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
        await self._submit("ops", _encode_ops(ops))

    def apply_nowait(
        self, ops: Sequence[Operation], done: Callable[[BaseException | None], None]
    ) -> None:
        try:
            self._send("ops", _encode_ops(ops), _Request(asyncio.get_running_loop(), done))
        except StoreError as exc:  # closed, or a value that is not plain data
            done(exc)

    async def _call(self, kind: str, *args: Any) -> Any:
        """One of the writer's other writes, by name, in its own batch."""
        return await self._submit(kind, args)

    async def _submit(self, kind: str, payload: Any) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._send(kind, payload, _Request(loop, future))
        return await asyncio.shield(future)

    def _send(self, kind: str, payload: Any, request: _Request) -> None:
        if self._closed or self._sender is None:
            raise StoreError(f"{self.path}: the store is closed")
        request_id = next(self._ids)
        try:
            data = frame((request_id, kind, payload))
        except ValueError as exc:  # marshal: a value that is not plain data
            raise StoreError(f"{self.path}: a value cannot be stored ({exc})") from None
        if request.loop is not self._answer_loop:
            self._listen(request.loop)
        with self._lock:  # sent in the order asked
            if self._ended is not None:
                raise self._ended
            self._pending[request_id] = request
            self._sender.send(data)

    def _on_answers(self, loop: asyncio.AbstractEventLoop) -> None:
        """The writer's answers that arrived (a reader callback on ``loop``): each commit's
        answers settle their callers, those of another loop through that loop."""
        answers = self._answers
        assert answers is not None
        assert self._process is not None
        try:
            frames = answers.available()
        except OSError:
            frames, answers.eof = [], True
        failed: BaseException | None = None
        for answer in frames:
            kind = answer[0]
            if kind == "done":
                failed = self._settle(loop, answer) or failed
            elif kind == "crash":  # the crash point mid_commit: this process ends too
                crash.end_now()
            elif kind == "closed":  # all answered; it checkpoints and exits by itself
                self._finish(loop, "")
                break
            elif kind == "error":  # it could not open the database, and exits
                self._finish(loop, answer[1])
                break
            # ("ready", pid): it started
        else:
            if answers.eof:
                status = self._process.poll()
                why = f"{self.path}: the store's writer process ended" + (
                    f" (exit status {status})" if status is not None else ""
                )
                self._finish(loop, why)
        if failed is not None:
            raise failed  # the event loop's exception handler reports it

    def _settle(self, loop: asyncio.AbstractEventLoop, answer: Any) -> BaseException | None:
        _, results, batches, commits = answer
        self._stats["batches"], self._stats["commits"] = batches, commits
        with self._lock:
            requests = [self._pending.pop(request_id) for request_id, _, _ in results]
        return _hand_over(
            loop,
            [
                (request, ok, value if ok else self._failure(value))
                for request, (_, ok, value) in zip(requests, results, strict=True)
            ],
        )

    def _finish(self, loop: asyncio.AbstractEventLoop, why: str) -> None:
        """The writer said its last (or ended): what still waits fails, the process is reaped
        in the background."""
        answers = self._answers
        process = self._process
        assert answers is not None
        assert process is not None
        loop.remove_reader(answers.fd)
        assert process.stdout is not None
        process.stdout.close()
        threading.Thread(target=process.wait, daemon=True).start()
        with self._lock:
            self._ended = StoreError(why or f"{self.path}: the store is closed")
            pending, self._pending = self._pending, {}
            self._finished.set()
        failed = _hand_over(loop, [(request, False, self._ended) for request in pending.values()])
        if failed is not None:
            raise failed  # the event loop's exception handler reports it

    def _failure(self, value: tuple[str, str]) -> Exception:
        kind, message = value
        if kind == "stale":
            return StaleWrite(message)
        if kind == "lease":
            return LeaseLost(message)
        if kind == "active":
            return ActiveRunExists(message)
        if kind == "value":
            return StoreError(f"{self.path}: a value cannot be stored ({message})")
        return StoreError(message)

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

    async def find_run_ids(self, prefix: str, limit: int = 10) -> list[str]:
        # a range of the primary key, never LIKE: a '%' or '_' in the prefix is a character
        low, high = prefix, _after_prefix(prefix)
        sql = "SELECT id FROM runs WHERE id >= ?" + (" AND id < ?" if high is not None else "")
        args = (low, high) if high is not None else (low,)
        return await self._query(
            lambda c: [r[0] for r in c.execute(f"{sql} ORDER BY id LIMIT ?", (*args, limit))]
        )

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
            return [event for row in rows for event in _chunk_events(run_id, *row)]

        return await self._query(read)

    async def events_since(self, run_id: str, seq: int, limit: int = 1000) -> list[Event]:
        # from the chunk that holds seq + 1 (the last one starting at or before seq, whose
        # events up to seq are skipped) on, chunk by chunk until the limit is reached
        sql = (
            "SELECT first, events, per_second FROM event_chunks WHERE run_id = ?1 AND first >= "
            "COALESCE((SELECT first FROM event_chunks WHERE run_id = ?1 AND first <= ?2 "
            "ORDER BY first DESC LIMIT 1), ?2) ORDER BY first"
        )

        def read(conn: sqlite3.Connection) -> list[Event]:
            out: list[Event] = []
            if limit <= 0:
                return out
            rows = conn.execute(sql, (run_id, seq))
            try:
                for row in rows:
                    out.extend(e for e in _chunk_events(run_id, *row) if e.seq > seq)
                    if len(out) >= limit:
                        break
            finally:
                rows.close()
            return out[:limit]

        return await self._query(read)

    async def get_dag_definition(self, dag_hash: str) -> dict[str, Any] | None:
        def read(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute("SELECT definition FROM dags WHERE hash = ?", (dag_hash,)).fetchone()
            return json.loads(row[0]) if row else None

        return await self._query(read)

    async def claim_run(
        self, run_id: str, owner: str, *, expected_owner: str | None, at: float
    ) -> int:
        epoch: int = await self._call("claim_run", run_id, owner, expected_owner, at)
        return epoch

    async def heartbeat(self, leases: Mapping[str, Lease], at: float) -> list[str]:
        lost: list[str] = await self._call(
            "heartbeat", [(run_id, *lease) for run_id, lease in leases.items()], at
        )
        return lost

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


_RUN_COLUMNS = (
    "id, dag, dag_hash, params, trigger, state, created_at, owner, epoch, heartbeat_at, "
    "started_at, ended_at, error"
)
_OUTBOX_COLUMNS = (
    "id, run_id, job_id, dag, webhook, event, url, method, headers, body, secret_refs, "
    "ssl_verification, "
    "created_at, state, attempts, next_at, last_status, last_error, delivered_at"
)


def _after_prefix(prefix: str) -> str | None:
    """The least text above every text that starts with ``prefix`` (SQLite compares text as
    UTF-8 bytes, in code point order), or ``None`` when there is none (an empty prefix, or
    one of U+10FFFF only)."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF:
            following = 0xE000 if 0xD800 <= last + 1 <= 0xDFFF else last + 1  # no surrogates
            return prefix[:-1] + chr(following)
        prefix = prefix[:-1]
    return None


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


def _chunk_events(run_id: str, first: int, chunk: str, per_second: int) -> list[Event]:
    """The events of one chunk row: a JSON array of ``[job_id, kind, old, new, at, data]``
    numbered from ``first``, ``at`` in ``1/per_second`` seconds."""
    return [
        Event(
            first + i,
            run_id,
            e[0],
            e[1],
            e[2],
            e[3],
            e[4] if per_second == 1 else e[4] / per_second,
            _event_data(e[5]),
        )
        for i, e in enumerate(json.loads(chunk))
    ]


def _event_data(data: Any) -> dict[str, Any]:
    """An event's data in a chunk: an object, or (in chunks written before) JSON text."""
    if isinstance(data, str):
        data = json.loads(data)
    return dict(data) if data else {}


def _hand_over(
    loop: asyncio.AbstractEventLoop, outcomes: list[tuple[_Request, bool, Any]]
) -> BaseException | None:
    """Settle the requests made on ``loop`` now and hand the others to their own loops; the
    first exception a callback raised, if any."""
    here: list[tuple[Any, bool, Any]] = []
    elsewhere: dict[asyncio.AbstractEventLoop, list[tuple[Any, bool, Any]]] = {}
    for request, ok, value in outcomes:
        settled = (request.future, ok, value)
        if request.loop is loop:
            here.append(settled)
        else:
            elsewhere.setdefault(request.loop, []).append(settled)
    _settle_by_loop(elsewhere)
    return _settle_all(here)


def _settle_by_loop(by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, bool, Any]]]) -> None:
    for loop, settled in by_loop.items():  # one wake-up of each loop per commit
        try:
            loop.call_soon_threadsafe(_settle_raising, settled)
        except RuntimeError:  # that loop is closed: nobody waits any more
            pass


def _settle_raising(settled: list[tuple[Any, bool, Any]]) -> None:
    failed = _settle_all(settled)
    if failed is not None:
        raise failed  # the event loop's exception handler reports it


def _settle_all(settled: list[tuple[Any, bool, Any]]) -> BaseException | None:
    """Settle futures and call callbacks; the first exception a callback raised, if any."""
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
    return failed
