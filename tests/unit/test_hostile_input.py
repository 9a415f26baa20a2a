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
from orchestrator.errors import ConfigError, DagError, DagValidationError
from orchestrator.model.dag import DAG, Job
from orchestrator.model.loader import load_path
from orchestrator.model.retry import RetryPolicy
from orchestrator.runtime.runs import run_dag

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


# -- schedule -----------------------------------------------------------------------------


def _dag_file(tmp_path: Path, **top: Any) -> Path:
    return _write(tmp_path, {"name": "d", "jobs": {"a": {"type": "fake"}}, **top})


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"cron": "61 25 * * *"}, "field 'schedule.cron': bad cron expression '61 25 * * *': "),
        ({"cron": "0 0 31 2 *"}, "field 'schedule.cron': bad cron expression '0 0 31 2 *': "),
        ({"cron": "@fortnightly"}, "field 'schedule.cron': bad cron expression '@fortnightly'"),
        ({"cron": 5}, "field 'schedule.cron': expected a cron expression string, got 5"),
        ({"timezone": "Mars/Olympus"}, "field 'schedule.timezone': unknown time zone"),
        ({"timezone": "../../etc/passwd"}, "field 'schedule.timezone': unknown time zone"),
        ({"timezone": 1}, "field 'schedule.timezone': expected an IANA time zone name"),
        ({"catchup": "some"}, "field 'schedule.catchup': 'some' is not one of none, latest, all"),
        ({"overlap": "queue-all"}, "field 'schedule.overlap': 'queue-all' is not one of skip, "),
        ({"jitter": "soon"}, "field 'schedule.jitter': bad duration 'soon'"),
        ({"jitter": "60d"}, "field 'schedule.jitter': bad duration '60d' (at most 30 days)"),
        ({"paused": "no"}, "field 'schedule.paused': expected true or false, got 'no'"),
        ({"crom": "0 2 * * *"}, "field 'schedule.crom': not a schedule field (did you mean 'cron'"),
    ],
)
def test_bad_schedule_fields_are_refused(
    tmp_path: Path, schedule: dict[str, Any], message: str
) -> None:
    path = _dag_file(tmp_path, schedule=schedule)
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}: {message}"), problem


@pytest.mark.parametrize("cron", ["0 2 * * *", "*/15 9-17 * * 1-5", "@daily", "@hourly", "@yearly"])
def test_good_schedules_load(tmp_path: Path, cron: str) -> None:
    schedule = {
        "cron": cron,
        "timezone": "Europe/Berlin",
        "catchup": "latest",
        "overlap": "queue",
        "jitter": "5m",
        "paused": False,
    }
    (dag,) = load_path(_dag_file(tmp_path, schedule=schedule))
    assert dag.schedule == schedule


@pytest.mark.parametrize("overlap", ["queue_all", "cancel_previous"])
def test_the_new_overlap_policies_load(tmp_path: Path, overlap: str) -> None:
    from orchestrator.engine.durable import overlap_policy

    schedule = {"cron": "*/2 * * * * *", "overlap": overlap}
    (dag,) = load_path(_dag_file(tmp_path, schedule=schedule))
    assert dag.schedule == schedule  # the daemon's scheduler applies it
    assert overlap_policy(dag) == overlap  # and so does a one-off `run` (tests/e2e/test_overlap)


def test_validate_refuses_the_overlap_that_run_refuses(tmp_path: Path) -> None:
    path = _dag_file(tmp_path, schedule={"overlap": "cancel-previous"})
    checked = _orchestrator("validate", str(path))
    ran = _orchestrator("run", str(path), "--db", "memory:")
    assert checked.returncode == ran.returncode == 2, (checked.stderr, ran.stderr)
    line = f"orchestrator: {path}: field 'schedule.overlap': 'cancel-previous' is not one of"
    assert checked.stderr.startswith(line)
    assert ran.stderr.startswith(line)


# -- bounds on durations and retries ------------------------------------------------------


@pytest.mark.parametrize(
    ("job", "message"),
    [
        ({"timeout": 1e300}, "job 'a': field 'timeout': bad duration 1e+300 (at most 30 days)"),
        ({"timeout": float("nan")}, "job 'a': field 'timeout': bad duration nan (not a number)"),
        ({"retries": 10**12}, "job 'a': field 'retries.attempts': at most 1000, got 10000000"),
        ({"retries": {"attempts": 3, "base": 1e300}}, "job 'a': field 'retries.base': bad dur"),
    ],
)
def test_endless_timeouts_and_retries_are_refused(
    tmp_path: Path, job: dict[str, Any], message: str
) -> None:
    path = _write(tmp_path, {"name": "d", "jobs": {"a": {"type": "fake", **job}}})
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}: {message}"), problem


