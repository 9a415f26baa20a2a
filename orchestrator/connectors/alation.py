"""The ``alation.job`` job type: Alation's asynchronous jobs (REMOTE_APIS.md §5, seed 003).

Fields, exactly one of:

* ``request``: ``{"method": "POST"|"PUT", "path": "/integration/v2/custom_field/", "body": …,
  "query"?: {…}}``, the call that starts the job, sent with the ``TOKEN`` header and the
  ``Idempotency-Key`` header (no Alation body has a field that could carry the key). Any start
  endpoint of §5.2 works; the multipart data dictionary upload does not (it is refused by
  validation). The path is relative to the connection's ``base_url``: absolute URLs are refused,
  so the token never leaves for another host.
* ``jobId``: follow a job that is already running (``GET /api/v1/bulk_metadata/job/?id=``).
* ``jobName``: follow a job by name (``?name=``, URL-encoded: names usually hold ``#``).

The start answer is recognised by its keys, as the SDK does: ``job_id`` (poll ``?id=``),
``job_name`` (poll ``?name=``), ``task`` (poll ``?id=task.id``; a data dictionary task, one whose
links point at ``/data_dictionary/tasks/`` or started under ``/data_dictionary/``, is polled at
``/integration/v1/data_dictionary/tasks/{id}``), ``job`` (``job.id``). Any other answer is an
error document and raises :class:`PermanentError` with its message.

Handle: ``{"jobId": N}`` or ``{"jobName": "…"}`` or ``{"taskId": N}``, with ``"startPath"``
when a request started it, and ``"phase"``: 1 while the first job runs. Two-job chains (the
asynchronous custom field value update, PUT ``/integration/v2/custom_field_value/async/``): when
a job ends ``successful`` and its ``result`` says "(can be tracked using jobs API): <id>", that
second job is followed; the handle is updated in place to ``"phase": 2, "nextJobId": <id>``. A
handle stored before that point still resumes correctly after a restart: the first job's result
leads to the second again. Only one hop is followed (the API documents two jobs).

Status (``status`` of the job API, compared without case): ``running`` polls again;
``successful`` succeeds; ``failed`` fails; ``partially_successful`` (an SDK model value that the
server may send) fails with an error that says the job was only partially successful, since part
of the work was not done; any other value fails with "unknown remote status". Data dictionary
tasks poll while ``state`` is not ``COMPLETED``, then ``status`` ``SUCCEEDED`` succeeds,
``FAILED`` fails and ``PARTIALLY_SUCCEEDED`` fails as partial, the errors taken from
``/tasks/{id}/errors/``.

Outputs: ``result``, parsed into JSON values whatever its shape (a JSON-encoded string, a list
of plain strings, a list of JSON strings, a dict): strings that hold a JSON object or array are
decoded, others kept; ``msg``; for chains ``jobIds`` (first and second job).

Errors: the dict shape ``{code, title, detail, errors}`` and the list shape
``[{"field": ["msg"]}]`` become readable messages (``400000 Invalid Payload: …; options: …``).

Cancel: Alation has no job cancel endpoint, so :meth:`AlationConnector.cancel` says so and the
job keeps running. Find: a ``jobId``/``jobName`` job starts nothing, so find returns its handle;
a started job cannot be looked up (the job API reads a job by the id or name of its start answer,
and there is no job list), so find raises :class:`LookupUndecided` and ``onAmbiguousSubmit``
applies, by default ``unknown`` for this job type (never sent twice).
"""

from __future__ import annotations

import json as jsonlib
import re
from collections.abc import Mapping
from typing import Any

from ..connections import Connection
from ..errors import AuthError, ConnectorError, PermanentError
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
    "NO_CANCEL",
    "AlationConnector",
    "error_message",
    "parse_result",
    "validate",
]

JOB_API = "/api/v1/bulk_metadata/job/"
TASK_API = "/integration/v1/data_dictionary/tasks/{id}"
NO_LOOKUP = (
    "Alation's job API reads one job by the id or name that the start answer gives, and lists "
    "none: a job whose start answer was lost cannot be found"
)
NO_CANCEL = "Alation's job API has no cancel endpoint; the job keeps running on the remote"
SCHEDULE = PollSchedule(initial=1.0, factor=1.5, cap=15.0)  # the SDK polls every 2-3 s
TRACKING = re.compile(r"can be tracked using (?:the )?jobs api\)?\s*:\s*(\d+)", re.IGNORECASE)
START_KEYS = ("job_id", "job_name", "task", "job")

_METHODS = frozenset({"POST", "PUT"})
_REQUEST_KEYS = frozenset({"method", "path", "body", "query"})
_DD_UPLOAD = re.compile(r"/integration/v1/data_dictionary/[^/]+/[^/]+/upload/?\Z")
_MAX_TEXT = 1000


