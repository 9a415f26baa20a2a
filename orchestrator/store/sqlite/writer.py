"""The SQLite store's writer: a process of its own, so that writing never holds the event loop.

:class:`~orchestrator.store.sqlite.SQLiteStore` starts a process that imports this file and calls
:func:`main` (``python -I -S -c ...``, see the client). It imports the standard library only (and
its siblings ``writer_*``, which do too), so that it starts in milliseconds and shares nothing with
the process that started it but two pipes: requests come in on its stdin, answers go out on its
stdout, each a frame (a 4-byte length, then a :mod:`marshal` value). A thread of the engine's
process could not do this work beside the event loop: the sqlite3 module gives up and takes back the
interpreter lock around every row it writes, and a busy loop makes each take-back wait. The writer
owns the write connection. It takes every request waiting (up to :data:`MAX_GROUP`), applies each in
one ``BEGIN IMMEDIATE`` transaction (a compare-and-set failure redoes the transaction with a
savepoint per request, failing only that request), commits once (a group commit) and answers them
all in one frame. It commits only while the process that started it is alive: once that one has
died, what it had not seen committed is rolled back, as a crash of the engine would have left it. At
the end of its input it closes its connection (which checkpoints the log) and exits. Signals are the
engine's: the writer runs in a process group of its own and ignores SIGINT, SIGTERM and SIGHUP, so
that a Ctrl-C or a service manager's stop, which signal the whole group or service, leave it to
record the engine's shutdown (the cancels it sends); the end of its input, when the engine closes
the store or dies, is what ends it.

Requests are ``(id, kind, payload)``: ``ops`` (the store's operations, as ``encode.encode_ops``
makes them in the engine's process) or one of the store's other writes, by name. Answers are
``("done", [(id, ok, value), ...], batches, commits)``; a failure's value is ``(kind, message)``,
kind ``stale`` (a compare-and-set found another state), ``active`` (the message is the active run's
id), ``tick`` (a tick recorded already; the message is the JSON of ``[dag, nominal]``) or ``store``
(the database failed).
"""

from __future__ import annotations

# SQLite through its C module, here and in the siblings: the sqlite3 package adds datetime
# adapters, which the store never binds, and their imports (2.4 ms of the writer's start of 18)
import _sqlite3 as sqlite3
import os
import time

# The writer starts with every run: what the annotations name is imported for type checkers only
# (typing was over a third of its imports' time), and signals are set through the signal
# module's C half (the module wraps it in enums, and enum took a third of what was left).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from collections.abc import Callable, Sequence
    from typing import Any
else:
    try:
        import _signal as signal
    except ImportError:  # pragma: no cover - a Python without it
        import signal

if __package__:  # imported: by the store's client, in the engine's process
    from .writer_checkpoints import CHECKPOINT_EVERY, _Checkpointer
    from .writer_outbox import CALLS as OUTBOX_CALLS
    from .writer_outbox import enqueue
    from .writer_rows import (
        _ATTEMPT_INSERT,
        _ATTEMPT_UPDATE,
        _JOB_INSERT,
        _JOB_LEAVES_PENDING,
        _JOB_UPDATE,
        _MOVE,
        _UNSET,
        Refused,
        _BatchFailed,
        _Events,
        _fault_of_the_batch,
        _handle_text,
        _refusal,
        _run_event,
        _stale_attempt,
        _stale_job,
        _write_rows,
        json_text,
        names_text,
    )
    from .writer_ticks import CALLS as SCHEDULE_CALLS
    from .writer_ticks import record_tick
    from .writer_wire import HEADER, Frames, error_text, frame
