"""References to upstream outputs in job fields (``{{ job.path }}``), resolved by the engine
when a job is submitted: JSON values into JSON fields, data into shell strings, never read
again for tokens; one that does not resolve fails its job (not the run)."""

from __future__ import annotations

from typing import Any

from orchestrator import DAG, Job, JobContext, JobState, RunState, run_dag

SEEN: dict[str, Any] = {}


async def produce(ctx: JobContext) -> Any:
    return {
        "files": ["gs://b/out 1.csv", "gs://b/out2.csv"],
        "count": 2,
        "tricky": "$runId {{ x }}",
    }


async def consume(ctx: JobContext) -> Any:
    SEEN[ctx.job_id] = {"kwargs": dict(ctx.kwargs), "upstream": dict(ctx.upstream)}
    return None


async def test_a_whole_field_takes_the_json_value_and_a_string_its_text() -> None:
    SEEN.clear()
    with DAG("refs") as dag:
        a = Job("a", "python", call=produce)
        b = Job(
            "b",
            "python",
            call=consume,
            files="{{ a.result.files }}",  # the list itself
            first="{{ a.result.files[0] }}",
            line="n={{ a.result.count }} first={{ a.result.files[-1] }}",
            tricky="{{ a.result.tricky }}",  # never read again for $tokens or references
            literal='{{ "{{" }} not a reference }}',
        )
        a >> b
    dag.validate()
    run = await run_dag(dag)
    assert run.state is RunState.SUCCEEDED, run.jobs["b"].error
    kwargs = SEEN["b"]["kwargs"]
    assert kwargs["files"] == ["gs://b/out 1.csv", "gs://b/out2.csv"]
    assert kwargs["first"] == "gs://b/out 1.csv"
    assert kwargs["line"] == "n=2 first=gs://b/out2.csv"
    assert kwargs["tricky"] == "$runId {{ x }}"
    assert kwargs["literal"] == "{{ not a reference }}"
    assert SEEN["b"]["upstream"] == {"a": {"result": (await produce(None))}}  # type: ignore[arg-type]


async def test_python_outputs_make_the_reference_and_the_edge() -> None:
    SEEN.clear()
    with DAG("built") as dag:
        a = Job("a", "python", call=produce)
        Job(
            "b",
            "python",
            call=consume,
            first=a.outputs.result.files[0],
            n=f"n={a.outputs['result']['count']}",
        )
    assert dag.upstream("b") == ["a"]
    assert dag.jobs["b"].params == {
        "first": "{{ a.result.files[0] }}",
        "n": "n={{ a.result.count }}",
    }
    dag.validate()
    run = await run_dag(dag)
    assert run.state is RunState.SUCCEEDED
    assert SEEN["b"]["kwargs"] == {"first": "gs://b/out 1.csv", "n": "n=2"}


async def test_a_shell_command_gets_the_value_as_data() -> None:
    async def hostile(ctx: JobContext) -> Any:
        return {"name": "x'; touch /tmp/pwned-by-ref; echo '"}

    with DAG("shell") as dag:
        a = Job("a", "python", call=hostile)
        b = Job(
            "b", "command", command="echo \"{{ a.result.name }}\" && echo '{{ a.result.name }}'"
        )
        c = Job("c", "command", command=["echo", "{{ a.result.name }}"])
        a >> [b, c]
    dag.validate()
    run = await run_dag(dag)
    assert run.state is RunState.SUCCEEDED
    name = "x'; touch /tmp/pwned-by-ref; echo '"
    assert run.jobs["b"].log_tail == f"{name}\n{name}\n"
    assert run.jobs["c"].log_tail == f"{name}\n"