class AlationConnector(ConnectorBase):
    """One Alation instance: an :class:`HttpClient` and the ``TOKEN`` header."""

    def __init__(self, connection: Connection, client: HttpClient | None = None) -> None:
        self.connection = connection
        self.client = client or HttpClient(connection)

    async def aclose(self) -> None:
        await self.client.aclose()

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        token = self.connection.credentials.get("token")
        if not token:
            raise AuthError(
                f"connection {self.connection.name!r}: the credential 'token' is required"
            )
        return {"TOKEN": token, "Accept": "application/json", **(extra or {})}

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> Response:
        """One request; an Alation error document raises with its message."""
        try:
            return await self.client.request(
                method,
                path,
                json=json,
                params=params,
                headers=self._headers(headers),
                idempotent=idempotent,
            )
        except PermanentError as exc:
            message = error_message(exc.detail)
            if message is None:
                raise
            raise type(exc)(
                f"{method} {path}: HTTP {exc.status}: {message}",
                status=exc.status,
                detail=exc.detail,
            ) from None

    # -- submit --

    async def submit(self, submission: Submission) -> RemoteHandle:
        p = submission.params
        follow = _follow_handle(p)
        if follow is not None:
            return follow
        request = p["request"]
        method = str(request["method"]).upper()
        path = str(request["path"])
        response = await self._call(
            method,
            path,
            json=request.get("body"),
            params=request.get("query"),
            headers={"Idempotency-Key": submission.idempotency_key},
            idempotent=False,  # a PUT here starts a job: never resend it blindly
        )
        document = response.json()
        handle = _started(document, path)
        if handle is None:
            why = error_message(document) or _short(document)
            raise PermanentError(
                f"{method} {path}: HTTP {response.status}: the answer starts no job: {why}",
                status=response.status,
                detail=document,
            )
        return handle

    async def find(self, submission: Submission) -> RemoteHandle | None:
        follow = _follow_handle(submission.params)
        if follow is not None:
            return follow  # it starts nothing: nothing was sent
        raise LookupUndecided(NO_LOOKUP)

    async def cancel(self, handle: RemoteHandle) -> CancelResult:
        return CancelResult(supported=False, message=NO_CANCEL)

    # -- poll --

    async def _job(self, *, job_id: Any = None, name: str | None = None) -> dict[str, Any]:
        params = {"id": job_id} if name is None else {"name": name}
        response = await self._call("GET", JOB_API, params=params)
        document = response.json()
        if isinstance(document, list) and len(document) == 1:
            document = document[0]
        if not isinstance(document, dict):
            raise PermanentError(
                f"GET {JOB_API}: HTTP {response.status}: expected a job object, "
                f"got {type(document).__name__}"
            )
        return document

    async def poll(self, handle: RemoteHandle) -> PollResult:
        if handle.get("taskId") is not None:
            return await self._poll_task(handle["taskId"])
        first = _reference(handle)
        if handle.get("phase") == 2 and handle.get("nextJobId") is not None:
            second = await self._job(job_id=handle["nextJobId"])
            return _job_result(
                second, f"job {handle['nextJobId']}", {"jobIds": [first, handle["nextJobId"]]}
            )
        if handle.get("jobName") is not None:
            document = await self._job(name=str(handle["jobName"]))
        else:
            document = await self._job(job_id=handle["jobId"])
        word = _status(document)
        next_id = _tracking_id(document.get("result")) if word == "successful" else None
        if next_id is None:
            return _job_result(document, _label(handle), {})
        handle["phase"] = 2  # the engine's copy of the handle: the next poll goes straight there
        handle["nextJobId"] = next_id
        second = await self._job(job_id=next_id)
        return _job_result(second, f"job {next_id}", {"jobIds": [first, next_id]})

    async def _poll_task(self, task_id: Any) -> PollResult:
        path = TASK_API.format(id=task_id)
        response = await self._call("GET", path)
        task = response.json()
        if not isinstance(task, dict):
            raise PermanentError(f"GET {path}: HTTP {response.status}: expected a task object")
        state = str(task.get("state") or "")
        if state.upper() != "COMPLETED":
            return PollResult(RemoteStatus.RUNNING, remote_status=state or None)
        status = str(task.get("status") or "")
        outputs: dict[str, Any] = {"taskId": task_id, "result": task.get("result")}
        for source, name in (
            ("progress", "progress"),
            ("report_download_link", "reportDownloadLink"),
            ("ts_completed", "completedAt"),
        ):
            if task.get(source) is not None:
                outputs[name] = task[source]
        word = status.upper()
        if word == "SUCCEEDED":
            return PollResult(RemoteStatus.SUCCEEDED, remote_status=status, outputs=outputs)
        if word in ("FAILED", "PARTIALLY_SUCCEEDED"):
            errors = await self._task_errors(path)
            records = _records(task)
            if word == "FAILED":
                error = f"data dictionary task {task_id} failed"
            else:
                error = f"data dictionary task {task_id} only partially succeeded"
            if records:
                error += f" ({records})"
            if errors:
                error += f": {errors}"
            return PollResult(
                RemoteStatus.FAILED, remote_status=status, error=error, outputs=outputs
            )
        return PollResult(
            RemoteStatus.FAILED,
            remote_status=status or None,
            error=f"unknown remote status {status!r} of data dictionary task {task_id}",
            outputs=outputs,
        )

    async def _task_errors(self, path: str) -> str:
        """The task's error messages, best effort."""
        try:
            document = (await self._call("GET", f"{path}/errors/")).json()
        except AuthError:
            raise
        except ConnectorError:  # the task's outcome is known; its details are a bonus
            return ""
        if not isinstance(document, list):
            return ""
        messages = [
            str(item.get("error_message") or item.get("original_error_message"))
            for item in document
            if isinstance(item, dict)
            and (item.get("error_message") or item.get("original_error_message"))
        ]
        return _clip("; ".join(messages))


