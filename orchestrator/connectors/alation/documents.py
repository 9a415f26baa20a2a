"""Reading the Alation API's answers: start answers and the handles they give, job and task
documents, results, and the two shapes of error documents."""

from __future__ import annotations

import json as jsonlib
import re
from collections.abc import Mapping
from typing import Any

from ...errors import PermanentError
from ..base import PollResult, RemoteHandle, RemoteStatus, remote_id

TRACKING = re.compile(r"can be tracked using (?:the )?jobs api\)?\s*:\s*(\d+)", re.IGNORECASE)
START_KEYS = ("job_id", "job_name", "task", "job")

_MAX_TEXT = 1000


def short(document: Any, limit: int = 200) -> str:
    text = document if isinstance(document, str) else jsonlib.dumps(document, default=str)
    return clip(text, limit)


def clip(text: str, limit: int = _MAX_TEXT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def follow_handle(params: Mapping[str, Any]) -> RemoteHandle | None:
    if params.get("jobId") is not None:
        value = remote_id(params["jobId"], job_type="alation.job", field="jobId")
        return {"jobId": int(value) if isinstance(value, str) else value, "phase": 1}
    if params.get("jobName") is not None:
        return {"jobName": str(params["jobName"]), "phase": 1}
    return None


def _id(value: Any, field: str) -> Any:
    """An id as given (int or string), ``None`` when it is missing; refused when it is not an
    id (NaN, a bool, a list…)."""
    if value is None:
        return None
    return remote_id(value, job_type="alation.job", field=field)


def started(document: Any, path: str) -> RemoteHandle | None:
    """The handle of the job a start answer names, or ``None`` if it names none."""
    if not isinstance(document, dict) or not any(k in document for k in START_KEYS):
        return None
    handle: RemoteHandle | None = None
    if _id(document.get("job_id"), "job_id") is not None:
        handle = {"jobId": document["job_id"]}
    elif isinstance(document.get("job_name"), str) and document["job_name"]:
        handle = {"jobName": document["job_name"]}
    elif (
        isinstance(document.get("task"), dict)
        and _id(document["task"].get("id"), "task.id") is not None
    ):
        task = document["task"]
        links = task.get("links") if isinstance(task.get("links"), list) else []
        dd_link = any(
            isinstance(link, dict) and "/data_dictionary/tasks/" in str(link.get("href", ""))
            for link in links
        )
        if dd_link or "/data_dictionary/" in path:
            handle = {"taskId": task["id"]}
        else:
            handle = {"jobId": task["id"]}
    elif (
        isinstance(document.get("job"), dict)
        and _id(document["job"].get("id"), "job.id") is not None
    ):
        handle = {"jobId": document["job"]["id"]}
    if handle is None:
        raise PermanentError(
            f"the start answer of {path} names a job without an id: {short(document)}"
        )
    handle["startPath"] = path
    handle["phase"] = 1
    return handle


def job_reference(handle: RemoteHandle) -> Any:
    return handle.get("jobId") if handle.get("jobId") is not None else handle.get("jobName")


def job_label(handle: RemoteHandle) -> str:
    if handle.get("jobId") is not None:
        return f"job {handle['jobId']}"
    return f"job {handle.get('jobName')!r}"


def status_word(document: Mapping[str, Any]) -> str:
    status = document.get("status")
    return status.strip().lower() if isinstance(status, str) else ""


def _decode(value: Any) -> Any:
    """A string holding a JSON object or array, decoded; anything else as it is."""
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        try:
            return jsonlib.loads(value)
        except ValueError:
            return value
    return value


def parse_result(result: Any) -> Any:
    """A job's ``result`` as JSON values: a JSON-encoded string decoded, each JSON string of a
    list decoded, plain strings and dicts kept."""
    decoded = _decode(result)
    if isinstance(decoded, list):
        return [_decode(item) for item in decoded]
    return decoded


def tracking_id(result: Any) -> int | None:
    """The second job's id in a first job's result text, ``result[0]`` first."""
    items = result if isinstance(result, list) else [result]
    for item in items:
        text = item if isinstance(item, str) else jsonlib.dumps(item, default=str)
        found = TRACKING.search(text)
        if found:
            return int(found.group(1))
    return None


def _summary(result: Any) -> str:
    """Readable text of a parsed result, for error messages."""
    if result is None or result == "" or result == []:
        return ""
    if isinstance(result, str):
        return clip(result)
    if isinstance(result, dict):
        for key in ("error", "msg", "message", "detail"):
            if result.get(key):
                return clip(str(result[key]))
        return short(result, _MAX_TEXT)
    if isinstance(result, list):
        return clip("; ".join(filter(None, (_summary(item) for item in result))))
    return clip(str(result))


def job_result(document: Mapping[str, Any], label: str, extra: Mapping[str, Any]) -> PollResult:
    """Map one job API document (REMOTE_APIS.md §5.3)."""
    word = status_word(document)
    if word == "running":
        return PollResult(RemoteStatus.RUNNING, remote_status=word)
    result = parse_result(document.get("result"))
    msg = document.get("msg")
    outputs: dict[str, Any] = {"result": result, "msg": msg, **extra}
    detail = _summary(result) or (str(msg) if msg else "")
    suffix = f": {detail}" if detail else ""
    if word == "successful":
        return PollResult(RemoteStatus.SUCCEEDED, remote_status=word, outputs=outputs)
    if word == "failed":
        error = f"{label} failed{suffix}"
    elif word == "partially_successful":
        error = f"{label} was only partially successful (treated as a failure){suffix}"
    else:
        error = f"unknown remote status {document.get('status')!r} of {label}"
    return PollResult(RemoteStatus.FAILED, remote_status=word or None, error=error, outputs=outputs)


def failed_records(task: Mapping[str, Any]) -> str:
    result = task.get("result")
    records = result.get("records") if isinstance(result, dict) else None
    if not isinstance(records, dict):
        return ""
    return f"{records.get('failed', '?')} of {records.get('total', '?')} records failed"


def _field_errors(item: Any) -> list[str]:
    """``{"field": ["msg", …]}`` (or a plain string) as ``field: msg, msg``."""
    if isinstance(item, str):
        return [item]
    if not isinstance(item, dict):
        return [short(item)]
    out = []
    for field, messages in item.items():
        if isinstance(messages, list):
            text = ", ".join(
                m if isinstance(m, str) else "; ".join(_field_errors(m)) for m in messages
            )
        elif isinstance(messages, dict):
            text = "; ".join(_field_errors(messages))
        else:
            text = str(messages)
        out.append(f"{field}: {text}")
    return out


def error_message(document: Any) -> str | None:
    """A readable message from either Alation error shape, ``None`` if it is neither."""
    if isinstance(document, dict):
        if any(k in document for k in ("code", "title", "errors")) or (
            "detail" in document and len(document) == 1
        ):
            head = " ".join(str(document[k]) for k in ("code", "title") if document.get(k))
            detail = document.get("detail")
            parts = [f"{head}: {detail}" if head and detail else head or str(detail or "")]
            errors = document.get("errors")
            for item in errors if isinstance(errors, list) else [errors] if errors else []:
                parts += _field_errors(item)
            return clip("; ".join(p for p in parts if p)) or None
        if document.get("error") or document.get("error_description"):
            return clip(
                ": ".join(
                    str(document[k]) for k in ("error", "error_description") if document.get(k)
                )
            )
        return None
    if isinstance(document, list) and document and all(isinstance(i, dict | str) for i in document):
        parts = []
        for n, item in enumerate(document):
            for text in _field_errors(item):
                parts.append(f"[{n}] {text}" if len(document) > 1 else text)
        return clip("; ".join(parts)) or None
    return None
