"""Jobs that feed each other, end to end on the simulators (`orchestrator simulate` in a
process of its own, counting every request): an upstream's output in a downstream's field, and
a fan-out at run time, run by the command line, cancelled, killed and resumed."""

from __future__ import annotations

import base64
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .conftest import ROOT, control

CRASH_EXIT = 70
TIMEOUT = 120

FAN_DAG = """
import json
import pathlib

from orchestrator import DAG, Job, item


async def listing(ctx):
    return [f"item-{i}" for i in range(ctx.params["n"])]


async def join(ctx):
    results = [o.get("result") for o in ctx.upstream["fetch"]["instances"]]
    pathlib.Path(ctx.params["out"]).write_text(json.dumps(results))
    return len(results)


with DAG("fan", params={"n": 100, "out": ""}) as dag:
    src = Job("list", "python", call=listing)
    fetch = Job(
        "fetch",
        "http",
        connection="jobs_api",
        map=src.outputs.result,
        submit={"path": "/jobs", "body": {"name": item}},
        idPath="$.id",
        poll={"path": "/jobs/{id}"},
        statusPath="$.state",
        running=["queued", "running"],
        success=["done"],
        failure=["error", "cancelled"],
        errorPath="$.error",
        outputsPath="$.name",
        cancel={"path": "/jobs/{id}/cancel"},
        find={"path": "/jobs?key={key}", "listPath": "$.data"},
    )
    Job("join", "python", call=join) << fetch
    Job("after_all", "python", call=join, trigger_rule="all_done", out="") << fetch
"""


