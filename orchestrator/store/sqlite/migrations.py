"""Schema migrations of the SQLite store: an ordered list, the version recorded in the file.

On open, an empty database gets every migration; an older one gets the ones above its version,
all in one transaction with the new version (an upgrade that fails leaves the file as it was);
a newer one is refused. A migration is never edited once released: a change is a new entry.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from os import PathLike

from ...errors import StoreError

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE dags (
            hash TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            definition TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            dag TEXT NOT NULL,
            dag_hash TEXT NOT NULL REFERENCES dags(hash),
            params TEXT NOT NULL,
            trigger TEXT NOT NULL,
            state TEXT NOT NULL,
            owner TEXT,
            epoch INTEGER NOT NULL DEFAULT 0,
            heartbeat_at REAL,
            created_at REAL NOT NULL,
            started_at REAL,
            ended_at REAL,
            error TEXT
        );
        CREATE INDEX runs_dag_state ON runs(dag, state);
        CREATE INDEX runs_created ON runs(created_at);
        CREATE TABLE jobs (
            run_id TEXT NOT NULL REFERENCES runs(id),
            job_id TEXT NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            remote_status TEXT,
            outputs TEXT,
            log_tail TEXT,
            notes TEXT,
            started_at REAL,
            ended_at REAL,
            PRIMARY KEY (run_id, job_id)
        );
        CREATE TABLE attempts (
            run_id TEXT NOT NULL,
            job_id TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            key TEXT NOT NULL UNIQUE,
            state TEXT NOT NULL,
            handle TEXT,
            submitted_at REAL,
            accepted_at REAL,
            ended_at REAL,
            error TEXT,
            PRIMARY KEY (run_id, job_id, attempt),
            FOREIGN KEY (run_id, job_id) REFERENCES jobs(run_id, job_id)
        );
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL,
            job_id TEXT,
            kind TEXT NOT NULL,
            old TEXT,
            new TEXT NOT NULL,
            at REAL NOT NULL,
            data TEXT
        );
        CREATE INDEX events_run ON events(run_id, seq);
        CREATE TABLE outbox (
            id TEXT PRIMARY KEY,
            run_id TEXT NOT NULL,
            job_id TEXT,
            dag TEXT NOT NULL,
            webhook TEXT NOT NULL,
            event TEXT NOT NULL,
            url TEXT NOT NULL,
            method TEXT NOT NULL,
            headers TEXT NOT NULL,
            body BLOB NOT NULL,
            secret_refs TEXT NOT NULL,
            ssl_verification INTEGER NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at REAL,
            last_status INTEGER,
            last_error TEXT,
            created_at REAL NOT NULL,
            delivered_at REAL
        );
        CREATE INDEX outbox_due ON outbox(state, next_at);
        CREATE INDEX outbox_run ON outbox(run_id);
        CREATE TABLE delivery_attempts (
            delivery_id TEXT NOT NULL REFERENCES outbox(id),
            number INTEGER NOT NULL,
            at REAL NOT NULL,
            status INTEGER,
            error TEXT,
            duration REAL NOT NULL,
            PRIMARY KEY (delivery_id, number)
        );
        CREATE TABLE disabled_webhooks (
            dag TEXT NOT NULL,
            webhook TEXT NOT NULL,
            reason TEXT,
            at REAL NOT NULL,
            PRIMARY KEY (dag, webhook)
        );
        """,
    ),
    (
        2,
        # events are written in chunks, one row per run and transaction (a JSON array of
        # [job_id, kind, old, new, at, data]): one row instead of seven per job and no index
        # entry per event; the view ``events`` still shows one row per event
        """
        CREATE TABLE event_chunks (
            first INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,
            n INTEGER NOT NULL,
            events TEXT NOT NULL
        );
        CREATE INDEX event_chunks_run ON event_chunks(run_id, first);
        INSERT INTO event_chunks (first, run_id, n, events)
            SELECT seq, run_id, 1, json_array(json_array(job_id, kind, old, new, at, data))
            FROM events ORDER BY seq;
        DROP TABLE events;
        CREATE VIEW events (seq, run_id, job_id, kind, old, new, at, data) AS
            SELECT c.first + e.key, c.run_id, json_extract(e.value, '$[0]'),
                json_extract(e.value, '$[1]'), json_extract(e.value, '$[2]'),
                json_extract(e.value, '$[3]'), json_extract(e.value, '$[4]'),
                json_extract(e.value, '$[5]')
            FROM event_chunks AS c, json_each(c.events) AS e;
        """,
    ),
    (
        3,
        # an event's time is written as whole microseconds (``per_second`` of its chunk): an
        # integer encodes several times faster than a float; chunks written before stay in
        # seconds (1)
        """
        ALTER TABLE event_chunks ADD COLUMN per_second INTEGER NOT NULL DEFAULT 1;
        DROP VIEW events;
        CREATE VIEW events (seq, run_id, job_id, kind, old, new, at, data) AS
            SELECT c.first + e.key, c.run_id, json_extract(e.value, '$[0]'),
                json_extract(e.value, '$[1]'), json_extract(e.value, '$[2]'),
                json_extract(e.value, '$[3]'),
                CASE c.per_second WHEN 1 THEN json_extract(e.value, '$[4]')
                    ELSE json_extract(e.value, '$[4]') / CAST(c.per_second AS REAL) END,
                json_extract(e.value, '$[5]')
            FROM event_chunks AS c, json_each(c.events) AS e;
        """,
    ),
    (
        4,
        # a job waiting for a retry keeps when its next attempt is due (wall-clock seconds),
        # so that a resumed run waits for the time left instead of starting it at once
        """
        ALTER TABLE jobs ADD COLUMN retry_at REAL;
        """,
    ),
    (
        5,
        # a DAG's schedule: each tick under its unique key (dag, nominal time), written in the
        # transaction of its run's creation so that no tick runs twice; the run keeps the tick's
        # nominal time; a schedule paused or resumed stays so across restarts
        """
        ALTER TABLE runs ADD COLUMN nominal_at REAL;
        CREATE TABLE ticks (
            dag TEXT NOT NULL,
            nominal REAL NOT NULL,
            recorded_at REAL NOT NULL,
            run_id TEXT,
            skipped TEXT,
            backfill INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (dag, nominal)
        );
        CREATE INDEX ticks_nominal ON ticks(nominal);
        CREATE TABLE schedule_pauses (
            dag TEXT PRIMARY KEY,
            paused INTEGER NOT NULL,
            at REAL NOT NULL
        );
        """,
    ),
    (
        6,
        # a cancel asked for by another process (the command line, another daemon): the run's
        # owner reads it and cancels the run
        """
        ALTER TABLE runs ADD COLUMN cancel_requested TEXT;
        """,
    ),
    (
        7,
        # a client's idempotency key for a run (the API's Idempotency-Key): one run per key
        """
        ALTER TABLE runs ADD COLUMN idempotency_key TEXT;
        CREATE UNIQUE INDEX runs_idempotency_key ON runs(idempotency_key)
            WHERE idempotency_key IS NOT NULL;
        """,
    ),
    (
        8,
        # a cancel of one job asked for by another process: the run's owner reads it and
        # cancels the job (the index holds the requested jobs only: the owner's writes of job
        # rows never touch it)
        """
        ALTER TABLE jobs ADD COLUMN cancel_requested TEXT;
        CREATE INDEX jobs_cancel_requested ON jobs(run_id) WHERE cancel_requested IS NOT NULL;
        """,
    ),
]

