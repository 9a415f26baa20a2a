"""The `command` and `python` job types, run by the engine on the real clock."""

from __future__ import annotations

import os
import time

import anyio
import pytest

from orchestrator import DAG, Job, JobContext, JobState, RunState, run_dag
from orchestrator.connectors.base import RemoteStatus, Submission
from orchestrator.connectors.local import CommandConnector, _start_time
from orchestrator.connectors.registry import job_types
from orchestrator.engine.executor import RunExecutor
from orchestrator.runtime.connectors import ConnectorSet
from orchestrator.runtime.prepare import prepare_run


async def test_command_exit_code_decides_and_output_is_kept() -> None:
    with DAG("cmd", params={"who": "world"}) as dag:
        Job("ok", "command", command=["sh", "-c", "echo hello $0", "$who"])
        Job("bad", "command", command="echo about to fail; echo boom >&2; exit 7")
        Job("missing", "command", command=["/nonexistent/program"])
    dag.validate()
    run = await run_dag(dag)
    ok, bad, missing = run.jobs["ok"], run.jobs["bad"], run.jobs["missing"]
    assert ok.state is JobState.SUCCEEDED
    assert ok.log_tail == "hello world\n"
    assert ok.outputs == {"exitCode": 0}
    assert bad.state is JobState.FAILED
    assert bad.error == "exit code 7: boom"
    assert bad.log_tail is not None
    assert "about to fail" in bad.log_tail
    assert missing.state is JobState.FAILED
    assert missing.error is not None
    assert "cannot start" in missing.error
    assert run.state is RunState.FAILED


async def test_command_tokens_and_env() -> None:
    with DAG("tok", params={"region": "02"}) as dag:
        Job(
            "j",
            "command",
            command=["sh", "-c", 'echo "$RUN_ID $REGION $0"', "$jobId"],
            env={"RUN_ID": "$runId", "REGION": "$region"},
        )
    dag.validate()
    run = await run_dag(dag)
    assert run.jobs["j"].log_tail == f"{run.id} 02 j\n"


@pytest.mark.parametrize("trap", [False, True])
async def test_command_cancel_sends_sigterm_then_sigkill(
    tmp_path: os.PathLike[str], trap: bool
) -> None:
    marker = os.path.join(tmp_path, "started")
    # the trap is set before the marker exists: a SIGTERM cannot come between the two
    script = ("trap '' TERM; " if trap else "") + f"touch {marker}; sleep 30 & wait; sleep 30"
    async with CommandConnector(str(tmp_path)) as connector:
        sub = Submission("d", "r", "j", 1, "r/j/1", {"command": script, "grace": 0.5})
        handle = await connector.submit(sub)
        with anyio.fail_after(5):
            while not os.path.exists(marker):
                await anyio.sleep(0.02)
        start = time.monotonic()
        result = await connector.cancel(handle)
        elapsed = time.monotonic() - start
        poll = await connector.poll(handle)
    assert result.supported
    if trap:
        assert result.message == "killed by SIGKILL after a 0.5s grace period"
        assert 0.5 <= elapsed < 3
        assert poll.error == "killed by signal 9"
    else:
        assert result.message == "stopped by SIGTERM"
        assert elapsed < 3  # the message above shows SIGKILL was not needed
        assert poll.error == "killed by signal 15"
    assert poll.status is RemoteStatus.FAILED


async def test_cancelled_run_stops_its_commands(tmp_path: os.PathLike[str]) -> None:
    pid_file = os.path.join(tmp_path, "pid")
    with DAG("stop") as dag:
        Job(
            "sleeper", "command", command=f"echo $$$$ > {pid_file}; exec sleep 60"
        )  # $$ is a literal $
    dag.validate()
    run = prepare_run(dag)
    async with ConnectorSet(dag) as connectors:
        executor = RunExecutor(run, connectors, job_types=job_types())
        async with anyio.create_task_group() as tg:
            tg.start_soon(executor.execute)
            with anyio.fail_after(5):
                while not _read(pid_file):
                    await anyio.sleep(0.02)
            executor.cancel("stop")
    pid = int(_read(pid_file))
    assert run.state is RunState.CANCELLED
    assert run.jobs["sleeper"].state is JobState.CANCELLED
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""


async def test_python_jobs_get_context_and_return_outputs() -> None:
    seen: list[JobContext] = []

    async def compute(ctx: JobContext) -> dict[str, int]:
        seen.append(ctx)
        return {"rows": int(ctx.params["n"]) * 2}

    def blocking(ctx: JobContext) -> str:
        time.sleep(0.05)  # a plain function runs in a worker thread
        return "done in a thread"

    async def broken(ctx: JobContext) -> None:
        raise ValueError("no rows today")

    with DAG("py", params={"n": 21}) as dag:
        a = Job("a", "python", call=compute, extra="x")
        b = Job("b", "python", call=blocking)
        Job("c", "python", call=broken)
        a >> b
    dag.validate()
    run = await run_dag(dag)
    assert run.jobs["a"].outputs == {"result": {"rows": 42}}
    assert run.jobs["b"].outputs == {"result": "done in a thread"}
    assert run.jobs["c"].state is JobState.FAILED
    assert run.jobs["c"].error == "ValueError: no rows today"
    ctx = seen[0]
    assert (ctx.dag, ctx.run_id, ctx.job_id, ctx.attempt) == ("py", run.id, "a", 1)
    assert ctx.kwargs == {"extra": "x"}