class Case:
    """The simulators, a home for the store, and the command line run against them."""

    def __init__(self, simulator: str, tmp_path: Path) -> None:
        self.base = simulator
        self.tmp = tmp_path
        self.db = tmp_path / "orchestrator.db"
        self.env = {**os.environ, "SIMULATOR_URL": simulator, "ORCHESTRATOR_HOME": str(tmp_path)}
        self.env.pop("ORCHESTRATOR_CRASH_AT", None)
        for api in ("generic", "trifacta", "ocapi"):
            control(f"{simulator}/{api}/_sim/reset", {})
        # the example connections, the generic API's allowing 10 jobs at once, 500 requests/s
        text = (ROOT / "dags" / "connections.toml").read_text()
        for old, new in (("concurrency = 4", "concurrency = 10"), ("rate = 50 ", "rate = 500 ")):
            assert old in text, old
            text = text.replace(old, new)
        self.connections = tmp_path / "connections.toml"
        self.connections.write_text(text)

    def args(self, *args: str) -> list[str]:
        return [
            *(sys.executable, "-m", "orchestrator", *args),
            *("--db", str(self.db), "--connections", str(self.connections)),
        ]

    def cli(self, *args: str, crash: str | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if crash:
            env["ORCHESTRATOR_CRASH_AT"] = crash
        return subprocess.run(
            self.args(*args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT
        )

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.args(*args),
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        if not self.db.exists():
            return []
        conn = sqlite3.connect(self.db)
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError:  # the schema is not there yet
            return []
        finally:
            conn.close()

    def wait_for(self, sql: str, done: Any, timeout: float = 60) -> list[tuple[Any, ...]]:
        deadline = time.monotonic() + timeout
        while True:
            rows = self.query(sql)
            if done(rows):
                return rows
            assert time.monotonic() < deadline, f"timed out waiting on {sql}: {rows}"
            time.sleep(0.05)

    def fan_dag(self) -> Path:
        path = self.tmp / "fan.py"
        path.write_text(FAN_DAG)
        return path

    def durations(self, seconds: float, jobs: int) -> None:
        """The next ``jobs`` jobs of the generic simulator take ``seconds`` each."""
        for _ in range(jobs):
            control(f"{self.base}/generic/_sim/script", {"duration": seconds})

    def counters(self, api: str = "generic") -> dict[str, Any]:
        return dict(control(f"{self.base}/{api}/_sim/counters"))


@pytest.fixture
def case(simulator_process: str, tmp_path: Path) -> Case:
    return Case(simulator_process, tmp_path)


def test_a_trifacta_output_path_reaches_an_ocapi_parameter(case: Case) -> None:
    dag = {
        "name": "handoff",
        "jobs": {
            "wrangle": {
                "type": "trifacta.jobGroup",
                "connection": "trifacta",
                "wrangledDataset": {"id": 28629},
                "overrides": {"writesettings": [{"path": "s3://out/$runId.csv", "format": "csv"}]},
            },
            "load": {
                "type": "ocapi.job",
                "connection": "ocapi",
                "jobId": "CustomerImportJob",
                "parameters": [{"name": "ImportFile", "value": "{{ wrangle.outputPaths[0] }}"}],
            },
        },
        "jobGraph": {
            "vertices": ["wrangle", "load"],
            "edges": [{"source": "wrangle", "target": "load"}],
        },
    }
    path = case.tmp / "handoff.json"
    path.write_text(json.dumps(dag))
    control(f"{case.base}/trifacta/_sim/script", {"duration": 0.2})
    done = case.cli("run", str(path), "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    run = json.loads(done.stdout)
    run_id = run["id"]
    (handle,) = case.query("SELECT handle FROM attempts WHERE job_id = 'load'")[0]
    execution = json.loads(handle)
    # what the OCAPI simulator was sent, read back from it over HTTP
    token = _ocapi_token(case.base)
    url = f"{case.base}/ocapi/s/-/dw/data/v23_2/jobs/CustomerImportJob/executions/{execution['id']}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    document = json.loads(urllib.request.urlopen(request, timeout=5).read())
    assert document["parameters"] == [{"name": "ImportFile", "value": f"s3://out/{run_id}.csv"}]


def _ocapi_token(base: str) -> str:
    basic = base64.b64encode(b"sim-client:sim-secret").decode()
    request = urllib.request.Request(
        f"{base}/ocapi/dwsso/oauth2/access_token",
        data=b"grant_type=client_credentials",
        headers={
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    return str(json.loads(urllib.request.urlopen(request, timeout=5).read())["access_token"])


def _instances(case: Case, run_id: str) -> dict[str, str]:
    rows = case.query(
        "SELECT job_id, state FROM jobs WHERE run_id = ? AND job_id LIKE 'fetch[%'", run_id
    )
    return dict(rows)


def test_a_python_list_fans_out_into_100_http_jobs_ten_at_a_time(case: Case) -> None:
    out = case.tmp / "joined.json"
    case.durations(0.1, 100)
    dag = case.fan_dag()
    done = case.cli("run", str(dag), "--param", f"out={out}", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    run = json.loads(done.stdout)
    assert run["status"] == "succeeded"
    shown = [j["id"] for j in run["jobs"]["data"]]
    at = shown.index("fetch")
    assert shown[at + 1 : at + 101] == [f"fetch[{i}]" for i in range(100)]  # after their job
    assert len(shown) == 104
    assert json.loads(out.read_text()) == [f"item-{i}" for i in range(100)]
    assert set(_instances(case, run["id"]).values()) == {"succeeded"}
    submissions = case.counters()["submissions"]
    assert submissions == {f"{run['id']}/fetch[{i}]/1": 1 for i in range(100)}
    # 10 at once (the connection's concurrency), from the attempts' times in the store
    spans = case.query(
        "SELECT submitted_at, ended_at FROM attempts WHERE job_id LIKE 'fetch[%' AND run_id = ?",
        run["id"],
    )
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak == 10


def test_one_failed_instance_follows_the_trigger_rules(case: Case) -> None:
    control(f"{case.base}/generic/_sim/behaviour", {"target": "item-3", "outcome": "failure"})
    dag = case.fan_dag()
    done = case.cli("run", str(dag), "--param", "n=5", "--param", f"out={case.tmp / 'j'}", "--json")
    assert done.returncode == 1, done.stderr[-2000:]
    jobs = {j["id"]: j for j in json.loads(done.stdout)["jobs"]["data"]}
    assert jobs["fetch[3]"]["status"] == "failed"
    assert [jobs[f"fetch[{i}]"]["status"] for i in (0, 1, 2, 4)] == ["succeeded"] * 4
    assert (jobs["fetch"]["status"], jobs["fetch"]["error"]) == (
        "failed",
        "1 of 5 instances failed",
    )
    assert jobs["join"]["status"] == "upstream_failed"  # all_success
    assert jobs["after_all"]["status"] == "succeeded"  # all_done


def test_cancel_during_the_fan_out_reaches_every_running_instance(case: Case) -> None:
    case.durations(60, 30)
    dag = case.fan_dag()
    proc = case.start("run", str(dag), "--param", "n=30", "--param", f"out={case.tmp / 'j'}")
    try:
        running = case.wait_for(
            "SELECT run_id, job_id FROM jobs WHERE job_id LIKE 'fetch[%' AND state = 'running'",
            lambda rows: len(rows) == 10,
        )
        run_id = running[0][0]
        cancelled = subprocess.run(
            [sys.executable, "-m", "orchestrator", "runs", "cancel", run_id, "--db", str(case.db)],
            cwd=ROOT,
            env=case.env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert cancelled.returncode == 0, cancelled.stderr[-2000:]
        assert proc.wait(60) == 3  # the run was cancelled
    finally:
        proc.kill()
    states = _instances(case, run_id)
    assert len(states) == 30
    assert set(states.values()) == {"cancelled"}
    counters = case.counters()
    assert len(counters["submissions"]) == 10  # the connection's 10; the 20 queued never left
    assert counters["cancels"] == 10  # every running instance was cancelled on the remote


@pytest.mark.parametrize("how", ["after_expand", "sigkill"])
def test_killed_during_the_fan_out_then_resumed_submits_each_instance_once(
    case: Case, how: str
) -> None:
    case.durations(0.3, 30)
    dag = case.fan_dag()
    params = ("--param", "n=30", "--param", f"out={case.tmp / 'joined.json'}")
    if how == "after_expand":
        crashed = case.cli("run", str(dag), *params, crash="after_expand")
        assert crashed.returncode == CRASH_EXIT, crashed.stderr[-2000:]
        assert case.counters()["submissions"] == {}  # stored, none submitted
    else:
        proc = case.start("run", str(dag), *params)
        case.wait_for(
            "SELECT job_id FROM attempts WHERE job_id LIKE 'fetch[%'",
            lambda rows: len(rows) >= 12,
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    (run_id,) = case.query("SELECT id FROM runs")[0]
    resumed = case.cli("resume", "--all")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert case.query("SELECT state FROM runs") == [("succeeded",)]
    assert set(_instances(case, run_id).values()) == {"succeeded"}
    assert len(_instances(case, run_id)) == 30
    assert case.counters()["submissions"] == {f"{run_id}/fetch[{i}]/1": 1 for i in range(30)}
    assert json.loads((case.tmp / "joined.json").read_text()) == [f"item-{i}" for i in range(30)]
