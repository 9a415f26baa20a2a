"""The ``ocapi.job`` job type against the OCAPI simulator, over real HTTP; aioresponses for wire
shapes the simulator does not produce."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import anyio
import pytest
from aioresponses import aioresponses

from orchestrator.connections import Connection
from orchestrator.connectors.base import LookupUndecided, RemoteStatus
from orchestrator.connectors.http.client import HttpClient, TransientRetry
from orchestrator.connectors.ocapi import JOB_TYPES, NO_CANCEL, OcapiConnector, poll_result
from orchestrator.errors import AuthError, NotFoundError, PermanentError, TransientError
from orchestrator.testing.simulators.base import Behaviour, Fault
from orchestrator.testing.simulators.ocapi import OcapiSimulator

from .conftest import run_to_end, submission

FIELDS: dict[str, Any] = {
    "jobId": "CustomerImportJob",
    "parameters": [{"name": "SiteScope", "value": '{"all_storefront_sites":true}'}],
}
TOKEN_PATH = "/dwsso/oauth2/access_token"


class Sleeps:
    """Records waits; sleeps for real at most ``real`` seconds."""

    def __init__(self, real: float = 0.0) -> None:
        self.waits: list[float] = []
        self.real = real

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.real:
            await anyio.sleep(min(seconds, self.real))


async def open_connector(
    serve: Any, *, secret: str = "sim-secret", timeout: float = 5, **sim: Any
) -> tuple[OcapiConnector, OcapiSimulator, Sleeps, Sleeps]:
    sim.setdefault("default", Behaviour(duration=0.1))
    served = await serve(OcapiSimulator(**sim))
    conn = Connection(
        "ocapi",
        "ocapi",
        served.base_url,
        {"client_id": "sim-client", "client_secret": secret},
        timeout=timeout,
        options={"token_url": TOKEN_PATH},
    )
    http_sleeps, waits = Sleeps(), Sleeps(real=0.02)
    client = HttpClient(conn, sleep=http_sleeps, retry=TransientRetry(attempts=4))
    return OcapiConnector(conn, client, sleep=waits), served.sim, http_sleeps, waits


async def test_success_with_outputs(serve: Any) -> None:
    connector, sim, _, _ = await open_connector(serve)
    sim.rule("CustomerImportJob", Behaviour(duration=0.1, queued=0.05))
    handle = await connector.submit(submission(FIELDS))
    assert json.loads(json.dumps(handle)) == handle  # plain JSON
    assert handle["jobId"] == "CustomerImportJob"
    assert handle["apiVersion"] == "v23_2"
    assert "sim-secret" not in json.dumps(handle)
    first = await connector.poll(handle)
    assert first.status is RemoteStatus.RUNNING
    assert first.remote_status == "pending"
    result = await run_to_end(connector, handle)
    assert result.status is RemoteStatus.SUCCEEDED
    assert result.remote_status == "finished"
    assert result.outputs["exitCode"] == "OK"
    assert result.outputs["executionId"] == handle["id"]
    assert result.outputs["logFilePath"].startswith("/Sites/LOGS/jobs/CustomerImportJob/")
    job = sim.jobs[handle["id"]]
    assert job.key == "run-1/job/1"  # the Idempotency-Key header
    assert job.data["parameters"] == FIELDS["parameters"]
    assert sim.token_requests == 1  # the token is cached
    await connector.aclose()


async def test_remote_failure_with_the_failed_step_message(serve: Any) -> None:
    connector, sim, _, _ = await open_connector(serve)
    sim.script(Behaviour(duration=0.05, outcome="failure", message="Import file is empty"))
    result = await run_to_end(connector, await connector.submit(submission(FIELDS)))
    assert result.status is RemoteStatus.FAILED
    assert result.remote_status == "finished"
    assert result.error == "step Run: Import file is empty"
    assert result.outputs["exitCode"] == "ERROR"
    await connector.aclose()


async def test_aborted_execution_fails(serve: Any) -> None:
    connector, sim, _, _ = await open_connector(serve)
    sim.script(Behaviour(duration=30))
    handle = await connector.submit(submission(FIELDS))
    sim.abort(handle["id"])
    result = await connector.poll(handle)
    assert result.status is RemoteStatus.FAILED
    assert result.remote_status == "aborted"
    assert result.error is not None
    assert result.error.startswith("the execution was aborted")
    await connector.aclose()


async def test_cancel_is_not_supported(serve: Any) -> None:
    connector, sim, _, _ = await open_connector(serve)
    sim.script(Behaviour(duration=30))
    handle = await connector.submit(submission(FIELDS))
    cancelled = await connector.cancel(handle)
    assert not cancelled.supported
    assert cancelled.message == NO_CANCEL
    assert (await connector.poll(handle)).status is RemoteStatus.RUNNING  # still running
    assert sim.counters.cancels == 0
    assert not JOB_TYPES[0].can_cancel
    await connector.aclose()


async def test_unknown_job_and_unknown_execution(serve: Any) -> None:
    connector, _, _, _ = await open_connector(serve)
    with pytest.raises(
        NotFoundError, match="JobNotFoundException: No job with ID 'UnknownJob' found"
    ):
        await connector.submit(submission({"jobId": "UnknownJob"}))
    handle = await connector.submit(submission(FIELDS))
    with pytest.raises(NotFoundError, match="JobExecutionNotFoundException") as caught:
        await connector.poll({**handle, "id": "999"})
    assert caught.value.status == 404
    assert caught.value.detail["fault"]["arguments"] == {"executionId": "999"}
    await connector.aclose()


async def test_auth_failure(serve: Any) -> None:
    connector, sim, _, _ = await open_connector(serve, secret="wrong-secret")
    with pytest.raises(AuthError, match="Client authentication failed") as caught:
        await connector.submit(submission(FIELDS))
    assert "wrong-secret" not in str(caught.value)
    assert sim.counters.auth_failures == 1
    assert sim.jobs == {}
    await connector.aclose()
    nothing = OcapiConnector(Connection("bare", "ocapi", "http://127.0.0.1:9"))
    with pytest.raises(AuthError, match="client_id and client_secret are required"):
        await nothing.poll({"id": "1", "jobId": "J", "apiVersion": "v23_2"})
    await nothing.aclose()


async def test_revoked_token_is_renewed_once(serve: Any) -> None:
    connector, sim, _, _ = await open_connector(serve)
    handle = await connector.submit(submission(FIELDS))
    sim.revoke_tokens()
    assert (await connector.poll(handle)).status is RemoteStatus.RUNNING
    assert sim.token_requests == 2
    assert sim.counters.auth_failures == 1
    await connector.aclose()


async def test_expired_token_is_refreshed_before_use(serve: Any) -> None:
    connector, sim, _, _ = await open_connector(serve, token_lifetime=0.2)
    handle = await connector.submit(submission(FIELDS))
    await anyio.sleep(0.25)
    await connector.poll(handle)
    assert sim.token_requests == 2
    assert sim.counters.auth_failures == 0  # renewed ahead of expiry, never refused
    await connector.aclose()


async def test_a_token_refused_twice_is_an_auth_error(serve: Any) -> None:
    connector, sim, _, _ = await open_connector(serve, token_lifetime=0)  # born expired
    with pytest.raises(AuthError, match="InvalidAccessTokenException"):
        await connector.submit(submission(FIELDS))
    assert sim.token_requests == 2
    assert sim.jobs == {}
    await connector.aclose()


async def test_429_retry_after_honoured_and_5xx_retried(serve: Any) -> None:
    connector, sim, sleeps, _ = await open_connector(serve)
    sim.fault(Fault("status", count=1, status=429, retry_after="3", method="GET"))
    sim.fault(Fault("status", count=2, status=503, method="POST", path="/s/-/dw/data"))
    handle = await connector.submit(submission(FIELDS))
    result = await run_to_end(connector, handle)
    assert result.status is RemoteStatus.SUCCEEDED
    assert any(w >= 3 for w in sleeps.waits)
    assert sim.counters.faults_served == 3
    assert dict(sim.counters.submissions) == {"run-1/job/1": 1}
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


async def test_job_already_running_fails_by_default(serve: Any) -> None:
    connector, sim, _, _ = await open_connector(serve)
    sim.rule("CustomerImportJob", Behaviour(duration=30))
    await connector.submit(submission(FIELDS))
    with pytest.raises(PermanentError, match="JobAlreadyRunningException") as caught:
        await connector.submit(submission(FIELDS, attempt=2))
    assert "onJobAlreadyRunning is 'fail'" in str(caught.value)
    assert len(sim.jobs) == 1
    await connector.aclose()


async def test_job_already_running_waits_then_starts(serve: Any) -> None:
    connector, sim, _, waits = await open_connector(serve)
    sim.rule("CustomerImportJob", Behaviour(duration=0.15))
    first = await connector.submit(submission(FIELDS))
    fields = {**FIELDS, "onJobAlreadyRunning": "wait"}
    second = await connector.submit(submission(fields, attempt=2))
    assert second["id"] != first["id"]
    assert waits.waits  # it polled the running execution
    assert sim.counters.requests["POST /s/-/dw/data/v23_2/job_execution_search"] == 1
    assert (await run_to_end(connector, second)).status is RemoteStatus.SUCCEEDED
    assert dict(sim.counters.submissions) == {"run-1/job/1": 1, "run-1/job/2": 1}
    await connector.aclose()


async def test_several_executions_allowed_when_not_single_instance(serve: Any) -> None:
    connector, sim, _, _ = await open_connector(serve, single_instance=False)
    sim.rule("CustomerImportJob", Behaviour(duration=30))
    await connector.submit(submission(FIELDS))
    await connector.submit(submission(FIELDS, attempt=2))
    assert len(sim.jobs) == 2
    await connector.aclose()


async def test_a_restarted_connector_decides_from_the_stored_handle(serve: Any) -> None:
    """What decides a poll is in the handle (execution id, job id, API version) and on the
    remote; the connector's memory holds only its access token. A fresh connector (another
    process, after a restart) given the stored handle decides as the one that submitted."""
    connector, sim, _, _ = await open_connector(serve)
    sim.rule("CustomerImportJob", Behaviour(duration=0.05, outcome="failure", message="bad row"))
    handle = await connector.submit(submission(FIELDS))
    stored = json.loads(json.dumps(handle))
    fresh = OcapiConnector(connector.connection)
    ended = [await run_to_end(connector, handle), await run_to_end(fresh, stored)]
    assert [(r.status, r.remote_status, r.error, r.outputs) for r in ended] == [
        (RemoteStatus.FAILED, "finished", ended[0].error, ended[0].outputs)
    ] * 2
    assert "bad row" in (ended[0].error or "")
    assert [(await c.cancel(h)).supported for c, h in ((connector, handle), (fresh, stored))] == [
        False,
        False,
    ]
    assert sim.jobs[handle["id"]] is not None  # still there: OCAPI has no cancel
    await fresh.aclose()
    await connector.aclose()


async def test_find_after_a_lost_answer(serve: Any) -> None:
    connector, sim, _, _ = await open_connector(serve)
    sim.lose_answers = 1
    written = time.time()
    with pytest.raises(TransientError) as caught:
        await connector.submit(submission(FIELDS))
    assert caught.value.ambiguous
    assert len(sim.jobs) == 1  # the remote acted on the request
    fresh = OcapiConnector(connector.connection)  # another process: it knows only the store's
    found = await fresh.find(submission(FIELDS, not_before=written))
    assert found is not None
    assert found["id"] == next(iter(sim.jobs))
    assert found["jobId"] == "CustomerImportJob"
    assert sim.counters.requests["GET /s/-/dw/data/v23_2/jobs/CustomerImportJob/executions"] == 1
    # another attempt holds it, or it started before the write-ahead: not this submission's
    held = submission(FIELDS, attempt=2, not_before=written, claimed=[found])
    assert await fresh.find(held) is None
    assert await fresh.find(submission(FIELDS, not_before=time.time() + 60)) is None
    other = {**FIELDS, "parameters": [{"name": "SiteScope", "value": "other"}]}
    assert await fresh.find(submission(other, not_before=written)) is None  # other parameters
    with pytest.raises(LookupUndecided, match="written ahead is not known"):
        await fresh.find(submission(FIELDS))
    await connector.aclose()
    await fresh.aclose()


async def test_find_cannot_tell_two_executions_apart(serve: Any) -> None:
    connector, sim, _, _ = await open_connector(serve)
    sim.single_instance = False
    written = time.time()
    first = await connector.submit(submission(FIELDS))
    await connector.submit(submission(FIELDS, attempt=2))
    with pytest.raises(LookupUndecided, match="2 executions of job CustomerImportJob"):
        await connector.find(submission(FIELDS, attempt=3, not_before=written))
    # the first is held by its attempt: the second is the only one left
    held = submission(FIELDS, attempt=3, not_before=written, claimed=[first])
    found = await connector.find(held)
    assert found is not None
    assert found["id"] != first["id"]
    await connector.aclose()


async def test_execution_ids_that_are_not_ids_are_refused() -> None:
    base = "https://ocapi.example"
    conn = Connection("oc", "ocapi", base, {"client_id": "c", "client_secret": "s"})
    connector = OcapiConnector(conn)
    for bad, shown in ((float("nan"), "NaN"), (float("inf"), "inf"), (False, "False"), ({}, "{}")):
        with aioresponses() as mocked:
            mocked.post(
                "https://account.demandware.com/dwsso/oauth2/access_token",
                payload={"access_token": "t", "expires_in": 1799},
            )
            mocked.post(
                f"{base}/s/-/dw/data/v23_2/jobs/J/executions",
                status=202,
                body=json.dumps({"id": bad, "execution_status": "running"}),
            )
            with pytest.raises(PermanentError) as caught:
                await connector.submit(submission({"jobId": "J"}))
        assert str(caught.value).startswith(
            f"ocapi.job: the remote answered field 'id' with {shown},"
        )
    await connector.aclose()


async def test_search_paging_and_delete(serve: Any) -> None:
    """The simulator's search and DELETE, as a real client would use them."""
    connector, sim, _, _ = await open_connector(serve, single_instance=False)
    sim.rule("CustomerImportJob", Behaviour(duration=0.05))
    handles = [await connector.submit(submission(FIELDS, attempt=n)) for n in (1, 2, 3)]
    path = "/s/-/dw/data/v23_2/job_execution_search"
    query = {
        "bool_query": {
            "must": [
                {
                    "term_query": {
                        "fields": ["job_id"],
                        "operator": "is",
                        "values": ["CustomerImportJob"],
                    }
                },
            ],
            "must_not": [
                {"term_query": {"fields": ["id"], "operator": "is", "values": [handles[0]["id"]]}}
            ],
        }
    }
    page = (
        await connector._call(
            "POST", path, json={"query": query, "count": 1, "sorts": [{"field": "start_time"}]}
        )
    ).json()
    assert page["total"] == 2
    assert page["next"] == {"count": 1, "start": 1}
    assert [h["id"] for h in page["hits"]] == [handles[1]["id"]]
    executions = f"/s/-/dw/data/v23_2/jobs/CustomerImportJob/executions/{handles[2]['id']}"
    with pytest.raises(AuthError, match="JobExecutionNotFinishedException"):
        await connector._call("DELETE", executions)
    await run_to_end(connector, handles[2])
    assert (await connector._call("DELETE", executions)).status == 204
    with pytest.raises(NotFoundError):
        await connector.poll(handles[2])
    with pytest.raises(PermanentError, match="UnsupportedQueryException"):
        await connector._call("POST", path, json={"query": {"text_query": {}}})
    await connector.aclose()


