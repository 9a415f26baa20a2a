"""Schema migrations of the SQLite store: an ordered list, the version recorded in the file."""

from __future__ import annotations

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
]

LATEST = MIGRATIONS[-1][0]
