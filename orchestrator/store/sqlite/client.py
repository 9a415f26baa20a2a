"""The SQLite store's client of its writer process, in the engine's process.

The writer (:mod:`orchestrator.store.sqlite.writer`) is started as a standard-library-only
script with two pipes. Batches go down the first as plain data (:mod:`.encode`), in the
order asked; what the pipe cannot take now waits for a sender thread, so that nothing blocks the
event loop. The writer's answers come back on the second, read by the event loop itself (a
reader callback: no thread hands them over), and settle their callers: futures for ``apply``
and the store's other writes, receipts for ``submit``; a caller on another event loop
(in another thread) is settled through its own loop.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import json
import os
import select
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ... import crash
from ...errors import StoreError
from ...model.states import JOB_REACHABLE, RUN_TRANSITIONS
from ..base import (
    ActiveRunExists,
    LeaseLost,
    Operation,
    Receipt,
    RunExists,
    StaleWrite,
    TickExists,
)
from . import writer
from .encode import encode_ops
from .writer import Frames, frame

# stdlib only: it starts at once. It is imported by a one-line program rather than run as a
# script, so that its compiled form is read from __pycache__ (a script is compiled at every start);
# its path, the last argument, names the process in `ps`
_WRITER = [
    sys.executable,
    "-I",
    "-S",
    "-c",
    "import os, sys; sys.path.insert(0, os.path.dirname(sys.argv[1])); "
    "from writer import main; main()",
    writer.__file__,
]
_PIPE_SIZE = 1 << 20  # bytes a pipe holds (Linux), so that a batch seldom waits to be sent


class _Sender:
    """Writes frames to the writer's pipe without blocking: what the pipe cannot take now
    waits, in order, for a thread that sends it as the writer reads. Each write is followed by
    a signal on the writer's wake-up counter, if it has one (see :class:`Launched`)."""

    def __init__(self, pipe: Any, wake: int | None) -> None:
        self._pipe = pipe
        self._fd: int = pipe.fileno()
        self._signal = wake
        self._backlog: list[bytes] = []
        self._wake = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None

    def send(self, data: bytes) -> None:
        """Called with the store's lock held (one sender at a time)."""
        if not self._backlog:
            try:
                sent = os.write(self._fd, data)
            except BlockingIOError:
                sent = 0
            if sent and self._signal is not None:
                os.eventfd_write(self._signal, 1)
            if sent == len(data):
                return
            data = data[sent:]
        with self._wake:
            self._backlog.append(data)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._drain, name="orchestrator-store-send", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def _drain(self) -> None:
        while True:
            with self._wake:
                while not self._backlog and not self._closing:
                    self._wake.wait()
                if not self._backlog:
                    return
                data = self._backlog[0]
            view = memoryview(data)
            try:
                while view:
                    select.select([], [self._fd], [])
                    try:
                        view = view[os.write(self._fd, view) :]
                    except BlockingIOError:
                        continue
                    if self._signal is not None:
                        os.eventfd_write(self._signal, 1)
            except OSError:  # the writer is gone: the answer thread fails what waits
                with self._wake:
                    self._backlog.clear()
                return
            with self._wake:
                self._backlog.pop(0)

    def close(self) -> None:
        """Send what waits, then end the writer's input."""
        with self._wake:
            self._closing = True
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join()
        self._pipe.close()
        if self._signal is not None:
            os.close(self._signal)


class _Unmarshallable(StoreError):
    """A request holds a value that ``marshal`` cannot send."""


@dataclass(slots=True)
class Launched:
    """A writer process waiting for its configuration, and its wake-up counter: an eventfd
    (Linux) that the engine signals after each write to the pipe, and that the writer process
    waits on in its place. A write to a pipe wakes its reader as the kernel's "sync" wake-up,
    which says that the process that wrote is about to sleep: the scheduler then puts the reader
    on that process's core, so the store's writer took turns with the event loop on its core
    while another core was idle. The counter wakes it where a core is free. None where there is
    no eventfd: the writer then waits on the pipe itself."""

    process: subprocess.Popen[bytes]
    wake: int | None


@dataclass(slots=True)
class _Request:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any] | Receipt


