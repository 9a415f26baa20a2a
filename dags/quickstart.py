"""The quickstart in Python: the same shape, with a Python job in the middle."""

from orchestrator import DAG, Job, JobContext


async def count_rows(ctx: JobContext) -> dict[str, int]:
    """A Python job: gets the run's parameters, returns its outputs."""
    return {"rows": 1200, "region": int(ctx.params["region"])}


with DAG("quickstart_py", params={"region": "02"}) as dag:
    extract = Job("extract", "command", command=["echo", "extracting region $region"])
    wrangle = Job("wrangle", "fake", duration="1s")
    profile = Job(
        "profile",
        "fake",
        duration="0.5s",
        failTimes=1,
        retries={"attempts": 3, "base": "0.2s"},
    )
    rows = Job("rows", "python", call=count_rows)
    report = Job("report", "command", command=["echo", "done: $runId"], trigger_rule="all_done")

    extract >> [wrangle, profile, rows]
    [wrangle, profile, rows] >> report
