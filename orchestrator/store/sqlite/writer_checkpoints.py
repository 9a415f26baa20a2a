"""The writer's checkpoint thread.

Standard library only: a sibling of :mod:`writer`, imported by it also in the writer's own
process (``python -I -S``, its folder on the path)."""

from __future__ import annotations

import sqlite3
import threading

CHECKPOINT_EVERY = 64  # commits between two checkpoints (in the checkpoint thread)


class _Checkpointer:
    """Copies the write-ahead log into the database file in a thread of its own (a ``PASSIVE``
    checkpoint every :data:`CHECKPOINT_EVERY` commits), so that no commit waits for that copy
    and its fsyncs. A passive checkpoint blocks neither writers nor readers. If it fails, the
    writer goes back to SQLite's automatic checkpoints."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._due = threading.Event()
        self._commits = 0
        self._stopping = False
        self.failed = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def committed(self) -> None:
        self._commits += 1
        if self._commits >= CHECKPOINT_EVERY:
            self._commits = 0
            self._due.set()

    def _run(self) -> None:
        try:
            while True:
                self._due.wait()
                self._due.clear()
                if self._stopping:
                    return
                try:
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        raise
        except sqlite3.Error:
            self.failed = True
        finally:
            self._conn.close()

    def close(self) -> None:
        self._stopping = True
        self._due.set()
        self._thread.join()
