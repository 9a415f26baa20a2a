"""The SQLite store's rows as records: the columns read and the decoding of each table's rows
(in the worker thread that reads them: a long event log decoded on the loop would stall it)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from ...model.states import RunState
from ..base import DeliveryAttempt, DeliveryRecord, Event, RunRecord, TickRecord

RUN_COLUMNS = (
    "id, dag, dag_hash, params, trigger, state, created_at, owner, epoch, heartbeat_at, "
    "started_at, ended_at, error, nominal_at"
)
TICK_COLUMNS = "dag, nominal, recorded_at, run_id, skipped, backfill"
OUTBOX_COLUMNS = (
    "id, run_id, job_id, dag, webhook, event, url, method, headers, body, secret_refs, "
    "ssl_verification, "
    "created_at, state, attempts, next_at, last_status, last_error, delivered_at"
)


def after_prefix(prefix: str) -> str | None:
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


def run_record(r: Any) -> RunRecord:
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
        r[13],
    )


def tick_record(r: Any) -> TickRecord:
    return TickRecord(r[0], r[1], r[2], r[3], r[4], bool(r[5]))


def delivery_record(r: Any) -> DeliveryRecord:
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


def deliveries_with_attempts(
    conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]
) -> list[tuple[DeliveryRecord, list[DeliveryAttempt]]]:
    out = []
    for d in [delivery_record(r) for r in conn.execute(sql, args).fetchall()]:
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


def chunk_events(run_id: str, first: int, chunk: str, per_second: int) -> list[Event]:
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
