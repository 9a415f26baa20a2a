"""The ``granta.job`` job type: Ansys Granta MI JobQueue (REMOTE_APIS.md §4).

Fields: ``jobType`` (required: ``ExcelImportJob``, ``ExcelExportJob`` or ``TextImportJob``),
``name`` (default ``<dag>.<job>``), ``description``, ``culture`` (e.g. ``en-GB``),
``scheduledExecutionDate`` (ISO 8601 with a time zone, sent in UTC), ``outputDir`` (a local
folder: after success every output file is downloaded into it). Import jobs take ``files``:
``[{"fileType": "Template"|"Data"|"Combined"|"Attachment", "path": "<local file>"}]``; an Excel
import needs ``Combined`` files or a ``Template`` and ``Data`` files (not both kinds), a text
import a ``Template`` and ``Data`` files; at most one template; paths and file names unique
(the server only sees names). Export jobs take ``databaseKey``, ``records``
(``[{"recordHistoryIdentity": int, "recordVersion"?: int|null}]``) and ``template`` (a local
path). Relative paths are relative to the current directory.

Connection: ``base_url`` is the service URL, ``<servicelayer>/proxy/v1.svc/mi``. Auth: Basic
with credentials ``username`` and ``password``, or ``Authorization: Bearer`` with ``token``.
Every request carries ``X-Granta-ApplicationName`` (option ``application_name``, default
``orchestrator``). Options ``max_upload_bytes`` and ``max_download_bytes`` (default 256 MiB)
cap the size of one input file and of one downloaded output file.

Submit: each input file is uploaded (``POST /v1alpha/job-queue/files``, multipart field
``file``; the answer is the file id as a JSON string, or as plain text), then ``POST
/v1alpha/job-queue/jobs`` with a ``GsaCreateJobRequest`` whose ``parameters`` is a JSON-encoded
string and whose file paths are the files' names. The idempotency key goes in the
``Idempotency-Key`` header (the server ignores it) and, as ``[orchestrator-key: <key>]``, on the
last line of the job's description, where :meth:`GrantaConnector.find` looks for it (``GET
/v1alpha/job-queue/jobs?descriptionFilter=<key>``, then an exact match on the marker: whether
the server's filter matches substrings is not documented). The name stays readable: it is what
the job queue shows and what output files are named after.

Handle: ``{"id": <job uuid>, "jobType", "name", "outputDir"?}`` (``outputDir`` absolute).

Status: ``Pending``/``Running`` poll again. ``Succeeded`` only means the job was attempted: an
import succeeds only when ``jobSpecificOutputs.summary`` says ``FinishedSuccessfully: true``
(no summary is a failure); an export succeeds unless its summary has ``NumberOfErrors > 0``.
``Failed`` fails with the summary's ``Errors``; ``Cancelled`` is cancelled; any other value (the
client-side ``Deleted`` included) fails as an unknown remote status, never success. Outputs:
``jobId``, ``outputFileNames``, ``outputInformation`` (``jobSpecificOutputs`` with each value
JSON-decoded) and, with ``outputDir``, ``outputFiles`` (the local paths). A download that cannot
be done fails the attempt with the job's outputs kept; a transient one is retried by polling
again.

Cancel: the API has no cancel. A ``Pending`` job is deleted from the queue (``DELETE
/v1alpha/job-queue/jobs/{id}``). A ``Running`` job cannot be stopped:
``CancelResult(supported=False)``. A later poll of a job that the queue no longer has, in any
process, reports it cancelled (remote status ``Deleted``, as the Python client marks a deleted
job) when its handle is one of submit or find (it names the job): the job was in the queue, so
it was deleted while pending (a cancel, or a user) or purged after it ended. Nothing of this is
kept in the connector's memory; a handle that does not name its job gets
:class:`NotFoundError`.
"""

from __future__ import annotations

import base64
import json
import math
import os
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio

from ..connections import Connection
from ..errors import (
    ConfigError,
    ConnectorError,
    NotFoundError,
    PermanentError,
    TransientError,
)
from .base import (
    CancelResult,
    ConnectorBase,
    LookupUndecided,
    PollResult,
    PollSchedule,
    RemoteHandle,
    RemoteStatus,
    Submission,
    remote_id,
    remote_job_type,
)
from .http.client import HttpClient, Response