else:  # in the writer's own process: a top-level module, its folder put on the path by the client
    from writer_checkpoints import CHECKPOINT_EVERY, _Checkpointer  # type: ignore[import-not-found,no-redef]
    from writer_outbox import CALLS as OUTBOX_CALLS  # type: ignore[import-not-found,no-redef]
    from writer_outbox import enqueue  # type: ignore[no-redef]
    from writer_rows import (  # type: ignore[import-not-found,no-redef]
        _ATTEMPT_INSERT,
        _ATTEMPT_UPDATE,
        _JOB_INSERT,
        _JOB_LEAVES_PENDING,
        _JOB_UPDATE,
        _MOVE,
        _UNSET,
        Refused,
        _BatchFailed,
        _Events,
        _fault_of_the_batch,
        _handle_text,
        _refusal,
        _run_event,
        _stale_attempt,
        _stale_job,
        _write_rows,
        json_text,
        names_text,
    )
    from writer_ticks import CALLS as SCHEDULE_CALLS  # type: ignore[import-not-found,no-redef]
    from writer_ticks import record_tick  # type: ignore[no-redef]
    from writer_wire import HEADER, Frames, error_text, frame  # type: ignore[import-not-found,no-redef]

__all__ = ["CHECKPOINT_EVERY", "HEADER", "MAX_GROUP", "Frames", "error_text", "frame", "main"]

MAX_GROUP = 256  # requests in one commit at most
CRASH_EXIT = 70  # as orchestrator.crash
_ACTIVE = ("queued", "running")
_NONE: dict[None, None] = {}
# The sqlite3 module binds None through its adapter protocol (two failed attribute lookups per
# parameter) unless an adapter is registered for its type: this one returns None itself.
sqlite3.register_adapter(type(None), _NONE.get)  # a call in C


def _bound(call: Callable[..., Any], conn: sqlite3.Connection) -> Callable[..., Any]:
    """``call`` with the connection first (functools.partial, without importing functools)."""
    return lambda *args: call(conn, *args)


