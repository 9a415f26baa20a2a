"""The `orchestrator` command as a user runs it: a subprocess, its exit codes and its output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator.model.states import RunState

ROOT = Path(__file__).parents[2]
DAGS = ROOT / "dags"


@pytest.fixture(autouse=True)
def state_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test keeps its runs in a store of its own."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("ORCHESTRATOR_HOME", str(home))
    return home


def cli(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def write_dag(tmp_path: Path, data: dict[str, Any], name: str = "dag.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def dag(jobs: dict[str, Any], edges: list[tuple[str, str]] = (), **fields: Any) -> dict[str, Any]:  # type: ignore[assignment]
    return {
        "name": "t",
        **fields,
        "jobs": jobs,
        "jobGraph": {
            "vertices": list(jobs),
            "edges": [{"source": s, "target": t} for s, t in edges],
        },
    }


def test_quickstart_succeeds_with_json_report() -> None:
    proc = cli("run", str(DAGS / "quickstart.json"), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(report) >= {"id", "dag", "status", "jobs", "jobGraph"}
    assert report["dag"] == "quickstart"
    assert report["status"] == "succeeded"
    jobs = {j["id"]: j for j in report["jobs"]["data"]}
    assert set(jobs) == {"extract", "wrangle", "profile", "validate", "load", "report"}
    assert all(set(j) >= {"id", "status", "attempts", "error"} for j in jobs.values())
    assert jobs["profile"]["attempts"] == 2  # fails once, retried
    assert jobs["extract"]["logTail"] == f"extracting region 02 for run {report['id']}\n"
    assert report["jobGraph"]["vertices"][0] == "extract"
    # not a terminal: JSON log lines on stderr, bound with dag, run, job and attempt
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    ended = [line for line in lines if line["event"] == "job.ended"]
    assert len(ended) == 6
    assert all({"dag", "run", "job", "attempt", "state"} <= set(line) for line in ended)


def test_python_dag_and_params(tmp_path: Path) -> None:
    proc = cli("run", str(DAGS / "quickstart.py"), "--param", "region=7", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = next(j for j in report["jobs"]["data"] if j["id"] == "rows")
    assert rows["outputs"] == {"result": {"rows": 1200, "region": 7}}


def test_failed_run_exits_1(tmp_path: Path) -> None:
    path = write_dag(tmp_path, dag({"a": {"type": "command", "command": "exit 4"}}))
    proc = cli("run", str(path), "--json")
    assert proc.returncode == 1
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["status"] == "failed"
    assert report["jobs"]["data"][0]["error"] == "exit code 4"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (dag({"a": {"type": "nope"}}), "field 'type': unknown job type 'nope'"),
        (dag({"a": {"type": "fake"}, "b": {"type": "fake"}}, [("a", "b"), ("b", "a")]), "cycle"),
        (dag({"a": {"type": "fake", "timeout": "5 parsecs"}}), "field 'timeout': bad duration"),
        (dag({"a": {"type": "command"}}), "field 'command': required"),
    ],
)
def test_invalid_dag_exits_2_naming_the_problem(
    tmp_path: Path, data: dict[str, Any], message: str
) -> None:
    path = write_dag(tmp_path, data)
    proc = cli("run", str(path))
    assert proc.returncode == 2
    assert str(path) in proc.stderr
    assert message in proc.stderr


def test_bad_params_exit_2(tmp_path: Path) -> None:
    path = write_dag(tmp_path, dag({"a": {"type": "fake"}}, params={"region": "01"}))
    proc = cli("run", str(path), "--param", "regoin=02")
    assert proc.returncode == 2
    assert "unknown parameter 'regoin'" in proc.stderr
    proc = cli("run", str(path), "--param", "novalue")
    assert proc.returncode == 2
    assert "expected NAME=VALUE" in proc.stderr


def test_missing_connection_is_invalid_before_the_run(tmp_path: Path) -> None:
    toml = tmp_path / "connections.toml"
    toml.write_text('[other]\ntype = "http"\nbase_url = "http://127.0.0.1:9"\ntoken = "t"\n')
    job = {
        "type": "http",
        "connection": "nowhere",
        "submit": {"path": "/jobs"},
        "idPath": "$.id",
        "poll": {"path": "/jobs/{id}"},
        "statusPath": "$.state",
        "running": ["running"],
        "success": ["done"],
        "failure": ["error"],
    }
    path = write_dag(tmp_path, dag({"a": job}))
    proc = cli("run", str(path), "--connections", str(toml))
    assert proc.returncode == 2
    assert "job 'a': field 'connection': unknown connection 'nowhere' (known: other)" in proc.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_cancels_the_run_and_exits_3(tmp_path: Path, sig: signal.Signals) -> None:
    marker = tmp_path / "started"
    command = ["sh", "-c", f"touch '{marker}'; exec sleep 30"]
    path = write_dag(
        tmp_path,
        dag(
            {"sleep": {"type": "command", "command": command}, "after": {"type": "fake"}},
            [("sleep", "after")],
        ),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", str(path), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 20
    for line in proc.stderr:
        if '"run.started"' in line or time.monotonic() > deadline:
            break
    while not marker.exists():  # the signal reaches a running command, not a queued one
        assert time.monotonic() < deadline, "the command did not start"
        time.sleep(0.02)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["status"] == "cancelled"
    assert {j["id"]: j["status"] for j in report["jobs"]["data"]} == {
        "sleep": "cancelled",
        "after": "cancelled",
    }


def test_validate(tmp_path: Path) -> None:
    good = cli("validate", str(DAGS / "quickstart.json"), str(DAGS / "quickstart.py"))
    assert good.returncode == 0, good.stderr
    assert "ok: " in good.stdout
    bad_path = write_dag(tmp_path, dag({"a": {"type": "fake", "triggerRule": "sometimes"}}))
    bad = cli("validate", str(DAGS / "quickstart.json"), str(bad_path))
    assert bad.returncode == 2
    assert "bad trigger rule 'sometimes'" in bad.stderr


def test_a_private_webhook_destination_warns_and_its_delivery_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ORCHESTRATOR_WEBHOOK_ALLOW", raising=False)
    hook = {"name": "done", "url": "http://127.0.0.1:9/hook", "triggerEvent": "onJobDone"}
    path = write_dag(tmp_path, dag({"a": {"type": "fake", "webhooks": [hook]}}))
    warning = (
        f"orchestrator: warning: {path}: job 'a': webhook 'done': field 'url': 127.0.0.1 is not "
        "a public address: deliveries to it will be refused (allow them with "
        "ORCHESTRATOR_WEBHOOK_ALLOW=loopback)"
    )
    checked = cli("validate", str(path))
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr.splitlines() == [warning]
    ran = cli("run", str(path), "--json")
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr.splitlines()[0] == warning
    listed = cli("webhooks", "list")
    assert listed.returncode == 0, listed.stderr
    delivery, attempt = listed.stdout.splitlines()
    assert "  failed  " in delivery
    assert attempt.endswith(
        "webhook destination 127.0.0.1 resolves to 127.0.0.1, which is not a public address "
        "(allow it with ORCHESTRATOR_WEBHOOK_ALLOW)"
    )


def test_a_run_id_prefix_names_the_run_wherever_a_run_id_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Progress and `webhooks list` show 12 characters of a run id: they are enough."""
    monkeypatch.delenv("ORCHESTRATOR_WEBHOOK_ALLOW", raising=False)
    hook = {"name": "done", "url": "http://127.0.0.1:9/hook", "triggerEvent": "onJobDone"}
    path = write_dag(tmp_path, dag({"a": {"type": "fake", "webhooks": [hook]}}))
    ran = cli("run", str(path), "--json")
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout.strip().splitlines()[-1])["id"]
    short = run_id[:12]
    shown = cli("runs", "show", short)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"run {run_id}  t  succeeded")
    listed = cli("webhooks", "list", "--run", short)
    assert listed.returncode == 0, listed.stderr
    assert f"  {short}/a  " in listed.stdout
    resumed = cli("resume", run_id[:4])
    assert resumed.returncode == 0, resumed.stderr
    assert f"run {run_id}: already succeeded" in resumed.stderr