__all__ = [
    "JOB_TYPES",
    "GrantaConnector",
    "auth_headers",
    "create_request",
    "key_marker",
    "output_information",
    "poll_result",
    "validate",
]

JOBS = "/v1alpha/job-queue/jobs"
FILES = "/v1alpha/job-queue/files"
IMPORTS = frozenset({"ExcelImportJob", "TextImportJob"})
EXPORTS = frozenset({"ExcelExportJob"})
JOB_KINDS = ("ExcelImportJob", "ExcelExportJob", "TextImportJob")
FILE_TYPES = ("Template", "Data", "Combined", "Attachment")
APPLICATION_NAME = "orchestrator"
MAX_FILE_BYTES = 256 * 1024 * 1024
# The Python client sleeps 1 s, then polls every second; jobs queue behind each other.
SCHEDULE = PollSchedule(initial=1.0, factor=1.5, cap=30.0)
FIELDS = (
    "name",
    "description",
    "culture",
    "scheduledExecutionDate",
    "files",
    "databaseKey",
    "records",
    "template",
    "outputDir",
)
_STATUS = {
    "pending": RemoteStatus.RUNNING,
    "running": RemoteStatus.RUNNING,
    "succeeded": RemoteStatus.SUCCEEDED,
    "failed": RemoteStatus.FAILED,
    "cancelled": RemoteStatus.CANCELLED,
}
_ERRORS_SHOWN = 5
_ERROR_CHARS = 1000


def auth_headers(connection: Connection) -> dict[str, str]:
    """Basic (``username``/``password``) or Bearer (``token``), and the application name."""
    name = str(connection.options.get("application_name", APPLICATION_NAME))
    headers = {"X-Granta-ApplicationName": name}
    creds = connection.credentials
    if creds.get("token"):
        headers["Authorization"] = f"Bearer {creds['token']}"
    elif creds.get("username"):
        pair = f"{creds['username']}:{creds.get('password', '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    return headers


def key_marker(key: str) -> str:
    """What the job's description carries so that :meth:`GrantaConnector.find` can find it."""
    return f"[orchestrator-key: {key}]"


def job_name(submission: Submission) -> str:
    name = submission.params.get("name")
    return str(name) if name else f"{submission.dag}.{submission.job_id}"


def _when(text: str) -> datetime:
    """An ISO 8601 date and time with a time zone; ``ValueError`` otherwise."""
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError("no time zone")
    return when


def input_files(params: Mapping[str, Any]) -> list[tuple[str, Path]]:
    """``(fileType, absolute path)`` of every file to upload, in order."""
    if params["jobType"] in EXPORTS:
        return [("Template", Path(os.path.abspath(params["template"])))]
    return [(f["fileType"], Path(os.path.abspath(f["path"]))) for f in params.get("files") or []]


def create_request(submission: Submission, files: Sequence[tuple[str, str, str]]) -> dict[str, Any]:
    """The ``GsaCreateJobRequest``; ``files`` are ``(fileType, name, uploaded id)``."""
    p = submission.params
    job_type = p["jobType"]
    parameters: Any
    if job_type in EXPORTS:
        parameters = {
            "DatabaseKey": p["databaseKey"],
            "InputRecords": [
                {
                    "RecordHistoryIdentity": r["recordHistoryIdentity"],
                    "RecordVersion": r.get("recordVersion"),
                }
                for r in p["records"]
            ],
            "TemplateFileName": files[0][1],
        }
    else:
        parameters = [{"fileType": kind, "filePath": name} for kind, name, _ in files]
    user = p.get("description")
    marker = key_marker(submission.idempotency_key)
    body: dict[str, Any] = {
        "name": job_name(submission),
        "description": f"{user}\n{marker}" if user else marker,
        "type": job_type,
        "inputFileIds": [file_id for _, _, file_id in files],
        "parameters": json.dumps(parameters),
    }
    if p.get("culture"):
        body["culture"] = p["culture"]
    if p.get("scheduledExecutionDate"):
        when = _when(p["scheduledExecutionDate"]).astimezone(UTC)
        body["scheduledExecutionDate"] = when.isoformat().replace("+00:00", "Z")
    return body