def test_a_retry_policy_from_python_is_bounded_too() -> None:
    with DAG("d") as dag:
        Job("a", "fake", retries=RetryPolicy(attempts=10**12))
    with pytest.raises(DagValidationError) as info:
        dag.validate()
    assert info.value.problems == [
        "dag 'd': job 'a': field 'retries.attempts': at most 1000, got 1000000000000"
    ]


# -- python jobs and Python files ---------------------------------------------------------


def _two_args(ctx: Any, extra: Any) -> None: ...


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("mod.fn", "a python job needs a callable, got str 'mod.fn'"),
        (42, "a python job needs a callable, got int 42"),
        (_two_args, "_two_args must take one argument (the job's JobContext)"),
    ],
)
def test_a_python_job_whose_call_cannot_be_called_is_refused(call: Any, message: str) -> None:
    with DAG("d") as dag:
        Job("a", "python", call=call)
    with pytest.raises(DagValidationError) as info:
        dag.validate()
    assert info.value.problems == [f"dag 'd': job 'a': field 'call': {message}"]


def test_a_field_that_contains_itself_is_refused_naming_the_job() -> None:
    looped: dict[str, Any] = {"a": 1}
    looped["self"] = looped
    with pytest.raises(DagError, match="job 'j': a field contains itself"):
        Job("j", "fake", body=looped)
    listed: list[Any] = []
    listed.append(listed)
    with pytest.raises(DagError, match="job 'k'"):
        Job("k", "fake", map=listed)


def test_a_python_job_with_a_one_argument_callable_is_valid() -> None:
    async def work(ctx: Any) -> None: ...

    with DAG("d") as dag:
        Job("a", "python", call=work)
        Job("b", "python", call=print)  # a builtin: takes *args
    dag.validate()


def test_two_dags_of_one_name_in_a_python_file_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "dags.py"
    path.write_text(
        "from orchestrator import DAG, Job\n"
        "with DAG('nightly') as first:\n    Job('a', 'fake')\n"
        "with DAG('nightly') as second:\n    Job('b', 'fake')\n"
        "alias = first\n",
        encoding="utf-8",
    )
    with pytest.raises(DagError) as info:
        load_path(path)
    assert str(info.value) == (
        f"{path}: two DAGs are named 'nightly' (variables 'first' and 'second'); "
        "give each DAG its own name"
    )


def test_one_dag_bound_to_two_names_is_one_dag(tmp_path: Path) -> None:
    path = tmp_path / "dags.py"
    path.write_text(
        "from orchestrator import DAG, Job\n"
        "with DAG('nightly') as dag:\n    Job('a', 'fake')\nalias = dag\n",
        encoding="utf-8",
    )
    assert [d.name for d in load_path(path)] == ["nightly"]


# -- cycles -------------------------------------------------------------------------------


def test_a_long_cycle_is_abbreviated(tmp_path: Path) -> None:
    n = 5000
    jobs = {f"j{i}": {"type": "fake"} for i in range(n)}
    edges = [{"source": f"j{i}", "target": f"j{(i + 1) % n}"} for i in range(n)]
    path = _write(tmp_path, {"name": "d", "jobs": jobs, "jobGraph": {"edges": edges}})
    (problem,) = _problems(path)
    assert len(problem) < 200 + len(str(path)), problem
    assert problem.startswith(f"{path}: jobGraph: cycle of 5000 jobs: j")
    assert " -> ... (4990 more) -> " in problem


# -- names that would drive a terminal ----------------------------------------------------

HOSTILE = ["\x1b[2J\x1b[31mred", "nul\x00", "a\u202eb", "iso\u2066late", "zero\u200bwidth"]


@pytest.mark.parametrize("job_id", HOSTILE)
def test_job_ids_with_non_printable_characters_are_refused(tmp_path: Path, job_id: str) -> None:
    path = _write(tmp_path, {"name": "d", "jobs": {job_id: {"type": "fake"}}})
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}: job {job_id!r}: field 'id': the id {job_id!r} has the ")
    assert "non-printable character U+" in problem
    assert problem.isprintable(), problem  # shown escaped, never raw


@pytest.mark.parametrize("name", HOSTILE)
def test_pool_and_connection_names_with_non_printable_characters_are_refused(
    tmp_path: Path, name: str
) -> None:
    job = {"type": "http", "connection": name, "pool": name}
    path = _write(tmp_path, {"name": "d", "pools": {name: 1}, "jobs": {"a": job}})
    problems = _problems(path)
    assert all(p.isprintable() for p in problems), problems
    assert any(
        f"field 'pools': the pool name {name!r} has the non-printable" in p for p in problems
    )
    assert any(f"field 'pool': the pool name {name!r} has the non-printable" in p for p in problems)
    assert any(
        f"field 'connection': the name {name!r} has the non-printable" in p for p in problems
    )


@pytest.mark.parametrize("name", HOSTILE)
def test_dag_names_with_non_printable_characters_are_refused(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path, {"name": name, "jobs": {"a": {"type": "fake"}}})
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}: field 'name': ")
    assert problem.isprintable(), problem
