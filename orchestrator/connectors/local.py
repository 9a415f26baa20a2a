"""Local job types: ``command`` (a subprocess) and ``python`` (a callable of a Python DAG).

A command follows the same submit / poll / cancel seam as remote APIs: its connector owns a task
group (it is an async context manager) where it watches its processes, and wakes the engine the
moment one ends. A python job is inline (``JobType.inline``): the engine calls it in the task
that runs the attempt and has its outcome when the call returns.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import anyio.abc

from ..connections import Connection
from ..errors import NotFoundError, PermanentError
from ..model.durations import parse_duration
from ..model.tokens import substitute, substitute_shell
from .base import (
    CancelResult,
    ConnectorBase,
    JobType,
    PollResult,
    PollSchedule,
    RemoteHandle,
    RemoteStatus,
    Submission,
)

LOG_TAIL_BYTES = 4096
DEFAULT_GRACE = 10.0


class _TaskGroupOwner(ConnectorBase):
    def __init__(self) -> None:
        self._tg: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> _TaskGroupOwner:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._tg is not None
        await self._shutdown()
        self._tg.cancel_scope.cancel()
        return await self._tg.__aexit__(et, e, tb)

    async def _shutdown(self) -> None:
        return None

    @property
    def tg(self) -> anyio.abc.TaskGroup:
        if self._tg is None:
            raise RuntimeError("use the connector inside `async with`")
        return self._tg


@dataclass(slots=True)
class _Process:
    process: anyio.abc.Process
    log: Path
    done: anyio.Event = field(default_factory=anyio.Event)


class CommandConnector(_TaskGroupOwner):
    """Runs ``command`` (a list of arguments, no shell; or a string, run by ``/bin/sh -c``)."""

    def __init__(self, log_dir: str | None = None) -> None:
        super().__init__()
        self._own_dir = log_dir is None  # a temporary folder, removed on exit
        self._log_dir = Path(log_dir or tempfile.mkdtemp(prefix="orchestrator-logs-"))
        self._processes: dict[int, _Process] = {}

    async def submit(self, submission: Submission) -> RemoteHandle:
        p = submission.params
        command = p["command"]
        args = ["/bin/sh", "-c", command] if isinstance(command, str) else [str(a) for a in command]
        env = None
        if p.get("env"):
            env = {**os.environ, **{str(k): str(v) for k, v in p["env"].items()}}
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", submission.idempotency_key)
        log = self._log_dir / f"{safe}.log"
        try:
            with open(log, "wb") as out:  # noqa: ASYNC230 - creating an empty file
                process = await anyio.open_process(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=p.get("cwd"),
                    env=env,
                    start_new_session=True,
                )
        except OSError as exc:
            why = exc.strerror or str(exc)
            cwd = p.get("cwd")
            if cwd is not None and exc.filename == cwd:  # the child could not chdir
                why = (
                    f"cwd {cwd} does not exist"
                    if isinstance(exc, FileNotFoundError)
                    else f"cwd {cwd} is not a directory"
                    if isinstance(exc, NotADirectoryError)
                    else f"cwd {cwd}: {why}"
                )
            raise PermanentError(f"cannot start {shlex.join(args)[:200]}: {why}") from None
        except ValueError as exc:  # a NUL byte in an argument, the cwd or the environment
            raise PermanentError(f"cannot start {shlex.join(args)[:200]}: {exc}") from None
        entry = _Process(process, log)
        self._processes[process.pid] = entry
        self.tg.start_soon(self._watch, entry, submission.wake)
        grace = parse_duration(p["grace"]) if "grace" in p else DEFAULT_GRACE
        # the start time tells this process from a later one given the same pid
        start = _start_time(process.pid)
        return {"pid": process.pid, "log": str(log), "grace": grace, "start": start}

    async def _watch(self, entry: _Process, wake: Callable[[], None]) -> None:
        await entry.process.wait()
        entry.done.set()
        wake()

    async def poll(self, handle: RemoteHandle) -> PollResult:
        entry = self._processes.get(int(handle["pid"]))
        if entry is None:
            return await self._orphan(handle)
        code = entry.process.returncode
        if code is None or not entry.done.is_set():
            return PollResult(RemoteStatus.RUNNING, remote_status="running")
        tail = await anyio.to_thread.run_sync(_tail, entry.log)
        del self._processes[entry.process.pid]
        if code == 0:
            return PollResult(
                RemoteStatus.SUCCEEDED,
                remote_status="exit 0",
                outputs={"exitCode": 0},
                log_tail=tail,
            )
        last = next((line for line in reversed(tail.splitlines()) if line.strip()), "")
        reason = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        return PollResult(
            RemoteStatus.FAILED,
            remote_status=reason,
            error=f"{reason}: {last}" if last else reason,
            outputs={"exitCode": code},
            log_tail=tail,
        )

    async def _orphan(self, handle: RemoteHandle) -> PollResult:
        """A command started by an orchestrator process that has since died. Not being its
        parent, this one cannot learn its exit code: it stops the command's process group (the
        same process, checked by its start time) and fails the attempt, saying so."""
        pid = int(handle["pid"])
        tail = await anyio.to_thread.run_sync(_tail, Path(str(handle.get("log", ""))))
        stopped = await _stop_orphan(pid, handle.get("start"), float(handle.get("grace", 0)))
        if stopped is None:
            return PollResult(
                RemoteStatus.FAILED,
                remote_status="lost",
                error=f"the command (pid {pid}) ended while the orchestrator was not running; "
                "its exit code cannot be known",
                log_tail=tail or None,
            )
        return PollResult(
            RemoteStatus.FAILED,
            remote_status="killed",
            error=f"the orchestrator restarted while the command ran: its process group "
            f"(pid {pid}) was {stopped}, as a command is not followed across a restart",
            log_tail=tail or None,
        )

    async def cancel(self, handle: RemoteHandle) -> CancelResult:
        entry = self._processes.get(int(handle["pid"]))
        if entry is None:  # started by a process that has died: stop it all the same
            pid, grace = int(handle["pid"]), float(handle.get("grace", DEFAULT_GRACE))
            stopped = await _stop_orphan(pid, handle.get("start"), grace)
            return CancelResult(True, stopped or "the process had already ended")
        if entry.done.is_set():
            return CancelResult(True, "the process had already ended")
        grace = float(handle.get("grace", DEFAULT_GRACE))
        _signal_group(entry.process, signal.SIGTERM)
        with anyio.move_on_after(grace):
            await entry.done.wait()
            return CancelResult(True, "stopped by SIGTERM")
        _signal_group(entry.process, signal.SIGKILL)
        with anyio.move_on_after(5):
            await entry.done.wait()
        return CancelResult(True, f"killed by SIGKILL after a {grace:g}s grace period")

    async def _shutdown(self) -> None:
        running = [entry for entry in self._processes.values() if not entry.done.is_set()]
        for entry in running:
            _signal_group(entry.process, signal.SIGKILL)
        with anyio.move_on_after(5, shield=True):  # reaped, not left as zombies
            for entry in running:
                await entry.done.wait()
        if self._own_dir:  # the log tails are in the run's record already
            await anyio.to_thread.run_sync(shutil.rmtree, self._log_dir, True)


def _signal_group(process: anyio.abc.Process, sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:  # pragma: no cover - not our group
        process.send_signal(sig)


def _start_time(pid: int) -> int | None:
    """The process's start time (clock ticks after boot, from ``/proc/PID/stat``); ``None`` if
    there is no such process or it has ended (a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # fields[0] is the state (field 3), fields[19] the start time (field 22)
    return None if fields[0] in (b"Z", b"X") else int(fields[19])


async def _stop_orphan(pid: int, start: Any, grace: float) -> str | None:
    """Stop the process group of ``pid`` if ``pid`` is still the process that started at
    ``start``: SIGTERM, then SIGKILL after ``grace``. Returns how it was stopped, or ``None``
    when that process is no longer running."""
    try:
        pidfd = os.pidfd_open(pid)  # held: the pid cannot name another process meanwhile
    except OSError:
        return None
    try:
        if start is None or _start_time(pid) != start:
            return None
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
            with anyio.move_on_after(wait):
                await anyio.wait_readable(pidfd)  # readable once the process has ended
                return (
                    "stopped by SIGTERM"
                    if sig is signal.SIGTERM
                    else (f"killed by SIGKILL after a {grace:g}s grace period")
                )
        return "sent SIGKILL"
    finally:
        os.close(pidfd)


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - LOG_TAIL_BYTES))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _validate_command(params: Mapping[str, Any]) -> list[str]:
    problems = []
    command = params.get("command")
    if isinstance(command, str):
        if not command.strip():
            problems.append("field 'command': empty")
    elif isinstance(command, list):
        if not command or not all(isinstance(a, str | int | float) for a in command):
            problems.append("field 'command': expected a non-empty list of arguments or a string")
    elif command is not None:
        problems.append("field 'command': expected a list of arguments or a string")
    env = params.get("env")
    if env is not None and not (isinstance(env, dict) and all(isinstance(k, str) for k in env)):
        problems.append("field 'env': expected an object of names to values")
    if "cwd" in params and not isinstance(params["cwd"], str):
        problems.append("field 'cwd': expected a path")
    if "grace" in params:
        try:
            parse_duration(params["grace"])
        except ValueError as exc:
            problems.append(f"field 'grace': {exc}")
    return problems


