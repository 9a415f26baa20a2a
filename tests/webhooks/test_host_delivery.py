"""Webhooks of several runs of one run host: one deliverer sends each delivery once."""

from __future__ import annotations

import anyio

from orchestrator import DAG, Job
from orchestrator.engine.durable import record_new_run
from orchestrator.runtime.host import RunHost
from orchestrator.runtime.prepare import prepare_run
from orchestrator.store.memory import MemoryStore

from .conftest import Receiver, hook


async def test_webhooks_due_while_two_runs_end_are_each_delivered_once(
    receiver: Receiver,
) -> None:
    store = MemoryStore()
    runs = []
    for name in ("left", "right"):
        hooks = [hook("done", f"{receiver.base_url}/{name}", "onJobDone")]
        with DAG(name, webhooks=hooks) as dag:
            Job(
                "j",
                "fake",
                duration=0.05,
                webhooks=[hook("job", f"{receiver.base_url}/j", "onJobDone")],
            )
        dag.validate()
        runs.append(prepare_run(dag))
    async with RunHost(store) as host:
        for run in runs:
            await record_new_run(store, run, owner=host.owner, at=0.0, exclusive=False)
        async with anyio.create_task_group() as tg:
            for run in runs:
                tg.start_soon(host.run, run)
    await receiver.wait_for("/j", 2)
    deliveries = await store.list_deliveries()
    assert len(deliveries) == 4
    assert all(d.state == "delivered" and len(a) == 1 for d, a in deliveries)
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert sorted(ids) == sorted({d.id for d, _ in deliveries})  # each sent once
