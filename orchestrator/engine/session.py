"""Running a run in this process with everything around it: the store, heartbeats, signals
(SIGINT and SIGTERM cancel the run), live progress; shared by ``run`` and ``resume``."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Mapping

import anyio
import structlog

from ..connections import Connection
from ..errors import RunHalted, StoreError
from ..progress import Progress
from ..states import RunState
from ..store.base import ActiveRunExists, AttemptRecord, JobRecord, RunRecord, Store
from ..store.owner import HEARTBEAT, owner_alive, this_owner
from ..webhooks.deliver import Deliverer
from .connectors import ConnectorSet, check_connections
from .durable import load_dag_for, record_new_run, restore
from .executor import RunExecutor
from .records import Run
from .runner import prepare_run

log = structlog.get_logger("orchestrator")
WEBHOOK_WAIT = 10.0


class RunRefused(Exception):
    """The overlap policy refused a new run: another run of the DAG is active."""

    def __init__(self, message: str, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id


async def execute(
    run: Run,
    conns: Mapping[str, Connection],
    *,
    store: Store | None,
    concurrency: int | None = None,
    progress: Progress | None = None,
    stored: tuple[Mapping[str, JobRecord], list[AttemptRecord]] | None = None,
    webhook_wait: float = WEBHOOK_WAIT,
) -> Run:
    """Run to its end. While it runs, this process also delivers the store's due webhooks (of
    any run); at the end it waits up to ``webhook_wait`` seconds for this run's deliveries, and
    leaves the rest in the outbox for the next process."""
    try:
        return await _execute(run, conns, store, concurrency, progress, stored, webhook_wait)
    except* StoreError as group:
        error: BaseException = group
        while isinstance(error, BaseExceptionGroup):  # task groups nest: the first leaf
            error = error.exceptions[0]
        if isinstance(error, RunHalted):  # an orphaned run resumed first
            raise error from None
        raise RunHalted(
            f"run {run.id} stopped: {error}; its state is kept as it was, remote jobs left "
            f"running: `orchestrator resume {run.id}` continues it once the store works",
            run.id,
        ) from None


async def _execute(
    run: Run,
    conns: Mapping[str, Connection],
    store: Store | None,
    concurrency: int | None,
    progress: Progress | None,
    stored: tuple[Mapping[str, JobRecord], list[AttemptRecord]] | None,
    webhook_wait: float,
) -> Run:
    limits = {c.name: c.concurrency for c in conns.values() if c.concurrency}
    deliverer = Deliverer(store) if store is not None else None
    async with ConnectorSet(run.dag, conns) as connectors, deliverer or contextlib.nullcontext():
        executor = RunExecutor(
            run,
            connectors,
            concurrency=concurrency,
            connection_limits=limits,
            observers=[progress.observe] if progress else None,
            store=store,
        )
        if deliverer is not None:
            executor.on_deliveries = deliverer.notify
        if stored is not None:
            restore(run, *stored)
            executor._resumed = True
        async with anyio.create_task_group() as tg:

            async def on_signals() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for signum in signals:
                        name = signal.Signals(signum).name
                        log.warning("run.signal", run=run.id, signal=name)
                        executor.cancel(f"cancelled by {name}")

            async def heartbeat() -> None:
                assert store is not None
                while True:
                    await anyio.sleep(HEARTBEAT)
                    try:
                        await store.heartbeat([run.id], this_owner(), time.time())
                    except StoreError as exc:
                        executor.halt(exc)
                        return

            tg.start_soon(on_signals)
            if progress:
                tg.start_soon(progress.show)
            if store is not None:
                tg.start_soon(heartbeat)
            await executor.execute()
            if deliverer is not None and not await deliverer.drain(run.id, webhook_wait):
                log.warning(
                    "webhooks.pending", run=run.id, note="left in the outbox for the next start"
                )
            tg.cancel_scope.cancel()
    return run


async def resume(
    store: Store,
    record: RunRecord,
    conns: Mapping[str, Connection],
    *,
    concurrency: int | None = None,
    progress_for: type[Progress] | None = None,
) -> Run:
    """Continue a run that did not end: in-flight attempts are followed, never resubmitted."""
    owner = this_owner()
    if record.owner != owner and owner_alive(record.owner, record.heartbeat_at, time.time()):
        raise RunRefused(f"run {record.id} is being run by {record.owner}", record.id)
    dag = await load_dag_for(store, record)
    problems = check_connections(dag, conns)
    if problems:
        from ..errors import DagValidationError

        raise DagValidationError(problems)
    await store.claim_run(record.id, owner, expected_owner=record.owner, at=time.time())
    run = Run(record.id, dag, dict(record.params), record.trigger)
    run.state = record.state
    run.started_at = record.started_at
    stored = (await store.get_jobs(record.id), await store.get_attempts(record.id))
    log.info("run.resuming", dag=dag.name, run=record.id, previous_owner=record.owner)
    progress = progress_for(run) if progress_for else None
    return await execute(
        run, conns, store=store, concurrency=concurrency, progress=progress, stored=stored
    )


async def run_new(
    store: Store | None,
    dag: object,
    params: Mapping[str, object],
    conns: Mapping[str, Connection],
    *,
    overlap: str,
    concurrency: int | None = None,
    progress_for: type[Progress] | None = None,
    trigger: str = "manual",
    webhook_wait: float = WEBHOOK_WAIT,
) -> Run:
    """Start a new run of ``dag`` under its overlap policy and run it to its end.

    Active runs of the DAG whose process died are resumed first (adopted); a live one refuses
    the new run (``skip``), delays it (``queue``) or is ignored (``allow``).
    """
    from ..dag import DAG

    assert isinstance(dag, DAG)
    run = prepare_run(dag, params=dict(params), connections=conns, trigger=trigger)
    if store is None:
        progress = progress_for(run) if progress_for else None
        return await execute(
            run,
            conns,
            store=None,
            concurrency=concurrency,
            progress=progress,
            webhook_wait=webhook_wait,
        )
    while True:
        active = await store.list_runs(dag=dag.name, states=[RunState.QUEUED, RunState.RUNNING])
        now = time.time()
        live = []
        for record in active:
            if owner_alive(record.owner, record.heartbeat_at, now):
                live.append(record)
            else:
                log.warning("run.orphaned", dag=dag.name, run=record.id, owner=record.owner)
                await resume(store, record, conns, concurrency=concurrency)
        if live and overlap == "skip":
            raise RunRefused(
                f"DAG {dag.name!r} has an active run {live[0].id} (owner {live[0].owner}); "
                "its overlap policy is skip",
                live[0].id,
            )
        if live and overlap == "queue":
            await anyio.sleep(1.0)
            continue
        try:
            await record_new_run(
                store, run, owner=this_owner(), at=now, exclusive=overlap != "allow"
            )
        except ActiveRunExists as exc:
            if overlap == "queue":
                await anyio.sleep(1.0)
                continue
            raise RunRefused(
                f"DAG {dag.name!r} has an active run {exc.run_id}; its overlap policy is skip",
                exc.run_id,
            ) from None
        break
    progress = progress_for(run) if progress_for else None
    return await execute(
        run,
        conns,
        store=store,
        concurrency=concurrency,
        progress=progress,
        webhook_wait=webhook_wait,
    )
