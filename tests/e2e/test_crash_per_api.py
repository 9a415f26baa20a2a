"""A crash between the remote's acceptance and the stored answer, then `resume`, per API.

Each API's simulator runs in a process of its own (`orchestrator simulate`), so it counts every
submission the killed process made. The run is killed at `after_accept` (the remote accepted the
job, its handle is not stored), then resumed in a new process: the job's connector must find the
remote job with the API's own lookup, so the simulator counts exactly one submission and the job
ends; where the API offers no lookup (Alation), nothing is sent again and the job says why.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import control

ROOT = Path(__file__).parents[2]
CRASH_EXIT = 70
TIMEOUT = 60

CUSTOM_FIELD = "/integration/v2/custom_field/"
JOBS: dict[str, dict[str, Any]] = {
    "trifacta": {
        "type": "trifacta.jobGroup",
        "connection": "trifacta",
        "wrangledDataset": {"id": 28629},
    },
    "ocapi": {"type": "ocapi.job", "connection": "ocapi", "jobId": "CustomerImportJob"},
    "celonis": {
        "type": "celonis.dataJob",
        "connection": "celonis",
        "poolId": "pool-1",
        "jobId": "job-1",
    },
    "granta": {
        "type": "granta.job",
        "connection": "granta",
        "jobType": "TextImportJob",
        "files": [
            {"fileType": "Template", "path": "dags/data/import_template.xlsx"},
            {"fileType": "Data", "path": "dags/data/materials.csv"},
        ],
    },
    "alation": {
        "type": "alation.job",
        "connection": "alation",
        "request": {
            "method": "POST",
            "path": CUSTOM_FIELD,
            "body": [{"field_type": "RICH_TEXT", "name_singular": "Steward notes"}],
        },
    },
    "generic": {
        "type": "http",
        "connection": "jobs_api",
        "submit": {"path": "/jobs", "body": {"name": "crashy"}},
        "idPath": "$.id",
        "poll": {"path": "/jobs/{id}"},
        "statusPath": "$.state",
        "running": ["queued", "running"],
        "success": ["done"],
        "failure": ["error", "cancelled"],
        "find": {"path": "/jobs?key={key}", "listPath": "$.data"},
    },
}


@pytest.fixture(scope="module")
def simulator(simulator_process: str) -> str:
    """The simulators' base URL (each API under its prefix), shared by this module's tests."""
    return simulator_process


class Case:
    """One API's simulator, a home for the store, and the CLI run against them."""

    def __init__(self, simulator: str, api: str, tmp_path: Path) -> None:
        self.sim = f"{simulator}/{api}"
        self.tmp = tmp_path
        self.db = tmp_path / "orchestrator.db"
        self.env = {
            **os.environ,
            "ORCHESTRATOR_HOME": str(tmp_path / "home"),
            "SIMULATOR_URL": simulator,
        }
        self.env.pop("ORCHESTRATOR_CRASH_AT", None)
        control(f"{self.sim}/_sim/reset", {})
        control(f"{self.sim}/_sim/script", {"duration": 0.3})

    def dag(self, name: str, job: dict[str, Any]) -> Path:
        path = self.tmp / f"{name}.json"
        path.write_text(json.dumps({"name": name, "jobs": {"job": job}}))
        return path

    def cli(self, *args: str, crash: str | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if crash:
            env["ORCHESTRATOR_CRASH_AT"] = crash
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "orchestrator",
                *args,
                "--db",
                str(self.db),
                "--connections",
                str(ROOT / "dags" / "connections.toml"),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )

    def crash_then_resume(self, dag: Path, crash: str = "after_accept") -> str:
        crashed = self.cli("run", str(dag), crash=crash)
        assert crashed.returncode == CRASH_EXIT, crashed.stderr[-2000:]
        run_id = self.query("SELECT id FROM runs WHERE state != 'succeeded'")[0][0]
        resumed = self.cli("resume", run_id)
        assert resumed.returncode in (0, 1), resumed.stderr[-2000:]
        return str(run_id)

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.db)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def submissions(self) -> dict[str, int]:
        return dict(control(f"{self.sim}/_sim/counters")["submissions"])


@pytest.mark.parametrize("api", ["trifacta", "ocapi", "celonis", "granta", "generic"])
def test_crash_after_accept_then_resume_submits_once(
    simulator: str, tmp_path: Path, api: str
) -> None:
    case = Case(simulator, api, tmp_path)
    run_id = case.crash_then_resume(case.dag(f"crash_{api}", JOBS[api]))
    assert case.query("SELECT state FROM runs WHERE id = ?", run_id) == [("succeeded",)]
    assert case.query("SELECT state, attempts FROM jobs WHERE run_id = ?", run_id) == [
        ("succeeded", 1)
    ]
    assert case.submissions() == {f"{run_id}/job/1": 1}
    (handle,) = case.query("SELECT handle FROM attempts WHERE run_id = ?", run_id)[0]
    assert handle is not None


def test_alation_cannot_look_up_and_does_not_submit_again(simulator: str, tmp_path: Path) -> None:
    case = Case(simulator, "alation", tmp_path)
    run_id = case.crash_then_resume(case.dag("crash_alation", JOBS["alation"]))
    [(state, error)] = case.query("SELECT state, error FROM jobs WHERE run_id = ?", run_id)
    assert state == "unknown"
    assert error.startswith("submission outcome unknown (the process stopped); ")
    assert "Alation's job API reads one job by the id or name" in error
    assert error.endswith("not sent again (onAmbiguousSubmit: unknown)")
    assert case.submissions() == {f"{run_id}/job/1": 1}


def test_a_job_group_another_run_holds_is_not_taken(simulator: str, tmp_path: Path) -> None:
    """Run A is written ahead and stops before its request leaves; run B (another DAG on the
    same dataset) then submits and stores its job group. A's lookup sees B's group, created
    after A's write-ahead record, held by B's attempt: A must not take it, and submits its own.
    """
    case = Case(simulator, "trifacta", tmp_path)
    control(f"{case.sim}/_sim/script", {"duration": 0.3})
    first = case.dag("first", JOBS["trifacta"])
    crashed = case.cli("run", str(first), crash="before_submit")
    assert crashed.returncode == CRASH_EXIT, crashed.stderr[-2000:]
    [(run_a,)] = case.query("SELECT id FROM runs")
    other = case.cli("run", str(case.dag("second", JOBS["trifacta"])))
    assert other.returncode == 0, other.stderr[-2000:]
    [(run_b,)] = case.query("SELECT id FROM runs WHERE id != ?", run_a)
    resumed = case.cli("resume", run_a)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    handles = dict(case.query("SELECT run_id, handle FROM attempts"))
    group_a = json.loads(handles[run_a])["jobGroupIds"]
    group_b = json.loads(handles[run_b])["jobGroupIds"]
    assert group_a != group_b
    assert case.submissions() == {f"{run_a}/job/1": 1, f"{run_b}/job/1": 1}
    assert case.query("SELECT state FROM jobs WHERE run_id = ?", run_a) == [("succeeded",)]
