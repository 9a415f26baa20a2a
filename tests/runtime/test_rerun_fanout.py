"""A rerun of a run whose mapped job succeeded keeps its instances (their outputs are what the
failed join reads): they are not run again."""

from __future__ import annotations

from pathlib import Path

import anyio

from orchestrator.model.loader import load_path
from orchestrator.model.states import JobState, RunState
from orchestrator.runtime.host import RunHost
from orchestrator.runtime.rerun import plan_rerun
from orchestrator.runtime.runs import run_dag
from orchestrator.runtime.scheduler import Scheduler
from orchestrator.store.memory import MemoryStore

DAG_FILE = """
import pathlib
from orchestrator import DAG, Job, item

FLAG = pathlib.Path(__file__).with_name("fail")
CALLS = pathlib.Path(__file__).with_name("calls")


async def numbers(ctx):
    return [1, 2, 3]


async def square(ctx):
    with CALLS.open("a") as f:
        f.write(ctx.job_id + "\\n")
    return ctx.kwargs["n"] ** 2


async def join(ctx):
    if FLAG.exists():
        raise RuntimeError("not yet")
    return sum(o["result"] for o in ctx.upstream["sq"]["instances"])


with DAG("refan") as dag:
    src = Job("src", "python", call=numbers)
    sq = Job("sq", "python", call=square, map=src.outputs.result, n=item)
    Job("join", "python", call=join) << sq
"""


async def test_a_rerun_keeps_the_instances_of_a_mapped_job_that_succeeded(tmp_path: Path) -> None:
    path = tmp_path / "refan.py"
    path.write_text(DAG_FILE)
    (tmp_path / "fail").touch()
    (dag,) = load_path(path)
    store = MemoryStore()
    first = await run_dag(dag, store=store)
    assert first.state is RunState.FAILED
    async with RunHost(store) as host:
        assert first.jobs["join"].error == "RuntimeError: not yet"
        (tmp_path / "fail").unlink()
        record = await store.get_run(first.id)
        assert record is not None
        run, kept = await plan_rerun(store, record)
        assert sorted(kept) == ["sq", "sq[0]", "sq[1]", "sq[2]", "src"]
        scheduler = Scheduler(host)
        async with scheduler.session():
            await scheduler.start(run, "allow", carried=kept)
            with anyio.fail_after(10):
                while not (await store.get_run(run.id)).state.terminal:  # type: ignore[union-attr]
                    await anyio.sleep(0.01)
    jobs = await store.get_jobs(run.id)
    assert {j: r.state for j, r in jobs.items()} == {
        j: JobState.SUCCEEDED for j in ("src", "sq", "sq[0]", "sq[1]", "sq[2]", "join")
    }
    assert jobs["join"].outputs == {"result": 14}
    # the instances ran once, in the first run
    assert (tmp_path / "calls").read_text().split() == ["sq[0]", "sq[1]", "sq[2]"]
