"""The operations of a batch as the SQLite writer process takes them: plain data that
``marshal`` sends (tuples, strings, numbers), states as their values and JSON fields as text.
This is where the store's typed records become its wire format."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ...errors import StoreError
from ..base import (
    AttemptEvent,
    AttemptRow,
    Changes,
    CreateRun,
    JobEvent,
    JobRow,
    Operation,
    RecordTick,
    RunTransition,
    StateEvent,
    event_data,
    handle_json,
    json_text,
    strict_json_text,
)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _job_rows(rows: Sequence[JobRow]) -> list[tuple[Any, ...]]:
    """Job rows as the writer binds them: plain values, JSON fields as text."""
    return [
        (
            r[0],
            r[1],
            r[2]._value_,
            r[3]._value_,
            r[4],
            r[5],
            r[6],
            json_text(r[7]) if r[7] else None,
            r[8],
            json_text(r[9]) if r[9] else None,
            r[10],
            r[11],
            r[12],
        )
        for r in rows
    ]


def _attempt_rows(rows: Sequence[AttemptRow]) -> list[tuple[Any, ...]]:
    return [
        (
            r[0],
            r[1],
            r[2],
            r[3]._value_ if r[3] is not None else None,
            r[4],
            r[5]._value_,
            handle_json(r[0], r[1], r[6]) if r[6] is not None else None,
            r[7],
            r[8],
            r[9],
            r[10],
        )
        for r in rows
    ]


def _events(run_id: str, events: Sequence[StateEvent]) -> str:
    """The events as the writer appends them to the log: one JSON array of ``[job_id, kind,
    old, new, at, data]``, ``at`` in whole microseconds (an integer encodes several times
    faster than a float), encoded in one call."""
    items: list[tuple[Any, ...]] = []
    append = items.append
    for e in events:  # unpacked: a field read by name is a call of a descriptor
        if isinstance(e, JobEvent):
            job_id, old, new, at, error = e
            data = None if error is None else {"error": error}
            append((job_id, "job", old, new, round(at * 1_000_000), data))
        else:
            append((e[0], "attempt", e[2], e[3], round(e[4] * 1_000_000), event_data(e)))
    try:
        return strict_json_text(items)
    except (TypeError, ValueError) as exc:
        for e in events:  # which one: a handle that is not plain JSON
            if isinstance(e, AttemptEvent) and e.handle is not None:
                handle_json(run_id, e.job_id, e.handle)
        raise StoreError(f"run {run_id}: an event cannot be stored ({exc})") from None


def encode_ops(ops: Sequence[Operation]) -> list[tuple[Any, ...]]:
    """The operations as the writer process takes them: plain data (see the writer module)."""
    out: list[tuple[Any, ...]] = []
    for op in ops:
        if isinstance(op, Changes):
            out.append(
                (
                    "changes",
                    op.run_id,
                    _job_rows(op.jobs),
                    _attempt_rows(op.attempts),
                    _events(op.run_id, op.events),
                    len(op.events),
                    tuple(op.lease) if op.lease is not None else None,
                    list(op.new_jobs),
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
                run.nominal_at,
            )
            definition = op.definition_json or _dumps(op.dag_definition)
            out.append(
                ("create", row, definition, list(op.job_ids), op.exclusive, op.idempotency_key)
            )
        elif isinstance(op, RecordTick):
            t = op.tick
            out.append(
                ("tick", (t.dag, t.nominal, t.recorded_at, t.run_id, t.skipped, int(t.backfill)))
            )
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
