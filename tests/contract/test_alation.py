"""The ``alation.job`` job type against the Alation simulator, over real HTTP; aioresponses for
wire shapes the simulator does not produce."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from aioresponses import aioresponses

from orchestrator.connections import Connection
from orchestrator.connectors.alation import (
    JOB_TYPES,
    NO_CANCEL,
    AlationConnector,
    error_message,
    parse_result,
)
from orchestrator.connectors.base import LookupUndecided, RemoteStatus
from orchestrator.connectors.http.client import HttpClient, TransientRetry
from orchestrator.errors import AuthError, NotFoundError, PermanentError
from orchestrator.testing.simulators.alation import AlationSimulator
from orchestrator.testing.simulators.base import Behaviour, Fault

from .conftest import run_to_end, submission

CUSTOM_FIELD = "/integration/v2/custom_field/"
CFV_ASYNC = "/integration/v2/custom_field_value/async/"
FIELDS = [{"field_type": "PICKER", "name_singular": "Tier", "options": ["Gold", "Silver"]}]
VALUES = [
    {"otype": "table", "oid": 1, "field_id": 10, "value": "Gold"},
    {"otype": "table", "oid": 2, "field_id": 10, "value": "Silver"},
]
BASE = "http://alation.test"


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def connection(base_url: str, token: str = "sim-token") -> Connection:
    return Connection("alation", "alation", base_url, {"token": token}, timeout=5)


def start(method: str, path: str, body: Any = None) -> dict[str, Any]:
    return {"request": {"method": method, "path": path, "body": body}}


async def open_connector(
    serve: Any, *, token: str = "sim-token"
) -> tuple[AlationConnector, AlationSimulator, Sleeps]:
    served = await serve(AlationSimulator(prefix="/alation"))
    conn = connection(served.base_url, token)
    sleeps = Sleeps()
    client = HttpClient(conn, sleep=sleeps, retry=TransientRetry(attempts=4))
    return AlationConnector(conn, client), served.sim, sleeps


# -- start endpoints --------------------------------------------------------------------------


async def test_custom_field_success_with_parsed_result(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve)
    sim.rule(CUSTOM_FIELD, Behaviour(duration=0.1))
    handle = await connector.submit(submission(start("POST", CUSTOM_FIELD, FIELDS)))
    assert json.loads(json.dumps(handle)) == handle
    assert handle["startPath"] == CUSTOM_FIELD
    assert "sim-token" not in json.dumps(handle)
    assert sim.jobs[str(handle["jobId"])].key == "run-1/job/1"
    first = await connector.poll(handle)
    assert first.status is RemoteStatus.RUNNING
    assert first.remote_status == "running"
    result = await run_to_end(connector, handle)
    assert result.status is RemoteStatus.SUCCEEDED
    assert result.remote_status == "successful"
    assert result.outputs["result"][1]["msg"] == "Finished bulk creation of Custom Fields"
    assert len(result.outputs["result"][1]["data"]["field_ids"]) == 1
    assert result.outputs["msg"].startswith("Job finished in")
    await connector.aclose()


async def test_custom_field_failure_carries_the_message(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve)
    sim.script(Behaviour(duration=0.02, outcome="failure", message="Field 'Tier' already exists"))
    handle = await connector.submit(submission(start("POST", CUSTOM_FIELD, FIELDS)))
    result = await run_to_end(connector, handle)
    assert result.status is RemoteStatus.FAILED
    assert result.remote_status == "failed"
    assert result.error == (
        f"job {handle['jobId']} failed: Starting bulk creation of Custom Fields...; "
        "Field 'Tier' already exists"
    )
    await connector.aclose()


async def test_custom_field_value_async_follows_the_second_job(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve)
    sim.rule(CFV_ASYNC, Behaviour(duration=0.1))
    handle = await connector.submit(submission(start("PUT", CFV_ASYNC, VALUES)))
    stored = copy.deepcopy(handle)  # what the engine wrote before any poll
    assert stored["phase"] == 1
    result = await run_to_end(connector, handle)
    assert result.status is RemoteStatus.SUCCEEDED
    assert handle["phase"] == 2
    second = handle["nextJobId"]
    assert result.outputs["jobIds"] == [handle["jobId"], second]
    assert result.outputs["result"] == ["Updated 2 custom field values."]
    assert sim.counters.submissions["run-1/job/1"] == 1
    # after a restart: a new connector and the handle as first stored
    await connector.aclose()
    connector, _, _ = await open_connector_again(sim, serve)
    again = await connector.poll(stored)
    assert again.status is RemoteStatus.SUCCEEDED
    assert again.outputs["jobIds"] == [stored["jobId"], second]
    assert stored["phase"] == 2
    await connector.aclose()


async def open_connector_again(
    sim: AlationSimulator, serve: Any
) -> tuple[AlationConnector, AlationSimulator, Sleeps]:
    served = await serve(sim)
    conn = connection(served.base_url)
    return AlationConnector(conn, HttpClient(conn)), sim, Sleeps()


async def test_custom_field_value_second_job_failure(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve)
    sim.script(Behaviour(duration=0.05, outcome="failure", message="Object table 2 not found"))
    handle = await connector.submit(submission(start("PUT", CFV_ASYNC, VALUES)))
    result = await run_to_end(connector, handle)
    assert result.status is RemoteStatus.FAILED
    assert result.error == f"job {handle['nextJobId']} failed: Object table 2 not found"
    await connector.aclose()


async def test_business_policies_task(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve)
    sim.script(Behaviour(duration=0.02))
    body = [{"title": "Retention", "description": "Keep 7 years"}]
    handle = await connector.submit(
        submission(start("POST", "/integration/v1/business_policies/", body))
    )
    assert "jobId" in handle
    result = await run_to_end(connector, handle)
    assert result.status is RemoteStatus.SUCCEEDED
    assert result.outputs["result"] == "Successfully processed 1 items"
    await connector.aclose()


async def test_extraction_job_name_is_polled_by_name(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve)
    sim.rule("/api/v1/bulk_metadata/extraction/7", Behaviour(duration=0.02))
    handle = await connector.submit(
        submission(start("POST", "/api/v1/bulk_metadata/extraction/7", {}))
    )
    assert handle["jobName"].startswith("MetadataExtraction#7#")
    result = await run_to_end(connector, handle)
    assert result.status is RemoteStatus.SUCCEEDED
    assert result.outputs["result"]["updated_objects"] == 12  # a JSON-encoded string, decoded
    await connector.aclose()


async def test_extraction_failure_and_rule_by_job_name(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve)
    sim.rule(
        "MetadataExtraction#8#1",
        Behaviour(duration=0.02, outcome="failure", message="connection refused by source"),
    )
    handle = await connector.submit(
        submission(start("POST", "/api/v1/bulk_metadata/extraction/8", None))
    )
    assert handle["jobName"] == "MetadataExtraction#8#1"
    result = await run_to_end(connector, handle)
    assert result.status is RemoteStatus.FAILED
    assert result.error == "job 'MetadataExtraction#8#1' failed: connection refused by source"
    await connector.aclose()


async def test_file_upload_and_data_quality(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve)
    sim.default = Behaviour(duration=0.02)
    handle = await connector.submit(
        submission(start("POST", "/api/v1/bulk_metadata/file_upload/3/", [{"path": "/a"}]))
    )
    result = await run_to_end(connector, handle)
    assert result.outputs["result"] == ["Uploaded 3 directories and files."]
    handle = await connector.submit(
        submission(start("POST", "/integration/v1/data_quality/", {"fields": [{"key": "x"}]}))
    )
    result = await run_to_end(connector, handle)
    assert result.status is RemoteStatus.SUCCEEDED
    assert result.outputs["result"]["fields"] == {"created": 1, "updated": 0}
    await connector.aclose()


async def test_behaviour_result_shapes_over_http(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve)
    sim.script(Behaviour(duration=0.01, outputs={"result": ['{"msg": "a", "data": {}}', "plain"]}))
    handle = await connector.submit(submission(start("POST", CUSTOM_FIELD, FIELDS)))
    result = await run_to_end(connector, handle)
    assert result.outputs["result"] == [{"msg": "a", "data": {}}, "plain"]
    await connector.aclose()


async def test_follow_existing_job_by_id_and_by_name(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve)
    sim.default = Behaviour(duration=0.02)
    started = await connector.submit(submission(start("POST", CUSTOM_FIELD, FIELDS)))
    follow = submission({"jobId": str(started["jobId"])})
    handle = await connector.submit(follow)
    assert handle == {"jobId": started["jobId"], "phase": 1}
    assert await connector.find(follow) == handle  # nothing to resubmit
    assert (await run_to_end(connector, handle)).status is RemoteStatus.SUCCEEDED
    named = await connector.submit(
        submission(start("POST", "/api/v1/bulk_metadata/extraction/5", {}))
    )
    by_name = await connector.submit(submission({"jobName": named["jobName"]}))
    assert (await run_to_end(connector, by_name)).status is RemoteStatus.SUCCEEDED
    with pytest.raises(LookupUndecided, match="lists none"):
        await connector.find(submission(start("POST", CUSTOM_FIELD, FIELDS)))
    await connector.aclose()


async def test_start_answers_whose_ids_are_not_ids_are_refused() -> None:
    base = "https://alation.example"
    connector = AlationConnector(Connection("a", "alation", base, {"token": "t"}))
    for answer, field, shown in (
        ('{"job_id": NaN}', "job_id", "NaN"),
        ('{"job_id": true}', "job_id", "True"),
        ('{"task": {"id": [1]}}', "task.id", "[1]"),
        ('{"job": {"id": Infinity}}', "job.id", "inf"),
    ):
        with aioresponses() as mocked:
            mocked.post(f"{base}{CUSTOM_FIELD}", body=answer)
            with pytest.raises(PermanentError) as caught:
                await connector.submit(submission(start("POST", CUSTOM_FIELD, FIELDS)))
        assert str(caught.value).startswith(
            f"alation.job: the remote answered field {field!r} with {shown},"
        )
    await connector.aclose()


# -- errors -----------------------------------------------------------------------------------


async def test_both_error_shapes(serve: Any) -> None:
    connector, _, _ = await open_connector(serve)
    with pytest.raises(PermanentError) as listed:
        await connector.submit(submission(start("POST", CUSTOM_FIELD, [{"field_type": "TEXT"}])))
    assert str(listed.value) == (
        f"POST {CUSTOM_FIELD}: HTTP 400: name_singular: This field is required."
    )
    with pytest.raises(PermanentError) as dicted:
        await connector.submit(submission(start("PUT", CFV_ASYNC, [{"otype": "table"}])))
    assert str(dicted.value) == (
        f"PUT {CFV_ASYNC}: HTTP 400: 400000 Invalid Payload: Please check the API documentation "
        "for more details on the spec.; oid: This field is required.; field_id: This field is "
        "required.; value: This field is required."
    )
    await connector.aclose()


async def test_cancel_is_not_supported(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve)
    sim.script(Behaviour(duration=30))
    handle = await connector.submit(submission(start("POST", CUSTOM_FIELD, FIELDS)))
    cancelled = await connector.cancel(handle)
    assert not cancelled.supported
    assert cancelled.message == NO_CANCEL
    assert (await connector.poll(handle)).status is RemoteStatus.RUNNING
    assert sim.counters.cancels == 0
    assert not JOB_TYPES[0].can_cancel
    await connector.aclose()


async def test_unknown_job_id_and_name(serve: Any) -> None:
    connector, _, _ = await open_connector(serve)
    with pytest.raises(NotFoundError, match="404000 Not Found: Job with id 999 does not exist"):
        await connector.poll({"jobId": 999, "phase": 1})
    with pytest.raises(NotFoundError, match="Job with name Nope#1 does not exist"):
        await connector.poll({"jobName": "Nope#1", "phase": 1})
    await connector.aclose()


async def test_auth_failure(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve, token="wrong-token")
    with pytest.raises(AuthError, match="401000 Unauthorized") as caught:
        await connector.submit(submission(start("POST", CUSTOM_FIELD, FIELDS)))
    assert "wrong-token" not in str(caught.value)
    assert sim.counters.auth_failures == 1
    await connector.aclose()


async def test_429_retry_after_is_honoured(serve: Any) -> None:
    connector, sim, sleeps = await open_connector(serve)
    sim.fault(Fault(kind="status", status=429, retry_after="3", method="POST"))
    handle = await connector.submit(submission(start("POST", CUSTOM_FIELD, FIELDS)))
    assert handle["jobId"]
    assert sleeps.waits
    assert sleeps.waits[0] >= 3
    await connector.aclose()


async def test_5xx_retried_then_success(serve: Any) -> None:
    connector, sim, sleeps = await open_connector(serve)
    handle = await connector.submit(submission(start("POST", CUSTOM_FIELD, FIELDS)))
    sim.fault(Fault(kind="status", status=502, count=2, method="GET"))
    assert (await connector.poll(handle)).status is RemoteStatus.RUNNING
    assert len(sleeps.waits) == 2
    await connector.aclose()


async def test_dropped_connection_on_poll_is_retried(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve)
    handle = await connector.submit(submission(start("POST", CUSTOM_FIELD, FIELDS)))
    sim.fault(Fault(kind="drop", method="GET"))
    assert (await connector.poll(handle)).status is RemoteStatus.RUNNING
    assert sim.counters.faults_served == 1
    await connector.aclose()


async def test_dropped_start_request_is_not_resent(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve)
    sim.fault(Fault(kind="drop", method="PUT"))
    with pytest.raises(Exception, match="may have been acted on") as caught:
        await connector.submit(submission(start("PUT", CFV_ASYNC, VALUES)))
    assert getattr(caught.value, "ambiguous", False)
    assert sim.counters.requests[f"PUT {CFV_ASYNC}"] == 1
    await connector.aclose()


async def test_malformed_body_is_a_clear_permanent_error(serve: Any) -> None:
    connector, sim, _ = await open_connector(serve)
    handle = await connector.submit(submission(start("POST", CUSTOM_FIELD, FIELDS)))
    sim.fault(Fault(kind="malformed", method="GET"))
    with pytest.raises(PermanentError, match="the body is not JSON"):
        await connector.poll(handle)
    await connector.aclose()


# -- odd wire shapes --------------------------------------------------------------------------


def _mock_connector() -> AlationConnector:
    conn = connection(BASE)
    return AlationConnector(conn, HttpClient(conn, sleep=Sleeps()))


JOB_URL = re.compile(rf"^{BASE}/api/v1/bulk_metadata/job/\?id=4$")


@pytest.mark.parametrize(
    ("word", "status", "error"),
    [
        ("running", RemoteStatus.RUNNING, None),
        ("Successful", RemoteStatus.SUCCEEDED, None),
        ("FAILED", RemoteStatus.FAILED, "job 4 failed: boom"),
        (
            "partially_successful",
            RemoteStatus.FAILED,
            "job 4 was only partially successful (treated as a failure): boom",
        ),
        ("queued", RemoteStatus.FAILED, "unknown remote status 'queued' of job 4"),
    ],
)
async def test_every_status_word(word: str, status: RemoteStatus, error: str | None) -> None:
    connector = _mock_connector()
    with aioresponses() as mocked:
        mocked.get(JOB_URL, payload={"status": word, "msg": "m", "result": ["boom"]})
        result = await connector.poll({"jobId": 4, "phase": 1})
    assert result.status is status
    assert result.remote_status == word.lower()
    assert result.error == error
    await connector.aclose()


async def test_start_answers_recognised_by_their_keys() -> None:
    connector = _mock_connector()
    url = f"{BASE}/integration/v1/thing/"
    with aioresponses() as mocked:
        mocked.post(url, payload={"job": {"id": 11}})
        assert (await connector.submit(submission(start("POST", "/integration/v1/thing/"))))[
            "jobId"
        ] == 11
        mocked.post(
            url,
            status=202,
            payload={
                "task": {
                    "id": 12,
                    "links": [
                        {"rel": "status", "href": "/integration/v1/data_dictionary/tasks/12"}
                    ],
                }
            },
        )
        handle = await connector.submit(submission(start("POST", "/integration/v1/thing/")))
        assert handle["taskId"] == 12
        mocked.post(url, payload={"status": "failed", "msg": "nope"})
        with pytest.raises(PermanentError, match="the answer starts no job"):
            await connector.submit(submission(start("POST", "/integration/v1/thing/")))
        mocked.post(
            url,
            payload={"code": "400000", "title": "Invalid Payload", "detail": "x", "errors": []},
        )
        with pytest.raises(PermanentError, match="starts no job: 400000 Invalid Payload: x"):
            await connector.submit(submission(start("POST", "/integration/v1/thing/")))
        mocked.post(url, payload={"job": {"name": "no id"}})
        with pytest.raises(PermanentError, match="names a job without an id"):
            await connector.submit(submission(start("POST", "/integration/v1/thing/")))
    await connector.aclose()


TASK_URL = f"{BASE}/integration/v1/data_dictionary/tasks/12"


async def test_data_dictionary_task_states() -> None:
    connector = _mock_connector()
    handle = {"taskId": 12, "phase": 1}
    with aioresponses() as mocked:
        mocked.get(TASK_URL, payload={"id": 12, "state": "RUNNING", "status": "NA"})
        assert (await connector.poll(handle)).status is RemoteStatus.RUNNING
        done = {
            "id": 12,
            "state": "COMPLETED",
            "status": "SUCCEEDED",
            "result": {"records": {"total": 3, "succeeded": 3, "failed": 0}},
            "report_download_link": "/report/12",
        }
        mocked.get(TASK_URL, payload=done)
        result = await connector.poll(handle)
        assert result.status is RemoteStatus.SUCCEEDED
        assert result.outputs["reportDownloadLink"] == "/report/12"
        partial = {
            **done,
            "status": "PARTIALLY_SUCCEEDED",
            "result": {"records": {"total": 3, "succeeded": 2, "failed": 1}},
        }
        mocked.get(TASK_URL, payload=partial)
        mocked.get(
            f"{TASK_URL}/errors/",
            payload=[{"error_message": "row 2: unknown object", "fatal": False}],
        )
        result = await connector.poll(handle)
        assert result.status is RemoteStatus.FAILED
        assert result.error == (
            "data dictionary task 12 only partially succeeded (1 of 3 records failed): "
            "row 2: unknown object"
        )
        mocked.get(TASK_URL, payload={**done, "status": "FAILED"})
        mocked.get(f"{TASK_URL}/errors/", status=500, body="oops", repeat=True)
        result = await connector.poll(handle)  # the errors are best effort
        assert result.status is RemoteStatus.FAILED
        assert result.error == "data dictionary task 12 failed (0 of 3 records failed)"
    await connector.aclose()


def test_parse_result_shapes() -> None:
    assert parse_result('{"a": 1}') == {"a": 1}
    assert parse_result("Successfully processed 2 items") == "Successfully processed 2 items"
    assert parse_result(["x", '{"msg": "y"}', "[1, 2]"]) == ["x", {"msg": "y"}, [1, 2]]
    assert parse_result({"fields": 1}) == {"fields": 1}
    assert parse_result(None) is None
    assert parse_result("{not json") == "{not json"


def test_error_messages() -> None:
    assert error_message([{"options": ['Expected a list of items but got type "str".']}]) == (
        'options: Expected a list of items but got type "str".'
    )
    assert error_message([{}, {"name": ["required"]}]) == "[1] name: required"
    assert (
        error_message(
            {
                "code": "400000",
                "title": "Invalid Payload",
                "detail": "Please check.",
                "errors": [{"non_field_errors": ["No support for updating `description`."]}],
            }
        )
        == "400000 Invalid Payload: Please check.; non_field_errors: No support for updating "
        "`description`."
    )
    assert error_message({"detail": "Invalid token."}) == "Invalid token."
    assert error_message({"error": "invalid_client", "error_description": "bad"}) == (
        "invalid_client: bad"
    )
    assert error_message({"job_id": 1}) is None
    assert error_message("text") is None
