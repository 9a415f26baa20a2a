"""One SQLite database serves one daemon.

``with daemon_lock(db_url):`` holds an exclusive ``flock`` on ``<database>.daemon.lock`` (which
holds the holder's pid, for the message a second daemon gets). The kernel releases the lock when
the holder's process ends, however it ends, so a crashed daemon never leaves the database locked.
The lock file stays behind: removing it would let a third daemon lock a new file while a second
still holds the old one. Memory stores need no lock; PostgreSQL is where several daemons share
a database (leases, not this lock, keep them apart).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ConfigError
from ..store.open import default_db_path, sqlite_path


def lock_path(db_url: str | None) -> Path | None:
    """The lock file of the database ``db_url`` names (as ``--db``); ``None`` when a daemon on
    it needs no lock (memory, PostgreSQL)."""
    if db_url == "memory:" or (db_url or "").startswith(("postgresql:", "postgres:")):
        return None
    db = sqlite_path(db_url) if db_url else default_db_path()
    return db.with_name(db.name + ".daemon.lock")


@contextmanager
def daemon_lock(db_url: str | None) -> Iterator[Path | None]:
    """Hold the database's daemon lock inside the block (which gets the lock file, or ``None``
    when there is none). :class:`ConfigError` if another process holds it."""
    path = lock_path(db_url)
    if path is None:
        yield None
        return
    if not db_url:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # the default home
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited by subprocesses
    except OSError as exc:
        reason = (exc.strerror or type(exc).__name__).lower()
        raise ConfigError(f"cannot create the daemon lock {path}: {reason}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            raise ConfigError(
                f"{path.with_name(path.name.removesuffix('.daemon.lock'))}: another daemon "
                f"(pid {holder}) serves this database (it holds {path}); one SQLite database "
                "serves one daemon: stop that one, or run several daemons on PostgreSQL"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read_pid(fd: int) -> str:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return text if text.isdigit() else "unknown"
