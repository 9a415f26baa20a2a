"""Fenced leases: a run host whose lease on a run was taken over stops that run's executor,
which then writes nothing and cancels nothing remote; the new owner goes on."""

from __future__ import annotations

import time
from collections.abc import Sequence

import anyio
import pytest

from orchestrator import DAG, Job
from orchestrator.connectors.fake import FakeConnector, FakeRemote
from orchestrator.engine.durable import record_new_run
from orchestrator.errors import RunHalted, StoreError
from orchestrator.model.states import JobState, RunState
from orchestrator.runtime import runs
from orchestrator.runtime.host import RunHost
from orchestrator.runtime.prepare import prepare_run
from orchestrator.store.base import Lease, Operation, Receipt
from orchestrator.store.memory import MemoryStore


@pytest.mark.parametrize("noticed_by", ["heartbeat", "write"])
async def test_a_stolen_lease_stops_the_executor_that_lost_it(noticed_by: str) -> None:
    with DAG("stolen") as dag:
        hanging = Job("hanging", "fake", hang=True)
        quick = Job("quick", "fake", duration=0.2)
        hanging >> Job("after", "fake")
        quick >> Job("after_quick", "fake")
    dag.validate()
    remote = FakeRemote()
    store = MemoryStore()
    run = prepare_run(dag)
    # the heartbeat finds the loss first, or the write of `quick`'s end does
    beat = 0.05 if noticed_by == "heartbeat" else 3600.0
    async with RunHost(store, connectors={"fake": FakeConnector(remote)}, heartbeat=beat) as host:
        await record_new_run(store, run, owner=host.owner, at=time.time(), exclusive=False)
        stolen: dict[str, object] = {}

        async def steal() -> None:
            while not (
                store.jobs[run.id]["hanging"].state is JobState.RUNNING
                and store.jobs[run.id]["quick"].state is JobState.RUNNING
            ):
                await anyio.sleep(0.01)
            await store.claim_run(run.id, "thief", expected_owner=host.owner, at=time.time())
            stolen["jobs"] = {j: r.state for j, r in store.jobs[run.id].items()}
            stolen["events"] = len(store.events)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(steal)
                with pytest.raises(RunHalted, match="another process took it over"):
                    await host.run(run, lease=Lease(host.owner, 0))
    assert {j: r.state for j, r in store.jobs[run.id].items()} == stolen["jobs"]  # nothing
    assert len(store.events) == stolen["events"]
    assert remote.cancels == []  # the remote jobs are the new owner's
    assert store.runs[run.id].owner == "thief"


@pytest.mark.parametrize(("beat_age", "adopted"), [(5.0, False), (120.0, True)])
async def test_a_run_owned_on_another_host_is_adopted_once_its_lease_expired(
    beat_age: float, adopted: bool
) -> None:
    with DAG("elsewhere") as dag:
        Job("a", "fake")
    dag.validate()
    store = MemoryStore()
    theirs = prepare_run(dag)
    now = time.time()
    await record_new_run(store, theirs, owner="otherhost:1:1", at=now - beat_age, exclusive=True)
    async with RunHost(store, connectors={"fake": FakeConnector(FakeRemote())}) as host:
        if adopted:
            await runs.run_new(host, dag, {}, overlap="skip")
            assert store.runs[theirs.id].state is RunState.SUCCEEDED  # adopted, then its own
            assert store.runs[theirs.id].owner == host.owner
        else:
            with pytest.raises(runs.RunRefused, match="has an active run"):
                await runs.run_new(host, dag, {}, overlap="skip")
            assert store.runs[theirs.id].owner == "otherhost:1:1"


class _FullStore(MemoryStore):
    """A store whose disk filled once the run was recorded: every later batch is refused."""

    def submit(self, ops: Sequence[Operation]) -> Receipt:
        if not self.runs:  # the run's record
            return super().submit(ops)
        receipt = Receipt()
        receipt.settle(StoreError("orchestrator.db: database or disk is full"))
        return receipt


class _View:
    """A live view that draws until the run ends."""

    def __init__(self, run: object) -> None:
        pass

    def observe(self, *args: object) -> None:
        pass

    async def show(self) -> None:
        await anyio.sleep_forever()


@pytest.mark.parametrize("with_view", [False, True])
async def test_a_store_failing_mid_run_halts_it_as_it_is_with_or_without_a_live_view(
    with_view: bool,
) -> None:
    with DAG("full") as dag:
        Job("a", "fake")
    dag.validate()
    store = _FullStore()
    view_for = _View if with_view else None
    async with RunHost(store, connectors={"fake": FakeConnector(FakeRemote())}) as host:
        with pytest.raises(RunHalted, match="database or disk is full"):  # not an exception group
            await runs.run_new(host, dag, {}, overlap="allow", view_for=view_for)