class WriterClient:
    """The store's end of a running writer process: sends it requests, settles their callers
    with its answers."""

    def __init__(self, path: Path, launched: Launched, answers: Frames) -> None:
        process = launched.process
        assert process.stdin is not None
        self.path = path
        self._process = process
        self._sender = _Sender(process.stdin, launched.wake)
        self._answers = answers  # the writer's answers, read on an event loop
        self._answer_loop: asyncio.AbstractEventLoop | None = None
        self._finished = threading.Event()  # the writer answered its last (or ended)
        self._pending: dict[int, _Request] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()  # the pending requests, the order of what is sent
        self._ended: StoreError | None = None  # the writer process ended
        self._stats = {"batches": 0, "commits": 0}
        # the message of a batch the database failed to write (a full disk), until one is
        # written again: the stale refusals of the batches sent before it are its consequence
        self._broken: str | None = None
        self._closed = False

    @staticmethod
    def launch() -> Launched:
        """Start the writer's process, which waits for its configuration (:meth:`start`): it is
        launched before the database is opened and migrated, so that its interpreter starts
        meanwhile (blocking: from a worker thread)."""
        # A process group of its own: a Ctrl-C on the terminal, `timeout`, `kill -- -PGID`
        # signal the engine's group, and the writer must outlive the engine's shutdown to
        # record it (it also ignores SIGINT, SIGTERM and SIGHUP, for systemd and docker, which
        # signal every process of the service). It ends at the end of its input: when the
        # engine closes the store or dies.
        wake = os.eventfd(0, os.EFD_CLOEXEC) if hasattr(os, "eventfd") else None
        try:
            process = subprocess.Popen(
                _WRITER,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,
                close_fds=True,
                pass_fds=(wake,) if wake is not None else (),
                process_group=0,
            )
        except BaseException:
            if wake is not None:
                os.close(wake)
            raise
        return Launched(process, wake)

    @staticmethod
    def abandon(launched: Launched) -> None:
        """A launched writer that will not be configured (the database could not be opened)."""
        process = launched.process
        process.kill()
        process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()
        if launched.wake is not None:
            os.close(launched.wake)

    @classmethod
    def start(
        cls, path: Path, launched: Launched, *, busy_timeout: float, synchronous: str
    ) -> WriterClient:
        """Configure the writer (:meth:`launch`) for the database at ``path``."""
        process = launched.process
        assert process.stdin is not None
        assert process.stdout is not None
        config = {
            "path": str(path),
            "parent": os.getpid(),
            "busy_timeout": busy_timeout,
            "synchronous": synchronous,
            "crash_mid_commit": crash.remaining("mid_commit"),
            "wake": launched.wake,  # its number in the writer's process too (pass_fds)
            "job_reachable": [list(pair) for pair in JOB_REACHABLE],
            "run_transitions": {
                old.value: [new.value for new in news] for old, news in RUN_TRANSITIONS.items()
            },
        }
        try:
            os.write(process.stdin.fileno(), frame(config))  # its answer: read on the loop
        except OSError as exc:
            cls.abandon(launched)
            why = f"{path}: the store's writer process did not start ({exc})"
            raise StoreError(why) from None
        answers = Frames(process.stdout.fileno())
        os.set_blocking(answers.fd, False)
        fd = process.stdin.fileno()
        try:
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
        except OSError:  # a system without it, or above its limit: the default size
            pass
        os.set_blocking(fd, False)
        return cls(path, launched, answers)

    def listen(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read the writer's answers on ``loop``, the one the store is used from. A store used
        from another loop while this one runs (in another thread) is answered through it; one
        used after its loop stopped moves to the loop it is used from now."""
        with self._lock:
            current = self._answer_loop
            if current is loop or self._finished.is_set():
                return
            if current is not None:
                if current.is_running():
                    return
                if not current.is_closed():
                    current.remove_reader(self._answers.fd)
            loop.add_reader(self._answers.fd, self._on_answers, loop)
            self._answer_loop = loop

    def refuse(self) -> None:
        """Refuse every request from now on: the store is closing."""
        self._closed = True

    def stop(self) -> None:
        """The writer commits what it has and answers, then closes its connection (which
        checkpoints the log) and exits on its own: nothing here waits for that checkpoint.
        Blocking: from a worker thread."""
        self._closed = True
        self._sender.close()
        self._finished.wait()

    def statistics(self) -> dict[str, int]:
        """``batches`` applied (or refused) in committed transactions and ``commits``: fewer
        commits than batches is group commit at work."""
        return dict(self._stats)

    async def apply(self, ops: Sequence[Operation]) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._send_ops(ops, _Request(loop, future))
        await asyncio.shield(future)

    def submit(self, ops: Sequence[Operation]) -> Receipt:
        receipt = Receipt()
        try:
            self._send_ops(ops, _Request(asyncio.get_running_loop(), receipt))
        except StoreError as exc:  # closed, or a value that is not plain data
            receipt.settle(exc)
        return receipt

    def _send_ops(self, ops: Sequence[Operation], request: _Request) -> None:
        """The handles and events go as they are, for the writer to encode; a batch that
        ``marshal`` cannot send so goes with them encoded here, which refuses what is not
        plain JSON naming its job."""
        try:
            self._send("ops", encode_ops(ops), request)
        except _Unmarshallable:
            self._send("ops", encode_ops(ops, as_text=True), request)

    async def call(self, kind: str, *args: Any) -> Any:
        """One of the writer's other writes, by name, in its own batch."""
        return await self._submit(kind, args)

    async def _submit(self, kind: str, payload: Any) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._send(kind, payload, _Request(loop, future))
        return await asyncio.shield(future)

    def _send(self, kind: str, payload: Any, request: _Request) -> None:
        if self._closed:
            raise StoreError(f"{self.path}: the store is closed")
        request_id = next(self._ids)
        try:
            data = frame((request_id, kind, payload))
        except ValueError as exc:  # marshal: a value that is not plain data
            raise _Unmarshallable(f"{self.path}: a value cannot be stored ({exc})") from None
        if request.loop is not self._answer_loop:
            self.listen(request.loop)
        with self._lock:  # sent in the order asked
            if self._ended is not None:
                raise self._ended
            self._pending[request_id] = request
            self._sender.send(data)

    def _on_answers(self, loop: asyncio.AbstractEventLoop) -> None:
        """The writer's answers that arrived (a reader callback on ``loop``): each commit's
        answers settle their callers, those of another loop through that loop."""
        answers = self._answers
        try:
            frames = answers.available()
        except OSError:
            frames, answers.eof = [], True
        for answer in frames:
            kind = answer[0]
            if kind == "done":
                self._settle(loop, answer)
            elif kind == "crash":  # the crash point mid_commit: this process ends too
                crash.end_now()
            elif kind == "closed":  # all answered; it checkpoints and exits by itself
                self._finish(loop, "")
                break
            elif kind == "error":  # it could not open the database, and exits
                self._finish(loop, answer[1])
                break
            # ("ready", pid): it started
        else:
            if answers.eof:
                status = self._process.poll()
                why = f"{self.path}: the store's writer process ended" + (
                    f" (exit status {status})" if status is not None else ""
                )
                self._finish(loop, why)

    def _settle(self, loop: asyncio.AbstractEventLoop, answer: Any) -> None:
        _, results, batches, commits = answer
        self._stats["batches"], self._stats["commits"] = batches, commits
        with self._lock:
            requests = [self._pending.pop(request_id) for request_id, _, _ in results]
        outcomes = []
        for request, (_, ok, value) in zip(requests, results, strict=True):
            if ok:
                self._broken = None
                outcomes.append((request, ok, value))
                continue
            kind, message = value
            if kind == "store":
                self._broken = message
            elif kind == "stale" and self._broken is not None:
                # a batch sent before the database failed expected what the failed batch
                # would have written: the failure is that one, said as it was
                value = ("store", self._broken)
            outcomes.append((request, ok, self._failure(value)))
        _hand_over(loop, outcomes)

    def _finish(self, loop: asyncio.AbstractEventLoop, why: str) -> None:
        """The writer said its last (or ended): what still waits fails, the process is reaped
        in the background."""
        answers = self._answers
        process = self._process
        loop.remove_reader(answers.fd)
        assert process.stdout is not None
        process.stdout.close()
        threading.Thread(target=process.wait, daemon=True).start()
        with self._lock:
            self._ended = StoreError(why or f"{self.path}: the store is closed")
            pending, self._pending = self._pending, {}
            self._finished.set()
        _hand_over(loop, [(request, False, self._ended) for request in pending.values()])

    def _failure(self, value: tuple[str, str]) -> Exception:
        kind, message = value
        if kind == "stale":
            return StaleWrite(message)
        if kind == "lease":
            return LeaseLost(message)
        if kind == "active":
            return ActiveRunExists(message)
        if kind == "duplicate":  # the message is the id of the run with that key
            return RunExists(message)
        if kind == "tick":  # the message is the JSON of [dag, nominal]
            dag, nominal = json.loads(message)
            return TickExists(dag, nominal)
        if kind == "value":
            return StoreError(f"{self.path}: a value cannot be stored ({message})")
        return StoreError(message)


def _hand_over(loop: asyncio.AbstractEventLoop, outcomes: list[tuple[_Request, bool, Any]]) -> None:
    """Settle the requests made on ``loop`` now and hand the others to their own loops."""
    here: list[tuple[Any, bool, Any]] = []
    elsewhere: dict[asyncio.AbstractEventLoop, list[tuple[Any, bool, Any]]] = {}
    for request, ok, value in outcomes:
        settled = (request.future, ok, value)
        if request.loop is loop:
            here.append(settled)
        else:
            elsewhere.setdefault(request.loop, []).append(settled)
    _settle_by_loop(elsewhere)
    _settle_all(here)


def _settle_by_loop(by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, bool, Any]]]) -> None:
    for loop, settled in by_loop.items():  # one wake-up of each loop per commit
        try:
            loop.call_soon_threadsafe(_settle_all, settled)
        except RuntimeError:  # that loop is closed: nobody waits any more
            pass


def _settle_all(settled: list[tuple[Any, bool, Any]]) -> None:
    """Settle futures and receipts (neither runs any code of the caller's)."""
    for future, ok, value in settled:
        if isinstance(future, Receipt):
            future.settle(None if ok else value)
        elif future.cancelled():
            continue
        elif ok:
            future.set_result(value)
        else:
            future.set_exception(value)
