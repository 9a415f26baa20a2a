"""The daemon's scheduler: fires the schedules of the DAGs it is given, on a run host.

Each tick is recorded in the store under its unique key (DAG, nominal time) in the transaction
that creates its run, so no tick runs twice: not after a crash between the two, not with a
second scheduler on the same store. What is due comes from :func:`~orchestrator.model.schedule.
due_ticks` (catch-up, window, cap, pause) given the newest tick recorded; the overlap policy is
decided here, against the DAG's active runs in the store:

- ``skip``: no run while another is active (the tick is recorded as skipped, ``overlap``);
- ``queue``: one run waits for the active one to end; a tick finding one waiting already is
  skipped;
- ``queue_all``: every tick's run waits, and they run one after another, in order;
- ``cancel_previous``: the active runs of this host are cancelled (their remote jobs too), and
  the new run starts at once;
- ``allow``: runs start regardless.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup

from .. import crash
from ..clock import iso
from ..engine.durable import send_new_run
from ..engine.records import Run
from ..errors import OrchestratorError
from ..model.dag import DAG
from ..model.schedule import ON_TIME, Schedule, Skip, due_ticks, fire_times, jitter
from ..model.states import RunState
from ..store.base import (
    ActiveRunExists,
    JobRecord,
    Lease,
    RecordTick,
    RunRecord,
    Store,
    TickExists,
    TickRecord,
)
from ..store.owner import local_owner_alive
from .host import RunHost, Stored
from .prepare import prepare_run
from .rerun import carry_over
from .runs import RunRefused, execute, resume

log = structlog.get_logger("orchestrator.scheduler")

ACTIVE = [RunState.QUEUED, RunState.RUNNING]
LOOK_AGAIN = 60.0  # seconds: the longest the scheduler sleeps (pauses, clock jumps)
AT_ONCE = 32  # DAGs evaluated at the same time, at most
WAIT_POLL = 1.0  # seconds: how often a queued run looks whether the DAG's active run ended


def _utc(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)


class Scheduler:
    """Fires schedules on ``host`` (which must have a store). ``now`` is the wall clock (a test
    may move it); ``on_started(delay)`` and ``on_skipped(reason)`` are told of each tick (the
    daemon's metrics)."""

    def __init__(
        self,
        host: RunHost,
        *,
        now: Callable[[], float] = time.time,
        on_started: Callable[[float], None] | None = None,
        on_skipped: Callable[[str], None] | None = None,
    ) -> None:
        if host.store is None:
            raise ValueError("a scheduler needs a host with a store")
        self.host = host
        self.store: Store = host.store
        self._now = now
        self._on_started = on_started
        self._on_skipped = on_skipped
        self._dags: dict[str, DAG] = {}
        self._changed = anyio.Event()
        self._waiting: dict[str, list[Run]] = {}  # runs queued behind an active one, by DAG
        self._since: dict[str, float] = {}  # when each DAG was first seen
        self._carried: dict[str, dict[str, JobRecord]] = {}  # a rerun's jobs kept, by run id
        self._draining: set[str] = set()  # the DAGs whose queued runs a drain task starts
        # orphaned runs being resumed (by the scheduler, or by the daemon at its start): not
        # adopted again at a tick
        self.adopting: set[str] = set()
        self._tg: TaskGroup | None = None
        self.loaded = False  # schedules given at least once (readiness)
        self.stopping = False

    # -- what to schedule ------------------------------------------------------------------
    def update(self, dags: Mapping[str, DAG]) -> None:
        """The DAGs to schedule now (those without a ``schedule.cron`` are ignored); a DAG no
        longer given stops being scheduled, its running runs go on."""
        self._dags = {n: d for n, d in dags.items() if (d.schedule or {}).get("cron")}
        self.loaded = True
        self.wake()

    def wake(self) -> None:
        """Look at the schedules now (they changed, or a pause did)."""
        self._changed.set()

    @property
    def scheduled(self) -> Mapping[str, DAG]:
        return self._dags

    def waiting(self, dag: str) -> list[str]:
        """The ids of the DAG's runs queued behind an active one, in the order they will run."""
        return [run.id for run in self._waiting.get(dag, ())]

    @property
    def serving(self) -> bool:
        """Runs can be started (:meth:`start`): in its session, and not stopping."""
        return self._tg is not None and not self.stopping

    def stop(self) -> None:
        """Fire nothing more (a daemon stopping); runs started go on until their host lets
        them go."""
        self.stopping = True
        self.wake()

    # -- the loop --------------------------------------------------------------------------
    @asynccontextmanager
    async def session(self) -> AsyncIterator[Scheduler]:
        """The task group of the runs the scheduler starts: :meth:`evaluate` fires ticks inside
        it; it ends once they ended (or were let go by their host)."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                yield self
            finally:
                self._tg = None

    async def serve(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Fire ticks as they come due, until :meth:`stop`."""
        async with self.session():
            task_status.started()
            while not self.stopping:
                self._changed = anyio.Event()
                due = await self.evaluate()
                delay = LOOK_AGAIN if due is None else due - self._now()
                if delay > 0 and not self.stopping:
                    with anyio.move_on_after(min(delay, LOOK_AGAIN)):
                        await self._changed.wait()
            # the runs started go on until their host lets them go; queued runs not started
            # stay queued in the store, for the next start

    async def evaluate(self) -> float | None:
        """Fire what is due for every DAG; return when to look again (None: nothing
        scheduled)."""
        pauses = await self.store.schedule_pauses()
        resumed = await self.store.schedule_resumed()
        dues: list[float] = []
        limiter = anyio.CapacityLimiter(AT_ONCE)

        async def one(dag: DAG) -> None:
            async with limiter:
                if self.stopping:
                    return
                schedule = Schedule.from_json(dag.schedule or {})
                paused = pauses.get(dag.name, schedule.paused)
                schedule = dataclasses.replace(schedule, paused=paused)
                try:
                    dues.append(await self._evaluate(dag, schedule, resumed.get(dag.name)))
                except Exception as exc:  # one schedule's failure stops neither the others
                    # nor the daemon: said, and tried again a minute later
                    error = f"{type(exc).__name__}: {exc}"
                    log.error("schedule.failed", dag=dag.name, error=error)
                    dues.append(self._now() + LOOK_AGAIN)

        # the DAGs side by side: their store round trips overlap, and their ticks' records go
        # to the store in shared batches (one after another, 100 DAGs due at once took 0.3-0.5 s)
        async with anyio.create_task_group() as tg:
            for dag in list(self._dags.values()):
                tg.start_soon(one, dag)
        return min(dues, default=None)

    async def _evaluate(self, dag: DAG, schedule: Schedule, resumed: float | None) -> float:
        """Fire or skip ``dag``'s due ticks; when to look again. A tick due before the schedule
        was ``resumed`` (unpaused) and not recorded yet came due while it was paused (this
        scheduler, busy or down, reads it only now): it is skipped as paused, not fired."""
        name = dag.name
        now = self._now()
        last = await self.store.last_tick(name)
        # a schedule with no tick recorded starts when this scheduler first saw it: nothing
        # before that was missed
        since = self._since.setdefault(name, now)
        last_at = _utc(last.nominal if last is not None else since)
        # a tick is on time up to half its period late (at most ON_TIME): later, it was missed
        # (the scheduler was down) and the catch-up policy decides
        following = next(fire_times(schedule, _utc(now)))
        period = (next(fire_times(schedule, following)) - following).total_seconds()
        on_time = min(ON_TIME, period / 2) + schedule.jitter
        ticks, _ = due_ticks(schedule, last_at, _utc(now), on_time=on_time)
        for tick in ticks:
            nominal = tick.nominal.timestamp()
            skip = tick.skip.value if tick.skip is not None else None
            if skip is None and resumed is not None and nominal < resumed:
                skip = "paused"
            if skip is not None:
                await self._record_skip(name, nominal, skip)
                continue
            wait = jitter(schedule, name, tick.nominal)
            if nominal + wait > now:
                return nominal + wait  # its jitter is not over: it and the later ones wait
            await self._fire(dag, schedule.overlap, nominal)
        following = next(fire_times(schedule, _utc(max(now, last.nominal if last else now))))
        return following.timestamp() + jitter(schedule, name, following)

    async def _record_skip(self, dag: str, nominal: float, reason: str) -> None:
        tick = TickRecord(dag, nominal, self._now(), None, reason)
        try:
            await self.store.apply([RecordTick(tick)])
        except TickExists:
            return  # recorded by another scheduler
        log.info("tick.skipped", dag=dag, nominal=iso(nominal), reason=reason)
        if self._on_skipped is not None:
            self._on_skipped(reason)

    async def _fire(self, dag: DAG, policy: str, nominal: float) -> None:
        name = dag.name
        try:
            run = prepare_run(dag, connections=self.host.connections, trigger="schedule")
        except OrchestratorError as exc:
            log.error("tick.refused", dag=name, nominal=iso(nominal), error=str(exc))
            await self._record_skip(name, nominal, Skip.REFUSED.value)
            return
        now = self._now()
        try:
            await self.start(run, policy, tick=TickRecord(name, nominal, now, run.id, None))
        except TickExists:
            return  # another scheduler fired it
        except ActiveRunExists:
            await self._record_skip(name, nominal, Skip.OVERLAP.value)
            return
        log.info("tick.started", dag=name, nominal=iso(nominal), run=run.id, delay=now - nominal)
        if self._on_started is not None:
            self._on_started(now - nominal)

    async def start(
        self,
        run: Run,
        policy: str,
        *,
        tick: TickRecord | None = None,
        idempotency_key: str | None = None,
        carried: Mapping[str, JobRecord] | None = None,
    ) -> None:
        """Record ``run`` (with its ``tick``, or its client's ``idempotency_key``) and start
        it under the overlap ``policy``: at once, queued behind the DAG's active run, or after
        cancelling that one. :class:`ActiveRunExists` when the policy refuses it (``skip``, or
        ``queue`` with a run waiting already); :class:`TickExists` or :class:`RunExists` when
        its tick or its key has a run already (nothing is written then). ``carried`` are jobs
        the run starts with as they ended in an earlier run (a rerun of its failed jobs): they
        are recorded so in the run, and only the others run."""
        name = run.dag.name
        records = await self.store.list_runs(dag=name, states=ACTIVE)
        self._adopt_orphans(records)
        waiting = self._waiting.setdefault(name, [])
        queued = {each.id for each in waiting}
        active = [r.id for r in records if r.id not in queued]
        if (active and policy == "skip") or (policy == "queue" and waiting):
            raise ActiveRunExists(active[0] if active else waiting[0].id)
        if policy == "cancel_previous":  # here at once, elsewhere through the store
            reason = f"cancelled: run {run.id} of the DAG began (cancel_previous)"
            for run_id in active:
                if not self.host.cancel(run_id, reason):
                    await self.store.request_cancel(run_id, reason, self._now())
        receipt = send_new_run(
            self.store,
            run,
            owner=self.host.owner,
            at=self._now(),
            exclusive=policy == "skip",
            tick=tick,
            idempotency_key=idempotency_key,
        )
        await receipt.wait()
        if tick is not None:
            crash.reached("after_tick")
        if carried:
            self._carried[run.id] = await carry_over(self.store, run, carried, self.host.owner)
        assert self._tg is not None, "start runs inside session()"
        if waiting or (active and policy in ("queue", "queue_all")):
            waiting.append(run)
            if name not in self._draining:  # one drain per DAG: it takes the runs in order
                self._draining.add(name)
                self._tg.start_soon(self._drain, name)
        else:
            self._tg.start_soon(self._execute, run)

    def _adopt_orphans(self, records: list[RunRecord]) -> None:
        """Resume the active runs whose owner is gone (a command-line run killed, a daemon on
        another machine whose lease expired), as ``orchestrator run`` does before its own: they
        count as active meanwhile, and their in-flight jobs are followed, never resubmitted."""
        assert self._tg is not None
        for record in records:
            if record.owner == self.host.owner or record.id in self.adopting:
                continue
            if local_owner_alive(record.owner):
                continue
            self.adopting.add(record.id)
            self._tg.start_soon(self._adopt, record)

    async def _adopt(self, record: RunRecord) -> None:
        try:
            await resume(self.host, record, orphan=True)
        except RunRefused:  # its owner lives (its lease holds)
            pass
        except OrchestratorError as exc:
            log.error("run.not_adopted", dag=record.dag, run=record.id, error=str(exc))
        finally:
            self.adopting.discard(record.id)

    async def _drain(self, dag: str) -> None:
        """Start the DAG's queued runs one after another, each once no other run of the DAG
        is active."""
        waiting = self._waiting[dag]
        try:
            while waiting and not self.stopping:
                active = await self.store.list_runs(dag=dag, states=ACTIVE)
                if [r for r in active if not any(r.id == w.id for w in waiting)]:
                    await anyio.sleep(WAIT_POLL)
                    continue
                await self._execute(waiting.pop(0))  # active until it ends
        finally:
            self._draining.discard(dag)

    async def _execute(self, run: Run) -> None:
        carried = self._carried.pop(run.id, None)
        stored: Stored | None = (carried, []) if carried is not None else None
        try:
            await execute(self.host, run, stored=stored, lease=Lease(self.host.owner, 0))
        except OrchestratorError as exc:
            log.error("run.failed_to_run", dag=run.dag.name, run=run.id, error=str(exc))