class Writer:
    def __init__(self, conn: sqlite3.Connection, config: dict[str, Any]) -> None:
        self.conn = conn
        self.path = config["path"]
        self.parent = config["parent"]
        self.crash_in = config.get("crash_mid_commit", 0)  # commits until the crash point
        self.job_reachable = {tuple(pair) for pair in config["job_reachable"]}
        self.run_transitions = {k: set(v) for k, v in config["run_transitions"].items()}
        self.batches = 0
        self.commits = 0
        self.events = _Events()
        self.checkpointer: _Checkpointer | None = None
        self.auto_checkpoint = False
        self.calls: dict[str, Callable[..., Any]] = {
            "claim_run": self.claim_run,
            "heartbeat": self.heartbeat,
            **{name: _bound(call, conn) for name, call in OUTBOX_CALLS.items()},
            **{name: _bound(call, conn) for name, call in SCHEDULE_CALLS.items()},
            "settings": self.settings,
            "checkpoints_failed": self.checkpoints_failed,
        }

    # -- a group of requests, one transaction -------------------------------------------
    def commit(self, group: list[Any]) -> list[tuple[int, bool, Any]]:
        conn = self.conn
        checkpointer = self.checkpointer
        if checkpointer is not None and checkpointer.failed and not self.auto_checkpoint:
            conn.execute("PRAGMA wal_autocheckpoint = 1000")  # back to SQLite's own
            self.auto_checkpoint = True
        try:
            try:
                results = self._run_group(group, savepoints=False)
            except _BatchFailed:
                conn.execute("ROLLBACK")
                results = self._run_group(group, savepoints=True)
            if self.crash_in:
                self.crash_in -= 1
                if not self.crash_in:  # the crash point mid_commit: the engine ends, now
                    _answer(("crash",))
                    os._exit(CRASH_EXIT)
            if os.getppid() != self.parent:  # the engine died: commit nothing it did not see
                conn.execute("ROLLBACK")
                os._exit(0)
            conn.execute("COMMIT")
            if checkpointer is not None:
                checkpointer.committed()
            self.commits += 1
            self.batches += len(group)
            return results
        except sqlite3.Error as exc:  # the database failed (locked, full, I/O): all fail
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            failure = ("store", error_text(self.path, str(exc)))
            return [(request[0], False, failure) for request in group]

    def _run_group(self, group: list[Any], *, savepoints: bool) -> list[tuple[int, bool, Any]]:
        conn = self.conn
        results: list[tuple[int, bool, Any]] = []
        self.events = events = _Events()
        conn.execute("BEGIN IMMEDIATE")
        for i, (request_id, kind, payload) in enumerate(group):
            if savepoints:
                conn.execute(f"SAVEPOINT b{i}")
                mark = events.mark()
            try:
                if kind == "ops":
                    self._apply_ops(payload)
                    value = None
                else:
                    value = self.calls[kind](*payload)
            except Exception as exc:
                if not _fault_of_the_batch(exc):
                    raise  # a fault of the database: the whole group fails
                if not savepoints:
                    raise _BatchFailed from exc
                conn.execute(f"ROLLBACK TO b{i}")
                conn.execute(f"RELEASE b{i}")
                events.rollback(mark)
                results.append((request_id, False, _refusal(exc)))
                continue
            if savepoints:
                conn.execute(f"RELEASE b{i}")
            results.append((request_id, True, value))
        if events.by_run:
            events.write(conn)
        return results

    def _apply_ops(self, ops: Sequence[Any]) -> None:
        for op in ops:
            kind = op[0]
            if kind == "changes":
                self._changes(*op[1:])
            elif kind == "run":
                self._run_transition(*op[1:])
            elif kind == "create":
                self._create_run(*op[1:])
            elif kind == "tick":
                record_tick(self.conn, *op[1:])
            else:
                enqueue(self.conn, *op[1:])

    # -- the operations --------------------------------------------------------------------
    def _changes(
        self,
        run_id: str,
        jobs: list[tuple[Any, ...]],
        attempts: list[tuple[Any, ...]],
        events: list[Any] | tuple[str, int],
        lease: Sequence[Any] | None = None,
        new_jobs: Sequence[str] = (),
    ) -> None:
        """One ``executemany`` per statement: the rows go to SQLite as they are, but for the
        attempts' handles and the events, which the engine sends as they are and which are
        encoded as JSON here, on the writer's core (or which come encoded, the events as
        ``(text, n)``: see ``encode._as_text``)."""
        self._check_lease(run_id, lease)
        conn = self.conn
        if new_jobs:
            try:
                conn.execute(_JOB_INSERT, (run_id, names_text(new_jobs)))
            except sqlite3.IntegrityError:
                raise Refused("stale", f"run {run_id}: job {new_jobs[0]} exists") from None
        if jobs:
            reachable = self.job_reachable
            if not reachable.issuperset(map(_MOVE, jobs)):
                row = next(r for r in jobs if _MOVE(r) not in reachable)
                raise Refused(
                    "stale", f"job {row[0]}/{row[1]}: {row[2]} -> {row[3]} is not a transition"
                )
            # a job leaving `pending` with nothing else set (the first step of most) has only
            # its state to write: `pending` is where every job starts and nothing returns to
            first: list[tuple[Any, ...]] = []
            rest: list[tuple[Any, ...]] = []
            for r in jobs:
                (first if r[2] == "pending" and r[4:] == _UNSET else rest).append(r)
            written = _write_rows(conn, _JOB_LEAVES_PENDING, [r[:4] for r in first]) if first else 0
            if rest:
                written += _write_rows(conn, _JOB_UPDATE, rest)
            if written != len(jobs):
                raise Refused("stale", _stale_job(conn, jobs))
        if attempts:
            for i, a in enumerate(attempts):
                if a[6].__class__ is dict:  # a handle, as the engine took it
                    attempts[i] = (*a[:6], _handle_text(run_id, a), *a[7:])
            inserts = [a for a in attempts if a[3] is None]
            if inserts:
                try:
                    _write_rows(conn, _ATTEMPT_INSERT, inserts)
                except sqlite3.IntegrityError as exc:  # the attempt or its key exists
                    key = inserts[0][4] if len(inserts) == 1 else f"{len(inserts)} attempts"
                    raise Refused("stale", f"attempt {key}: {exc}") from None
            if len(inserts) < len(attempts):
                updates = [a for a in attempts if a[3] is not None]
                if _write_rows(conn, _ATTEMPT_UPDATE, updates) != len(updates):
                    raise Refused("stale", _stale_attempt(conn, updates))
        if isinstance(events, tuple):
            text, n = events
        elif n := len(events):
            try:
                text = json_text(events)
            except (TypeError, ValueError) as exc:
                raise Refused("value", f"run {run_id}: an event cannot be stored ({exc})") from None
        if n:
            self.events.extend(run_id, text, n)

    def _create_run(
        self,
        run: tuple[Any, ...],
        definition_json: str,
        job_ids: list[str],
        exclusive: bool,
        key: str | None = None,
    ) -> None:
        conn = self.conn
        if key is not None:  # a run with this idempotency key exists: refused, naming it
            row = conn.execute("SELECT id FROM runs WHERE idempotency_key = ?", (key,)).fetchone()
            if row is not None:
                raise Refused("duplicate", row[0])
        run_id, dag, dag_hash, state, created_at = run[0], run[1], run[2], run[5], run[9]
        if exclusive:
            row = conn.execute(
                "SELECT id FROM runs WHERE dag = ? AND state IN (?, ?) ORDER BY created_at LIMIT 1",
                (dag, *_ACTIVE),
            ).fetchone()
            if row is not None:
                raise Refused("active", row[0])
        conn.execute(
            "INSERT OR IGNORE INTO dags (hash, name, definition, created_at) VALUES (?, ?, ?, ?)",
            (dag_hash, dag, definition_json, created_at),
        )
        try:
            conn.execute(
                "INSERT INTO runs (id, dag, dag_hash, params, trigger, state, owner, epoch, "
                "heartbeat_at, created_at, started_at, ended_at, error, nominal_at, "
                "idempotency_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*run, key),
            )
        except sqlite3.IntegrityError:
            raise Refused("stale", f"run {run_id} exists") from None
        conn.execute(_JOB_INSERT, (run_id, names_text(job_ids)))
        self.events.extend(run_id, f"[{_run_event(None, state, created_at)}]", 1)

    def _run_transition(
        self,
        run_id: str,
        expected: str,
        new: str,
        at: float,
        error: str | None,
        lease: Sequence[Any] | None = None,
    ) -> None:
        self._check_lease(run_id, lease)
        if new not in self.run_transitions.get(expected, ()):
            raise Refused("stale", f"run {run_id}: {expected} -> {new} is not a transition")
        sets = ["state = ?"]
        args: list[Any] = [new]
        if error is not None:
            sets.append("error = ?")
            args.append(error)
        if new == "running":
            sets.append("started_at = COALESCE(started_at, ?)")
            args.append(at)
        if not self.run_transitions.get(new):  # a terminal state
            sets.append("ended_at = ?")
            args.append(at)
        cursor = self.conn.execute(
            f"UPDATE runs SET {', '.join(sets)} WHERE id = ? AND state = ?",
            (*args, run_id, expected),
        )
        if cursor.rowcount != 1:
            raise Refused("stale", f"run {run_id}: expected {expected}")
        self.events.extend(run_id, f"[{_run_event(expected, new, at)}]", 1)

    # -- the store's other writes ---------------------------------------------------------
    def claim_run(
        self,
        run_id: str,
        owner: str,
        expected_owner: str | None,
        at: float,
        expired_after: float | None = None,
    ) -> int:
        # whether the lease expired is decided here, on this store's clock (the database's
        # machine), in the transaction of the claim
        cursor = self.conn.execute(
            "UPDATE runs SET owner = ?, epoch = epoch + 1, heartbeat_at = ? WHERE id = ? AND "
            "owner IS ? AND (? IS NULL OR COALESCE(heartbeat_at, created_at) < ?)",
            (owner, at, run_id, expected_owner, expired_after, time.time() - (expired_after or 0)),
        )
        if cursor.rowcount != 1:
            why = f"is not owned by {expected_owner}"
            if expired_after is not None:
                why += f", or its lease has not expired ({expired_after:g} s)"
            raise Refused("stale", f"run {run_id} {why}")
        row = self.conn.execute("SELECT epoch FROM runs WHERE id = ?", (run_id,)).fetchone()
        return int(row[0])

    def heartbeat(self, leases: list[tuple[str, str, int]], at: float) -> list[str]:
        """Renew each (run, owner, epoch) lease still held; the runs whose lease was lost."""
        lost = []
        for run_id, owner, epoch in leases:
            cursor = self.conn.execute(
                "UPDATE runs SET heartbeat_at = ? WHERE id = ? AND owner = ? AND epoch = ?",
                (at, run_id, owner, epoch),
            )
            if cursor.rowcount != 1:
                lost.append(run_id)
        return lost

    def _check_lease(self, run_id: str, lease: Sequence[Any] | None) -> None:
        """Refuse a write by an owner whose lease on the run was taken over (fencing)."""
        if lease is None:
            return
        row = self.conn.execute("SELECT owner, epoch FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None or row[0] != lease[0] or row[1] != lease[1]:
            now = f"{row[0]}, epoch {row[1]}" if row is not None else "no such run"
            raise Refused(
                "lease",
                f"run {run_id}: its lease was lost ({now}; this writer holds {lease[0]}, epoch "
                f"{lease[1]})",
            )

    def settings(self) -> tuple[Any, ...]:
        """The write connection's settings and this process's id (for tests)."""
        names = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        pragmas = tuple(self.conn.execute(f"PRAGMA {n}").fetchone()[0] for n in names)
        autocheckpoint = self.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        return (*pragmas, autocheckpoint, os.getpid())

    def checkpoints_failed(self) -> None:
        """As after an error in the checkpoint thread (for tests)."""
        if self.checkpointer is not None:
            self.checkpointer.failed = True


def connect(config: dict[str, Any]) -> sqlite3.Connection:
    timeout = config["busy_timeout"]
    conn = sqlite3.connect(
        config["path"], timeout=timeout, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {config['synchronous']}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA cache_size = -65536")  # 64 MiB of pages: writes stay in memory
        conn.execute("PRAGMA temp_store = MEMORY")
    except BaseException:
        conn.close()
        raise
    return conn


def _answer(value: Any) -> bool:
    """Write one frame to the engine; False once nobody reads any more (it ended)."""
    view = memoryview(frame(value))
    try:
        while view:
            view = view[os.write(1, view) :]
    except BrokenPipeError:
        return False
    return True


def main() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)  # the engine's to handle; see the module doc
    requests = Frames(0)
    config = requests.next()
    if config is None:
        return
    try:
        conn = connect(config)
    except sqlite3.Error as exc:
        _answer(("error", error_text(config["path"], str(exc))))
        return
    conn.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpoint thread does it
    if config.get("wake") is not None:
        requests.wake_on(config["wake"])
    writer = Writer(conn, config)
    writer.checkpointer = _Checkpointer(lambda: connect(config))
    try:
        if not _answer(("ready", os.getpid())):
            return
        while True:
            first = requests.next()
            if first is None:  # the end of the input: the store closed, or the engine ended
                _answer(("closed",))
                return
            group = [first]
            while len(group) < MAX_GROUP:
                more = requests.next_ready()
                if more is None:
                    break
                group.append(more)
            results = writer.commit(group)
            if not _answer(("done", results, writer.batches, writer.commits)):
                return
    finally:
        writer.checkpointer.close()
        conn.close()  # the last connection checkpoints the log and removes it
