"""The ``trifacta.*`` job types against the Trifacta simulator, over real HTTP; aioresponses for
wire shapes the simulator does not produce."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import anyio
import pytest
from aiohttp import web
from aioresponses import aioresponses

from orchestrator.connections import Connection
from orchestrator.connectors.base import LookupUndecided, RemoteStatus
from orchestrator.connectors.http.client import HttpClient, TransientRetry
from orchestrator.connectors.trifacta import CALLBACK_NAME, JOB_TYPES, Kind, TrifactaConnector
from orchestrator.errors import AuthError, NotFoundError, PermanentError
from orchestrator.testing.simulators.base import Behaviour, Fault
from orchestrator.testing.simulators.trifacta import TrifactaSimulator

from .conftest import run_to_end, submission

OVERRIDES: dict[str, Any] = {
    "execution": "spark",
    "profiler": True,
    "writesettings": [{"path": "s3://out/x.csv", "format": "csv", "header": True}],
    "runParameters": {"overrides": {"data": [{"key": "varRegion", "value": "02"}]}},
    "sparkOptions": [{"key": "spark.executor.cores", "value": "2"}],
}
GROUP: dict[str, Any] = {"wrangledDataset": {"id": 28629}, "overrides": OVERRIDES}
BASE = "http://trifacta.test"


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def connection(base_url: str, *, token: str = "sim-token", **options: Any) -> Connection:
    return Connection(
        "trifacta", "trifacta", base_url, {"token": token}, timeout=5, options=options
    )


async def open_connector(
    serve: Any, kind: Kind = "jobGroup", *, token: str = "sim-token", **options: Any
) -> tuple[TrifactaConnector, TrifactaSimulator, Sleeps]:
    served = await serve(TrifactaSimulator(prefix="/trifacta"))
    conn = connection(served.base_url, token=token, **options)
    sleeps = Sleeps()
    client = HttpClient(conn, sleep=sleeps, retry=TransientRetry(attempts=4))
    return TrifactaConnector(conn, kind, client), served.sim, sleeps


# -- job groups -------------------------------------------------------------------------------


async def test_job_group_success_with_outputs(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve)
    sim.rule("28629", Behaviour(duration=0.1, queued=0.05))
    handle = await connector.submit(submission(GROUP))
    assert json.loads(json.dumps(handle)) == handle
    assert handle["kind"] == "jobGroup"
    assert handle["target"] == 28629
    assert "sim-token" not in json.dumps(handle)
    group = sim.jobs[str(handle["jobGroupIds"][0])]
    assert group.key == "run-1/job/1"  # the Idempotency-Key header
    assert group.data["overrides"] == OVERRIDES  # passed through untouched
    first = await connector.poll(handle)
    assert first.status is RemoteStatus.RUNNING
    assert first.remote_status == "Created"
    result = await run_to_end(connector, handle)
    assert result.status is RemoteStatus.SUCCEEDED
    assert result.remote_status == "Complete"
    assert result.outputs["jobGroupId"] == handle["jobGroupIds"][0]
    assert [(j["jobType"], j["status"]) for j in result.outputs["jobs"]] == [
        ("wrangle", "Complete"),
        ("filewriter", "Complete"),
    ]
    assert sim.counters.polls >= 2
    await connector.aclose()


async def test_top_level_run_parameters_and_ranfrom_pass_through(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve)
    params = {
        "wrangledDataset": {"id": "7"},
        "runParameters": {"overrides": {"data": [{"key": "k", "value": "v"}]}},
        "ranfrom": None,
    }
    handle = await connector.submit(submission(params))
    group = sim.jobs[str(handle["jobGroupIds"][0])]
    assert group.data["target"] == 7
    assert group.data["runParameters"] == params["runParameters"]
    await connector.aclose()


async def test_job_group_failure_carries_the_child_error(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve)
    sim.script(Behaviour(duration=0.05, outcome="failure", message="Column 'x' not found"))
    result = await run_to_end(connector, await connector.submit(submission(GROUP)))
    assert result.status is RemoteStatus.FAILED
    assert result.remote_status == "Failed"
    assert result.error is not None
    assert "Failed: job" in result.error
    assert "(wrangle) Failed: Column 'x' not found" in result.error
    await connector.aclose()


async def test_cancel_then_cancel_again(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve)
    sim.script(Behaviour(duration=30))
    handle = await connector.submit(submission(GROUP))
    cancelled = await connector.cancel(handle)
    assert cancelled.supported
    assert "cancel requested" in cancelled.message
    result = await connector.poll(handle)
    assert result.status is RemoteStatus.CANCELLED
    assert result.remote_status == "Canceled"
    again = await connector.cancel(handle)  # the remote refuses: the group has ended
    assert again.supported
    assert "already ended (Canceled)" in again.message
    assert sim.counters.cancels == 2
    assert JOB_TYPES[0].can_cancel
    await connector.aclose()


async def test_unknown_ids(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve)
    with pytest.raises(
        NotFoundError, match="DataNotFoundException: JobGroup with id 999"
    ) as caught:
        await connector.poll({"kind": "jobGroup", "target": 1, "jobGroupIds": [999]})
    assert caught.value.status == 404
    sim.unknown.add("404")
    with pytest.raises(NotFoundError, match="WrangledDataset with id 404 does not exist"):
        await connector.submit(submission({"wrangledDataset": {"id": 404}}))
    await connector.aclose()


async def test_validation_and_route_errors_name_the_exception(serve: Any) -> None:
    connector, _, _ = await open_connector(serve)
    with pytest.raises(PermanentError, match=r"HTTP 400: ApiValidationFailed: .*wrangledDataset"):
        await connector._call("POST", "/v4/jobGroups", json={"overrides": {}})
    with pytest.raises(NotFoundError, match="RouteNotFoundException: This route does not exist"):
        await connector._call("GET", "/v4/nothing")
    await connector.aclose()


async def test_auth_failure(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve, token="wrong-token")
    with pytest.raises(AuthError, match="AuthenticationFailed") as caught:
        await connector.submit(submission(GROUP))
    assert "wrong-token" not in str(caught.value)
    assert sim.counters.auth_failures == 1
    await connector.aclose()
    missing = TrifactaConnector(connection("http://127.0.0.1:1", token=""), "jobGroup")
    with pytest.raises(AuthError, match="'token' is required"):
        await missing.submit(submission(GROUP))
    await missing.aclose()


async def test_429_retry_after_is_honoured(serve: Any) -> None:
    connector, sim, sleeps = await open_connector(serve)
    sim.fault(Fault(kind="status", status=429, retry_after="2", method="POST"))
    handle = await connector.submit(submission(GROUP))
    assert handle["jobGroupIds"]
    assert sleeps.waits
    assert sleeps.waits[0] >= 2
    await connector.aclose()


async def test_5xx_retried_then_success(serve: Any) -> None:
    connector, sim, sleeps = await open_connector(serve)
    handle = await connector.submit(submission(GROUP))
    sim.fault(Fault(kind="status", status=503, count=2, method="GET"))
    result = await connector.poll(handle)
    assert result.status is RemoteStatus.RUNNING
    assert len(sleeps.waits) == 2
    assert sim.counters.faults_served == 2
    await connector.aclose()


async def test_dropped_connection_on_poll_is_retried(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve)
    handle = await connector.submit(submission(GROUP))
    sim.fault(Fault(kind="drop", method="GET", path="/v4/jobGroups"))
    result = await connector.poll(handle)
    assert result.status is RemoteStatus.RUNNING
    assert sim.counters.faults_served == 1
    await connector.aclose()


async def test_malformed_body_is_a_clear_permanent_error(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve)
    handle = await connector.submit(submission(GROUP))
    sim.fault(Fault(kind="malformed", method="GET"))
    with pytest.raises(PermanentError, match="the body is not JSON"):
        await connector.poll(handle)
    sim.fault(Fault(kind="malformed", method="POST"))
    with pytest.raises(PermanentError, match="the body is not JSON"):
        await connector.submit(submission(GROUP))
    await connector.aclose()


async def test_find_by_key_pages_through_the_list(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve, key_field="description")
    wanted = submission(GROUP, attempt=1)
    handle = await connector.submit(wanted)
    group = sim.jobs[str(handle["jobGroupIds"][0])]
    assert group.data["description"] == wanted.idempotency_key
    # keys run-1/job/100 … run-1/job/125 also match the filter (a substring) and, newer, push
    # the wanted group onto the second page
    for attempt in range(100, 126):
        await connector.submit(submission(GROUP, attempt=attempt))
    assert await connector.find(wanted) == handle
    assert sim.counters.requests["GET /v4/jobGroups"] == 2
    later = time.time() + 60  # written ahead after every group was created: none is theirs
    assert await connector.find(submission(GROUP, job_id="never", not_before=later)) is None
    assert await connector.find(submission(GROUP, attempt=2, not_before=later)) is None
    await connector.aclose()


async def test_find_takes_the_group_created_since_the_write_ahead(serve: Any) -> None:
    connector, _, _ = await open_connector(serve, clock_skew=0.01)
    old = await connector.submit(submission(GROUP, attempt=1))
    await anyio.sleep(0.05)  # more than the skew allowed for
    written = time.time()
    await connector.submit(submission({"wrangledDataset": {"id": 7}}, job_id="other"))
    wanted = submission(GROUP, attempt=2, not_before=written)
    handle = await connector.submit(wanted)  # its answer lost, say
    assert handle != old
    assert await connector.find(wanted) == handle  # the one of this dataset since then
    # another attempt holds it: not this submission's
    assert await connector.find(submission(GROUP, not_before=written, claimed=[handle])) is None
    # two unclaimed groups of the dataset since then: which one cannot be told
    await connector.submit(submission(GROUP, attempt=3))
    with pytest.raises(LookupUndecided, match="2 job groups of dataset 28629"):
        await connector.find(wanted)
    with pytest.raises(LookupUndecided, match="written ahead is not known"):
        await connector.find(submission(GROUP))
    await connector.aclose()
    flows, _, _ = await open_connector(serve, "flow")
    with pytest.raises(LookupUndecided, match="do not name the flow"):
        await flows.find(submission({"flowId": 3}, not_before=written))
    await flows.aclose()


async def test_answer_ids_that_are_not_ids_are_refused() -> None:
    connector = _mock_connector("deployment")
    for bad, shown in ((float("nan"), "NaN"), (True, "True"), ([1], "[1]"), ("", "''")):
        with aioresponses() as mocked:
            mocked.post(
                f"{BASE}/v4/deployments/2/run", status=201, body=_json({"data": [{"id": bad}]})
            )
            with pytest.raises(PermanentError) as caught:
                await connector.submit(submission({"deploymentId": 2}))
        assert str(caught.value).startswith("trifacta.deployment: the remote answered field")
        assert f"'data[0].id' with {shown}," in str(caught.value)
    await connector.aclose()


async def test_callback_webhook_is_added_and_called(serve: Any) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append({"path": request.path, "body": await request.json()})
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/api/v1/callbacks/{token}", hook)
    app.router.add_post("/user", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        connector, sim, _ = await open_connector(serve)
        user_hook = {
            "name": "mine",
            "url": f"http://127.0.0.1:{port}/user",
            "method": "post",
            "triggerEvent": "onJobSuccess",
            "body": {"text": "group $jobId is $jobStatus"},
        }
        params = {"wrangledDataset": {"id": 5}, "overrides": {"webhooks": [user_hook]}}
        sub = submission(params)
        sub.callback_url = f"http://127.0.0.1:{port}/api/v1/callbacks/tok123"
        sim.script(Behaviour(duration=0.05))
        handle = await connector.submit(sub)
        hooks = sim.jobs[str(handle["jobGroupIds"][0])].data["overrides"]["webhooks"]
        assert hooks[0] == user_hook  # the user's webhook kept
        assert hooks[1]["name"] == CALLBACK_NAME
        assert hooks[1]["triggerEvent"] == "onJobDone"
        assert hooks[1]["sslVerification"] is True
        assert params["overrides"]["webhooks"] == [user_hook]  # the job's fields untouched
        with anyio.fail_after(3):
            while len(received) < 2:
                await anyio.sleep(0.02)
        paths = sorted(r["path"] for r in received)
        assert paths == ["/api/v1/callbacks/tok123", "/user"]
        user = next(r for r in received if r["path"] == "/user")
        assert user["body"] == {"text": f"group {handle['jobGroupIds'][0]} is Complete"}
        assert all(d["status"] == 200 for d in sim.deliveries)
        await connector.aclose()
    finally:
        await runner.cleanup()


# -- flows and deployments --------------------------------------------------------------------


async def test_flow_run_polls_every_job_group(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve, "flow")
    sim.groups_per_run["12"] = 2
    sim.script(Behaviour(duration=0.05))
    sim.script(Behaviour(duration=0.15))
    handle = await connector.submit(
        submission({"flowId": 12, "overrides": {"execution": "photon"}})
    )
    assert handle["kind"] == "flow"
    assert len(handle["jobGroupIds"]) == 2
    assert len(handle["flowRunIds"]) == 1
    assert sim.counters.submissions["run-1/job/1"] == 1
    result = await run_to_end(connector, handle)
    assert result.status is RemoteStatus.SUCCEEDED
    assert len(result.outputs["jobs"]) == 4
    assert result.outputs["flowRunIds"] == handle["flowRunIds"]
    await connector.aclose()


async def test_flow_unknown_and_failure(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve, "flow")
    sim.unknown.add("77")
    with pytest.raises(NotFoundError, match="Flow with id 77"):
        await connector.submit(submission({"flowId": 77}))
    sim.rule("3", Behaviour(duration=0.05, outcome="failure", message="bad input"))
    result = await run_to_end(connector, await connector.submit(submission({"flowId": 3})))
    assert result.status is RemoteStatus.FAILED
    assert result.error is not None
    assert "bad input" in result.error
    await connector.aclose()


async def test_deployment_waits_for_all_groups_and_fails_if_one_failed(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve, "deployment")
    sim.groups_per_run["9"] = 2
    sim.script(Behaviour(duration=0.02, outcome="failure", message="publish refused"))
    sim.script(Behaviour(duration=0.2))
    params = {"deploymentId": 9, "runParameters": {"overrides": {"data": []}}}
    handle = await connector.submit(submission(params))
    assert handle["kind"] == "deployment"
    first, second = handle["jobGroupIds"]
    assert sim.jobs[str(first)].data["runParameters"] == params["runParameters"]
    await anyio.sleep(0.06)
    early = await connector.poll(handle)
    assert early.status is RemoteStatus.RUNNING  # the second group still runs
    result = await run_to_end(connector, handle)
    assert result.status is RemoteStatus.FAILED
    assert result.error is not None
    assert result.error.startswith(f"job group {first} Failed")
    assert "publish refused" in result.error
    assert result.outputs["statuses"] == {str(first): "Failed", str(second): "Complete"}
    await connector.aclose()


async def test_deployment_cancel_cancels_every_group(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve, "deployment")
    sim.groups_per_run["9"] = 2
    sim.default = Behaviour(duration=30)
    handle = await connector.submit(submission({"deploymentId": 9}))
    cancelled = await connector.cancel(handle)
    assert cancelled.supported
    assert sim.counters.cancels == 2
    assert (await connector.poll(handle)).status is RemoteStatus.CANCELLED
    await connector.aclose()


# -- odd wire shapes --------------------------------------------------------------------------


def _mock_connector(kind: Kind = "jobGroup") -> TrifactaConnector:
    conn = connection(BASE)
    return TrifactaConnector(conn, kind, HttpClient(conn, sleep=Sleeps()))


GROUP_URL = re.compile(rf"^{BASE}/v4/jobGroups/5$")
JOBS_URL = re.compile(rf"^{BASE}/v4/jobGroups/5/jobs$")
HANDLE = {"kind": "jobGroup", "target": 1, "jobGroupIds": [5]}


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("Created", RemoteStatus.RUNNING),
        ("Pending", RemoteStatus.RUNNING),
        ("InProgress", RemoteStatus.RUNNING),
        ("Complete", RemoteStatus.SUCCEEDED),
        ("Failed", RemoteStatus.FAILED),
        ("Canceled", RemoteStatus.CANCELLED),
        ("Cancelled", RemoteStatus.CANCELLED),
        ("undefined", RemoteStatus.FAILED),
        ("Exploded", RemoteStatus.FAILED),
    ],
)
async def test_every_status_word(word: str, status: RemoteStatus) -> None:
    connector = _mock_connector()
    with aioresponses() as mocked:
        mocked.get(GROUP_URL, payload={"id": 5, "status": word})
        mocked.get(JOBS_URL, payload={"data": []})
        result = await connector.poll(HANDLE)
    assert result.status is status
    assert result.remote_status == word
    if word in ("undefined", "Exploded"):
        assert result.error == f"unknown remote status {word!r} of job group 5"
    await connector.aclose()


async def test_bare_string_status_and_status_route_fallback() -> None:
    connector = _mock_connector()
    with aioresponses() as mocked:
        mocked.get(GROUP_URL, payload="InProgress")
        assert (await connector.poll(HANDLE)).remote_status == "InProgress"
        mocked.get(GROUP_URL, payload={"id": 5})  # no status in the object
        mocked.get(re.compile(rf"^{BASE}/v4/jobGroups/5/status$"), payload="Complete")
        mocked.get(
            JOBS_URL, payload={"data": [{"id": 1, "jobType": "wrangle", "status": "Complete"}]}
        )
        result = await connector.poll(HANDLE)
    assert result.status is RemoteStatus.SUCCEEDED
    assert result.outputs["jobs"] == [
        {"id": 1, "jobType": "wrangle", "status": "Complete", "jobGroupId": 5}
    ]
    await connector.aclose()


async def test_flow_answer_with_only_a_flow_run_id() -> None:
    connector = _mock_connector("flow")
    with aioresponses() as mocked:
        mocked.post(
            f"{BASE}/v4/flows/4/run",
            status=201,
            payload={"data": [{"flowRun": {"id": 88}, "reason": "JobStarted"}]},
        )
        handle = await connector.submit(submission({"flowId": 4}))
        assert handle == {"kind": "flow", "target": 4, "jobGroupIds": [], "flowRunIds": [88]}
        mocked.get(f"{BASE}/v4/flowRuns/88/status", payload="InProgress")
        assert (await connector.poll(handle)).status is RemoteStatus.RUNNING
        mocked.get(f"{BASE}/v4/flowRuns/88/status", payload="Cancelled")
        assert (await connector.poll(handle)).status is RemoteStatus.CANCELLED
    cancel = await connector.cancel(handle)
    assert not cancel.supported
    await connector.aclose()


async def test_flow_answer_with_job_group_and_flow_run() -> None:
    connector = _mock_connector("flow")
    with aioresponses() as mocked:
        mocked.post(
            f"{BASE}/v4/flows/4/run",
            status=201,
            payload={"data": [{"id": 5, "flowRun": {"id": 88}, "reason": "JobStarted"}]},
        )
        handle = await connector.submit(submission({"flowId": 4}))
    assert handle["jobGroupIds"] == [5]  # polled as a job group
    await connector.aclose()


async def test_missing_cancel_route_is_unsupported() -> None:
    connector = _mock_connector()
    with aioresponses() as mocked:
        mocked.post(
            f"{BASE}/v4/jobGroups/5/cancel",
            status=404,
            payload={
                "exception": {
                    "name": "RouteNotFoundException",
                    "message": "This route does not exist",
                    "details": "Cannot POST /v4/jobGroups/5/cancel",
                }
            },
        )
        result = await connector.cancel(HANDLE)
    assert not result.supported
    assert "RouteNotFoundException" in result.message
    await connector.aclose()


async def test_answers_without_ids_are_permanent_errors() -> None:
    connector = _mock_connector("deployment")
    with aioresponses() as mocked:
        mocked.post(f"{BASE}/v4/deployments/2/run", status=201, payload={"data": []})
        with pytest.raises(PermanentError, match="names no job group"):
            await connector.submit(submission({"deploymentId": 2}))
    await connector.aclose()
    connector = _mock_connector()
    with aioresponses() as mocked:
        mocked.post(f"{BASE}/v4/jobGroups", status=201, payload={"reason": "JobStarted"})
        with pytest.raises(PermanentError, match="no job group id"):
            await connector.submit(submission(GROUP))
    await connector.aclose()


def _json(document: Any) -> str:
    """JSON as a remote may send it: NaN and infinities written bare."""
    return json.dumps(document, allow_nan=True)