def output_information(outputs: Any) -> dict[str, Any]:
    """``jobSpecificOutputs`` with each value JSON-decoded (kept as it is when not JSON)."""
    if not isinstance(outputs, dict):
        return {}
    info: dict[str, Any] = {}
    for name, value in outputs.items():
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        info[str(name)] = value
    return info


def _count(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return 0


def _errors(summary: Mapping[str, Any]) -> str:
    """The summary's ``Errors``, the first few, on one line."""
    raw = summary.get("Errors")
    items = raw if isinstance(raw, list) else [] if raw in (None, "") else [raw]
    texts = []
    for item in items:
        if isinstance(item, dict):
            message = item.get("Message") or item.get("message")
            texts.append(str(message) if message else json.dumps(item, default=str))
        else:
            texts.append(str(item))
    text = "; ".join(" ".join(t.split()) for t in texts[:_ERRORS_SHOWN])
    if len(texts) > _ERRORS_SHOWN:
        text += f" (and {len(texts) - _ERRORS_SHOWN} more)"
    return text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 1] + "…"


def _finished(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _unsuccessful(job_type: str, summary: Any) -> str | None:
    """Why a ``Succeeded`` job did not do its work, or ``None``."""
    if not isinstance(summary, dict):
        if job_type in EXPORTS:
            return None
        return "the job ended Succeeded without a summary saying FinishedSuccessfully"
    errors = _count(summary.get("NumberOfErrors"))
    listed = _errors(summary)
    # An export has no FinishedSuccessfully; a type this module does not know is judged as an
    # export unless its summary carries the flag.
    judge_as_export = job_type in EXPORTS or (
        job_type not in IMPORTS and "FinishedSuccessfully" not in summary
    )
    if judge_as_export:
        if errors <= 0:
            return None
        return f"the export reported {errors} error(s)" + (f": {listed}" if listed else "")
    if _finished(summary.get("FinishedSuccessfully")):
        return None
    what = f"{errors} error(s)" if errors else "no error count"
    return f"the import did not finish successfully ({what})" + (f": {listed}" if listed else "")


def poll_result(handle: Mapping[str, Any], job: Mapping[str, Any]) -> PollResult:
    """Map one ``GsaJob`` to a :class:`PollResult` (REMOTE_APIS.md §4.3)."""
    raw = job.get("status")
    word = raw if isinstance(raw, str) else json.dumps(raw)
    status = _STATUS.get(word.lower())
    if status is RemoteStatus.RUNNING:
        return PollResult(status, remote_status=word)
    info = output_information(job.get("jobSpecificOutputs"))
    names = job.get("outputFileNames")
    outputs: dict[str, Any] = {
        "jobId": handle["id"],
        "outputFileNames": [n for n in names if isinstance(n, str)]
        if isinstance(names, list)
        else [],
        "outputInformation": info,
    }
    summary = info.get("summary")
    job_type = job.get("type") if isinstance(job.get("type"), str) else handle.get("jobType")
    if status is RemoteStatus.SUCCEEDED:
        why = _unsuccessful(str(job_type), summary)
        if why is None:
            return PollResult(status, remote_status=word, outputs=outputs)
        return PollResult(RemoteStatus.FAILED, remote_status=word, error=why, outputs=outputs)
    if status is RemoteStatus.FAILED:
        listed = _errors(summary) if isinstance(summary, dict) else ""
        error = listed or "the job could not complete (see its log among the output files)"
        return PollResult(status, remote_status=word, error=error, outputs=outputs)
    if status is RemoteStatus.CANCELLED:
        return PollResult(status, remote_status=word, error="cancelled by a user", outputs=outputs)
    return PollResult(
        RemoteStatus.FAILED, remote_status=word, error=f"unknown remote status {word!r}"
    )


def _job_path(job_id: str) -> str:
    return f"{JOBS}/{quote(job_id, safe='')}"


def _object(response: Response, what: str) -> dict[str, Any]:
    document = response.json()
    if not isinstance(document, dict):
        raise PermanentError(
            f"{response.url}: HTTP {response.status}: expected {what} (a JSON object), "
            f"got {type(document).__name__}",
            status=response.status,
        )
    return document


def _file_id(response: Response) -> str:
    """The id of an uploaded file: a JSON string, or the same as plain text."""
    try:
        document = response.json()
    except PermanentError:
        document = response.text().strip()
        if not document or any(c.isspace() for c in document) or len(document) > 200:
            raise
    if isinstance(document, dict):  # tolerated: {"id": "..."}
        document = document.get("id")
    if not isinstance(document, str) or not document:
        raise PermanentError(
            f"{response.url}: HTTP {response.status}: expected the file id as a JSON string",
            status=response.status,
        )
    return document


def _multipart(filename: str, content: bytes) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body with one part, ``file``; bytes, so retries can resend."""
    boundary = secrets.token_hex(16)
    while boundary.encode() in content:  # pragma: no cover - 128 random bits
        boundary = secrets.token_hex(16)
    quoted = filename.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D")
    quoted = quoted.replace("\n", "%0A")
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{quoted}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    body = head + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _local_name(name: str) -> str:
    """A server-given file name made safe to create inside the output folder."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    if base in ("", ".", "..") or "\0" in base:
        raise PermanentError(f"output file name {name!r} cannot be saved locally")
    return base


def _size_option(connection: Connection, name: str) -> int:
    value = connection.options.get(name, MAX_FILE_BYTES)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"connection {connection.name!r}: option {name!r} must be a whole number of bytes"
        )
    return value