def _store_runs(db: Path, *run_ids: str) -> None:
    from orchestrator.store.base import CreateRun, RunRecord
    from orchestrator.store.open import open_store

    async def create() -> None:
        store = await open_store(str(db))
        try:
            for n, run_id in enumerate(run_ids):
                record = RunRecord(run_id, "d", "h", {}, "manual", RunState.SUCCEEDED, n + 1.0)
                await store.apply([CreateRun(record, {"name": "d"}, ["a"])])
        finally:
            await store.aclose()

    anyio.run(create)


@pytest.mark.parametrize(
    "command", [["runs", "show"], ["resume"], ["webhooks", "list", "--run"]], ids=" ".join
)
@pytest.mark.parametrize(
    ("given", "error"),
    [
        ("abcd", "run id prefix 'abcd' matches several runs: abcd1111, abcd2222"),
        ("abc", "no run 'abc' in the store (a prefix has at least 4 characters)"),
        ("ab%d", "no run 'ab%d' in the store"),
        ("zzzz", "no run 'zzzz' in the store"),
        ("a", "no run 'a' in the store (a prefix has at least 4 characters)"),
    ],
)
def test_a_run_id_prefix_that_names_no_run_or_several_is_a_one_line_error(
    tmp_path: Path, command: list[str], given: str, error: str
) -> None:
    db = tmp_path / "runs.db"
    _store_runs(db, "abcd1111", "abcd2222", "abce3333")
    proc = cli(*command, given, "--db", str(db))
    assert proc.returncode == 2
    assert proc.stderr == f"orchestrator: {error}\n"


