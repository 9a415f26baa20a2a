"""The operations of a batch as the SQLite writer process takes them: plain data that
``marshal`` sends (tuples, strings, numbers), states as their values and JSON fields as text.
This is where the store's typed records become its wire format."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ...errors import StoreError
from ..base import (
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
    """Attempt rows as the writer binds them, but for the handle: it goes as it is (plain JSON,
    checked when the engine took it), and the writer encodes it, on its own core."""
    return [
        (
            r[0],
            r[1],
            r[2],
            r[3]._value_ if r[3] is not None else None,
            r[4],
            r[5]._value_,
            r[6],
            r[7],
            r[8],
            r[9],
            r[10],
        )
        for r in rows
    ]


def _events(events: Sequence[StateEvent]) -> list[tuple[Any, ...]]:
    """The events as the writer appends them to the log: ``(job_id, kind, old, new, at,
    data)``, states as their values, ``at`` in whole microseconds (an integer encodes several
    times faster than a float). The writer encodes them as JSON, on its own core: here they
    are only unpacked (a field read by name is a call of a descriptor)."""
    items: list[tuple[Any, ...]] = []
    append = items.append
    for e in events:
        if isinstance(e, JobEvent):
            job_id, old, new, at, error = e
            data = None if error is None else {"error": error}
            append((job_id, "job", old._value_, new._value_, round(at * 1_000_000), data))
        else:
            before = e[2]
            append(
                (
                    e[0],
                    "attempt",
                    before._value_ if before is not None else None,
                    e[3]._value_,
                    round(e[4] * 1_000_000),
                    event_data(e),
                )
            )
    return items


def _as_text(op: Changes, attempts: list[tuple[Any, ...]], events: list[tuple[Any, ...]]) -> Any:
    """The handles and events of ``op`` as JSON text, encoded here: for a batch that ``marshal``
    cannot send as it is (a value of a subclass of str, int or dict, say), and so that a value
    that is not plain JSON is refused naming its job."""
    for i, r in enumerate(attempts):
        if r[6] is not None:
            attempts[i] = (*r[:6], handle_json(r[0], r[1], r[6]), *r[7:])
    try:
        return strict_json_text(events), len(events)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"run {op.run_id}: an event cannot be stored ({exc})") from None


def encode_ops(ops: Sequence[Operation], *, as_text: bool = False) -> list[tuple[Any, ...]]:
    """The operations as the writer process takes them: plain data (see the writer module).
    The handles and events of their changes go as they are, for the writer to encode as JSON,
    or, ``as_text``, encoded here (see :func:`_as_text`)."""
    out: list[tuple[Any, ...]] = []
    for op in ops:
        if isinstance(op, Changes):
            attempts, events = _attempt_rows(op.attempts), _events(op.events)
            out.append(
                (
                    "changes",
                    op.run_id,
                    _job_rows(op.jobs),
                    attempts,
                    _as_text(op, attempts, events) if as_text else events,
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