def _substitute_command(params: Mapping[str, Any], tokens: Mapping[str, Any]) -> dict[str, Any]:
    """A string ``command`` is shell code: its tokens reach it as quoted references to
    environment variables holding their values. A list's token stays inside its argument; the
    ``env`` and ``cwd`` values are data as they are."""
    command = params.get("command")
    if not isinstance(command, str):
        return dict(substitute(params, tokens))
    out: dict[str, Any] = substitute({k: v for k, v in params.items() if k != "command"}, tokens)
    out["command"], env = substitute_shell(command, tokens)
    if env:
        out["env"] = {**(out.get("env") or {}), **env}
    return out


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a ``python`` job's callable receives."""

    dag: str
    run_id: str
    job_id: str
    attempt: int
    params: Mapping[str, Any]  # the run's parameters
    kwargs: Mapping[str, Any]  # the job's own fields
    upstream: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """The outputs of the job's direct upstreams, by job id (``ctx.upstream["extract"]``)."""


_ENGINE_KEYS = frozenset({"call", "__run_params__", "__upstream__"})  # not the job's fields


class PythonConnector(ConnectorBase):
    """Calls the callable of a ``python`` job: ``async def fn(ctx: JobContext) -> Any`` is
    awaited in the engine's task that runs the attempt (an inline job type: nothing is
    submitted or polled); a plain function runs in a worker thread."""

    def __init__(self) -> None:
        super().__init__()
        # whether each callable is a coroutine function: inspect's answer is several calls (it
        # unwraps partials and methods), and a DAG's callables do not change
        self._is_async: dict[Any, bool] = {}

    async def call(self, submission: Submission) -> PollResult:
        params = submission.params
        fn = params["call"]
        try:
            is_async = self._is_async[fn]
        except (KeyError, TypeError):  # not seen yet, or not hashable
            is_async = inspect.iscoroutinefunction(fn)
            with contextlib.suppress(TypeError):
                self._is_async[fn] = is_async
        ctx = JobContext(
            submission.dag,
            submission.run_id,
            submission.job_id,
            submission.attempt,
            params.get("__run_params__", {}),
            {k: v for k, v in params.items() if k not in _ENGINE_KEYS},
            params.get("__upstream__", {}),
        )
        try:
            if is_async:
                result = await fn(ctx)
            else:
                result = await anyio.to_thread.run_sync(fn, ctx, abandon_on_cancel=True)
        except Exception as exc:
            return PollResult(
                RemoteStatus.FAILED, remote_status="raised", error=f"{type(exc).__name__}: {exc}"
            )
        return PollResult(
            RemoteStatus.SUCCEEDED, remote_status="returned", outputs={"result": _jsonable(result)}
        )

    async def submit(self, submission: Submission) -> RemoteHandle:
        raise PermanentError(f"job {submission.job_id!r}: a python job is called, not submitted")

    async def poll(self, handle: RemoteHandle) -> PollResult:
        """A call is followed only by the process that made it: the handle of an attempt in
        flight when an earlier process stopped names a call that is gone."""
        raise NotFoundError(f"no python call {handle.get('call')!r} in this process")

    async def cancel(self, handle: RemoteHandle) -> CancelResult:
        return CancelResult(True, "the call had already ended")


def _jsonable(value: Any) -> Any:
    if value is None or type(value) in _PLAIN:
        return value
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


_PLAIN = {str, int, float, bool}


def _open_command(connection: Connection | None) -> CommandConnector:
    return CommandConnector()


def _open_python(connection: Connection | None) -> PythonConnector:
    return PythonConnector()


_LOCAL_POLL = PollSchedule(initial=1.0, factor=2.0, cap=5.0)

JOB_TYPES = (
    JobType(
        name="command",
        open=_open_command,
        required=("command",),
        optional=("env", "cwd", "grace"),
        needs_connection=False,
        validate=_validate_command,
        poll=_LOCAL_POLL,
        substitute=_substitute_command,
    ),
    JobType(
        name="python",
        open=_open_python,
        needs_connection=False,
        poll=_LOCAL_POLL,
        inline=True,
    ),
)