class GrantaConnector(ConnectorBase):
    def __init__(self, connection: Connection, client: HttpClient | None = None) -> None:
        self.connection = connection
        self._auth = auth_headers(connection)
        self.client = client or HttpClient(
            connection, headers={**self._auth, "Accept": "application/json"}
        )
        self._max_upload = _size_option(connection, "max_upload_bytes")
        self._max_download = _size_option(connection, "max_download_bytes")

    async def aclose(self) -> None:
        await self.client.aclose()

    # -- submit --

    async def submit(self, submission: Submission) -> RemoteHandle:
        uploaded = []
        for kind, path in input_files(submission.params):
            uploaded.append((kind, path.name, await self._upload(path)))
        response = await self.client.request(
            "POST",
            JOBS,
            json=create_request(submission, uploaded),
            headers={"Idempotency-Key": submission.idempotency_key},
        )
        job = _object(response, "a job")
        if job.get("id") is None:
            raise PermanentError(f"{response.url}: HTTP {response.status}: the job has no id")
        job_id = remote_id(job["id"], job_type="granta.job", field="id")
        if not isinstance(job_id, str):  # a uuid
            raise PermanentError(
                f"granta.job: the remote answered field 'id' with {job_id!r}, which is not a "
                "job id (a uuid string)"
            )
        return self._handle(submission, job_id)

    def _handle(self, submission: Submission, job_id: str) -> RemoteHandle:
        p = submission.params
        handle: RemoteHandle = {"id": job_id, "jobType": p["jobType"], "name": job_name(submission)}
        if p.get("outputDir"):
            handle["outputDir"] = os.path.abspath(p["outputDir"])
        return handle

    async def _upload(self, path: Path) -> str:
        try:
            size = (await anyio.Path(path).stat()).st_size
            if size > self._max_upload:
                raise PermanentError(
                    f"input file {path} is larger than {self._max_upload} bytes ({size})"
                )
            content = await anyio.Path(path).read_bytes()
        except OSError as exc:
            raise PermanentError(
                f"cannot read input file {path}: {exc.strerror or type(exc).__name__}"
            ) from None
        body, content_type = _multipart(path.name, content)
        # An upload only adds a short-lived file: sending it again after a reset is harmless.
        response = await self.client.request(
            "POST", FILES, data=body, headers={"Content-Type": content_type}, idempotent=True
        )
        return _file_id(response)

    # -- poll --

    async def poll(self, handle: RemoteHandle) -> PollResult:
        job_id = str(handle["id"])
        try:
            response = await self.client.request("GET", _job_path(job_id))
        except NotFoundError:
            if "name" not in handle:  # not a handle of submit or find: an id never seen here
                raise
            # The job was in the queue (submit or find named it) and has left it: deleted
            # while pending (the cancel of this or any other process, or a user) or purged
            # long after it ended. Decided from the remote and the stored handle alone, so
            # that a process resuming the attempt decides as the one that cancelled it.
            return PollResult(
                RemoteStatus.CANCELLED,
                remote_status="Deleted",
                error=(
                    "the job is no longer in the queue: deleted while pending (as a cancel "
                    "does) or purged after it ended"
                ),
            )
        result = poll_result(handle, _object(response, "a job"))
        folder = handle.get("outputDir")
        if result.status is not RemoteStatus.SUCCEEDED or not folder:
            return result
        outputs = dict(result.outputs)
        try:
            outputs["outputFiles"] = [
                await self._download(job_id, name, Path(folder))
                for name in outputs["outputFileNames"]
            ]
        except TransientError:
            raise
        except ConnectorError as exc:
            return PollResult(
                RemoteStatus.FAILED,
                remote_status=result.remote_status,
                error=f"the job succeeded but its output files were not saved: {exc}",
                outputs=outputs,
            )
        return PollResult(result.status, remote_status=result.remote_status, outputs=outputs)

    # -- outputs --

    async def _download(self, job_id: str, name: str, folder: Path) -> str:
        """Stream one output file into ``folder`` (written whole or not at all); its path."""
        target = folder / _local_name(name)
        shown = f"output file {name!r} of job {job_id}"
        try:
            await anyio.Path(folder).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PermanentError(
                f"{shown}: cannot write {target}: {exc.strerror or type(exc).__name__}"
            ) from None
        await self.client.download(
            f"{_job_path(job_id)}/outputs:export",
            target,
            params={"fileName": name},
            headers={"Accept": "*/*"},
            max_bytes=self._max_download,
            what=shown,
        )
        return str(target)

    # -- cancel and find --

    async def cancel(self, handle: RemoteHandle) -> CancelResult:
        job_id = str(handle["id"])
        try:
            job = _object(await self.client.request("GET", _job_path(job_id)), "a job")
        except NotFoundError:
            return CancelResult(True, "the job is no longer on the server")
        status = job.get("status")
        if status == "Pending":
            await self.client.request("DELETE", _job_path(job_id), ok=(200, 202, 204, 404))
            return CancelResult(True, "deleted the pending job from the queue")
        if status == "Running":
            return CancelResult(
                False, "Granta MI cannot cancel a running job; it will run to its end"
            )
        return CancelResult(True, f"the job had already ended ({status})")

    async def find(self, submission: Submission) -> RemoteHandle | None:
        key = submission.idempotency_key
        marker = key_marker(key)
        response = await self.client.request("GET", JOBS, params={"descriptionFilter": key})
        page = _object(response, "a job list")
        results = page.get("results")
        found = []
        for job in results if isinstance(results, list) else []:
            if not isinstance(job, dict):
                continue
            description = job.get("description")
            if isinstance(description, str) and marker in description and job.get("id"):
                found.append(str(job["id"]))
        if not found:
            return None
        claimed = {str(held.get("id")) for held in await submission.claimed()}
        found = [job_id for job_id in found if job_id not in claimed]
        if len(found) > 1:  # the key is the attempt's own: only a resubmission makes two
            raise LookupUndecided(f"{len(found)} jobs carry the marker {marker}")
        return self._handle(submission, found[0]) if found else None


