"""The run host: one service that runs any number of runs in this process, with what they share.

``async with RunHost(store, connections) as host`` owns one task group, one heartbeat for all
the runs it owns, one webhook deliverer (with its in-flight set: a delivery is never sent twice
by one process), and one :class:`~orchestrator.runtime.hub.ConnectorHub` (a connector per job
type and connection, shared by every run, so that a connection's ``concurrency``, rate limit and
connection pool hold across runs). It runs, cancels and wakes runs. The command line runs on it;
the daemon will. Signals are not its business: whoever owns the process (the command line's
entry, the daemon) turns them into :meth:`RunHost.cancel_all`.
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Self

import anyio
import structlog
from anyio.abc import TaskGroup

from ..clock import Clock
from ..connections import Connection
from ..connectors.base import Connector, JobType
from ..connectors.registry import job_types as registered_job_types
from ..engine.executor import Observer, RunExecutor
from ..engine.records import JobRun, Run
from ..engine.slots import Slots
from ..errors import RunHalted, StoreError
from ..model.states import JobState, RunState
from ..store.base import AttemptRecord, JobRecord, Lease, LeaseLost, Receipt, Store
from ..store.owner import HEARTBEAT, this_owner
from ..webhooks.outbox import OutboxSink
from .callbacks import Attempt, Callbacks
from .events import JobChanged, Publisher, RunChanged
from .hub import ConnectorHub

log = structlog.get_logger("orchestrator")
WEBHOOK_WAIT = 10.0
CANCEL_POLL = 1.0  # seconds between two reads of the cancel requests of the host's runs
Stored = tuple[Mapping[str, JobRecord], list[AttemptRecord]]  # a run's rows, to resume it

# The cyclic garbage collector's first threshold while a host runs. CPython's default, 700
# container objects allocated net of those freed, made a run with a store collect seven times as
# often as one without: its jobs hold their objects across the waits for commits, and what they
# free after a collection no longer takes the count down (it starts again from zero). Measured
# with bench_http.py's jobs (4,000 of them): 388 young and 3 full collections against 59 and
# none without the store, about 30 of the 230 µs of engine CPU a job cost. Nearly everything a
# run allocates is freed by reference counting; the collector is only there for cycles, which a
# higher threshold finds as surely, later. Not in the daemon: with 10,000 jobs in flight its
# single longest collection took 120-188 ms instead of 91 (bench_daemon.py), and it keeps the
# thresholds it chose for its event loop's lag.
YOUNG_COLLECTION = 10_000


class RunHost:
    """Runs runs. ``connectors`` replace a job type's connector for every run (tests hand in
    fakes); ``clock`` is the engine's clock (a virtual one in tests); ``job_types`` is the
    catalog of job types the engine runs (by default, every registered one); ``tune_gc=False``
    leaves the collector's thresholds to the program (the daemon sets its own, for its event
    loop's lag: see :data:`YOUNG_COLLECTION`)."""

    def __init__(
        self,
        store: Store | None,
        connections: Mapping[str, Connection] | None = None,
        *,
        connectors: Mapping[str, Connector] | None = None,
        clock: Clock | None = None,
        owner: str | None = None,
        heartbeat: float = HEARTBEAT,
        publish: bool = True,
        job_types: Mapping[str, JobType] | None = None,
        callbacks: Callbacks | None = None,
        tune_gc: bool = True,
    ) -> None:
        self.store = store
        self._tune_gc = tune_gc
        self.job_types = job_types if job_types is not None else registered_job_types()
        self.connections = dict(connections or {})
        self.hub = ConnectorHub(self.connections, connectors, job_types=self.job_types)
        self.slots = Slots(
            {
                f"connection:{c.name}": c.concurrency
                for c in self.connections.values()
                if c.concurrency
            }
        )
        self.owner = owner or this_owner()
        self._clock = clock
        self._heartbeat = heartbeat
        self._executors: dict[str, RunExecutor] = {}
        self.events = Publisher()  # the runs' state changes, for live views
        self._publish = publish
        self._cancelled: str | None = None  # cancel_all's reason: runs started later end at once
        self._detached: str | None = None  # detach_all's reason: runs started later let go
        self._stack = AsyncExitStack()
        self._tg: TaskGroup | None = None
        self._services: list[anyio.CancelScope] = []  # the host's own tasks, ended with it
        self.deliverer: Any = None
        self.callbacks = callbacks  # pushed completion (see .callbacks); None: polling only

    # -- the service ----------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        stack = self._stack
        await stack.__aenter__()
        if self._tune_gc:
            _Collector.enter()
            stack.callback(_Collector.exit)
        try:
            if self.store is not None:
                from ..webhooks.deliver import Deliverer

                self.deliverer = await stack.enter_async_context(Deliverer(self.store))
            self._tg = tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(self._stop_services)
            stack.callback(self.events.close)
            stack.callback(self.hub.close)  # the task group then waits for it to close them
            await tg.start(self.hub.serve)
            if self.store is not None:
                self.start_service(self._beat, self.store)
                self.start_service(self._read_cancels, self.store)
        except BaseException:
            await stack.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        try:
            return await self._stack.__aexit__(et, e, tb)
        except BaseExceptionGroup as group:
            if e is not None and _sole(group) is e:  # the body's own error, as it was raised
                raise e from None
            raise

    def start_service(self, func: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``func(*args)`` in the host's task group until the host ends (the heartbeat, the
        command line's signal handler, later the daemon's scheduler)."""
        assert self._tg is not None, "enter the host first"

        scope = anyio.CancelScope()
        self._services.append(scope)

        async def service() -> None:
            with scope:
                await func(*args)

        self._tg.start_soon(service)

    def _stop_services(self) -> None:
        for scope in self._services:
            scope.cancel()

    async def _beat(self, store: Store) -> None:
        """One heartbeat for every run this host owns. A store that fails halts them all: they
        stop where the store shows them, remote jobs left running (see RunExecutor.halt)."""
        while True:
            await anyio.sleep(self._heartbeat)
            if not self._executors:
                continue
            leases = {
                run_id: executor.lease
                for run_id, executor in self._executors.items()
                if executor.lease is not None
            }
            try:
                lost = await store.heartbeat(leases, time.time())
            except StoreError as exc:
                for executor in list(self._executors.values()):
                    executor.halt(exc)
                continue
            for run_id in lost:  # another owner claimed it: stop, write nothing, cancel nothing
                losing = self._executors.get(run_id)
                if losing is not None:
                    log.warning("run.lease_lost", run=run_id, lease=leases[run_id])
                    losing.halt(LeaseLost(f"run {run_id}: its lease was taken over"))

    async def _read_cancels(self, store: Store) -> None:
        """Cancel the runs, and the jobs, whose cancel another process asked for
        (``request_cancel`` and ``request_job_cancel``: the command line, another daemon),
        reading the requests every second."""
        done: set[str] = set()
        jobs_done: set[tuple[str, str]] = set()
        while True:
            await anyio.sleep(CANCEL_POLL)
            if not self._executors:
                continue
            active = list(self._executors)
            try:
                requests = await store.cancel_requests(active)
                job_requests = await store.job_cancel_requests(active)
            except StoreError:
                continue  # the heartbeat halts the runs if the store is gone
            for run_id, reason in requests.items():
                executor = self._executors.get(run_id)
                if executor is not None and run_id not in done:
                    done.add(run_id)
                    log.warning("run.cancel_requested", run=run_id, reason=reason)
                    executor.cancel(reason)
            for run_id, asked in job_requests.items():
                executor = self._executors.get(run_id)
                for job_id, reason in asked.items():
                    if executor is not None and (run_id, job_id) not in jobs_done:
                        jobs_done.add((run_id, job_id))
                        log.warning("job.cancel_requested", run=run_id, job=job_id, reason=reason)
                        executor.cancel_job(job_id, reason)
            done &= set(self._executors)
            jobs_done = {key for key in jobs_done if key[0] in self._executors}

    # -- runs -----------------------------------------------------------------------------
    @property
    def active(self) -> list[str]:
        """The ids of the runs executing now."""
        return list(self._executors)

    async def run(
        self,
        run: Run,
        *,
        stored: Stored | None = None,
        lease: Lease | None = None,
        created: Receipt | None = None,
        concurrency: int | None = None,
        observers: list[Observer] | None = None,
        rng: random.Random | None = None,
        webhook_wait: float = WEBHOOK_WAIT,
    ) -> Run:
        """Run ``run`` to its end in the calling task. ``stored`` (its jobs and attempts as the
        store has them) continues a run that did not end: in-flight attempts are followed, never
        resubmitted. ``created`` (the store's record of a new run, sent by the caller) is
        durable before anything more of the run is written, and so before any job is submitted;
        if it is refused, the run halts with that refusal. ``lease`` is the host's lease on
        the run in the store (its owner and the epoch of its claim): every write carries it, the
        heartbeat renews it, and once another owner has claimed the run the executor stops,
        writing nothing more and cancelling nothing remote.
        At the end, waits up to ``webhook_wait`` seconds for the run's webhooks; the rest stay in
        the outbox for the next start. Raises :class:`RunHalted` when the store fails."""
        if run.id in self._executors:
            raise RuntimeError(f"run {run.id} is already running in this host")
        connectors = await self.hub.open_for(run.dag)
        if self._publish:
            observers = [*(observers or ()), self._job_observer(run)]
        sink = OutboxSink(run.dag, self.deliverer.notify) if self.deliverer is not None else None
        executor = RunExecutor(
            run,
            connectors,
            job_types=self.job_types,
            clock=self._clock,
            concurrency=concurrency,
            slots=self.slots,
            rng=rng,
            observers=observers,
            store=self.store,
            events=sink,  # webhooks: their outbox rows written with the ends that fire them
            callbacks=self.callbacks,
        )
        executor.lease = lease
        if stored is not None:
            executor.resume_from(*stored)
        if self._detached is not None:  # let go at once, its remote jobs untouched
            executor.detach(self._detached)
        elif self._cancelled is not None:
            executor.cancel(self._cancelled)
        if created is not None:
            executor.after_record(created)
        self._executors[run.id] = executor
        dag = run.dag.name
        self.events.publish(RunChanged(run.id, dag, None, RunState.RUNNING, time.time()))
        try:
            try:
                await executor.execute()
            except* (StoreError, LeaseLost) as group:
                # a run whose record was refused was never stored: the refusal, as it is
                raise executor.record_refusal or _halted(run, group) from None
        finally:
            del self._executors[run.id]
            if self.callbacks is not None:
                self.callbacks.forget(run.id)
            end = RunChanged(run.id, dag, RunState.RUNNING, run.state, time.time(), run.error)
            self.events.publish(end)
        if executor.detached:
            return run
        if self.deliverer is not None and not await self.deliverer.drain(run.id, webhook_wait):
            log.warning(
                "webhooks.pending", run=run.id, note="left in the outbox for the next start"
            )
        return run

    def _job_observer(self, run: Run) -> Observer:
        publish, run_id = self.events.publish, run.id

        def observe(jr: JobRun, old: JobState) -> None:
            if self.events.listening:
                error = jr.error if jr.state.terminal else None
                publish(JobChanged(run_id, jr.id, old, jr.state, jr.attempts, time.time(), error))

        return observe

    def cancel(self, run_id: str, reason: str = "cancelled") -> bool:
        """Cancel a run of this host: its running jobs are cancelled on their remotes, the rest
        never start. False if no such run is executing here."""
        executor = self._executors.get(run_id)
        if executor is None:
            return False
        executor.cancel(reason)
        return True

    def cancel_job(self, run_id: str, job_id: str, reason: str = "cancelled") -> str | None:
        """Cancel one job of a run of this host (see ``RunExecutor.cancel_job``); None if the
        run is not executing here."""
        executor = self._executors.get(run_id)
        return executor.cancel_job(job_id, reason) if executor is not None else None

    def cancel_all(self, reason: str) -> None:
        """Cancel every run of the host, and any run it is asked to start from now on."""
        self._cancelled = reason
        for executor in list(self._executors.values()):
            executor.cancel(reason)

    def detach_all(self, reason: str) -> None:
        """Let every run of the host go without ending it (a daemon stopping): what is recorded
        is flushed, remote jobs are left running, and the next start adopts them."""
        self._detached = reason
        for executor in list(self._executors.values()):
            executor.detach(reason)

    def wake(self, run_id: str, job_id: str, attempt: int | None = None) -> bool:
        """A pushed completion (a callback, a local process ending): poll that job now (only
        if ``attempt``, when given, is its current attempt)."""
        executor = self._executors.get(run_id)
        return executor is not None and executor.wake(job_id, attempt)

    def callback(self, token: str) -> Attempt | None:
        """A remote called back with ``token``: poll its attempt now, and return it (run, job,
        attempt number). None (and nothing done) unless the token is bound to an attempt of a
        run of this host that is still the job's current one and still followed: a forged
        token, another attempt's, or one replayed after its attempt ended."""
        found = self.callbacks.find(token) if self.callbacks is not None else None
        if found is None or not self.wake(*found):
            return None
        return found


def _leaf(error: BaseException) -> BaseException:
    """The first exception of nested groups (task groups nest)."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _sole(error: BaseException) -> BaseException | None:
    """The one exception that nested groups of one hold; None if they hold more."""
    while isinstance(error, BaseExceptionGroup):
        if len(error.exceptions) != 1:
            return None
        error = error.exceptions[0]
    return error


def _halted(run: Run, group: BaseExceptionGroup[StoreError | LeaseLost]) -> RunHalted:
    error = _leaf(group)
    if isinstance(error, RunHalted):
        return error
    if isinstance(error, LeaseLost):
        return RunHalted(
            f"run {run.id} stopped: another process took it over ({error}); this one left its "
            "state and its remote jobs to the new owner",
            run.id,
        )
    return RunHalted(
        f"run {run.id} stopped: {error}; its state is kept as it was, remote jobs left "
        f"running: `orchestrator resume {run.id}` continues it once the store works",
        run.id,
    )


class _Collector:
    """Raises the collector's first threshold to :data:`YOUNG_COLLECTION` while hosts run: one
    process-wide setting, raised by the first host in and put back by the last one out (unless
    it was changed meanwhile)."""

    hosts = 0
    before: tuple[int, ...] | None = None

    @classmethod
    def enter(cls) -> None:
        cls.hosts += 1
        current = gc.get_threshold()
        if cls.hosts == 1 and current[0] < YOUNG_COLLECTION:
            cls.before = current
            gc.set_threshold(YOUNG_COLLECTION, *current[1:])

    @classmethod
    def exit(cls) -> None:
        cls.hosts -= 1
        if cls.hosts == 0 and cls.before is not None:
            if gc.get_threshold()[0] == YOUNG_COLLECTION:
                gc.set_threshold(*cls.before)
            cls.before = None
