"""Reading the OCAPI Data API's answers: fault documents, ``job_execution`` documents and their
statuses, exit codes and outputs, and the search query terms."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...errors import PermanentError
from ..base import PollResult, RemoteHandle, RemoteStatus, remote_id
from ..http.client import Response

NON_TERMINAL = frozenset(
    {
        "pending",
        "running",
        "pausing",
        "paused",
        "resuming",
        "resumed",
        "restarting",
        "restarted",
        "retrying",
        "retried",
        "aborting",
    }
)


def term(field: str, operator: str, values: list[str]) -> dict[str, Any]:
    return {"term_query": {"fields": [field], "operator": operator, "values": values}}


def fault(response: Response) -> tuple[str | None, str]:
    """The fault document's ``type`` and ``message`` (the body text when there is none)."""
    detail = response.detail()
    if isinstance(detail, dict) and isinstance(detail.get("fault"), dict):
        fault = detail["fault"]
        kind = fault.get("type")
        return (str(kind) if kind else None), str(fault.get("message") or "(no message)")
    text = " ".join(str(detail).split())[:200] if detail else "(empty body)"
    return None, text


def fault_type(detail: object) -> str | None:
    if isinstance(detail, dict) and isinstance(detail.get("fault"), dict):
        kind = detail["fault"].get("type")
        return str(kind) if kind else None
    return None


def json_document(response: Response) -> dict[str, Any]:
    document = response.json()
    if not isinstance(document, dict):
        raise PermanentError(
            f"{response.url}: HTTP {response.status}: expected a JSON object, "
            f"got {type(document).__name__}"
        )
    return document


def execution_handle(document: Mapping[str, Any], job_id: str, version: str) -> RemoteHandle:
    execution = remote_id(document.get("id"), job_type="ocapi.job", field="id")
    handle: RemoteHandle = {"id": str(execution), "jobId": job_id, "apiVersion": version}
    if isinstance(document.get("start_time"), str):
        handle["startTime"] = document["start_time"]
    return handle


def status_word(document: Mapping[str, Any]) -> str:
    """The execution status; the free ``status`` string when ``execution_status`` is missing
    (17.2 samples), where ``OK``/``ERROR`` mean finished."""
    word = document.get("execution_status")
    if isinstance(word, str) and word:
        return word.lower()
    status = document.get("status")
    if isinstance(status, str) and status:
        lowered = status.lower()
        return "finished" if lowered in ("ok", "error") else lowered
    return ""


def _exit(document: Mapping[str, Any]) -> dict[str, Any]:
    exit_status = document.get("exit_status")
    return exit_status if isinstance(exit_status, dict) else {}


def _failure_message(document: Mapping[str, Any]) -> str | None:
    """The message of the last step whose exit code is ERROR, else the exit status message."""
    steps = document.get("step_executions")
    for step in reversed(steps if isinstance(steps, list) else []):
        if not isinstance(step, dict):
            continue
        step_exit = _exit(step)
        if str(step_exit.get("code", "")).upper() == "ERROR" and step_exit.get("message"):
            return f"step {step.get('step_id') or step.get('id')}: {step_exit['message']}"
    message = _exit(document).get("message")
    return str(message) if message else None


def _outputs(document: Mapping[str, Any]) -> dict[str, Any]:
    outputs: dict[str, Any] = {
        "executionId": str(document.get("id")),
        "jobId": document.get("job_id"),
    }
    exit_status = _exit(document)
    if exit_status.get("code"):
        outputs["exitCode"] = exit_status["code"]
    if exit_status.get("message"):
        outputs["exitMessage"] = exit_status["message"]
    for source, name in (
        ("start_time", "startTime"),
        ("end_time", "endTime"),
        ("duration", "duration"),
        ("log_file_path", "logFilePath"),
        ("log_file_name", "logFileName"),
    ):
        if document.get(source) is not None:
            outputs[name] = document[source]
    return outputs


def poll_result(document: Mapping[str, Any]) -> PollResult:
    """Map one ``job_execution`` document to a :class:`PollResult` (REMOTE_APIS.md §2.4)."""
    word = status_word(document)
    if word in NON_TERMINAL:
        return PollResult(RemoteStatus.RUNNING, remote_status=word)
    outputs = _outputs(document)
    if word == "aborted":
        reason = _failure_message(document)
        error = "the execution was aborted" + (f": {reason}" if reason else "")
        return PollResult(RemoteStatus.FAILED, remote_status=word, error=error, outputs=outputs)
    if word != "finished":
        return PollResult(
            RemoteStatus.FAILED,
            remote_status=word or None,
            error=f"unknown remote status {word or document.get('status')!r}",
            outputs=outputs,
        )
    exit_status = _exit(document)
    code = str(exit_status.get("code") or "").upper()
    status = str(exit_status.get("status") or "").lower()
    if not exit_status:  # the free status string carries the exit code once stopped
        code = str(document.get("status") or "").upper()
    if code == "ERROR" or status == "error":
        error = (
            _failure_message(document) or f"the execution ended with exit code {code or 'ERROR'}"
        )
        return PollResult(RemoteStatus.FAILED, remote_status=word, error=error, outputs=outputs)
    if code == "OK" or status == "ok":
        return PollResult(RemoteStatus.SUCCEEDED, remote_status=word, outputs=outputs)
    return PollResult(
        RemoteStatus.FAILED,
        remote_status=word,
        error=f"the execution finished with an unknown exit status {code or status or 'none'!r}",
        outputs=outputs,
    )
