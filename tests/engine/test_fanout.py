"""Fan-out at run time: a job with ``map`` expands into one instance per item once its
upstreams are done; each instance is a job of its own, the mapped job's dependents wait for all
of them and their trigger rules count them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator import DAG, Job, JobContext, JobState, RunState, run_dag
from orchestrator.clock import FakeClock
from orchestrator.connectors.fake import FakeConnector, FakeRemote
from orchestrator.connectors.registry import job_types
from orchestrator.engine.executor import RunExecutor
from orchestrator.model.refs import item
from orchestrator.runtime.connectors import ConnectorSet
from orchestrator.runtime.prepare import prepare_run
from orchestrator.store.memory import MemoryStore
from orchestrator.store.sqlite import SQLiteStore

J = JobState
SEEN: dict[str, Any] = {}


async def numbers(ctx: JobContext) -> Any:
    return list(range(5))


async def square(ctx: JobContext) -> Any:
    n = ctx.kwargs["n"]
    if n == ctx.params.get("fail"):
        raise ValueError(f"no square for {n}")
    return n * n


async def join(ctx: JobContext) -> Any:
    SEEN[ctx.job_id] = ctx.upstream
    return None


def fan_dag(rule: str = "all_success", **params: Any) -> DAG:
    """src -> sq (mapped over src's list) -> join; a join with ``one_failed`` may start before
    sq has ended, so it does not read sq's outputs."""
    fields = {"all": "{{ sq.instances }}"} if rule == "all_success" else {}
    with DAG("fan", params=params) as dag:
        src = Job("src", "python", call=numbers)
        sq = Job("sq", "python", call=square, map=src.outputs.result, n=item)
        Job("join", "python", call=join, trigger_rule=rule, **fields) << sq
    return dag


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "memory":
        yield MemoryStore()
    else:
        async with SQLiteStore(tmp_path / "o.db") as s:
            yield s


async def test_a_map_expands_into_instances_and_the_join_sees_them_all(store: Any) -> None:
    SEEN.clear()
    dag = fan_dag()
    dag.validate()
    run = await run_dag(dag, store=store)
    assert run.state is RunState.SUCCEEDED, {j: r.error for j, r in run.jobs.items()}
    assert [run.jobs[f"sq[{i}]"].outputs for i in range(5)] == [{"result": i * i} for i in range(5)]
    assert run.jobs["sq"].state is J.SUCCEEDED
    assert SEEN["join"] == {"sq": {"instances": [{"result": i * i} for i in range(5)]}}
    jobs = await store.get_jobs(run.id)
    assert {j: r.state for j, r in jobs.items()} == {
        "src": J.SUCCEEDED,
        "sq": J.SUCCEEDED,
        **{f"sq[{i}]": J.SUCCEEDED for i in range(5)},
        "join": J.SUCCEEDED,
    }
    events = [(e.job_id, e.old, e.new) for e in await store.get_events(run.id) if e.kind == "job"]
    # the instances are queued after the mapped job's expansion, each one's step to queued
    # before its next (written with it: see engine/journal.py)
    expanded = events.index(("sq", "submitting", "running"))
    for i in range(5):
        steps = [(old, new) for job, old, new in events if job == f"sq[{i}]"]
        assert steps[:2] == [("pending", "queued"), ("queued", "submitting")]
        assert events.index((f"sq[{i}]", "pending", "queued")) > expanded


@pytest.mark.parametrize(
    ("rule", "join_state"),
    [("all_success", J.UPSTREAM_FAILED), ("all_done", J.SUCCEEDED), ("one_failed", J.SUCCEEDED)],
)
async def test_one_failed_instance_counts_in_the_trigger_rules(
    rule: str, join_state: JobState
) -> None:
    SEEN.clear()
    dag = fan_dag(rule, fail=3)
    dag.validate()
    run = await run_dag(dag)
    assert run.jobs["sq[3]"].state is J.FAILED
    assert run.jobs["sq[3]"].error == "ValueError: no square for 3"
    assert [run.jobs[f"sq[{i}]"].state for i in (0, 1, 2, 4)] == [J.SUCCEEDED] * 4
    assert run.jobs["sq"].state is J.FAILED
    assert run.jobs["sq"].error == "1 of 5 instances failed"
    assert run.jobs["join"].state is join_state
    assert run.state is RunState.FAILED


async def test_a_map_over_an_empty_list_or_a_parameter() -> None:
    with DAG("params", params={"regions": ["eu", "us"], "none": []}) as dag:
        Job("per", "python", call=square, map="{{ params.regions }}", n=0, where=item)
        Job("empty", "python", call=square, map="{{ params.none }}", n=0)
        Job("literal", "python", call=square, map=[1, 2, 3], n=item)
    dag.validate()
    run = await run_dag(dag)
    assert run.state is RunState.SUCCEEDED
    assert [run.jobs[f"per[{i}]"].state for i in range(2)] == [J.SUCCEEDED] * 2
    assert run.jobs["empty"].state is J.SUCCEEDED
    assert run.jobs["empty"].notes == ["mapped over an empty list: no instance"]
    assert "empty[0]" not in run.jobs
    assert [run.jobs[f"literal[{i}]"].outputs for i in range(3)] == [
        {"result": n * n} for n in (1, 2, 3)
    ]


async def not_a_list(ctx: JobContext) -> Any:
    return {"a": 1}


async def many(ctx: JobContext) -> Any:
    return list(range(ctx.params["n"]))


@pytest.mark.parametrize(
    ("call", "params", "error"),
    [
        (not_a_list, {}, "field 'map': '{{ src.result }}' is not a list (it is dict {'a': 1})"),
        (many, {"n": 4}, "field 'map': 4 items, more than the limit of 3 ('mapLimit')"),
    ],
)
async def test_a_map_that_gives_no_list_fails_the_mapped_job(
    call: Any, params: dict[str, Any], error: str
) -> None:
    with DAG("bad", params=params) as dag:
        src = Job("src", "python", call=call)
        sq = Job("sq", "python", call=square, map=src.outputs.result, map_limit=3, n=item)
        Job("after", "python", call=join) << sq
    dag.validate()
    run = await run_dag(dag)
    assert run.jobs["sq"].state is J.FAILED
    assert run.jobs["sq"].error == error
    assert run.jobs["after"].state is J.UPSTREAM_FAILED
    assert not [j for j in run.jobs if j.startswith("sq[")]


async def test_cancelling_the_mapped_job_cancels_every_instance(
    clock: FakeClock, remote: FakeRemote
) -> None:
    with DAG("cancel") as dag:
        Job("m", "fake", hang=True, map=[1, 2, 3, 4], message=item)
    dag.validate()
    run = prepare_run(dag)
    async with clock, ConnectorSet(dag, {}, {"fake": FakeConnector(remote)}) as connectors:
        executor = RunExecutor(run, connectors, job_types=job_types(), clock=clock)
        async with anyio.create_task_group() as tg:
            tg.start_soon(executor.execute)
            running = ["m", "m[0]", "m[1]", "m[2]", "m[3]"]
            while [j for j, r in run.jobs.items() if r.state is J.RUNNING] != running:
                await anyio.sleep(0)
            assert executor.cancel_job("m", "enough") == "cancelling"
    assert [(run.jobs[f"m[{i}]"].state, run.jobs[f"m[{i}]"].error) for i in range(4)] == [
        (J.CANCELLED, "enough")
    ] * 4
    assert len(remote.cancels) == 4
    assert (run.jobs["m"].state, run.jobs["m"].error) == (J.CANCELLED, "an instance was cancelled")
