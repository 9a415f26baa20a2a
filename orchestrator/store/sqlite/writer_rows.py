"""What the writer writes a batch with: its events' chunks and the row statements, and the words for
a compare-and-set that found another state.

Standard library only: a sibling of :mod:`writer`, imported by it also in the writer's own
process (``python -I -S``, its folder on the path)."""

from __future__ import annotations

import _sqlite3 as sqlite3
import operator

TYPE_CHECKING = False  # no typing at run time: see writer.py
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

_LIVE_ATTEMPT = ("submitting", "running")  # an attempt in these may still move on

# the json module's C encoder, without the module (it imports re: a slower start); the same
# strict encoder as the engine's (store/jsontext.py), which this process cannot import
try:
    from _json import encode_basestring as _utf8
    from _json import encode_basestring_ascii as _ascii
    from _json import make_encoder as _make_encoder

    def _not_json(value: Any) -> Any:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    # no check for cycles (plain data from marshal has none), strict: no NaN or infinity
    _encode = _make_encoder(None, _not_json, _ascii, None, ":", ",", False, False, False)

    def json_text(value: Any) -> str:
        """``value`` (plain data from the engine) as compact, strict JSON text."""
        return "".join(_encode(value, 0))

    # names as they are (UTF-8), not as \u escapes: SQLite's json_each, which reads them back,
    # then has only quotes, backslashes and control characters to undo
    _names = _make_encoder(None, _not_json, _utf8, None, ":", ",", False, False, False)

    def names_text(names: Sequence[str]) -> str:
        """A list of names (job ids) as a JSON array, for SQLite's ``json_each``."""
        return "".join(_names(list(names), 0))

except ImportError:  # pragma: no cover - a Python without the json accelerator
    import json

    def json_text(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)

    def names_text(names: Sequence[str]) -> str:
        return json.dumps(list(names), separators=(",", ":"), ensure_ascii=False)


def _run_event(old: str | None, new: str, at: float) -> str:
    """A run's own event, as the engine encodes those of its jobs (``[null, "run", old, new,
    at, null]``, ``at`` in microseconds), written out: states are plain words, and the json
    module (with the re module it imports) would take the writer's start longer."""
    if not (new.isidentifier() and (old is None or old.isidentifier())):
        raise ValueError(f"a run's state is a word: {old!r} -> {new!r}")
    before = "null" if old is None else f'"{old}"'
    return f'[null,"run",{before},"{new}",{round(at * 1_000_000)},null]'


def _handle_text(run_id: str, row: tuple[Any, ...]) -> str:
    """The handle of an attempt row as JSON text; refused, naming the job, if not plain JSON."""
    try:
        return json_text(row[6])
    except (TypeError, ValueError) as exc:
        why = f"run {run_id}: job {row[1]}: its remote handle cannot be stored ({exc})"
        raise Refused("value", why) from None


class _Events:
    """The events of the transaction being written, by run, in order, as JSON pieces (one per
    request, so that a request that fails takes its own events back)."""

    __slots__ = ("by_run",)

    def __init__(self) -> None:
        self.by_run: dict[str, tuple[list[str], list[int]]] = {}  # JSON pieces, their counts

    def extend(self, run_id: str, events: str, n: int) -> None:
        """``n`` events as JSON: an array of ``[job_id, kind, old, new, at, data]``, ``at`` in
        microseconds."""
        if not (isinstance(events, str) and events[:1] == "[" and events[-1:] == "]"):
            raise TypeError("events must be the text of a JSON array")
        pieces, counts = self.by_run.setdefault(run_id, ([], []))
        pieces.append(events[1:-1])
        counts.append(n)

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
        ``[job_id, kind, old, new, at, data]``, ``at`` in microseconds; the ``events`` view
        shows one row per event."""
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
            "INSERT INTO event_chunks (first, run_id, n, events, per_second) "
            "VALUES (?, ?, ?, ?, 1000000)",
            rows,
        )


# the rows bind as they are: ?N is the row's field N (JobRow and AttemptRow of the store)
_JOB_UPDATE = (
    "UPDATE jobs SET state = ?4, attempts = ?5, error = ?6, remote_status = ?7, outputs = ?8, "
    "log_tail = ?9, notes = ?10, started_at = ?11, ended_at = ?12, retry_at = ?13 "
    "WHERE run_id = ?1 AND job_id = ?2 AND state = ?3"
)
# a run's jobs, inserted pending in one statement from the JSON array of their ids: SQLite reads
# the array in C, where one insert per row bound from Python took twice the time (1.5 ms for
# 1,000 jobs, on the path of a run's first submission)
_JOB_INSERT = (
    "INSERT INTO jobs (run_id, job_id, state) SELECT ?1, value, 'pending' FROM json_each(?2)"
)
_JOB_LEAVES_PENDING = (
    "UPDATE jobs SET state = ?4 WHERE run_id = ?1 AND job_id = ?2 AND state = ?3 AND ?3 = 'pending'"
)
_UNSET = (0, None, None, None, None, None, None, None, None)  # a JobRow's fields after `state`
_MOVE = operator.itemgetter(2, 3)  # (expected, state) of a JobRow
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


def _write_rows(conn: sqlite3.Connection, sql: str, rows: Sequence[tuple[Any, ...]]) -> int:
    """How many rows were written (a compare-and-set that finds another state writes none)."""
    if len(rows) == 1:
        return int(conn.execute(sql, rows[0]).rowcount)
    return int(conn.executemany(sql, rows).rowcount)


def _stale_job(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> str:
    """Which row's compare-and-set failed (read inside the transaction, before its rollback)."""
    for run_id, job_id, expected, state, *_ in rows:
        found = conn.execute(
            "SELECT state FROM jobs WHERE run_id = ? AND job_id = ?", (run_id, job_id)
        ).fetchone()
        if found is None:
            return f"job {run_id}/{job_id} does not exist"
        if found[0] != state:  # not written
            return f"job {run_id}/{job_id}: expected {expected}, found {found[0]}"
    return f"{len(rows)} jobs: a compare-and-set found another state"


def _stale_attempt(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> str:
    for run_id, job_id, attempt, expected, _, state, *_ in rows:
        name = f"attempt {run_id}/{job_id}/{attempt}"
        found = conn.execute(
            "SELECT state FROM attempts WHERE run_id = ? AND job_id = ? AND attempt = ?",
            (run_id, job_id, attempt),
        ).fetchone()
        if found is None:
            return f"{name} does not exist"
        if expected not in _LIVE_ATTEMPT:
            return f"{name} already ended ({expected})"
        if found[0] != state:
            return f"{name}: expected {expected}, found {found[0]}"
    return f"{len(rows)} attempts: a compare-and-set found another state"


class Refused(Exception):
    """A request fails alone: ``kind`` as in the module docstring."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class _BatchFailed(Exception):
    """A request of the fast path failed: redo the group with savepoints."""


def _fault_of_the_batch(exc: Exception) -> bool:
    """A refused compare-and-set, a duplicate row or a value that cannot be stored (or bound)
    fails its own request; any other database error (locked, full, I/O) fails the whole
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


def _refusal(exc: Exception) -> tuple[str, str]:
    if isinstance(exc, Refused):
        return exc.kind, str(exc)
    if isinstance(exc, sqlite3.IntegrityError):
        return "stale", str(exc)
    return "value", f"{type(exc).__name__}: {exc}"