# -- validation -------------------------------------------------------------------------------


def _text(params: Mapping[str, Any], name: str) -> list[str]:
    value = params.get(name)
    if name in params and (not isinstance(value, str) or not value.strip()):
        return [f"field {name!r}: expected a non-empty string"]
    return []


def _files(files: Any, job_type: Any) -> list[str]:
    if not isinstance(files, list) or not files:
        return ["field 'files': expected a non-empty list of {fileType, path}"]
    problems = []
    kinds: list[str] = []
    paths: set[str] = set()
    names: set[str] = set()
    for i, item in enumerate(files):
        where = f"files[{i}]"
        if not isinstance(item, dict):
            problems.append(f"field {where!r}: expected an object with 'fileType' and 'path'")
            continue
        extra = sorted(set(item) - {"fileType", "path"})
        if extra:
            problems.append(f"field {where!r}: unknown key {extra[0]!r}")
        kind = item.get("fileType")
        if kind not in FILE_TYPES:
            problems.append(f"field '{where}.fileType': expected one of {', '.join(FILE_TYPES)}")
        else:
            kinds.append(kind)
        path = item.get("path")
        if not isinstance(path, str) or not path.strip():
            problems.append(f"field '{where}.path': expected a non-empty file path")
            continue
        full = os.path.normpath(os.path.abspath(path))
        name = os.path.basename(full)
        if full in paths:
            problems.append(f"field '{where}.path': {path!r} is listed twice")
        elif name in names:
            problems.append(
                f"field '{where}.path': another file is also named {name!r} "
                "(the server only sees file names)"
            )
        paths.add(full)
        names.add(name)
    if kinds.count("Template") > 1:
        problems.append("field 'files': at most one Template file")
    has = set(kinds)
    if job_type == "ExcelImportJob":
        if "Combined" in has and has & {"Template", "Data"}:
            problems.append(
                "field 'files': an Excel import takes Combined files or Template + Data, not both"
            )
        elif "Combined" not in has and not {"Template", "Data"} <= has:
            problems.append(
                "field 'files': an Excel import needs Combined files, or a Template and Data files"
            )
    elif job_type == "TextImportJob":
        if "Combined" in has:
            problems.append("field 'files': a text import takes no Combined files")
        if not {"Template", "Data"} <= has:
            problems.append("field 'files': a text import needs a Template and Data files")
    return problems


