"""The JobQueue's requests and answers: the create-job request, the file upload, and what a
``GsaJob`` says (REMOTE_APIS.md §4.2, §4.3)."""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ...errors import PermanentError
from ..base import PollResult, RemoteStatus, Submission
from ..http.response import Response

JOBS = "/v1alpha/job-queue/jobs"
FILES = "/v1alpha/job-queue/files"
IMPORTS = frozenset({"ExcelImportJob", "TextImportJob"})
EXPORTS = frozenset({"ExcelExportJob"})
JOB_KINDS = ("ExcelImportJob", "ExcelExportJob", "TextImportJob")
FILE_TYPES = ("Template", "Data", "Combined", "Attachment")
_STATUS = {
    "pending": RemoteStatus.RUNNING,
    "running": RemoteStatus.RUNNING,
    "succeeded": RemoteStatus.SUCCEEDED,
    "failed": RemoteStatus.FAILED,
    "cancelled": RemoteStatus.CANCELLED,
}
_ERRORS_SHOWN = 5
_ERROR_CHARS = 1000


def key_marker(key: str) -> str:
    """What the job's description carries so that :meth:`GrantaConnector.find` can find it."""
    return f"[orchestrator-key: {key}]"


def job_name(submission: Submission) -> str:
    name = submission.params.get("name")
    return str(name) if name else f"{submission.dag}.{submission.job_id}"


def parse_when(text: str) -> datetime:
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
        when = parse_when(p["scheduledExecutionDate"]).astimezone(UTC)
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


def job_path(job_id: str) -> str:
    return f"{JOBS}/{quote(job_id, safe='')}"


def json_object(response: Response, what: str) -> dict[str, Any]:
    document = response.json()
    if not isinstance(document, dict):
        raise PermanentError(
            f"{response.url}: HTTP {response.status}: expected {what} (a JSON object), "
            f"got {type(document).__name__}",
            status=response.status,
        )
    return document


def file_id(response: Response) -> str:
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


def multipart(filename: str, content: bytes) -> tuple[bytes, str]:
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


def local_name(name: str) -> str:
    """A server-given file name made safe to create inside the output folder."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    if base in ("", ".", "..") or "\0" in base:
        raise PermanentError(f"output file name {name!r} cannot be saved locally")
    return base
