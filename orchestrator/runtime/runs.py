"""Starting and resuming runs on a host under the overlap policy, as ``run`` and ``resume`` do:
orphaned runs adopted first, a live one refusing, delaying or ignored."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import anyio
import structlog

from ..clock import Clock
from ..connections import Connection
from ..connectors.base import Connector
from ..engine.durable import load_dag_for, record_new_run, send_new_run
from ..engine.executor import Observer
from ..engine.records import Run
from ..errors import DagValidationError
from ..model.dag import DAG
from ..model.states import RunState
from ..store.base import ActiveRunExists, Lease, RunRecord, StaleWrite, Store
from ..store.owner import LEASE, local_owner_alive
from .host import WEBHOOK_WAIT, RunHost, Stored
from .prepare import prepare_run

log = structlog.get_logger("orchestrator")
WAITING = ("queue", "queue_all", "cancel_previous")  # policies that wait for the active runs


class RunRefused(Exception):
    """The overlap policy refused a new run: another run of the DAG is active."""

    def __init__(self, message: str, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id


class LiveView(Protocol):
    """A view of a run while it runs (the terminal's progress): told of each state change,
    drawn by its own task until the run ends."""

    def observe(self, *args: Any) -> None: ...

    async def show(self) -> None: ...


ViewFor = Callable[[Run], LiveView]


async def execute(
    host: RunHost,
    run: Run,
    *,
    stored: Stored | None = None,
    lease: Lease | None = None,
    concurrency: int | None = None,
    view_for: ViewFor | None = None,
    webhook_wait: float = WEBHOOK_WAIT,
) -> Run:
    view = view_for(run) if view_for else None
    error: Exception | None = None
    async with anyio.create_task_group() as tg:
        if view is not None:
            tg.start_soon(view.show)
        try:
            await host.run(
                run,
                stored=stored,
                lease=lease,
                concurrency=concurrency,
                observers=[view.observe] if view is not None else None,
                webhook_wait=webhook_wait,
            )
        except Exception as exc:  # raised as it is, not wrapped by the task group
            error = exc
        finally:
            tg.cancel_scope.cancel()
    if error is not None:
        raise error
    return run


async def resume(
    host: RunHost,
    record: RunRecord,
    *,
    concurrency: int | None = None,
    view_for: ViewFor | None = None,
    orphan: bool = False,
) -> Run:
    """Continue a run that did not end: in-flight attempts are followed, never resubmitted.
    :class:`RunRefused` while its owner lives (its process here, or its lease elsewhere)."""
    from .connectors import check_connections

    store = host.store
    assert store is not None
    alive = local_owner_alive(record.owner) if record.owner != host.owner else False
    if alive:
        raise RunRefused(f"run {record.id} is being run by {record.owner}", record.id)
    dag = await load_dag_for(store, record)
    problems = check_connections(dag, host.connections)
    if problems:
        raise DagValidationError(problems)
    try:  # an owner elsewhere: only once its lease expired, on the store's clock
        epoch = await store.claim_run(
            record.id,
            host.owner,
            expected_owner=record.owner,
            at=time.time(),
            expired_after=LEASE if alive is None else None,
        )
    except StaleWrite:
        raise RunRefused(
            f"run {record.id} is being run by {record.owner} (its lease holds)", record.id
        ) from None
    run = Run(record.id, dag, dict(record.params), record.trigger)
    run.state = record.state
    run.started_at = record.started_at
    if orphan:
        log.warning("run.orphaned", dag=dag.name, run=record.id, owner=record.owner)
    stored = (await store.get_jobs(record.id), await store.get_attempts(record.id))
    log.info("run.resuming", dag=dag.name, run=record.id, previous_owner=record.owner)
    return await execute(
        host,
        run,
        stored=stored,
        lease=Lease(host.owner, epoch),
        concurrency=concurrency,
        view_for=view_for,
    )


async def run_new(
    host: RunHost,
    dag: object,
    params: Mapping[str, object],
    *,
    overlap: str,
    concurrency: int | None = None,
    view_for: ViewFor | None = None,
    trigger: str = "manual",
    webhook_wait: float = WEBHOOK_WAIT,
) -> Run:
    """Start a new run of ``dag`` under its overlap policy and run it to its end.

    Active runs of the DAG whose process died are resumed first (adopted); a live one refuses
    the new run (``skip``), delays it until it ended (``queue``, ``queue_all``: every waiting
    command waits its turn), is cancelled, wherever it runs, and then awaited
    (``cancel_previous``), or is ignored (``allow``).
    """
    assert isinstance(dag, DAG)
    store = host.store
    run = prepare_run(dag, params=dict(params), connections=host.connections, trigger=trigger)
    if store is None:
        return await execute(
            host, run, concurrency=concurrency, view_for=view_for, webhook_wait=webhook_wait
        )
    asked: set[str] = set()  # the runs whose cancel was asked for (cancel_previous)
    while True:
        active = await store.list_runs(dag=dag.name, states=[RunState.QUEUED, RunState.RUNNING])
        now = time.time()
        live = []
        for record in active:
            if local_owner_alive(record.owner):
                live.append(record)
                continue
            try:  # adopted if its owner died here, or its lease expired
                await resume(host, record, concurrency=concurrency, orphan=True)
            except RunRefused:
                live.append(record)
        if live and overlap == "skip":
            raise RunRefused(
                f"DAG {dag.name!r} has an active run {live[0].id} (owner {live[0].owner}); "
                "its overlap policy is skip",
                live[0].id,
            )
        if live and overlap == "cancel_previous":  # cancelled wherever they run, then awaited
            for record in live:
                if record.id not in asked:
                    asked.add(record.id)
                    reason = f"cancelled: a new run of {dag.name} began (cancel_previous)"
                    if not host.cancel(record.id, reason):
                        await store.request_cancel(record.id, reason, now)
        if live and overlap in WAITING:
            await anyio.sleep(1.0 if overlap != "cancel_previous" else 0.2)
            continue
        try:
            await record_new_run(store, run, owner=host.owner, at=now, exclusive=overlap != "allow")
        except ActiveRunExists as exc:
            if overlap in WAITING:
                await anyio.sleep(1.0)
                continue
            raise RunRefused(
                f"DAG {dag.name!r} has an active run {exc.run_id}; its overlap policy is skip",
                exc.run_id,
            ) from None
        break
    return await execute(
        host,
        run,
        lease=Lease(host.owner, 0),  # a new run's first claim
        concurrency=concurrency,
        view_for=view_for,
        webhook_wait=webhook_wait,
    )


async def run_dag(
    dag: DAG,
    *,
    params: Mapping[str, Any] | None = None,
    connections: Mapping[str, Connection] | None = None,
    connectors: Mapping[str, Connector] | None = None,
    clock: Clock | None = None,
    concurrency: int | None = None,
    observers: list[Observer] | None = None,
    rng: random.Random | None = None,
    run_id: str | None = None,
    store: Store | None = None,
    webhook_wait: float = 10.0,
) -> Run:
    """Run ``dag`` to its end and return the finished :class:`Run` (on a run host of its own).

    ``connectors`` replaces the connector of a job type (tests pass fakes). With a ``store``
    the run is recorded there (and can be resumed). Webhooks are delivered through the store's
    outbox (an in-memory one if none is given); the call waits up to ``webhook_wait`` seconds
    for them.
    """
    conns = dict(connections or {})
    run = prepare_run(dag, params=params, connections=conns, run_id=run_id, concurrency=concurrency)
    has_hooks = bool(dag.webhooks) or any(job.webhooks for job in dag)
    if store is None and has_hooks:
        from ..store.memory import MemoryStore

        store = MemoryStore()  # webhooks go through an outbox
    # a host of its own, which no one else can subscribe to: it publishes nothing
    async with RunHost(store, conns, connectors=connectors, clock=clock, publish=False) as host:
        created = None
        if store is not None:
            # stored while the connectors and the executor are set up, and its jobs start
            created = send_new_run(store, run, owner=host.owner, at=time.time(), exclusive=False)
        return await host.run(
            run,
            lease=Lease(host.owner, 0) if store is not None else None,
            created=created,
            concurrency=concurrency,
            observers=observers,
            rng=rng,
            webhook_wait=webhook_wait,
        )