LATEST = MIGRATIONS[-1][0]


def statements(script: str) -> Iterator[str]:
    """The statements of ``script``, split where SQLite says one is complete (a ``;`` inside a
    string or a trigger body does not end it)."""
    *pieces, rest = script.split(";")
    statement = ""
    for piece in pieces:
        statement += piece + ";"
        if sqlite3.complete_statement(statement):
            if statement.strip() != ";":
                yield statement.strip()
            statement = ""
    statement += rest
    if statement.strip():
        raise ValueError(f"incomplete SQL statement in a migration: {statement.strip()[:80]}")


def schema_version(conn: sqlite3.Connection, path: str | PathLike[str]) -> int:
    """The database's schema version, 0 when it is empty. Refuses another program's database
    and one newer than this orchestrator knows. Reads only."""
    known = MIGRATIONS[-1][0]
    tables = {
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    }
    if "schema_version" not in tables:
        if tables:
            shown = ", ".join(sorted(tables)[:5])
            raise StoreError(f"{path}: not an orchestrator database (it has other tables: {shown})")
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    current = int(row[0]) if row and row[0] is not None else 0
    if current > known:
        raise StoreError(
            f"{path}: database schema version {current} is newer than this orchestrator "
            f"(knows up to {known}); upgrade orchestrator"
        )
    return current


def migrate(conn: sqlite3.Connection, path: str | PathLike[str]) -> int:
    """Bring the database up to the last migration in one ``BEGIN IMMEDIATE`` transaction;
    return the version it had. ``conn`` is in autocommit mode (``isolation_level=None``).

    A database already at the last version is not locked at all: a store opens while another
    connection writes (its own writes then wait for the busy timeout like any other)."""
    current = schema_version(conn, path)
    if current == MIGRATIONS[-1][0]:
        return current
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = schema_version(conn, path)  # again, under the write lock: another may migrate
        target = MIGRATIONS[-1][0]
        if current < target:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            for version, script in MIGRATIONS:
                if version > current:
                    for statement in statements(script):
                        conn.execute(statement)
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (target,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return current