# -- wire shapes the simulator does not produce ------------------------------------------------


def _doc(**fields: Any) -> dict[str, Any]:
    return {"_v": "17.2", "_type": "job_execution", "id": "85", "job_id": "J", **fields}


@pytest.mark.parametrize(
    ("document", "status", "error"),
    [
        # 17.2 list sample: no execution_status, "status": "finished"
        (_doc(status="finished", exit_status={"code": "OK", "status": "ok"}), "succeeded", None),
        # once stopped, "status" carries the exit code
        (_doc(status="OK"), "succeeded", None),
        (_doc(status="ERROR"), "failed", "the execution ended with exit code ERROR"),
        (
            _doc(execution_status="finished", exit_status={"code": "SUCCESS", "status": "ok"}),
            "succeeded",
            None,
        ),
        (
            _doc(
                execution_status="finished",
                exit_status={"code": "ERROR", "message": "boom", "status": "error"},
            ),
            "failed",
            "boom",
        ),
        (
            _doc(
                execution_status="finished",
                exit_status={"code": "ERROR", "status": "error", "message": "job"},
                step_executions=[
                    {"step_id": "A", "exit_status": {"code": "ERROR", "message": "first"}},
                    {"step_id": "B", "exit_status": {"code": "ERROR", "message": "last"}},
                    {"step_id": "C", "exit_status": {"code": "OK", "message": ""}},
                ],
            ),
            "failed",
            "step B: last",
        ),
        (
            _doc(execution_status="finished", exit_status={"code": "WARN"}),
            "failed",
            "the execution finished with an unknown exit status 'WARN'",
        ),
        (
            _doc(execution_status="finished"),
            "failed",
            "the execution finished with an unknown exit status 'none'",
        ),
        (_doc(execution_status="paused", status="PAUSED"), "running", None),
        (_doc(execution_status="retrying"), "running", None),
        (_doc(execution_status="aborting"), "running", None),
        (_doc(execution_status="unknown"), "failed", "unknown remote status 'unknown'"),
        (_doc(execution_status="exploded"), "failed", "unknown remote status 'exploded'"),
        (_doc(), "failed", "unknown remote status None"),
    ],
)
def test_status_mapping(document: dict[str, Any], status: str, error: str | None) -> None:
    result = poll_result(document)
    assert result.status == status
    assert result.error == error


