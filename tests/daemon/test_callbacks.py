"""`serve --public-url`: checked, and the callback key kept beside the database."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.daemon.service import CALLBACK_KEY, Daemon, DaemonConfig
from orchestrator.errors import ConfigError


def daemon(tmp_path: Path, public_url: str | None, db: str | None = None) -> Daemon:
    db = db if db is not None else str(tmp_path / "o.db")
    return Daemon(DaemonConfig(dags=tmp_path, connections={}, db=db, public_url=public_url))


def test_without_a_public_url_there_are_no_callbacks(tmp_path: Path) -> None:
    assert daemon(tmp_path, None)._callbacks() is None
    assert not (tmp_path / CALLBACK_KEY).exists()


@pytest.mark.parametrize(
    "url", ["ftp://host", "127.0.0.1:8080", "http://", "http://h/?q=1", "http://h/#f"]
)
def test_a_public_url_that_is_not_one_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError, match="--public-url"):
        daemon(tmp_path, url)._callbacks()


def test_the_key_beside_the_database_signs_the_same_tokens_after_a_restart(
    tmp_path: Path,
) -> None:
    first = daemon(tmp_path, "https://o.example/")._callbacks()
    again = daemon(tmp_path, "https://o.example")._callbacks()
    assert first is not None
    assert again is not None
    assert (tmp_path / CALLBACK_KEY).exists()
    assert first.token("r", "j", 1) == again.token("r", "j", 1)
    assert first.url("r", "j", 1).startswith("https://o.example/api/v1/callbacks/orcb_")
    in_memory = daemon(tmp_path / "none", "http://127.0.0.1:1", db="memory:")._callbacks()
    assert in_memory is not None
    assert not (tmp_path / "none").exists()