# -- documents --------------------------------------------------------------------------------


def _short(document: Any, limit: int = 200) -> str:
    text = document if isinstance(document, str) else jsonlib.dumps(document, default=str)
    return _clip(text, limit)


def _clip(text: str, limit: int = _MAX_TEXT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _follow_handle(params: Mapping[str, Any]) -> RemoteHandle | None:
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


def _started(document: Any, path: str) -> RemoteHandle | None:
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
            f"the start answer of {path} names a job without an id: {_short(document)}"
        )
    handle["startPath"] = path
    handle["phase"] = 1
    return handle


def _reference(handle: RemoteHandle) -> Any:
    return handle.get("jobId") if handle.get("jobId") is not None else handle.get("jobName")


def _label(handle: RemoteHandle) -> str:
    if handle.get("jobId") is not None:
        return f"job {handle['jobId']}"
    return f"job {handle.get('jobName')!r}"


def _status(document: Mapping[str, Any]) -> str:
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


def _tracking_id(result: Any) -> int | None:
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
        return _clip(result)
    if isinstance(result, dict):
        for key in ("error", "msg", "message", "detail"):
            if result.get(key):
                return _clip(str(result[key]))
        return _short(result, _MAX_TEXT)
    if isinstance(result, list):
        return _clip("; ".join(filter(None, (_summary(item) for item in result))))
    return _clip(str(result))


def _job_result(document: Mapping[str, Any], label: str, extra: Mapping[str, Any]) -> PollResult:
    """Map one job API document (REMOTE_APIS.md §5.3)."""
    word = _status(document)
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


def _records(task: Mapping[str, Any]) -> str:
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
        return [_short(item)]
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
            return _clip("; ".join(p for p in parts if p)) or None
        if document.get("error") or document.get("error_description"):
            return _clip(
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
        return _clip("; ".join(parts)) or None
    return None


# -- the job type -----------------------------------------------------------------------------


def _request_problems(request: Any) -> list[str]:
    if not isinstance(request, dict):
        return ["field 'request': expected an object with 'method', 'path' and 'body'"]
    problems = []
    method = request.get("method")
    if not isinstance(method, str) or method.upper() not in _METHODS:
        problems.append("field 'request.method': expected 'POST' or 'PUT'")
    path = request.get("path")
    if not isinstance(path, str) or not path.startswith("/") or path.startswith("//"):
        problems.append(
            "field 'request.path': expected a path on the connection such as "
            "'/integration/v2/custom_field/' (not a URL)"
        )
    elif "://" in path or any(part == ".." for part in path.split("/")):
        problems.append("field 'request.path': expected a plain path (no URL, no '..')")
    elif _DD_UPLOAD.search(path.split("?", 1)[0]):
        problems.append(
            "field 'request.path': the data dictionary upload is multipart and not supported"
        )
    query = request.get("query")
    if "query" in request and (
        not isinstance(query, dict)
        or not all(isinstance(v, str | int | float | bool) for v in query.values())
    ):
        problems.append("field 'request.query': expected an object of strings, numbers or booleans")
    extra = sorted(set(request) - _REQUEST_KEYS)
    if extra:
        problems.append(
            f"field 'request': unknown key {extra[0]!r} (only method, path, body and query)"
        )
    return problems


def validate(params: Mapping[str, Any]) -> list[str]:
    present = [k for k in ("request", "jobId", "jobName") if k in params]
    if len(present) != 1:
        given = ", ".join(present) if present else "none"
        return [f"field 'request': give exactly one of request, jobId or jobName (given: {given})"]
    problems: list[str] = []
    if "request" in params:
        problems += _request_problems(params["request"])
    if "jobId" in params:
        value = params["jobId"]
        ok = (isinstance(value, int) and not isinstance(value, bool) and value > 0) or (
            isinstance(value, str) and value.isdigit() and int(value) > 0
        )
        if not ok:
            problems.append("field 'jobId': expected a positive integer")
    if "jobName" in params and (
        not isinstance(params["jobName"], str) or not params["jobName"].strip()
    ):
        problems.append("field 'jobName': expected a non-empty string")
    return problems


JOB_TYPES = (
    remote_job_type(
        "alation.job",
        AlationConnector,
        connection_type="alation",
        optional=("request", "jobId", "jobName"),
        validate=validate,
        can_cancel=False,
        poll=SCHEDULE,
        ambiguous_default="unknown",  # nothing to look up: never send a job twice
    ),
)
