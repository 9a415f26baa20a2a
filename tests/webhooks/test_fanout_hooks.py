"""A mapped job's webhooks fire for each of its instances' ends and for its own."""

from __future__ import annotations

from orchestrator import DAG, Job
from orchestrator.runtime.runs import run_dag
from orchestrator.store.memory import MemoryStore

from .conftest import Receiver, hook


async def test_a_mapped_jobs_webhook_fires_for_every_instance_and_for_it(
    receiver: Receiver,
) -> None:
    with DAG("fan_hooks") as dag:
        Job(
            "m",
            "fake",
            map=["a", "b", "c"],
            message="{{ item }}",
            webhooks=[hook("done", f"{receiver.base_url}/m", "onJobDone")],
        )
    dag.validate()
    store = MemoryStore()
    run = await run_dag(dag, store=store)
    await receiver.wait_for("/m", 4)
    deliveries = await store.list_deliveries()
    assert sorted(d.job_id or "" for d, _ in deliveries) == ["m", "m[0]", "m[1]", "m[2]"]
    assert all(d.run_id == run.id and d.state == "delivered" for d, _ in deliveries)
