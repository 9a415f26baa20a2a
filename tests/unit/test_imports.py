"""Start-up stays quick: what ``import orchestrator`` and a run of local jobs do not import.

Each check runs in a fresh interpreter (a subprocess) and reads its ``sys.modules``: aiohttp
(the remote APIs' client, the simulators' and the daemon's server), networkx (a DAG builds its
networkx graph only when asked), the remote connectors, the simulators and the daemon cost a
one-job run of ``command`` jobs most of its start-up time (issue #18). The time itself is
measured by ``tests/bench/bench_startup.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ONE_JOB = {
    "name": "one",
    "jobs": {"a": {"type": "command", "command": ["true"]}},
    "jobGraph": {"vertices": ["a"], "edges": []},
}
NOT_FOR_LOCAL_JOBS = (
    "aiohttp",
    "networkx",
    "cronsim",
    "orchestrator.connectors.http",
    "orchestrator.connectors.rest",
    "orchestrator.connectors.fake",
    "orchestrator.connectors.alation",
    "orchestrator.connectors.celonis",
    "orchestrator.connectors.granta",
    "orchestrator.connectors.ocapi",
    "orchestrator.connectors.trifacta",
    "orchestrator.testing",
    "orchestrator.daemon",
    "orchestrator.webhooks.resolver",
)


def _modules_after(code: str, tmp_path: Path) -> list[str]:
    """The modules a fresh interpreter has imported once it has run ``code``."""
    script = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    env = {**os.environ, "ORCHESTRATOR_HOME": str(tmp_path / "home")}
    env.pop("ORCHESTRATOR_CONNECTIONS", None)
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    modules: list[str] = json.loads(done.stdout.splitlines()[-1])
    return modules


def _heavy(modules: list[str], also: tuple[str, ...] = ()) -> list[str]:
    return [
        m
        for m in modules
        if any(m == name or m.startswith(name + ".") for name in (*NOT_FOR_LOCAL_JOBS, *also))
    ]


def test_import_orchestrator_leaves_the_engine_for_later(tmp_path: Path) -> None:
    modules = _modules_after("import orchestrator", tmp_path)
    assert _heavy(modules, also=("structlog", "orchestrator.engine", "orchestrator.runtime")) == []


def test_cli_run_of_a_local_job_imports_neither_aiohttp_nor_networkx(tmp_path: Path) -> None:
    """``orchestrator run one.json`` with the default store (embedded SQLite), in process."""
    (tmp_path / "one.json").write_text(json.dumps(ONE_JOB))
    code = textwrap.dedent(
        """
        from orchestrator.cli import main
        try:
            main(["run", "one.json", "--no-progress", "--log-level", "error"])
        except SystemExit as exc:
            assert exc.code == 0, exc.code
        """
    )
    modules = _modules_after(code, tmp_path)
    assert "orchestrator.connectors.local" in modules  # it did run the job
    assert "orchestrator.store.sqlite" in modules
    # structlog's pretty tracebacks, never used by the command's logs (orchestrator/cli)
    assert _heavy(modules, also=("rich",)) == []
    assert (tmp_path / "home" / "orchestrator.db").exists()


def test_python_dag_run_with_run_dag_imports_neither(tmp_path: Path) -> None:
    """What a DAG author writes: ``from orchestrator import DAG, Job, run_dag``."""
    code = textwrap.dedent(
        """
        import anyio
        from orchestrator import DAG, Job, run_dag

        with DAG("two") as dag:
            Job("a", type="command", command=["true"]) >> Job("b", type="python", call=print)
        run = anyio.run(run_dag, dag)
        assert run.state.value == "succeeded", run.state
        """
    )
    assert _heavy(_modules_after(code, tmp_path)) == []


def test_the_store_writer_starts_on_sqlites_c_module_alone(tmp_path: Path) -> None:
    """The SQLite store's writer process, which every run with a store waits for before its
    first commit, imports neither the sqlite3 package (its datetime adapters) nor threading
    (the checkpoint thread starts with the first checkpoint): it is started as here."""
    from orchestrator.store.sqlite import client, writer

    folder = os.path.dirname(writer.__file__)
    script = (
        f"import sys; sys.path.insert(0, {folder!r}); import writer, json; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    flags = [flag for flag in client._WRITER[1:] if flag.startswith("-") and flag != "-c"]
    done = subprocess.run(
        [sys.executable, *flags, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    modules = set(json.loads(done.stdout))
    assert "_sqlite3" in modules
    assert modules & {"sqlite3", "datetime", "threading"} == set()


CONNECTORS = ("alation", "celonis", "fake", "granta", "ocapi", "rest", "trifacta")


@pytest.mark.parametrize("job_type", ["http", "fake", "trifacta.flow"])
def test_a_job_type_imports_its_own_connector_only(tmp_path: Path, job_type: str) -> None:
    code = textwrap.dedent(
        f"""
        from orchestrator import DAG, DagValidationError, Job

        with DAG("one") as dag:
            Job("a", type={job_type!r}, connection="c")
        try:
            dag.validate()
        except DagValidationError:
            pass  # missing fields: this test is about what validating it imported
        """
    )
    modules = _modules_after(code, tmp_path)
    from orchestrator.connectors.registry import _MODULES

    own = _MODULES[job_type]
    assert own in modules
    assert [m for m in modules if m in {f"orchestrator.connectors.{c}" for c in CONNECTORS}] == [
        own
    ]


def test_the_command_leaves_rich_importable(tmp_path: Path) -> None:
    code = "import orchestrator.cli, structlog, rich.console"
    assert "rich.console" in _modules_after(code, tmp_path)
