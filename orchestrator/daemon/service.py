"""``orchestrator serve``: the daemon, assembled. One run host, the DAG folder it schedules, the
scheduler, and the HTTP server of ``/healthz``, ``/readyz`` and ``/metrics``.

Lifecycle: on start it takes the database's daemon lock, loads the folder (a broken file is
reported and skipped) and resumes every run that did not end. SIGHUP, or a change in the folder,
reloads it. The first SIGTERM (or SIGINT) stops the schedules, lets every run go as the store
shows it (what is recorded flushed, remote jobs left running, for the next start to adopt) and
exits once they are let go, or after the grace period; a second one exits at once, which loses
nothing either: the store holds every run as it was last recorded.
"""

from __future__ import annotations

import gc
import signal
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import structlog

from ..connections import Connection
from ..errors import OrchestratorError
from ..model.states import JobState, RunState
from ..runtime import runs
from ..runtime.events import JobChanged, RunChanged
from ..runtime.host import RunHost
from ..runtime.scheduler import ACTIVE, Scheduler
from ..store.base import RunRecord, Store
from ..store.open import open_store
from .catalog import DagCatalog
from .lock import daemon_lock
from .metrics import DaemonMetrics, watch_loop_lag
from .server import Checks, build_app, serving

log = structlog.get_logger("orchestrator.daemon")

GRACE = 30.0  # seconds a stopping daemon waits for its runs to be let go
IN_FLIGHT = (JobState.SUBMITTING, JobState.RUNNING)
GC_THRESHOLDS = (700, 10, 1000)
"""The garbage collector's thresholds while a daemon serves (CPython's: 700, 10, 10). A full
collection walks every object the process tracks, some 35-50 per job in flight: with 10,000 in
flight one held the event loop 0.3-0.7 s, and it came every 20-40 s (the objects of a poll live
seconds, long enough to reach the oldest generation) while finding nothing to free. Now a full
collection comes after 1,000 collections of the middle generation (minutes) instead of 10;
the young generations are collected as before (tests/bench/bench_daemon.py)."""


@contextmanager
def _gc_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    dags: Path
    connections: Mapping[str, Connection]
    db: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    grace: float = GRACE