async def test_python_job_is_cancelled_by_its_timeout() -> None:
    cancelled = anyio.Event()

    async def forever(ctx: JobContext) -> None:
        try:
            await anyio.sleep(60)
        finally:
            cancelled.set()

    with DAG("pyt") as dag:
        Job("f", "python", call=forever, timeout=0.2)
    dag.validate()
    with anyio.fail_after(5):
        run = await run_dag(dag)
    assert run.jobs["f"].state is JobState.FAILED
    assert run.jobs["f"].error == "timed out after 0.2s"
    assert cancelled.is_set()


HOSTILE_VALUES = [
    "$(touch PWNED)",
    "`touch PWNED`",
    "x; touch PWNED",
    'it\'s "quoted" $HOME',
    "one\ntwo && touch PWNED",
]


@pytest.mark.parametrize("value", HOSTILE_VALUES)
async def test_a_token_in_a_shell_command_is_data(tmp_path: os.PathLike[str], value: str) -> None:
    with DAG("inj", params={"v": "safe"}) as dag:
        Job("bare", "command", command="printf '%s|' $v", cwd=str(tmp_path))
        Job("double", "command", command='printf "%s|" "[$v]"', cwd=str(tmp_path))
        Job("single", "command", command="printf '%s|' '[$v]'", cwd=str(tmp_path))
        Job("argv", "command", command=["printf", "%s|", "[$v]"], cwd=str(tmp_path))
        Job("env", "command", command='printf "%s|" "$V"', env={"V": "$v"}, cwd=str(tmp_path))
    dag.validate()
    run = await run_dag(dag, params={"v": value})
    assert {j.id: j.log_tail for j in run.jobs.values()} == {
        "bare": f"{value}|",
        "double": f"[{value}]|",
        "single": f"[{value}]|",
        "argv": f"[{value}]|",
        "env": f"{value}|",
    }
    assert not os.path.exists(os.path.join(tmp_path, "PWNED"))


async def test_a_token_in_a_missing_cwd_is_named(tmp_path: os.PathLike[str]) -> None:
    gone = os.path.join(tmp_path, "gone")
    with DAG("cwd", params={"d": gone}) as dag:
        Job("pwd", "command", command=["pwd"], cwd="$d")
        Job("file", "command", command="pwd", cwd=__file__)
    dag.validate()
    run = await run_dag(dag)
    assert run.jobs["pwd"].error == f"submit failed: cannot start pwd: cwd {gone} does not exist"
    assert run.jobs["file"].error == (
        f"submit failed: cannot start /bin/sh -c pwd: cwd {__file__} is not a directory"
    )


async def _wait_for(path: str) -> None:
    with anyio.fail_after(5):
        while not os.path.exists(path):
            await anyio.sleep(0.02)


@pytest.mark.parametrize("trap", [False, True])
async def test_a_command_left_by_a_dead_orchestrator_is_stopped_and_said_so(
    tmp_path: os.PathLike[str], trap: bool
) -> None:
    """A second connector (the process that resumes) is handed the handle of a command the
    first one (the process that died) still runs: it stops its whole process group."""
    marker = os.path.join(tmp_path, "started")
    child = os.path.join(tmp_path, "child")
    script = ("trap '' TERM; " if trap else "") + (
        f"sleep 30 & echo $! > {child}; echo working; touch {marker}; wait; sleep 30"
    )
    async with CommandConnector(str(tmp_path)) as first:
        handle = await first.submit(
            Submission("d", "r", "j", 1, "r/j/1", {"command": script, "grace": 0.3})
        )
        await _wait_for(marker)
        with open(child) as f:
            child_pid = int(f.read())
        async with CommandConnector(str(tmp_path)) as second:
            with anyio.fail_after(10):
                result = await second.poll(handle)
        with anyio.fail_after(5):  # the first connector sees its process end
            while first._processes[handle["pid"]].process.returncode is None:
                await anyio.sleep(0.02)
    how = "killed by SIGKILL after a 0.3s grace period" if trap else "stopped by SIGTERM"
    assert result.status is RemoteStatus.FAILED
    assert result.error == (
        f"the orchestrator restarted while the command ran: its process group "
        f"(pid {handle['pid']}) was {how}, as a command is not followed across a restart"
    )
    assert result.log_tail == "working\n"
    with anyio.fail_after(5):  # the whole group went, not only its leader
        while _start_time(child_pid) is not None:  # (a zombie, if nothing reaps it, counts)
            await anyio.sleep(0.02)


async def test_a_command_that_ended_while_the_orchestrator_was_down_is_not_guessed(
    tmp_path: os.PathLike[str],
) -> None:
    async with CommandConnector(str(tmp_path)) as first:
        handle = await first.submit(Submission("d", "r", "j", 1, "r/j/1", {"command": "true"}))
        with anyio.fail_after(5):
            while first._processes[handle["pid"]].process.returncode is None:
                await anyio.sleep(0.02)
    async with CommandConnector(str(tmp_path)) as second:
        result = await second.poll(handle)
        cancelled = await second.cancel(handle)
    assert result.status is RemoteStatus.FAILED
    assert result.error == (
        f"the command (pid {handle['pid']}) ended while the orchestrator was not running; "
        "its exit code cannot be known"
    )
    assert cancelled.message == "the process had already ended"


async def test_a_reused_pid_is_left_alone(tmp_path: os.PathLike[str]) -> None:
    """The handle's start time is not this process's: another process has the pid now."""
    async with CommandConnector(str(tmp_path)) as first:
        handle = await first.submit(Submission("d", "r", "j", 1, "r/j/1", {"command": "sleep 30"}))
        async with CommandConnector(str(tmp_path)) as second:
            result = await second.poll({**handle, "start": handle["start"] - 1})
        assert first._processes[handle["pid"]].process.returncode is None  # still running
    assert result.remote_status == "lost"
