"""The ``celonis.dataJob`` job type against the Celonis simulator, over real HTTP; aioresponses
for wire shapes the simulator does not produce."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from aioresponses import aioresponses

from orchestrator.connections import Connection
from orchestrator.connectors.base import LookupUndecided, RemoteStatus
from orchestrator.connectors.celonis import CelonisConnector, auth_headers
from orchestrator.connectors.http.client import HttpClient, TransientRetry
from orchestrator.errors import AuthError, NotFoundError, PermanentError, TransientError
from orchestrator.testing.simulators.base import Behaviour, Fault
from orchestrator.testing.simulators.celonis import CelonisSimulator

from .conftest import run_to_end, submission

FIELDS: dict[str, Any] = {"poolId": "pool-1", "jobId": "job-1"}
POOL = "/integration/api/pools/pool-1"


class Sleeps:
    """Records waits; sleeps for real at most ``real`` seconds."""

    def __init__(self, real: float = 0.0) -> None:
        self.waits: list[float] = []
        self.real = real

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.real:
            await anyio.sleep(min(seconds, self.real))


def connect(
    base_url: str,
    credentials: dict[str, str] | None = None,
    options: dict[str, Any] | None = None,
) -> tuple[CelonisConnector, Sleeps, Sleeps]:
    conn = Connection(
        "celonis",
        "celonis",
        base_url,
        {"app_key": "sim-app-key"} if credentials is None else credentials,
        timeout=5,
        options=options or {},
    )
    http_sleeps, waits = Sleeps(), Sleeps(real=0.02)
    client = HttpClient(
        conn, headers=auth_headers(conn), sleep=http_sleeps, retry=TransientRetry(attempts=4)
    )
    return CelonisConnector(conn, client, sleep=waits), http_sleeps, waits


async def open_connector(
    serve: Any,
    credentials: dict[str, str] | None = None,
    options: dict[str, Any] | None = None,
    **sim: Any,
) -> tuple[CelonisConnector, CelonisSimulator, Sleeps, Sleeps]:
    sim.setdefault("default", Behaviour(duration=0.1))
    served = await serve(CelonisSimulator(**sim))
    connector, http_sleeps, waits = connect(served.base_url, credentials, options)
    return connector, served.sim, http_sleeps, waits


async def test_success_with_outputs(serve: Any) -> None:
    connector, sim, _, _ = await open_connector(serve)
    sim.rule("job-1", Behaviour(duration=0.1, queued=0.05))
    handle = await connector.submit(submission(FIELDS))
    assert json.loads(json.dumps(handle)) == handle  # plain JSON
    assert handle["poolId"] == "pool-1"
    assert handle["jobId"] == "job-1"
    assert "previousStart" not in handle  # the job had never run
    assert "sim-app-key" not in json.dumps(handle)
    first = await connector.poll(handle)
    assert first.status is RemoteStatus.RUNNING
    assert first.remote_status == "QUEUED"
    result = await run_to_end(connector, handle)
    assert result.status is RemoteStatus.SUCCEEDED
    assert result.remote_status == "SUCCESS"
    (execution,) = sim.jobs.values()
    assert result.outputs["executionId"] == execution.id
    assert result.outputs["mode"] == "DELTA"
    assert result.outputs["startDate"] == result.outputs["lastExecutionStartDate"]
    assert execution.key == "run-1/job/1"  # the Idempotency-Key header
    assert sim.configurations == [
        {
            "poolId": "pool-1",
            "jobId": "job-1",
            "mode": "DELTA",
            "executeOnlySubsetOfTransformations": False,
            "transformations": [],
            "executeOnlySubsetOfExtractions": False,
            "extractions": [],
            "loadOnlySubsetOfDataModels": False,
            "dataModels": [],
        }
    ]
    await connector.aclose()


async def test_subsets_set_their_flags(serve: Any) -> None:
    connector, sim, _, _ = await open_connector(serve)
    fields = {
        **FIELDS,
        "mode": "FULL",
        "transformations": [],
        "extractions": [{"extractionId": "e1"}, {"extractionId": "e2", "tables": ["ORDERS"]}],
        "dataModels": [{"dataModelExecutionId": "dm1", "tables": ["T1", "T2"]}],
    }
    await connector.submit(submission(fields))
    (body,) = sim.configurations
    assert body["mode"] == "FULL"
    assert body["executeOnlySubsetOfTransformations"] is True  # an empty list is a subset
    assert body["transformations"] == []
    assert body["executeOnlySubsetOfExtractions"] is True
    assert body["extractions"] == [
        {"extractionId": "e1", "loadOnlySubsetOfTables": False, "tables": []},
        {"extractionId": "e2", "loadOnlySubsetOfTables": True, "tables": ["ORDERS"]},
    ]
    assert body["loadOnlySubsetOfDataModels"] is True
    assert body["dataModels"] == [{"dataModelExecutionId": "dm1", "tables": ["T1", "T2"]}]
    await connector.aclose()


async def test_remote_failure_with_the_failed_task_logs(serve: Any) -> None:
    connector, sim, _, _ = await open_connector(serve)
    sim.script(Behaviour(duration=0.05, outcome="failure", message="Table ORDERS does not exist"))
    result = await run_to_end(connector, await connector.submit(submission(FIELDS)))
    assert result.status is RemoteStatus.FAILED
    assert result.remote_status == "FAIL"
    assert result.error == "Transform orders: Table ORDERS does not exist"
    await connector.aclose()


async def test_failure_without_readable_logs_says_so(serve: Any) -> None:
    connector, sim, _, _ = await open_connector(serve)
    sim.script(Behaviour(duration=0.05, outcome="failure", message="boom"))
    handle = await connector.submit(submission(FIELDS))
    await anyio.sleep(0.1)
    sim.fault(Fault("status", status=404, path=f"{POOL}/logs/executions/detail"))
    result = await connector.poll(handle)
    assert result.status is RemoteStatus.FAILED
    assert result.error is not None
    assert result.error.startswith("data job job-1 ended with status FAIL (the task logs could")
    await connector.aclose()


async def test_cancel(serve: Any) -> None:
    connector, sim, _, _ = await open_connector(serve)
    sim.script(Behaviour(duration=30))
    handle = await connector.submit(submission(FIELDS))
    cancelled = await connector.cancel(handle)
    assert cancelled.supported
    result = await connector.poll(handle)
    assert result.status is RemoteStatus.CANCELLED
    assert result.remote_status == "CANCEL"
    assert sim.counters.cancels == 1
    await connector.aclose()


async def test_unknown_pool_job_and_status(serve: Any) -> None:
    connector, _, _, _ = await open_connector(serve, options={"appear_grace": 5})
    with pytest.raises(NotFoundError, match="Data pool with id 'unknown-pool' does not exist"):
        await connector.submit(submission({**FIELDS, "poolId": "unknown-pool"}))
    with pytest.raises(NotFoundError, match="Data job with id 'unknown-job' does not exist"):
        await connector.submit(submission({**FIELDS, "jobId": "unknown-job"}))
    with pytest.raises(NotFoundError, match="HTTP 404"):
        await connector.poll({"poolId": "unknown-pool", "jobId": "job-1", "submittedAt": 0})
    with pytest.raises(NotFoundError, match="data job never-ran has no status in pool pool-1"):
        await connector.poll({"poolId": "pool-1", "jobId": "never-ran", "submittedAt": 0})
    just_sent = {"poolId": "pool-1", "jobId": "never-ran", "submittedAt": 4e9}
    assert (await connector.poll(just_sent)).status is RemoteStatus.RUNNING  # not listed yet
    await connector.aclose()


async def test_auth(serve: Any) -> None:
    connector, sim, _, _ = await open_connector(serve, {"app_key": "wrong-key"})
    with pytest.raises(AuthError, match="HTTP 401") as caught:
        await connector.submit(submission(FIELDS))
    assert "wrong-key" not in str(caught.value)
    assert caught.value.detail["shortMessage"] == "Unauthorized"
    assert sim.counters.auth_failures == 1
    await connector.aclose()
    base = connector.connection.base_url
    for job_id, credentials in (
        ("job-a", {"token": "sim-token"}),
        ("job-b", {"api_key": "sim-token"}),
    ):
        bearer, _, _ = connect(base, credentials)
        await bearer.submit(submission({**FIELDS, "jobId": job_id}))
        await bearer.aclose()
    assert len(sim.jobs) == 2
    bare, _, _ = connect(base, {})
    with pytest.raises(AuthError, match="app_key, token or api_key"):
        await bare.submit(submission(FIELDS))
    await bare.aclose()


async def test_429_rate_limit_reset_and_retry_after_honoured(serve: Any) -> None:
    connector, sim, sleeps, _ = await open_connector(serve)
    sim.fault(Fault("status", status=429, headers={"x-ratelimit-reset": "1"}, method="GET"))
    sim.fault(Fault("status", status=429, retry_after="3", method="POST"))
    handle = await connector.submit(submission(FIELDS))
    assert sleeps.waits[0] >= 1  # x-ratelimit-reset
    assert sleeps.waits[1] >= 3  # Retry-After
    result = await run_to_end(connector, handle)
    assert result.status is RemoteStatus.SUCCEEDED
    assert sim.counters.faults_served == 2
    assert len(sim.jobs) == 1
    await connector.aclose()


async def test_5xx_retried_then_success(serve: Any) -> None:
    connector, sim, sleeps, _ = await open_connector(serve)
    sim.fault(Fault("status", count=2, status=503, method="POST"))
    sim.fault(Fault("status", count=1, status=502, method="GET", path=f"{POOL}/logs/status"))
    result = await run_to_end(connector, await connector.submit(submission(FIELDS)))
    assert result.status is RemoteStatus.SUCCEEDED
    assert sim.counters.faults_served == 3
    assert len(sleeps.waits) == 3
    assert len(sim.jobs) == 1
    await connector.aclose()


async def test_dropped_connection_on_poll_is_retried(serve: Any) -> None:
    connector, sim, _, _ = await open_connector(serve)
    sim.script(Behaviour(duration=0.1))
    handle = await connector.submit(submission(FIELDS))
    sim.fault(Fault("drop", count=1, method="GET"))
    result = await run_to_end(connector, handle)
    assert result.status is RemoteStatus.SUCCEEDED
    assert sim.counters.faults_served == 1
    await connector.aclose()


async def test_malformed_body_is_a_clear_error(serve: Any) -> None:
    connector, sim, _, _ = await open_connector(serve)
    handle = await connector.submit(submission(FIELDS))
    sim.fault(Fault("malformed", count=1, method="GET"))
    with pytest.raises(PermanentError, match="not JSON"):
        await connector.poll(handle)
    await connector.aclose()


async def test_execution_in_progress_fails_unless_waiting(serve: Any) -> None:
    connector, sim, _, waits = await open_connector(serve)
    sim.rule("job-1", Behaviour(duration=0.15))
    await connector.submit(submission(FIELDS))
    with pytest.raises(PermanentError, match="an execution is already in progress"):
        await connector.submit(submission(FIELDS, attempt=2))
    assert len(sim.jobs) == 1
    second = await connector.submit(submission({**FIELDS, "waitIfRunning": True}, attempt=3))
    assert waits.waits  # it polled the status until the first one ended
    assert len(sim.jobs) == 2
    first_start = sim.jobs[next(iter(sim.jobs))].data["wall"]
    assert second["previousStart"].startswith(
        datetime.fromtimestamp(first_start, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    )
    result = await run_to_end(connector, second)
    assert result.status is RemoteStatus.SUCCEEDED
    assert result.outputs["executionId"] == list(sim.jobs)[1]
    await connector.aclose()


async def test_an_old_status_is_not_taken_for_the_new_execution(serve: Any) -> None:
    connector, sim, _, _ = await open_connector(serve, status_lag=0.25)
    sim.script(Behaviour(duration=0.02))
    first = await connector.submit(submission(FIELDS))
    assert (await run_to_end(connector, first)).status is RemoteStatus.SUCCEEDED
    sim.script(Behaviour(duration=0.02, outcome="failure", message="bad join"))
    second = await connector.submit(submission(FIELDS, attempt=2))
    assert "previousStart" in second
    early = await connector.poll(second)
    assert early.status is RemoteStatus.RUNNING  # the status still shows the first SUCCESS
    assert early.remote_status == "SUCCESS"
    result = await run_to_end(connector, second)
    assert result.status is RemoteStatus.FAILED
    assert result.error == "Transform orders: bad join"
    await connector.aclose()


async def test_a_restarted_connector_decides_from_the_stored_handle(serve: Any) -> None:
    """What decides a poll is in the handle (``submittedAt``, ``previousStart``) and on the
    remote, never in the connector's memory: a fresh connector (another process, after a
    restart) given the stored handle decides as the one that submitted."""
    connector, sim, _, _ = await open_connector(serve, status_lag=0.25)
    sim.script(Behaviour(duration=0.02))
    first = await connector.submit(submission(FIELDS))
    assert (await run_to_end(connector, first)).status is RemoteStatus.SUCCEEDED
    sim.script(Behaviour(duration=0.02, outcome="failure", message="bad join"))
    second = await connector.submit(submission(FIELDS, attempt=2))
    stored = json.loads(json.dumps(second))
    fresh, _, _ = connect(connector.connection.base_url)
    early = [await connector.poll(second), await fresh.poll(stored)]
    assert [(r.status, r.remote_status) for r in early] == [(RemoteStatus.RUNNING, "SUCCESS")] * 2
    ended = [await run_to_end(connector, second), await run_to_end(fresh, stored)]
    assert [(r.status, r.error, r.outputs) for r in ended] == [
        (RemoteStatus.FAILED, "Transform orders: bad join", ended[0].outputs)
    ] * 2
    await fresh.aclose()
    await connector.aclose()


async def test_no_new_execution_within_the_grace_fails(serve: Any) -> None:
    connector, sim, _, _ = await open_connector(serve, options={"appear_grace": 0}, status_lag=0.25)
    sim.script(Behaviour(duration=0.02))
    first = await connector.submit(submission(FIELDS))
    await anyio.sleep(0.3)
    assert (await connector.poll(first)).status is RemoteStatus.SUCCEEDED
    second = await connector.submit(submission(FIELDS, attempt=2))
    result = await connector.poll(second)
    assert result.status is RemoteStatus.FAILED
    assert result.error is not None
    assert result.error.startswith("no new execution of data job job-1 appeared within 0s")
    await connector.aclose()


async def test_find_after_a_lost_answer(serve: Any) -> None:
    connector, sim, _, _ = await open_connector(serve, options={"clock_skew": 0.01})
    old = await connector.submit(submission(FIELDS, attempt=1))
    await run_to_end(connector, old)
    await anyio.sleep(0.05)  # more than the skew allowed for
    written = time.time()
    sim.lose_answers = 1
    with pytest.raises(TransientError) as caught:
        await connector.submit(submission(FIELDS, attempt=2))
    assert caught.value.ambiguous
    assert len(sim.jobs) == 2  # the remote acted on the request
    fresh, _, _ = connect(connector.connection.base_url, None, {"clock_skew": 0.01})
    found = await fresh.find(submission(FIELDS, attempt=2, not_before=written))
    assert found is not None
    assert (found["poolId"], found["jobId"]) == ("pool-1", "job-1")
    assert found["executionId"] == sim.executions[("pool-1", "job-1")][-1]
    assert (await run_to_end(fresh, found)).status is RemoteStatus.SUCCEEDED
    # held by another attempt, or started before the write-ahead: not this submission's
    held = submission(FIELDS, attempt=3, not_before=written, claimed=[found])
    assert await fresh.find(held) is None
    assert await fresh.find(submission(FIELDS, not_before=time.time() + 60)) is None
    # another attempt submitted since and its execution id is not known: cannot tell
    unnamed = {"poolId": "pool-1", "jobId": "job-1", "submittedAt": written + 0.001}
    with pytest.raises(LookupUndecided, match="which execution each started is not known"):
        await fresh.find(submission(FIELDS, attempt=3, not_before=written, claimed=[unnamed]))
    with pytest.raises(LookupUndecided, match="written ahead is not known"):
        await fresh.find(submission(FIELDS))
    await fresh.aclose()
    await connector.aclose()


async def test_find_when_nothing_started(serve: Any) -> None:
    connector, sim, _, _ = await open_connector(serve)
    sim.fault(Fault("drop", count=1, method="POST"))  # cut before the remote acts
    with pytest.raises(TransientError):
        await connector.submit(submission(FIELDS))
    assert sim.jobs == {}
    assert await connector.find(submission(FIELDS, not_before=time.time() - 1)) is None
    await connector.aclose()


async def test_execution_ids_that_are_not_ids_are_refused() -> None:
    base = "https://celonis.example"
    connector = CelonisConnector(Connection("c", "celonis", base, {"app_key": "k"}))
    pool = f"{base}/integration/api/pools/pool-1"
    for bad, shown in ((float("nan"), "NaN"), (True, "True"), (["x"], "['x']"), ("", "''")):
        with aioresponses() as mocked:
            mocked.get(f"{pool}/logs/status", payload=[])
            mocked.post(f"{pool}/jobs/job-1/execute", body=json.dumps({"executionId": bad}))
            with pytest.raises(PermanentError) as caught:
                await connector.submit(submission(FIELDS))
        message = str(caught.value)
        assert message.startswith("celonis.dataJob: the remote answered field 'executionId'")
        assert f" with {shown}," in message
    await connector.aclose()


async def test_official_endpoints(serve: Any) -> None:
    connector, sim, _, _ = await open_connector(serve)
    client = connector.client
    v2 = "/integration/api/v2/data-pools/pool-1/data-jobs/job-1/execute"
    response = await client.request("POST", v2, params={"mode": "FULL"})
    assert response.status == 200
    job = (await client.request("GET", f"{POOL}/jobs/job-1")).json()
    assert job["currentExecutionId"] == next(iter(sim.jobs))
    assert job["status"] in ("QUEUED", "RUNNING")
    with pytest.raises(PermanentError, match="Unknown extraction mode 'BAD'"):
        await client.request("POST", v2, params={"mode": "BAD"})
    with pytest.raises(NotFoundError):
        await client.request("GET", "/integration/api/pools/unknown-p/jobs/job-1")
    await connector.aclose()


# -- wire shapes the simulator does not produce ------------------------------------------------

BASE = "https://team.eu-1.celonis.cloud"
STATUS_URL = f"{BASE}{POOL}/logs/status"


def mocked_connector() -> CelonisConnector:
    conn = Connection("celonis", "celonis", BASE, {"app_key": "k"})
    return CelonisConnector(conn, HttpClient(conn, headers=auth_headers(conn)))


@pytest.mark.parametrize(
    ("status", "expected", "error"),
    [
        (
            "SKIPPED",
            RemoteStatus.FAILED,
            "the data job execution was SKIPPED, which is not success",
        ),
        ("PAUSED", RemoteStatus.FAILED, "unknown remote status 'PAUSED'"),
        ("success", RemoteStatus.FAILED, "unknown remote status 'success'"),
        ("RUNNING", RemoteStatus.RUNNING, None),
        ("CANCEL", RemoteStatus.CANCELLED, "the execution was cancelled"),
    ],
)
async def test_status_mapping(status: str, expected: RemoteStatus, error: str | None) -> None:
    connector = mocked_connector()
    with aioresponses() as mocked:
        mocked.get(STATUS_URL, payload=[{"id": "other"}, {"id": "job-1", "status": status}])
        result = await connector.poll({"poolId": "pool-1", "jobId": "job-1", "submittedAt": 0})
    assert result.status is expected
    assert result.remote_status == status
    assert result.error == error
    await connector.aclose()


async def test_an_execution_id_in_the_execute_answer_is_kept() -> None:
    connector = mocked_connector()
    with aioresponses() as mocked:
        mocked.get(STATUS_URL, payload=[{"id": "job-1", "status": "SUCCESS"}])
        mocked.post(f"{BASE}{POOL}/jobs/job-1/execute", payload={"executionId": "exec-9"})
        handle = await connector.submit(submission(FIELDS))
        assert handle["executionId"] == "exec-9"
        assert "previousStart" not in handle  # no start date: nothing to compare
        (call,) = next(c for (m, u), c in mocked.requests.items() if m == "POST")
        assert call.kwargs["headers"]["Idempotency-Key"] == "run-1/job/1"
        mocked.get(STATUS_URL, payload=[{"id": "job-1", "status": "FAIL"}])
        mocked.get(re.compile(r".*/logs/job-1/executions\?.*"), payload={"executionItems": []})
        mocked.get(
            re.compile(r".*/logs/executions\?.*executionId=exec-9.*"),
            payload=[{"taskId": "t1", "name": "Load", "status": "FAIL"}],
        )
        mocked.get(
            re.compile(r".*/logs/executions/detail\?.*id=t1.*"),
            payload={"logMessages": [{"level": "INFO", "logMessage": "disk full"}]},
        )
        result = await connector.poll(handle)
    assert result.error == "Load: disk full"
    await connector.aclose()


async def test_a_status_that_is_not_a_list_is_a_clear_error() -> None:
    connector = mocked_connector()
    with aioresponses() as mocked:
        mocked.get(STATUS_URL, payload={"id": "job-1", "status": "SUCCESS"})
        with pytest.raises(PermanentError, match="expected a list of statuses"):
            await connector.poll({"poolId": "pool-1", "jobId": "job-1", "submittedAt": 0})
    await connector.aclose()
