"""Opening a store from a URL (``--db``).

=================================  ===================================================
``None`` or ``""``                 SQLite at ``$ORCHESTRATOR_HOME/orchestrator.db``
                                   (default home ``~/.local/state/orchestrator/``, 0700)
``memory:``                        :class:`MemoryStore`: nothing survives the process
``sqlite:///abs/path.db``          SQLite, an absolute path
``sqlite:relative.db``             SQLite, relative to the working directory
``path/to/file.db``, ``~/x.db``    SQLite, a plain path
``postgresql://…``                 refused: not built yet
=================================  ===================================================

Anything else that looks like a URL (``scheme:…``) is refused rather than taken for a file
name, so a typo such as ``memroy:`` does not quietly create a database; a file whose name has a
colon is written ``./name:with:colons.db``. Errors never show a password from the URL.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import anyio

from ..errors import StoreError
from .base import Store

DEFAULT_HOME = "~/.local/state/orchestrator"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def default_home() -> Path:
    return Path(os.environ.get("ORCHESTRATOR_HOME") or DEFAULT_HOME).expanduser()


def default_db_path() -> Path:
    return default_home() / "orchestrator.db"


def without_password(url: str) -> str:
    """``url`` with the password of its user info (``//user:password@``) masked."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")  # the last '@': a password may hold one
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"


async def open_store(url: str | None = None) -> Store:
    """Open the store ``url`` names (see the module's table)."""
    if url == "memory:":
        from .memory import MemoryStore

        return MemoryStore()
    if url:
        path = sqlite_path(url)
    else:
        path = default_db_path()
        await anyio.to_thread.run_sync(_make_home, path.parent)
    from .sqlite import SQLiteStore

    return await SQLiteStore.open(path)


def sqlite_path(url: str) -> Path:
    """The SQLite file a ``--db`` value names; :class:`StoreError` for any other store."""
    if url.startswith(("postgresql:", "postgres:")):
        raise StoreError(f"{without_password(url)}: the PostgreSQL store is not built yet")
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite://") :])
    elif url.startswith("sqlite:") and not url.startswith("sqlite://"):
        path = Path(url[len("sqlite:") :]).expanduser()
    elif _SCHEME.match(url) and not os.path.isabs(url):
        raise StoreError(
            f"{without_password(url)}: unknown store (use memory:, a SQLite path or "
            "sqlite:///absolute/path.db)"
        )
    else:
        path = Path(url).expanduser()
    if not path.name:
        raise StoreError(f"{without_password(url)}: no database file named")
    return path


def _make_home(home: Path) -> None:
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        reason = (exc.strerror or type(exc).__name__).lower()
        raise StoreError(f"cannot write {home}: {reason}") from None
