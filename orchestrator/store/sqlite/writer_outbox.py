"""What the writer writes of the webhook outbox: deliveries (in the transaction of the state
change causing them), their attempts, redeliveries and disabled webhooks.

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


def enqueue(conn: sqlite3.Connection, d: tuple[Any, ...]) -> None:
    """A webhook delivery into the outbox (disabled at once if its webhook is)."""
    delivery_id, dag, webhook = d[0], d[3], d[4]
    disabled = conn.execute(
        "SELECT 1 FROM disabled_webhooks WHERE dag = ? AND webhook = ?", (dag, webhook)
    ).fetchone()
    if disabled:
        d = (*d[:12], "disabled", *d[13:])
    try:
        conn.execute(
            "INSERT INTO outbox (id, run_id, job_id, dag, webhook, event, url, method, "
            "headers, body, secret_refs, ssl_verification, state, attempts, next_at, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            d,
        )
    except sqlite3.IntegrityError:
        raise Refused("stale", f"delivery {delivery_id} exists") from None


def record_delivery(
    conn: sqlite3.Connection, attempt: tuple[Any, ...], state: str, next_at: float | None
) -> None:
    delivery_id, number, at, status, error, _ = attempt
    conn.execute(
        "INSERT OR REPLACE INTO delivery_attempts (delivery_id, number, at, status, "
        "error, duration) VALUES (?, ?, ?, ?, ?, ?)",
        attempt,
    )
    conn.execute(
        "UPDATE outbox SET state = ?, attempts = MAX(attempts, ?), next_at = ?, "
        "last_status = ?, last_error = ?, "
        "delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END WHERE id = ?",
        (state, number, next_at, status, error, state, at, delivery_id),
    )


def redeliver(conn: sqlite3.Connection, delivery_id: str, now: float) -> bool:
    cursor = conn.execute(
        "UPDATE outbox SET state = 'pending', next_at = ? WHERE id = ?", (now, delivery_id)
    )
    return cursor.rowcount == 1


def disable_webhook(
    conn: sqlite3.Connection, dag: str, webhook: str, reason: str, at: float
) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO disabled_webhooks (dag, webhook, reason, at) VALUES (?, ?, ?, ?)",
        (dag, webhook, reason, at),
    )
    conn.execute(
        "UPDATE outbox SET state = 'disabled', last_error = ? WHERE dag = ? AND webhook = ? "
        "AND state = 'pending'",
        (reason, dag, webhook),
    )


# the writer's calls defined here, by name: each takes the connection first
CALLS: dict[str, Callable[..., Any]] = {
    "record_delivery": record_delivery,
    "redeliver": redeliver,
    "disable_webhook": disable_webhook,
}