class Daemon:
    """One daemon process (see the module). ``await Daemon(config).serve()`` returns once it
    stopped."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.catalog = DagCatalog(config.dags)
        self.metrics = DaemonMetrics()
        self.port: int | None = None  # bound, once serving
        self.started = anyio.Event()  # serving, schedules loaded, runs being resumed
        self.stopping = False
        self._scheduler: Scheduler | None = None
        self._store: Store | None = None
        self._host: RunHost | None = None
        self._jobs: dict[str, dict[str, JobState]] = {}  # run id -> its jobs' states
        self._runs: dict[str, RunState] = {}
        # the states above, counted as they change: an event costs the same with 10 jobs in
        # flight or 10,000 (counting the whole dict at each event made the daemon quadratic)
        self._job_counts: Counter[JobState] = Counter()
        self._run_counts: Counter[RunState] = Counter()
        self._dag_of: dict[str, str] = {}  # run id -> DAG name

    async def serve(self) -> None:
        config = self.config
        with daemon_lock(config.db), _gc_thresholds():
            self._load()
            store = self._store = await open_store(config.db)
            try:
                async with RunHost(store, config.connections) as host:
                    self._host = host
                    await self._serve(host, store)
            finally:
                with anyio.CancelScope(shield=True):
                    await store.aclose()
        log.info("daemon.stopped")

    async def _serve(self, host: RunHost, store: Store) -> None:
        config = self.config
        metrics = self.metrics
        scheduler = self._scheduler = Scheduler(
            host, on_started=metrics.tick_started, on_skipped=metrics.tick_skipped
        )
        scheduler.update(self.catalog.dags)
        app = build_app(ready=self._ready, metrics=metrics)
        with anyio.CancelScope() as everything:
            async with (
                serving(app, config.host, config.port) as port,
                anyio.create_task_group() as services,
            ):
                self.port = port
                services.start_soon(self._on_signals, everything)
                services.start_soon(watch_loop_lag, metrics)
                services.start_soon(self.catalog.watch, self._reloaded)
                services.start_soon(self._follow, host)
                async with anyio.create_task_group() as work:
                    await work.start(scheduler.serve)
                    unfinished = await store.list_runs(states=ACTIVE, limit=100_000)
                    for record in reversed(unfinished):  # oldest first
                        work.start_soon(self._resume, host, record)
                    log.info(
                        "daemon.started",
                        host=config.host,
                        port=port,
                        dags=len(self.catalog.dags),
                        scheduled=len(scheduler.scheduled),
                        errors=len(self.catalog.errors),
                        resumed=len(unfinished),
                    )
                    self.started.set()
                services.cancel_scope.cancel()

    # -- the folder ------------------------------------------------------------------------
    def _load(self) -> None:
        change = self.catalog.reload()
        for error in self.catalog.errors:
            log.error("dag.load_failed", path=str(error.path), error=error.message)
        if change.added or change.changed or change.removed:
            log.info(
                "dags.loaded",
                added=list(change.added),
                changed=list(change.changed),
                removed=list(change.removed),
            )

    async def _reloaded(self) -> None:
        if self._scheduler is not None and not self.stopping:
            self._scheduler.update(self.catalog.dags)

    def reload(self) -> None:
        """Read the folder again (SIGHUP) and schedule what it holds now."""
        self._load()
        if self._scheduler is not None and not self.stopping:
            self._scheduler.update(self.catalog.dags)

    # -- signals ---------------------------------------------------------------------------
    async def _on_signals(self, everything: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                if signum == signal.SIGHUP:
                    log.info("daemon.reloading", signal=name)
                    await anyio.to_thread.run_sync(self._load)
                    if self._scheduler is not None and not self.stopping:
                        self._scheduler.update(self.catalog.dags)
                elif self.stopping:
                    log.warning("daemon.exiting", signal=name, note="at once")
                    everything.cancel()
                else:
                    self.stop(f"the daemon is stopping ({name})")
                    everything.deadline = anyio.current_time() + self.config.grace

    def stop(self, reason: str = "the daemon is stopping") -> None:
        """Fire no more ticks, and let every run go (remote jobs left running): the daemon's
        :meth:`serve` returns once they are let go."""
        if self.stopping:
            return
        self.stopping = True
        assert self._host is not None
        assert self._scheduler is not None
        log.info("daemon.stopping", reason=reason, runs=self._host.active)
        self._scheduler.stop()
        self._host.detach_all(reason)

    # -- runs ------------------------------------------------------------------------------
    async def _resume(self, host: RunHost, record: RunRecord) -> None:
        try:
            await runs.resume(host, record, orphan=True)
        except runs.RunRefused as exc:
            log.warning("run.not_resumed", run=record.id, why=str(exc))
        except OrchestratorError as exc:
            log.error("run.not_resumed", run=record.id, error=str(exc))

    async def _follow(self, host: RunHost) -> None:
        """The metrics of runs and jobs, from the host's events."""
        # unbounded: a run of 10,000 jobs starts them in one go, and a dropped event would
        # leave its job counted in the wrong state for as long as the run lasts
        with host.events.subscribe(buffer=0) as events:
            async for event in events:
                if isinstance(event, JobChanged):
                    jobs = self._jobs.setdefault(event.run_id, {})
                    if (old := jobs.get(event.job_id)) is not None:
                        self._job_counts[old] -= 1
                    jobs[event.job_id] = event.new
                    self._job_counts[event.new] += 1
                    if event.new is JobState.SUBMITTING:
                        dag = self.catalog.dags.get(self._dag_of.get(event.run_id, ""))
                        job = dag.jobs.get(event.job_id) if dag is not None else None
                        self.metrics.submitted((job.connection if job else None) or "default")
                elif isinstance(event, RunChanged):
                    if (was := self._runs.get(event.run_id)) is not None:
                        self._run_counts[was] -= 1
                    self._runs[event.run_id] = event.new
                    self._run_counts[event.new] += 1
                    self._dag_of[event.run_id] = event.dag
                    if event.new.terminal or event.old is RunState.RUNNING:
                        self._forget(event.run_id)
                self._count()

    def _forget(self, run_id: str) -> None:
        for state in self._jobs.pop(run_id, {}).values():
            self._job_counts[state] -= 1

    def _count(self) -> None:
        jobs, runs = self._job_counts, self._run_counts
        self.metrics.set_job_counts({s.value: n for s, n in jobs.items() if n})
        self.metrics.set_jobs_in_flight(sum(jobs[s] for s in IN_FLIGHT))
        self.metrics.set_run_counts({s.value: n for s, n in runs.items() if n})

    # -- readiness -------------------------------------------------------------------------
    async def _ready(self) -> Checks:
        checks: dict[str, tuple[bool, str]] = {}
        try:
            assert self._store is not None
            started = time.perf_counter()
            await self._store.find_run_ids("0", limit=1)
            checks["store"] = (True, f"answered in {time.perf_counter() - started:.3f}s")
        except Exception as exc:  # any failure is "not ready", said as it is
            checks["store"] = (False, f"{type(exc).__name__}: {exc}")
        scheduler = self._scheduler
        loaded = scheduler is not None and scheduler.loaded and self.started.is_set()
        count = len(scheduler.scheduled) if scheduler is not None else 0
        checks["schedules"] = (loaded, f"{count} scheduled" if loaded else "not loaded yet")
        checks["accepting"] = (not self.stopping, "stopping" if self.stopping else "yes")
        return checks

    def snapshot(self) -> dict[str, Any]:
        """What the daemon holds now (for tests and logs)."""
        return {
            "dags": sorted(self.catalog.dags),
            "errors": [(str(e.path), e.message) for e in self.catalog.errors],
            "active": list(self._host.active) if self._host is not None else [],
        }
