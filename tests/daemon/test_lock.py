"""One SQLite database, one daemon: a second lock is refused, and the lock goes with the
process that held it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.daemon.lock import daemon_lock
from orchestrator.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
HOLDER = """
import sys, time
from orchestrator.daemon.lock import daemon_lock
with daemon_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_second_daemon_on_the_same_file_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "orchestrator.db"
    with daemon_lock(str(db)) as lock:
        assert lock == tmp_path / "orchestrator.db.daemon.lock"
        assert lock.read_text() == f"{os.getpid()}\n"
        with pytest.raises(ConfigError) as refused, daemon_lock(f"sqlite:///{db}"):
            pass
    message = str(refused.value)
    assert str(db) in message
    assert f"pid {os.getpid()}" in message
    assert "PostgreSQL" in message
    with daemon_lock(str(db)):  # released at the end of the block
        pass


@pytest.mark.parametrize("url", ["memory:", "postgresql://u:p@db/orchestrator"])
def test_no_lock_where_none_is_needed(url: str) -> None:
    with daemon_lock(url) as lock:
        assert lock is None


def test_a_missing_folder_is_a_config_error(tmp_path: Path) -> None:
    nowhere = str(tmp_path / "nowhere" / "x.db")
    with pytest.raises(ConfigError, match="cannot create the daemon lock"), daemon_lock(nowhere):
        pass


def test_the_lock_is_released_when_its_holder_is_killed(tmp_path: Path) -> None:
    db = str(tmp_path / "orchestrator.db")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, db], stdout=subprocess.PIPE, text=True, env=env
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == "locked\n"
            with pytest.raises(ConfigError, match=f"pid {holder.pid}"), daemon_lock(db):
                pass
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=10)
    with daemon_lock(db) as lock:
        assert lock is not None
        assert lock.read_text() == f"{os.getpid()}\n"
