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
import secrets
import signal
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import structlog
from yarl import URL

from ..connections import Connection
from ..errors import ConfigError, OrchestratorError
from ..model.states import JobState, RunState
from ..runtime import runs
from ..runtime.callbacks import Callbacks, load_key
from ..runtime.events import JobChanged, RunChanged
from ..runtime.host import RunHost
from ..runtime.scheduler import ACTIVE, Scheduler
from ..store.base import RunRecord, Store
from ..store.open import default_db_path, open_store, sqlite_path
from .api.auth import Tokens, check_bind
from .api.context import ApiContext
from .api.fanout import Fanout
from .api.feed import EventFeed
from .catalog import DagCatalog
from .lock import daemon_lock
from .metrics import DaemonMetrics, watch_loop_lag
from .server import Checks, build_app, serving

log = structlog.get_logger("orchestrator.daemon")

GRACE = 30.0  # seconds a stopping daemon waits for its runs to be let go
IN_FLIGHT = (JobState.SUBMITTING, JobState.RUNNING)
CALLBACK_KEY = "callback.key"  # beside the database: the key callback tokens are signed with
GC_THRESHOLDS = (700, 10, 1000)
"""The garbage collector's thresholds while a daemon serves (CPython's: 700, 10, 10). A full
collection walks every object the process tracks, some 35-50 per job in flight: with 10,000 in
flight one held the event loop 0.3-0.7 s, and it came every 20-40 s (the objects of a poll live
seconds, long enough to reach the oldest generation) while finding nothing to free. Now a full
collection comes after 1,000 collections of the middle generation (minutes) instead of 10
(tests/bench/bench_daemon.py). The daemon's run host leaves them as they are (it raises the
first one elsewhere: :data:`orchestrator.runtime.host.YOUNG_COLLECTION`)."""


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
    tokens: Path | None = None  # the API's tokens file (none: the API answers everyone)
    # the daemon's address as remotes reach it: with one, remotes that can call back are given
    # /api/v1/callbacks/{token} URLs under it (pushed completion); none: polling only
    public_url: str | None = None


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
        self.tokens = Tokens()
        self.feed: EventFeed | None = None
        self._store: Store | None = None
        self._host: RunHost | None = None
        self._jobs: dict[str, dict[str, JobState]] = {}  # the jobs of its active runs
        self._job_counts: Counter[JobState] = Counter()  # of the jobs in _jobs
        self._runs: dict[str, RunState] = {}  # the runs active in this daemon
        self._ended: Counter[RunState] = Counter()  # the runs that ended in this daemon

    async def serve(self) -> None:
        config = self.config
        self.tokens = Tokens.load(config.tokens)
        check_bind(config.host, self.tokens)
        with daemon_lock(config.db), _gc_thresholds():
            self._load()
            callbacks = self._callbacks()
            store = self._store = await open_store(config.db)
            try:
                async with RunHost(
                    store, config.connections, callbacks=callbacks, tune_gc=False
                ) as host:
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
        feed = self.feed = EventFeed(store, host, Fanout())
        api = ApiContext(store, host, self.catalog, scheduler, feed, self.tokens)
        app = build_app(ready=self._ready, metrics=metrics, api=api, tokens=self.tokens)
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
                services.start_soon(self._sync, host)
                await services.start(feed.serve)
                async with anyio.create_task_group() as work:
                    await work.start(scheduler.serve)
                    unfinished = await store.list_runs(states=ACTIVE, limit=100_000)
                    by_dag: dict[str, list[RunRecord]] = {}
                    for record in reversed(unfinished):  # oldest first
                        by_dag.setdefault(record.dag, []).append(record)
                    for records in by_dag.values():
                        scheduler.adopting.update(r.id for r in records)  # resumed here
                        work.start_soon(self._resume_dag, host, records)
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
                services.cancel_scope.cancel()  # the feed ends every stream as it stops

    def _callbacks(self) -> Callbacks | None:
        """The callback URLs under ``--public-url``, signed with the key kept beside the
        database (made on the first start; a store in memory gets a key for this process)."""
        public = self.config.public_url
        if public is None:
            return None
        url = URL(public)
        if url.scheme not in ("http", "https") or not url.host or url.query_string or url.fragment:
            raise ConfigError(
                f"--public-url {public}: expected http(s)://host[:port][/path], the daemon's "
                "address as remotes reach it"
            )
        db = self.config.db
        if db == "memory:":
            return Callbacks(public, secrets.token_bytes(32))
        where = sqlite_path(db).parent if db else default_db_path().parent
        return Callbacks(public, load_key(where / CALLBACK_KEY))

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
        """The folder changed and was read again (the watcher): said, then scheduled."""
        for error in self.catalog.errors:
            log.error("dag.load_failed", path=str(error.path), error=error.message)
        log.info("dags.reloaded", dags=sorted(self.catalog.dags), errors=len(self.catalog.errors))
        self._reschedule()

    def _reschedule(self) -> None:
        """Schedule what the folder holds now (not once stopping)."""
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
                    self._reschedule()
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
    async def _resume_dag(self, host: RunHost, records: list[RunRecord]) -> None:
        """A DAG's unfinished runs, oldest first. Under ``queue`` and ``queue_all`` a run still
        queued was waiting for the others: it starts once they ended, one after another, as it
        would have without the restart; any other run is resumed at once."""
        dag = self.catalog.dags.get(records[0].dag)
        overlap = (dag.schedule or {}).get("overlap") if dag is not None else None
        waiting = [r for r in records if r.state is RunState.QUEUED]
        if overlap not in ("queue", "queue_all"):
            waiting = []
        async with anyio.create_task_group() as tg:
            for record in records:
                if record not in waiting:
                    tg.start_soon(self._resume, host, record)
        for record in waiting:
            if self.stopping:
                return  # left queued in the store, for the next start
            await self._resume(host, record)

    async def _resume(self, host: RunHost, record: RunRecord) -> None:
        try:
            await runs.resume(host, record, orphan=True)
        except runs.RunRefused as exc:
            log.warning("run.not_resumed", run=record.id, why=str(exc))
        except OrchestratorError as exc:
            log.error("run.not_resumed", run=record.id, error=str(exc))
        finally:
            if self._scheduler is not None:
                self._scheduler.adopting.discard(record.id)

    async def _follow(self, host: RunHost) -> None:
        """The counts of runs and jobs by state, from the host's events (kept up to date here,
        set in the metrics by :meth:`_sync`)."""
        jobs, counts = self._jobs, self._job_counts
        # unbounded: a run of 10,000 jobs starts them in one go, and a dropped event would
        # leave its job counted in the wrong state for as long as the run lasts
        with host.events.subscribe(buffer=0) as events:
            async for event in events:
                if isinstance(event, JobChanged):
                    of_run = jobs.setdefault(event.run_id, {})
                    old = of_run.get(event.job_id)
                    if old is not None:
                        counts[old] -= 1
                    of_run[event.job_id] = event.new
                    counts[event.new] += 1
                elif isinstance(event, RunChanged):
                    if event.old is None:
                        self._runs[event.run_id] = event.new
                    else:  # it ended, or was let go
                        self._runs.pop(event.run_id, None)
                        if event.new.terminal:
                            self._ended[event.new] += 1
                        counts.subtract(jobs.pop(event.run_id, {}).values())

    async def _sync(self, host: RunHost) -> None:
        """The metrics brought up to date every second: runs and jobs by state, the connectors'
        calls and the webhook deliveries."""
        metrics = self.metrics
        while True:
            deliveries = host.deliverer.outcomes if host.deliverer is not None else {}
            metrics.sync(host.hub.calls, deliveries)
            counts = self._job_counts
            metrics.set_job_counts({state.value: n for state, n in counts.items()})
            metrics.set_jobs_in_flight(sum(counts[state] for state in IN_FLIGHT))
            runs = Counter(state.value for state in self._runs.values())
            runs.update({state.value: n for state, n in self._ended.items()})
            metrics.set_run_counts(runs)
            await anyio.sleep(1.0)

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
