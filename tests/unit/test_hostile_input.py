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
from orchestrator.errors import ConfigError, DagError, DagValidationError
from orchestrator.loader import load_path

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


# -- JSON shape ---------------------------------------------------------------------------


def _problems(path: Path) -> list[str]:
    with pytest.raises(DagValidationError) as info:
        load_path(path)
    return info.value.problems


def test_duplicate_job_ids_in_json_are_reported(tmp_path: Path) -> None:
    jobs = '"a": {"type": "fake"}, "b": {"type": "fake"}, "a": {"type": "fake"}'
    text = f'{{"name": "d", "jobs": {{{jobs}}}}}'
    path = _write(tmp_path, text)
    assert _problems(path) == [f"{path}: job 'a': duplicate job id (it appears twice in 'jobs')"]


def test_duplicate_keys_elsewhere_in_json_are_reported(tmp_path: Path) -> None:
    text = (
        '{"name": "d", "name": "e", "jobs": {"a": {"type": "fake", "duration": "1s",'
        ' "duration": "2s"}}, "params": {"p": 1, "p": 2}}'
    )
    path = _write(tmp_path, text)
    assert sorted(_problems(path)) == [
        f"{path}: field 'name': appears twice",
        f"{path}: job 'a': field 'duration': appears twice",
        f"{path}: key 'p' appears twice in one object",
    ]


def test_a_vertex_listed_twice_is_reported(tmp_path: Path) -> None:
    data = {"name": "d", "jobs": {"a": {"type": "fake"}}, "jobGraph": {"vertices": ["a", "a"]}}
    path = _write(tmp_path, data)
    assert _problems(path) == [f"{path}: jobGraph.vertices: vertex 'a' is listed twice"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested more than 64 levels deep"),
        ('{"name": "d", "params": ' + "[" * 70 + "]" * 70 + "}", "nested more than 64 levels"),
        ('{"name": "d", "params": {"p": ' + "9" * 5000 + "}}", "Exceeds the limit"),
    ],
    ids=["100000-deep", "70-deep", "5000-digits"],
)
def test_hostile_json_gives_one_line_naming_the_file(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(DagError) as info:
        load_path(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_cli_on_deeply_nested_json_prints_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "[" * 100_000 + "]" * 100_000)
    done = _orchestrator("validate", str(path))
    assert done.returncode == 2
    assert done.stderr == f"orchestrator: {path}: nested more than 64 levels deep\n"
