"""The `http` job type against the generic job API simulator, over real HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aioresponses import aioresponses

from orchestrator.connections import Connection
from orchestrator.connectors.base import RemoteStatus
from orchestrator.connectors.http.client import HttpClient, TransientRetry
from orchestrator.connectors.rest import RestConnector, auth_headers, validate
from orchestrator.errors import AuthError, NotFoundError, PermanentError
from orchestrator.testing.simulators.base import Behaviour, Fault
from orchestrator.testing.simulators.jobs_api import JobsApiSimulator

from .conftest import run_to_end, submission

FIELDS: dict[str, Any] = {
    "submit": {"method": "POST", "path": "/jobs", "body": {"name": "nightly"}},
    "idPath": "$.id",
    "poll": {"method": "GET", "path": "/jobs/{id}"},
    "statusPath": "$.state",
    "running": ["queued", "running"],
    "success": ["done"],
    "failure": ["error", "cancelled"],
    "errorPath": "$.error",
    "outputsPath": "$.result",
    "cancel": {"method": "POST", "path": "/jobs/{id}/cancel"},
    "find": {"method": "GET", "path": "/jobs?key={key}", "listPath": "$.data"},
}


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def open_connector(
    serve: Any, token: str = "sim-token", **sim: Any
) -> tuple[RestConnector, Any, Sleeps]:
    served = await serve(JobsApiSimulator(**sim))
    conn = Connection("sim", "http", served.base_url, {"token": token}, timeout=5)
    sleeps = Sleeps()
    client = HttpClient(
        conn, headers=auth_headers(conn), sleep=sleeps, retry=TransientRetry(attempts=4)
    )
    return RestConnector(conn, client), served.sim, sleeps


async def test_success_with_outputs(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve)
    sim.rule("nightly", Behaviour(duration=0.1, outputs={"rows": 7}))
    handle = await connector.submit(submission(FIELDS))
    assert json.loads(json.dumps(handle)) == handle  # plain JSON
    result = await run_to_end(connector, handle)
    assert result.status is RemoteStatus.SUCCEEDED
    assert result.outputs == {"rows": 7}
    assert dict(sim.counters.submissions) == {"run-1/job/1": 1}
    await connector.aclose()


async def test_remote_failure_with_its_message(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve)
    sim.script(Behaviour(duration=0.05, outcome="failure", message="out of quota"))
    result = await run_to_end(connector, await connector.submit(submission(FIELDS)))
    assert result.status is RemoteStatus.FAILED
    assert result.error == "out of quota"
    assert result.remote_status == "error"
    await connector.aclose()


async def test_cancel(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve)
    sim.script(Behaviour(duration=30))
    handle = await connector.submit(submission(FIELDS))
    cancelled = await connector.cancel(handle)
    assert cancelled.supported
    result = await connector.poll(handle)
    assert result.status is RemoteStatus.FAILED  # "cancelled" is in this job's failure set
    assert result.remote_status == "cancelled"
    assert sim.counters.cancels == 1
    without = dict(FIELDS)
    del without["cancel"]
    handle = await connector.submit(submission(without, job_id="other"))
    assert not (await connector.cancel(handle)).supported
    await connector.aclose()


async def test_unknown_id_and_auth_failure(serve: Any) -> None:
    connector, _, _ = await open_connector(serve)
    handle = await connector.submit(submission(FIELDS))
    with pytest.raises(NotFoundError, match="HTTP 404"):
        await connector.poll({**handle, "id": "job-999"})
    await connector.aclose()
    bad, sim, _ = await open_connector(serve, token="wrong")
    with pytest.raises(AuthError, match="HTTP 401"):
        await bad.submit(submission(FIELDS))
    assert sim.counters.auth_failures == 1
    assert "wrong" not in str(sim.counters.to_json())
    await bad.aclose()


async def test_429_retry_after_honoured_and_5xx_retried(serve: Any) -> None:
    connector, sim, sleeps = await open_connector(serve)
    sim.fault(Fault("status", count=1, status=429, retry_after="3", method="GET"))
    sim.fault(Fault("status", count=2, status=503, method="POST"))
    handle = await connector.submit(submission(FIELDS))
    result = await run_to_end(connector, handle)
    assert result.status is RemoteStatus.SUCCEEDED
    assert any(w >= 3 for w in sleeps.waits)
    assert sim.counters.faults_served == 3
    assert dict(sim.counters.submissions) == {"run-1/job/1": 1}
    await connector.aclose()


async def test_dropped_connection_on_poll_is_retried(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve)
    handle = await connector.submit(submission(FIELDS))
    sim.fault(Fault("drop", count=1, method="GET"))
    result = await run_to_end(connector, handle)
    assert result.status is RemoteStatus.SUCCEEDED
    await connector.aclose()


async def test_malformed_body_is_a_clear_error(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve)
    handle = await connector.submit(submission(FIELDS))
    sim.fault(Fault("malformed", count=1, method="GET"))
    with pytest.raises(PermanentError, match="not JSON"):
        await connector.poll(handle)
    await connector.aclose()


async def test_unknown_status_is_never_success(serve: Any) -> None:
    connector, _, _ = await open_connector(serve)
    fields = {**FIELDS, "success": ["finished"], "failure": ["error"]}
    result = await run_to_end(connector, await connector.submit(submission(fields)))
    assert result.status is RemoteStatus.FAILED
    assert result.error == "unknown remote status 'done'"
    await connector.aclose()


async def test_idempotency_key_dedup_and_find(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve)
    first = await connector.submit(submission(FIELDS))
    again = await connector.submit(submission(FIELDS))  # the same key: the same remote job
    assert again["id"] == first["id"]
    assert dict(sim.counters.submissions) == {"run-1/job/1": 1}
    assert await connector.find(submission(FIELDS)) == first
    assert await connector.find(submission(FIELDS, attempt=2)) is None
    await connector.aclose()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"submit": {"path": "jobs"}}, "field 'submit.path'"),
        ({"poll": {"method": "FETCH", "path": "/x"}}, "field 'poll.method'"),
        ({"idPath": "$..id"}, "field 'idPath': bad JSON path"),
        ({"running": []}, "field 'running'"),
        ({"failure": ["done"]}, "fields 'success' and 'failure': both list 'done'"),
    ],
)
def test_validation(change: dict[str, Any], message: str) -> None:
    assert any(message in p for p in validate({**FIELDS, **change}))
    assert validate(FIELDS) == []


async def test_ids_that_are_not_ids_are_refused() -> None:
    base = "https://jobs.example"
    connector = RestConnector(Connection("sim", "http", base, {"token": "t"}))
    for bad, shown in (("NaN", "NaN"), ("-Infinity", "-inf"), ("true", "True"), ("{}", "{}")):
        with aioresponses() as mocked:
            mocked.post(f"{base}/jobs", status=201, body=f'{{"id": {bad}}}')
            with pytest.raises(PermanentError) as caught:
                await connector.submit(submission(FIELDS))
        assert str(caught.value).startswith(f"http: the remote answered field '$.id' with {shown},")
    await connector.aclose()