async def test_a_reference_that_does_not_resolve_fails_its_job_not_the_run() -> None:
    SEEN.clear()
    with DAG("missing") as dag:
        a = Job("a", "python", call=produce)
        b = Job(
            "b",
            "python",
            call=consume,
            x="{{ a.result.nothing }}",
            retries=3,
        )
        c = Job("c", "python", call=consume, x="{{ a.result.files[5] }}")
        d = Job("d", "python", call=consume, x="{{ a.result.count }}")
        a >> [b, c, d]
    dag.validate()
    run = await run_dag(dag)
    b, c, d = run.jobs["b"], run.jobs["c"], run.jobs["d"]
    assert b.state is JobState.FAILED
    assert b.attempts == 1  # retrying cannot change the upstream's outputs
    assert b.error == (
        "reference '{{ a.result.nothing }}': a.result has no 'nothing' "
        "(it has: count, files, tricky)"
    )
    assert c.state is JobState.FAILED
    assert c.error == "reference '{{ a.result.files[5] }}': a.result.files has 2 items, no [5]"
    assert d.state is JobState.SUCCEEDED  # the run goes on
    assert run.state is RunState.FAILED
    assert "b" not in SEEN
    assert "c" not in SEEN


async def test_params_are_reachable_as_json_values() -> None:
    SEEN.clear()
    with DAG("params", params={"regions": ["eu", "us"]}) as dag:
        Job(
            "b",
            "python",
            call=consume,
            regions="{{ params.regions }}",
            one="{{ params.regions[1] }}",
        )
    dag.validate()
    run = await run_dag(dag)
    assert run.state is RunState.SUCCEEDED
    assert SEEN["b"]["kwargs"] == {"regions": ["eu", "us"], "one": "us"}


async def test_outputs_over_the_limit_fail_the_job_naming_their_size() -> None:
    async def big(ctx: JobContext) -> Any:
        return "x" * (1024 * 1024 + 1)

    with DAG("big") as dag:
        a = Job("a", "python", call=big)
        b = Job("b", "python", call=consume, x="{{ a.result }}")
        a >> b
    dag.validate()
    run = await run_dag(dag)
    a_run = run.jobs["a"]
    assert a_run.state is JobState.FAILED
    assert a_run.error == (
        "outputs of 1,048,591 bytes, more than the limit of 1,048,576 "
        "(pass large results by reference: a path or a URL)"
    )
    assert a_run.outputs == {}
    assert run.jobs["b"].state is JobState.UPSTREAM_FAILED


async def test_a_secret_in_outputs_is_masked_before_anyone_reads_it() -> None:
    from orchestrator import logs

    secret = "s3cr3t-value-0123456789"
    logs.add_secrets([secret])

    async def leaky(ctx: JobContext) -> Any:
        return {"token": secret, "url": f"https://u:{secret}@host/x"}

    SEEN.clear()
    with DAG("leak") as dag:
        a = Job("a", "python", call=leaky)
        b = Job("b", "python", call=consume, x="{{ a.result.url }}")
        a >> b
    dag.validate()
    run = await run_dag(dag)
    assert secret not in repr(run.jobs["a"].outputs)
    assert secret not in repr(SEEN["b"])


async def test_a_python_jobs_upstream_outputs_are_its_direct_upstreams_read_only() -> None:
    """``ctx.upstream`` is made at its first read (most calls never read it): what it holds
    then is its direct upstreams' outputs, read only, and nothing of the jobs further up."""
    views: dict[str, Any] = {}

    async def inspect_upstream(ctx: JobContext) -> Any:
        views[ctx.job_id] = ctx.upstream
        try:
            ctx.upstream["b"]["result"] = "changed"  # type: ignore[index]
        except TypeError:
            return "read only"
        return "writable"

    with DAG("upstream") as dag:
        a = Job("a", "python", call=produce)
        b = Job("b", "python", call=produce)
        c = Job("c", "python", call=inspect_upstream)
        a >> b >> c
    run = await run_dag(dag)
    assert run.state is RunState.SUCCEEDED
    assert run.jobs["c"].outputs == {"result": "read only"}
    upstream = views["c"]
    assert list(upstream) == ["b"]
    assert len(upstream) == 1
    assert "a" not in upstream
    assert dict(upstream["b"]) == {"result": await produce(None)}  # type: ignore[arg-type]
