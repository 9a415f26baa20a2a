"""The ``granta.job`` job type against the Granta MI JobQueue simulator, over real HTTP;
aioresponses for wire shapes the simulator does not produce."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aioresponses import aioresponses

from orchestrator.connections import Connection
from orchestrator.connectors.base import RemoteStatus
from orchestrator.connectors.granta import (
    JOB_TYPES,
    GrantaConnector,
    auth_headers,
    poll_result,
)
from orchestrator.connectors.http.client import HttpClient, TransientRetry
from orchestrator.errors import AuthError, NotFoundError, PermanentError
from orchestrator.testing.simulators.base import Behaviour, Fault
from orchestrator.testing.simulators.granta import SERVICE, GrantaSimulator

from .conftest import run_to_end, submission

JOBS = f"{SERVICE}/v1alpha/job-queue/jobs"


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Input files in the current directory (relative paths resolve against it)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "template.xlsx").write_bytes(b"template bytes")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "data1.xlsx").write_bytes(b"data one")
    (tmp_path / "data" / "data2.xlsx").write_bytes(b"data two")
    return tmp_path


def import_fields(**extra: Any) -> dict[str, Any]:
    return {
        "jobType": "ExcelImportJob",
        "files": [
            {"fileType": "Template", "path": "template.xlsx"},
            {"fileType": "Data", "path": "data/data1.xlsx"},
            {"fileType": "Data", "path": "data/data2.xlsx"},
        ],
        **extra,
    }


def export_fields(**extra: Any) -> dict[str, Any]:
    return {
        "jobType": "ExcelExportJob",
        "databaseKey": "MI_Training",
        "records": [
            {"recordHistoryIdentity": 12345},
            {"recordHistoryIdentity": 23, "recordVersion": 2},
        ],
        "template": "template.xlsx",
        **extra,
    }


async def open_connector(
    serve: Any,
    *,
    creds: dict[str, str] | None = None,
    options: dict[str, Any] | None = None,
    **sim: Any,
) -> tuple[GrantaConnector, GrantaSimulator, Sleeps]:
    sim.setdefault("default", Behaviour(duration=0.1))
    served = await serve(GrantaSimulator(**sim))
    conn = Connection(
        "granta",
        "granta",
        served.base_url + SERVICE,
        creds if creds is not None else {"username": "sim", "password": "sim"},
        timeout=5,
        options=options or {},
    )
    sleeps = Sleeps()
    client = HttpClient(
        conn, headers=auth_headers(conn), sleep=sleeps, retry=TransientRetry(attempts=4)
    )
    return GrantaConnector(conn, client), served.sim, sleeps


async def test_excel_import_success_with_outputs_downloaded(serve: Any, inputs: Path) -> None:
    connector, sim, _ = await open_connector(serve)
    sim.rule(
        "contract.job", Behaviour(duration=0.1, queued=0.05, outputs={"NumberOfRecordsCreated": 3})
    )
    handle = await connector.submit(
        submission(import_fields(outputDir="out", description="nightly"))
    )
    assert json.loads(json.dumps(handle)) == handle  # plain JSON
    assert handle == {
        "id": handle["id"],
        "jobType": "ExcelImportJob",
        "name": "contract.job",
        "outputDir": str(inputs / "out"),
    }
    first = await connector.poll(handle)
    assert (first.status, first.remote_status) == (RemoteStatus.RUNNING, "Pending")
    result = await run_to_end(connector, handle)
    assert result.status is RemoteStatus.SUCCEEDED
    assert result.remote_status == "Succeeded"
    summary = result.outputs["outputInformation"]["summary"]
    assert summary["FinishedSuccessfully"] is True
    assert summary["NumberOfRecordsCreated"] == 3
    assert result.outputs["outputFileNames"] == ["contract.job.log"]
    assert result.outputs["outputFiles"] == [str(inputs / "out" / "contract.job.log")]
    assert (inputs / "out" / "contract.job.log").read_text().startswith("INFO Task started")
    assert [p.name for p in (inputs / "out").iterdir()] == ["contract.job.log"]  # no .part left
    # what the server received
    uploaded = sorted(sim.files.values())
    assert uploaded == [
        ("data1.xlsx", b"data one"),
        ("data2.xlsx", b"data two"),
        ("template.xlsx", b"template bytes"),
    ]
    job = sim.jobs[handle["id"]]
    assert job.data["parameters"] == [
        {"fileType": "Template", "filePath": "template.xlsx"},
        {"fileType": "Data", "filePath": "data1.xlsx"},
        {"fileType": "Data", "filePath": "data2.xlsx"},
    ]
    assert job.data["description"] == "nightly\n[orchestrator-key: run-1/job/1]"
    assert job.key == "run-1/job/1"  # the Idempotency-Key header
    assert dict(sim.application_names) == {"orchestrator": sim.counters.requests.total()}
    await connector.aclose()


async def test_excel_export_success(serve: Any, inputs: Path) -> None:
    connector, sim, _ = await open_connector(serve)
    fields = export_fields(name="export one", outputDir=str(inputs / "exported"))
    result = await run_to_end(connector, await connector.submit(submission(fields)))
    assert result.status is RemoteStatus.SUCCEEDED
    assert result.outputs["outputInformation"]["summary"]["ExportedRecords"] == 2
    assert result.outputs["outputFileNames"] == ["export one.log", "export one.xlsx"]
    assert (inputs / "exported" / "export one.xlsx").read_bytes().startswith(b"PK")
    (job,) = sim.jobs.values()
    assert job.name == "export one"
    assert job.data["parameters"] == {
        "DatabaseKey": "MI_Training",
        "InputRecords": [
            {"RecordHistoryIdentity": 12345, "RecordVersion": None},
            {"RecordHistoryIdentity": 23, "RecordVersion": 2},
        ],
        "TemplateFileName": "template.xlsx",
    }
    await connector.aclose()


async def test_text_import_scheduled_stays_pending_until_its_date(serve: Any, inputs: Path) -> None:
    connector, _sim, _ = await open_connector(serve, default=Behaviour(duration=0.05))
    when = (datetime.now(UTC) + timedelta(seconds=0.4)).isoformat()
    fields = {
        "jobType": "TextImportJob",
        "files": [
            {"fileType": "Template", "path": "template.xlsx"},
            {"fileType": "Data", "path": "data/data1.xlsx"},
        ],
        "scheduledExecutionDate": when,
    }
    started = time.monotonic()
    handle = await connector.submit(submission(fields))
    assert (await connector.poll(handle)).remote_status == "Pending"
    result = await run_to_end(connector, handle)
    assert result.status is RemoteStatus.SUCCEEDED
    assert time.monotonic() - started >= 0.3
    await connector.aclose()


async def test_failed_import_is_succeeded_with_finished_successfully_false(
    serve: Any, inputs: Path
) -> None:
    connector, sim, _ = await open_connector(serve)
    sim.script(
        Behaviour(duration=0.05, outcome="failure", message="Record 'Steel' has no Name attribute")
    )
    result = await run_to_end(connector, await connector.submit(submission(import_fields())))
    assert result.status is RemoteStatus.FAILED
    assert result.remote_status == "Succeeded"
    assert result.error == (
        "the import did not finish successfully (1 error(s)): Record 'Steel' has no Name attribute"
    )
    assert result.outputs["outputInformation"]["summary"]["FinishedSuccessfully"] is False
    await connector.aclose()


async def test_failed_export_reports_its_errors(serve: Any, inputs: Path) -> None:
    connector, sim, _ = await open_connector(serve)
    sim.script(Behaviour(duration=0.05, outcome="failure", message="Record 23 not found"))
    result = await run_to_end(connector, await connector.submit(submission(export_fields())))
    assert result.status is RemoteStatus.FAILED
    assert result.remote_status == "Succeeded"
    assert result.error == "the export reported 1 error(s): Record 23 not found"
    await connector.aclose()


async def test_job_that_could_not_complete(serve: Any, inputs: Path) -> None:
    connector, sim, _ = await open_connector(serve)
    sim.script(
        Behaviour(
            duration=0.05,
            outcome="failure",
            message="Template is corrupt",
            outputs={"status": "Failed"},
        )
    )
    result = await run_to_end(
        connector, await connector.submit(submission(import_fields(outputDir="out")))
    )
    assert (result.status, result.remote_status) == (RemoteStatus.FAILED, "Failed")
    assert result.error == "Template is corrupt"
    assert result.outputs["outputFileNames"] == ["contract.job.log"]
    assert not (inputs / "out").exists()  # downloads only after success
    await connector.aclose()


async def test_cancel_deletes_a_pending_job(serve: Any, inputs: Path) -> None:
    connector, sim, _ = await open_connector(serve)
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    handle = await connector.submit(submission(import_fields(scheduledExecutionDate=later)))
    job = sim.view(sim.jobs[handle["id"]])
    assert (job["status"], job["position"]) == ("Pending", 1)
    cancelled = await connector.cancel(handle)
    assert cancelled.supported
    assert sim.counters.cancels == 1
    assert sim.jobs == {}
    result = await connector.poll(handle)
    assert (result.status, result.remote_status) == (RemoteStatus.CANCELLED, "Deleted")
    await connector.aclose()


async def test_a_restarted_connector_decides_from_the_stored_handle(
    serve: Any, inputs: Path
) -> None:
    """Nothing that decides a poll is kept in the connector's memory: a fresh connector (another
    process, after a restart) given the stored handle decides as the one that cancelled."""
    connector, sim, _ = await open_connector(serve)
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    handle = await connector.submit(submission(import_fields(scheduledExecutionDate=later)))
    stored = json.loads(json.dumps(handle))
    assert (await connector.cancel(handle)).supported
    assert sim.jobs == {}
    fresh = GrantaConnector(connector.connection)
    results = [await connector.poll(handle), await fresh.poll(stored)]
    assert [(r.status, r.remote_status, r.error) for r in results] == [
        (RemoteStatus.CANCELLED, "Deleted", results[0].error)
    ] * 2
    assert "no longer in the queue" in (results[0].error or "")
    await fresh.aclose()
    await connector.aclose()


async def test_a_running_job_cannot_be_cancelled(serve: Any, inputs: Path) -> None:
    connector, sim, _ = await open_connector(serve)
    sim.script(Behaviour(duration=30))
    handle = await connector.submit(submission(import_fields()))
    assert (await connector.poll(handle)).remote_status == "Running"
    cancelled = await connector.cancel(handle)
    assert not cancelled.supported
    assert "running" in cancelled.message
    assert sim.counters.cancels == 0
    assert handle["id"] in sim.jobs
    assert JOB_TYPES[0].can_cancel  # pending jobs can be
    await connector.aclose()


async def test_unknown_id_on_poll(serve: Any, inputs: Path) -> None:
    connector, _, _ = await open_connector(serve)
    with pytest.raises(NotFoundError, match="HTTP 404: Job not found"):
        await connector.poll(
            {"id": "7d9c1b3e-0000-0000-0000-000000000000", "jobType": "ExcelImportJob"}
        )
    await connector.aclose()


async def test_auth_failure_and_bearer_token(serve: Any, inputs: Path) -> None:
    connector, sim, _ = await open_connector(serve, creds={"username": "sim", "password": "wrong"})
    with pytest.raises(AuthError, match="HTTP 401"):
        await connector.submit(submission(import_fields()))
    assert sim.counters.auth_failures == 1
    await connector.aclose()
    connector, sim, _ = await open_connector(serve, creds={"token": "t0k"}, token="t0k")
    handle = await connector.submit(submission(import_fields()))
    assert "t0k" not in json.dumps(handle)
    assert (await run_to_end(connector, handle)).status is RemoteStatus.SUCCEEDED
    await connector.aclose()


async def test_429_retry_after_honoured_and_5xx_retried(serve: Any, inputs: Path) -> None:
    connector, sim, sleeps = await open_connector(serve)
    sim.fault(Fault("status", count=1, status=429, retry_after="3", method="GET"))
    sim.fault(Fault("status", count=2, status=503, method="POST", path=JOBS))
    sim.fault(
        Fault(
            "status", count=1, status=502, method="POST", path=f"{SERVICE}/v1alpha/job-queue/files"
        )
    )
    handle = await connector.submit(submission(import_fields()))
    result = await run_to_end(connector, handle)
    assert result.status is RemoteStatus.SUCCEEDED
    assert any(w >= 3 for w in sleeps.waits)
    assert sim.counters.faults_served == 4
    assert dict(sim.counters.submissions) == {"run-1/job/1": 1}
    await connector.aclose()


async def test_dropped_connection_on_poll_is_retried(serve: Any, inputs: Path) -> None:
    connector, sim, _ = await open_connector(serve)
    handle = await connector.submit(submission(import_fields()))
    sim.fault(Fault("drop", count=1, method="GET"))
    result = await run_to_end(connector, handle)
    assert result.status is RemoteStatus.SUCCEEDED
    assert sim.counters.faults_served == 1
    await connector.aclose()


async def test_malformed_body_is_a_clear_error(serve: Any, inputs: Path) -> None:
    connector, sim, _ = await open_connector(serve)
    handle = await connector.submit(submission(import_fields()))
    sim.fault(Fault("malformed", count=1, method="GET"))
    with pytest.raises(PermanentError, match="not JSON"):
        await connector.poll(handle)
    await connector.aclose()


async def test_find_by_the_key_in_the_description(serve: Any, inputs: Path) -> None:
    connector, sim, _ = await open_connector(serve)
    # "run-1/job/1" is a prefix of "run-1/job/11": the filter finds it, the exact marker does not
    other = await connector.submit(submission(import_fields(), attempt=11))
    assert sim.jobs[other["id"]].data["description"] == "[orchestrator-key: run-1/job/11]"
    assert await connector.find(submission(import_fields())) is None
    handle = await connector.submit(submission(import_fields(outputDir="out")))
    assert await connector.find(submission(import_fields(outputDir="out"))) == handle
    assert await connector.find(submission(import_fields(), attempt=2)) is None
    found = await connector.find(submission(import_fields(), attempt=11))
    assert found is not None
    assert found["id"] == other["id"]
    # held by another stored attempt: not taken again
    assert await connector.find(submission(import_fields(), attempt=11, claimed=[other])) is None
    await connector.aclose()


async def test_job_ids_that_are_not_ids_are_refused(tmp_path: Path) -> None:
    connector = GrantaConnector(Connection("g", "granta", BASE, {"username": "u"}))
    fields = {"jobType": "ExcelExportJob", "databaseKey": "MI", "records": [], "template": "t"}
    (tmp_path / "t").write_bytes(b"t")
    fields["template"] = str(tmp_path / "t")
    fields["records"] = [{"recordHistoryIdentity": 1}]
    for bad, shown in (("NaN", "NaN"), ("7", "7"), ("[]", "[]"), ('""', "''")):
        with aioresponses() as mocked:
            mocked.post(f"{BASE}/v1alpha/job-queue/files", payload="f-1")
            mocked.post(f"{BASE}/v1alpha/job-queue/jobs", status=201, body=f'{{"id": {bad}}}')
            with pytest.raises(PermanentError) as caught:
                await connector.submit(submission(fields))
        assert str(caught.value).startswith(
            f"granta.job: the remote answered field 'id' with {shown},"
        )
    await connector.aclose()


async def test_local_and_server_file_errors(serve: Any, inputs: Path) -> None:
    connector, sim, _ = await open_connector(serve)
    fields = import_fields()
    fields["files"][1]["path"] = "data/missing.xlsx"
    with pytest.raises(PermanentError, match=r"cannot read input file .*missing\.xlsx"):
        await connector.submit(submission(fields))
    # the simulator refuses a job whose input files were never uploaded
    body = {"name": "x", "type": "ExcelImportJob", "inputFileIds": ["nope"], "parameters": "[]"}
    with pytest.raises(PermanentError, match="HTTP 400: Input file nope not found"):
        await connector.client.request("POST", "/v1alpha/job-queue/jobs", json=body)
    with pytest.raises(PermanentError, match="HTTP 400: Unknown job type"):
        await connector.client.request(
            "POST", "/v1alpha/job-queue/jobs", json={**body, "type": "Other"}
        )
    assert sim.jobs == {}
    await connector.aclose()


async def test_download_over_the_size_cap_fails_with_outputs_kept(serve: Any, inputs: Path) -> None:
    connector, _, _ = await open_connector(serve, options={"max_download_bytes": 10})
    result = await run_to_end(
        connector, await connector.submit(submission(import_fields(outputDir="out")))
    )
    assert (result.status, result.remote_status) == (RemoteStatus.FAILED, "Succeeded")
    assert "larger than 10 bytes" in (result.error or "")
    assert result.outputs["outputInformation"]["summary"]["FinishedSuccessfully"] is True
    assert list((inputs / "out").iterdir()) == []  # no partial file
    await connector.aclose()


# -- wire shapes the simulator does not produce ---------------------------------------------

BASE = "https://mi.example/proxy/v1.svc/mi"


def _job(status: Any, **extra: Any) -> dict[str, Any]:
    return {"id": "j-1", "name": "n", "type": "ExcelImportJob", "status": status, **extra}


async def test_wire_shapes_with_aioresponses(tmp_path: Path) -> None:
    conn = Connection("g", "granta", BASE, {"username": "u", "password": "p"})
    connector = GrantaConnector(conn)
    template = tmp_path / "t.xlsx"
    template.write_bytes(b"t")
    fields = {
        "jobType": "ExcelImportJob",
        "files": [{"fileType": "Combined", "path": str(template)}],
        "outputDir": str(tmp_path / "out"),
    }
    with aioresponses() as mocked:
        # the file id as text/plain, not a JSON string
        mocked.post(f"{BASE}/v1alpha/job-queue/files", body="f-1", content_type="text/plain")
        mocked.post(f"{BASE}/v1alpha/job-queue/jobs", status=201, payload=_job("Pending"))
        handle = await connector.submit(submission(fields))
        assert handle["id"] == "j-1"
        # a user cancelled the job in the MI web UI
        mocked.get(f"{BASE}/v1alpha/job-queue/jobs/j-1", payload=_job("Cancelled"))
        result = await connector.poll(handle)
        assert (result.status, result.remote_status) == (RemoteStatus.CANCELLED, "Cancelled")
        # the client-side pseudo status, or anything else, is never success
        mocked.get(f"{BASE}/v1alpha/job-queue/jobs/j-1", payload=_job("Deleted"))
        result = await connector.poll(handle)
        assert (result.status, result.error) == (
            RemoteStatus.FAILED,
            "unknown remote status 'Deleted'",
        )
        # a server-given output name cannot leave the output folder
        summary = json.dumps({"FinishedSuccessfully": True, "NumberOfErrors": 0, "Errors": []})
        mocked.get(
            f"{BASE}/v1alpha/job-queue/jobs/j-1",
            payload=_job(
                "Succeeded",
                outputFileNames=["../../evil.log"],
                jobSpecificOutputs={"summary": summary},
            ),
        )
        mocked.get(re.compile(r".*/outputs:export\?fileName=.*evil\.log$"), body=b"log")
        result = await connector.poll(handle)
        assert result.status is RemoteStatus.SUCCEEDED
        assert result.outputs["outputFiles"] == [str(tmp_path / "out" / "evil.log")]
        assert not (tmp_path.parent / "evil.log").exists()
    await connector.aclose()


@pytest.mark.parametrize(
    ("job", "status", "error"),
    [
        (_job("Running"), RemoteStatus.RUNNING, None),
        (
            _job("Succeeded"),
            RemoteStatus.FAILED,
            "the job ended Succeeded without a summary saying FinishedSuccessfully",
        ),
        (
            _job("Succeeded", jobSpecificOutputs={"summary": '{"FinishedSuccessfully": "True"}'}),
            RemoteStatus.SUCCEEDED,
            None,
        ),
        (
            _job(
                "Succeeded",
                jobSpecificOutputs={
                    "summary": json.dumps(
                        {
                            "FinishedSuccessfully": False,
                            "NumberOfErrors": 7,
                            "Errors": [{"Message": "a"}, "b", "c", "d", "e", "f", "g"],
                        }
                    )
                },
            ),
            RemoteStatus.FAILED,
            "the import did not finish successfully (7 error(s)): a; b; c; d; e (and 2 more)",
        ),
        (_job("Succeeded", type="ExcelExportJob"), RemoteStatus.SUCCEEDED, None),
        (
            _job("Failed"),
            RemoteStatus.FAILED,
            "the job could not complete (see its log among the output files)",
        ),
        (_job("Paused"), RemoteStatus.FAILED, "unknown remote status 'Paused'"),
        (_job(None), RemoteStatus.FAILED, "unknown remote status 'null'"),
    ],
)
def test_status_mapping(job: dict[str, Any], status: RemoteStatus, error: str | None) -> None:
    result = poll_result({"id": "j-1", "jobType": "ExcelImportJob"}, job)
    assert (result.status, result.error) == (status, error)
