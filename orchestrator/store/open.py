"""Opening a store from a URL: a SQLite path (the default under ``$ORCHESTRATOR_HOME``) or
``memory:``."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import StoreError
from .base import Store


def default_db_path() -> Path:
    home = os.environ.get("ORCHESTRATOR_HOME") or os.path.expanduser("~/.local/state/orchestrator")
    return Path(home) / "orchestrator.db"


def _without_password(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url)


async def open_store(url: str | None = None) -> Store:
    if url in (None, ""):
        path = default_db_path()
    elif url == "memory:":
        from .memory import MemoryStore

        return MemoryStore()
    elif url.startswith(("postgresql://", "postgres://")):
        raise StoreError(f"{_without_password(url)}: the PostgreSQL store is not built yet")
    elif url.startswith("sqlite:///"):
        path = Path(url[len("sqlite://") :])
    elif url.startswith("sqlite:"):
        path = Path(url[len("sqlite:") :])
    elif "://" in url:
        raise StoreError(f"{_without_password(url)}: unknown store (use a SQLite path or memory:)")
    else:
        path = Path(url)
    from .sqlite import SQLiteStore

    return await SQLiteStore.open(path)
