"""What the writer writes of DAG schedules: ticks, each once under its key (dag, nominal time), in
the transaction of its batch, and schedule pauses.

Standard library only: a sibling of :mod:`writer`, imported by it also when it runs as a script
(``python -I -S writer.py``)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

if __package__:
    from .writer_rows import Refused
else:  # imported by writer.py run as a script: the siblings are on the path
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
        raise Refused("tick", json.dumps([tick[0], tick[1]])) from None


def set_paused(conn: sqlite3.Connection, dag: str, paused: bool, at: float) -> None:
    conn.execute(
        "INSERT INTO schedule_pauses (dag, paused, at) VALUES (?, ?, ?) "
        "ON CONFLICT (dag) DO UPDATE SET paused = excluded.paused, at = excluded.at",
        (dag, int(paused), at),
    )
