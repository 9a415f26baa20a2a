"""The writer's checkpoint thread.

Standard library only: a sibling of :mod:`writer`, imported by it also in the writer's own
process (``python -I -S``, its folder on the path)."""

from __future__ import annotations

import _sqlite3 as sqlite3  # the C module: the package's datetime adapters add to every start

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

CHECKPOINT_EVERY = 64  # commits between two checkpoints (in the checkpoint thread)


class _Checkpointer:
    """Copies the write-ahead log into the database file in a thread of its own (a ``PASSIVE``
    checkpoint every :data:`CHECKPOINT_EVERY` commits), so that no commit waits for that copy
    and its fsyncs. A passive checkpoint blocks neither writers nor readers. If it fails, or
    its connection (``connect``) cannot be opened, the writer goes back to SQLite's automatic
    checkpoints. The thread, and its connection, start with the first checkpoint: the writer's
    start, which the engine's first commit waits for, goes without them."""

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._due: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._commits = 0
        self._stopping = False
        self.failed = False

    def committed(self) -> None:
        self._commits += 1
        if self._commits >= CHECKPOINT_EVERY:
            self._commits = 0
            if self._due is None:
                self._start()
            assert self._due is not None
            self._due.set()

    def _start(self) -> None:
        import threading  # a fifth of the writer's imports: only once a checkpoint is due

        self._due = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(self._due,), daemon=True)
        self._thread.start()

    def _run(self, due: threading.Event) -> None:
        try:
            conn = self._connect()
        except sqlite3.Error:
            self.failed = True
            return
        try:
            while True:
                due.wait()
                due.clear()
                if self._stopping:
                    return
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        raise
        except sqlite3.Error:
            self.failed = True
        finally:
            conn.close()

    def close(self) -> None:
        if self._due is None or self._thread is None:
            return
        self._stopping = True
        self._due.set()
        self._thread.join()
