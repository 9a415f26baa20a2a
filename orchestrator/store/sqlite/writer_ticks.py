"""What the writer writes of DAG schedules (ticks, each once under its key (dag, nominal time), in
the transaction of its batch, and schedule pauses) and of requests to a run's owner (cancel).

Standard library only: a sibling of :mod:`writer`, imported by it also in the writer's own
process (``python -I -S``, its folder on the path)."""

from __future__ import annotations

import _sqlite3 as sqlite3

TYPE_CHECKING = False  # no typing at run time: see writer.py
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

if __package__:
    from .writer_rows import Refused
else:  # imported in the writer's own process: the siblings are on the path
    from writer_rows import Refused  # type: ignore[import-not-found,no-redef]


def record_tick(conn: sqlite3.Connection, tick: tuple[Any, ...]) -> None:
    """Insert ``(dag, nominal, recorded_at, run_id, skipped, backfill)``; a tick recorded
    already refuses the batch (kind ``tick``, the message the JSON of ``[dag, nominal]``)."""
    try:
        conn.execute(
            "INSERT INTO ticks (dag, nominal, recorded_at, run_id, skipped, backfill) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            tick,
        )
    except sqlite3.IntegrityError as exc:
        if "UNIQUE" not in str(exc):  # not the key: a value missing (refused as it is)
            raise
        import json  # the json module takes the writer's start longer: imported when needed

        raise Refused("tick", json.dumps([tick[0], tick[1]])) from None


def set_paused(conn: sqlite3.Connection, dag: str, paused: bool, at: float) -> None:
    conn.execute(
        "INSERT INTO schedule_pauses (dag, paused, at) VALUES (?, ?, ?) "
        "ON CONFLICT (dag) DO UPDATE SET paused = excluded.paused, at = excluded.at",
        (dag, int(paused), at),
    )


def request_cancel(conn: sqlite3.Connection, run_id: str, reason: str, at: float) -> bool:
    """Ask an active run's owner to cancel it; False if the run is not active."""
    cursor = conn.execute(
        "UPDATE runs SET cancel_requested = ? WHERE id = ? AND state IN ('queued', 'running')",
        (reason, run_id),
    )
    return cursor.rowcount == 1


def request_job_cancel(
    conn: sqlite3.Connection, run_id: str, job_id: str, reason: str, ended: list[str]
) -> bool:
    """Ask an active run's owner to cancel one of its jobs; False if the run is not active or
    the job has ended (its state in ``ended``, which the store sends: the writer imports
    nothing of the engine) or is not one of the run's."""
    cursor = conn.execute(
        "UPDATE jobs SET cancel_requested = ? WHERE run_id = ? AND job_id = ? "
        f"AND state NOT IN ({', '.join('?' * len(ended))}) "
        "AND EXISTS (SELECT 1 FROM runs WHERE id = ? AND state IN ('queued', 'running'))",
        (reason, run_id, job_id, *ended, run_id),
    )
    return cursor.rowcount == 1


# the writer's calls defined here, by name: each takes the connection first
CALLS: dict[str, Callable[..., Any]] = {
    "set_paused": set_paused,
    "request_cancel": request_cancel,
    "request_job_cancel": request_job_cancel,
}