def test_a_whole_run_id_is_never_taken_for_a_prefix(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    _store_runs(db, "abce", "abce3333", "r1")
    for given in ("abce", "r1"):
        proc = cli("runs", "show", given, "--db", str(db))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"run {given}  d  succeeded")


@pytest.mark.parametrize("fmt", ["json", "dot", "mermaid"])
def test_graph_formats(fmt: str) -> None:
    proc = cli("graph", str(DAGS / "quickstart.json"), "--format", fmt)
    assert proc.returncode == 0, proc.stderr
    if fmt == "json":
        data = json.loads(proc.stdout)
        original = json.loads((DAGS / "quickstart.json").read_text())
        assert data["jobGraph"]["vertices"] == original["jobGraph"]["vertices"]
        assert sorted(map(str, data["jobGraph"]["edges"])) == sorted(
            map(str, original["jobGraph"]["edges"])
        )
    elif fmt == "dot":
        assert proc.stdout.startswith('digraph "quickstart"')
        assert '"load" -> "report" [label="all_done"];' in proc.stdout
    else:
        assert proc.stdout.startswith("flowchart LR")
        assert "-- all_done -->" in proc.stdout


def test_graph_json_round_trips(tmp_path: Path) -> None:
    first = cli("graph", str(DAGS / "quickstart.json"))
    path = tmp_path / "again.json"
    path.write_text(first.stdout)
    second = cli("graph", str(path))
    assert second.returncode == 0
    assert json.loads(second.stdout) == json.loads(first.stdout)


def test_live_progress_on_a_terminal(tmp_path: Path) -> None:
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", str(DAGS / "quickstart.json")],
        stdout=subprocess.DEVNULL,
        stderr=slave,
        cwd=ROOT,
        env={**os.environ, "ORCHESTRATOR_HOME": str(tmp_path)},
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(master)
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0
    assert "quickstart run" in screen
    assert "✓ extract" in screen
    assert "▶" in screen or "…" in screen  # something was seen running or queued
    assert "profile" in screen
    assert "(attempt 2)" in screen
    assert "\x1b[" in screen  # redrawn in place


@pytest.mark.parametrize("connections", [[], ["--connections", str(DAGS / "connections.toml")]])
def test_every_example_dag_validates(
    connections: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a newcomer runs it: no SIMULATOR_URL (only --simulate sets it), no webhook allow-list
    (dags/webhooks.json sends to 127.0.0.1: a warning, not an error)."""
    monkeypatch.delenv("SIMULATOR_URL", raising=False)
    monkeypatch.delenv("ORCHESTRATOR_WEBHOOK_ALLOW", raising=False)
    paths = sorted(str(p) for p in DAGS.iterdir() if p.suffix in (".json", ".py"))
    proc = cli("validate", *paths, *connections)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("ok: ") == len(paths)
    assert all(line.startswith("orchestrator: warning: ") for line in proc.stderr.splitlines())


@pytest.mark.parametrize(
    "name",
    [
        "ocapi_import",
        "celonis_reload",
        "trifacta_wrangle",
        "alation_fields",
        "granta_import",
        "chain",
    ],
)
def test_api_examples_run_against_the_simulators(name: str) -> None:
    proc = cli(
        "run",
        str(DAGS / f"{name}.json"),
        "--connections",
        str(DAGS / "connections.toml"),
        "--simulate",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["status"] == "succeeded"
    assert all(j["status"] == "succeeded" and j["remote"] for j in report["jobs"]["data"])
    for secret in ("sim-secret", "sim-app-key"):
        assert secret not in proc.stdout + proc.stderr


def test_the_main_example_runs_against_the_simulators() -> None:
    proc = cli(
        "run",
        str(DAGS / "pipeline.json"),
        "--connections",
        str(DAGS / "connections.toml"),
        "--simulate",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["status"] == "succeeded"
    jobs = {j["id"]: j for j in report["jobs"]["data"]}
    assert jobs["ingest_orders"]["remote"]["id"].startswith("job-")
    assert jobs["cleanup"]["logTail"] == f"cleaning up after {report['id']}\n"
    assert "sim-token" not in proc.stdout + proc.stderr  # secrets never shown