def _records(records: Any) -> list[str]:
    if not isinstance(records, list) or not records:
        return ["field 'records': expected a non-empty list of {recordHistoryIdentity}"]
    problems = []
    for i, record in enumerate(records):
        where = f"records[{i}]"
        if not isinstance(record, dict):
            problems.append(f"field {where!r}: expected an object with 'recordHistoryIdentity'")
            continue
        extra = sorted(set(record) - {"recordHistoryIdentity", "recordVersion"})
        if extra:
            problems.append(f"field {where!r}: unknown key {extra[0]!r}")
        identity = record.get("recordHistoryIdentity")
        if isinstance(identity, bool) or not isinstance(identity, int):
            problems.append(f"field '{where}.recordHistoryIdentity': expected an integer")
        version = record.get("recordVersion")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            problems.append(f"field '{where}.recordVersion': expected an integer or null")
    return problems


def validate(params: Mapping[str, Any]) -> list[str]:
    problems = []
    job_type = params.get("jobType")
    if "jobType" in params and job_type not in JOB_KINDS:
        problems.append(f"field 'jobType': expected one of {', '.join(JOB_KINDS)}")
    for name in ("name", "description", "culture", "outputDir"):
        problems += _text(params, name)
    if "scheduledExecutionDate" in params:
        when = params["scheduledExecutionDate"]
        try:
            _when(when if isinstance(when, str) else "")
        except ValueError:
            problems.append(
                "field 'scheduledExecutionDate': expected an ISO 8601 date and time with a "
                "time zone, e.g. 2026-01-31T02:00:00Z"
            )
    if job_type in IMPORTS:
        problems += [
            f"field {name!r}: only for ExcelExportJob"
            for name in ("databaseKey", "records", "template")
            if name in params
        ]
        if "files" not in params:
            problems.append(f"field 'files': required for {job_type}")
        else:
            problems += _files(params["files"], job_type)
    elif job_type in EXPORTS:
        if "files" in params:
            problems.append("field 'files': only for import jobs (an export takes 'template')")
        for name in ("databaseKey", "records", "template"):
            if name not in params:
                problems.append(f"field {name!r}: required for ExcelExportJob")
        problems += _text(params, "databaseKey") + _text(params, "template")
        if "records" in params:
            problems += _records(params["records"])
    return problems


JOB_TYPES = (
    remote_job_type(
        "granta.job",
        GrantaConnector,
        connection_type="granta",
        required=("jobType",),
        optional=FIELDS,
        validate=validate,
        can_cancel=True,  # pending jobs only: a running job cannot be stopped
        poll=SCHEDULE,
    ),
)