async def test_a_200_answer_to_submit_is_accepted() -> None:
    base = "https://instance.example"
    conn = Connection("ocapi", "ocapi", base, {"client_id": "c", "client_secret": "s"}, options={})
    connector = OcapiConnector(conn, HttpClient(conn, retry=TransientRetry(attempts=1)))
    with aioresponses() as mocked:
        mocked.post(
            "https://account.demandware.com/dwsso/oauth2/access_token",
            payload={"access_token": "t", "token_type": "bearer", "expires_in": 1799},
        )
        mocked.post(
            f"{base}/s/-/dw/data/v23_2/jobs/J%20K/executions",
            status=200,
            payload={
                "_v": "23.2",
                "id": "40605",
                "execution_status": "running",
                "status": "RUNNING",
            },
        )
        handle = await connector.submit(submission({"jobId": "J K"}))
        assert handle == {"id": "40605", "jobId": "J K", "apiVersion": "v23_2"}
        calls = {str(url): c for (method, url), c in mocked.requests.items()}
        (token_call,) = calls["https://account.demandware.com/dwsso/oauth2/access_token"]
        assert token_call.kwargs["data"] == {"grant_type": "client_credentials"}
        assert token_call.kwargs["headers"]["Authorization"] == "Basic Yzpz"
        (post,) = calls[f"{base}/s/-/dw/data/v23_2/jobs/J%20K/executions"]
        assert post.kwargs["headers"]["Authorization"] == "Bearer t"
        assert post.kwargs["json"] is None  # no parameters: no body
    await connector.aclose()


async def test_a_second_refusal_after_waiting_fails() -> None:
    base = "https://instance.example"
    conn = Connection(
        "ocapi",
        "ocapi",
        base,
        {"client_id": "c", "client_secret": "s"},
        options={"token_url": f"{base}/token", "api_version": "v25_6"},
    )
    connector = OcapiConnector(conn, HttpClient(conn, retry=TransientRetry(attempts=1)))
    fault = {"_v": "25.6", "fault": {"type": "JobAlreadyRunningException", "message": "busy"}}
    with aioresponses() as mocked:
        mocked.post(f"{base}/token", payload={"access_token": "t", "expires_in": 1799})
        executions = re.compile(r".*/s/-/dw/data/v25_6/jobs/J/executions$")
        mocked.post(executions, status=400, payload=fault, repeat=True)
        mocked.post(f"{base}/s/-/dw/data/v25_6/job_execution_search", payload={"hits": []})
        with pytest.raises(PermanentError, match=r"busy \(still running after waiting"):
            await connector.submit(submission({"jobId": "J", "onJobAlreadyRunning": "wait"}))
    await connector.aclose()
