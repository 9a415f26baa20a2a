"""Hostile input: every bad value is refused up front with one clear line, nothing hangs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator.connections import Connection
from orchestrator.dag import DAG, Job
from orchestrator.engine.runner import run_dag
from orchestrator.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _orchestrator(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _write(tmp_path: Path, data: Any, name: str = "dag.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


# -- concurrency --------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["-5", "0", "two", "1.5"])
def test_cli_refuses_a_concurrency_below_one(tmp_path: Path, value: str) -> None:
    path = _write(tmp_path, {"name": "d", "jobs": {"a": {"type": "fake", "duration": "0.01s"}}})
    done = _orchestrator("run", str(path), "--db", "memory:", f"--concurrency={value}")
    assert done.returncode == 2, done.stderr
    assert "--concurrency: expected a whole number >= 1" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("value", [0, -5, True, 2.5])
async def test_run_dag_refuses_a_concurrency_below_one(value: Any) -> None:
    with DAG("d") as dag:
        Job("a", "fake", duration="0.01s")
    dag.validate()
    with pytest.raises(ConfigError, match=r"^concurrency: expected a whole number >= 1, got "):
        with anyio.fail_after(10):  # before the fix, -5 waited for ever
            await run_dag(dag, concurrency=value)


async def test_run_dag_refuses_a_connection_concurrency_below_one() -> None:
    with DAG("d") as dag:
        Job("a", "fake", duration="0.01s")
    dag.validate()
    conn = Connection("jobs", "http", "http://127.0.0.1:1", concurrency=-1)
    with pytest.raises(ConfigError, match=r"connection 'jobs': field 'concurrency': expected"):
        with anyio.fail_after(10):
            await run_dag(dag, connections={"jobs": conn})
