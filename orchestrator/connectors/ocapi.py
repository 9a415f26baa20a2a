"""The ``ocapi.job`` job type: Salesforce B2C Commerce OCAPI Data API jobs (REMOTE_APIS.md §2).

Fields: ``jobId`` (required); ``parameters``, a list of ``{name, value}`` strings (name 1 to 256
characters, value at most 1000); ``apiVersion`` (``v23_2`` style; default the connection option
``api_version``, else ``v23_2``); ``onJobAlreadyRunning``: ``fail`` (default) or ``wait``.

Connection: ``base_url`` is the instance origin (``https://<instance-host>``); requests go to
``<base_url>/s/-/dw/data/<version>/...``. Credentials ``client_id`` and ``client_secret`` get a
token by OAuth client credentials (form ``grant_type=client_credentials``, HTTP Basic) from the
option ``token_url`` (absolute, or a path joined to ``base_url``; default Account Manager). The
token is cached until shortly before its ``expires_in``; a fault ``InvalidAccessTokenException``
(401) renews it once and sends the request again.

Handle: ``{"id": <execution id>, "jobId", "apiVersion"}`` (plus ``startTime`` when known).

Status (``execution_status``; the free ``status`` string stands in when it is missing):
``pending, running, pausing, paused, resuming, resumed, restarting, restarted, retrying, retried,
aborting`` poll again; ``finished`` succeeds only with ``exit_status.code == "OK"`` or
``exit_status.status == "ok"`` and fails with ``ERROR``/``error`` (the error is the message of the
last step whose exit code is ``ERROR``, else ``exit_status.message``); ``aborted`` fails;
``unknown`` and any other value fail with "unknown remote status" (never success). Faults raise
with their ``type`` and ``message``: 401/403 :class:`AuthError`, 404 :class:`NotFoundError`,
other 4xx :class:`PermanentError`.

``onJobAlreadyRunning: wait``: on ``JobAlreadyRunningException`` the running execution is found
with ``job_execution_search`` (status one_of RUNNING/PENDING, oldest first, count 1), polled on
the job type's schedule until it ends, and the job is started once more; a second refusal fails.

Cancel: the Data API has no abort endpoint (DELETE only removes a finished execution's record),
so :meth:`OcapiConnector.cancel` says so and leaves the execution running.

Find: the body holds the job's own parameters, so the idempotency key travels only as an
``Idempotency-Key`` header, which the remote ignores; an execution cannot be looked up by key.
:meth:`OcapiConnector.find` reads the job's executions (``GET /jobs/{job_id}/executions``, seed
004; ``job_execution_search`` newest first where that route is gone) and takes the one that
started since the submission's write-ahead time (less the connection option ``clock_skew``,
default 5 s), with this connection's ``client_id`` and the same parameters where the document
carries them, that no other stored attempt holds. None: ``None``; more than one:
:class:`LookupUndecided` (the engine then applies ``onAmbiguousSubmit``).
"""

from __future__ import annotations

import base64
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import anyio

from ..connections import Connection
from ..errors import AuthError, NotFoundError, PermanentError
from .base import (
    CancelResult,
    ConnectorBase,
    LookupUndecided,
    PollResult,
    PollSchedule,
    RemoteHandle,
    RemoteStatus,
    Submission,
    after,
    clock_skew,
    remote_id,
    remote_job_type,
    wall_time,
)
from .http.client import HttpClient, Response
from .http.statuses import error_for_status

__all__ = ["JOB_TYPES", "OcapiConnector", "poll_result", "validate"]

DEFAULT_VERSION = "v23_2"
DEFAULT_TOKEN_URL = "https://account.demandware.com/dwsso/oauth2/access_token"
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
ALREADY_RUNNING = "JobAlreadyRunningException"
NO_CANCEL = "OCAPI has no cancel endpoint; the execution keeps running on the remote"
LIST_PAGES = 10  # of 200 executions: past that, the newest come from job_execution_search
SCHEDULE = PollSchedule(initial=1.0, factor=1.5, cap=5.0)  # clients poll every 3-5 s

_VERSION = re.compile(r"v\d+_\d+\Z")
_FAULT_STATUSES = frozenset({400, 401, 403, 404, 409})
_OK = frozenset(range(200, 300)) | _FAULT_STATUSES


class OcapiConnector(ConnectorBase):
    """One OCAPI instance: an :class:`HttpClient` and a cached access token."""

    def __init__(
        self,
        connection: Connection,
        client: HttpClient | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.connection = connection
        self.client = client or HttpClient(connection)
        self._sleep = sleep
        self._clock = clock
        self._wall = wall
        self._rng = rng or random.Random()
        options = connection.options
        self._token_url = str(options.get("token_url") or DEFAULT_TOKEN_URL)
        self._default_version = str(options.get("api_version") or DEFAULT_VERSION)
        self._skew = clock_skew(connection)
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = anyio.Lock()

    async def aclose(self) -> None:
        await self.client.aclose()

    # -- auth --

    async def _bearer(self, stale: str | None = None) -> str:
        """The cached token, fetched when there is none, it is about to expire, or it is
        ``stale`` (the remote refused it)."""
        async with self._token_lock:
            fresh = self._token is not None and self._clock() < self._token_expires
            if self._token is None or not fresh or self._token == stale:
                self._token, self._token_expires = await self._fetch_token()
            return self._token

    async def _fetch_token(self) -> tuple[str, float]:
        creds = self.connection.credentials
        client_id, secret = creds.get("client_id"), creds.get("client_secret")
        if not client_id or not secret:
            raise AuthError(
                f"connection {self.connection.name!r}: credentials client_id and "
                "client_secret are required for OCAPI"
            )
        basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        try:
            response = await self.client.request(
                "POST",
                self._token_url,
                data={"grant_type": "client_credentials"},
                headers={"Authorization": f"Basic {basic}"},
                idempotent=True,  # asking for a token twice does no harm
            )
        except AuthError:
            raise
        except PermanentError as exc:
            raise AuthError(
                f"cannot get an access token: {exc}", status=exc.status, detail=exc.detail
            ) from None
        document = response.json()
        token = document.get("access_token") if isinstance(document, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthError(f"POST {response.url}: the token answer has no access_token")
        lifetime = document.get("expires_in", 1800)
        if not isinstance(lifetime, int | float) or isinstance(lifetime, bool):
            lifetime = 1800
        margin = min(60.0, 0.1 * float(lifetime))
        return token, self._clock() + max(0.0, float(lifetime) - margin)

    # -- requests --

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> Response:
        """One Data API request with the bearer token; a fault document raises with its type
        and message. An ``InvalidAccessTokenException`` renews the token once."""
        token = await self._bearer()
        renewed = False
        while True:
            response = await self.client.request(
                method,
                path,
                json=json,
                headers={**(headers or {}), "Authorization": f"Bearer {token}"},
                ok=_OK,
                idempotent=idempotent,
            )
            if response.status < 300:
                return response
            kind, message = _fault(response)
            if response.status == 401 and kind == "InvalidAccessTokenException" and not renewed:
                renewed = True
                token = await self._bearer(stale=token)
                continue
            text = f"{method} {response.url}: HTTP {response.status}: {kind or 'fault'}: {message}"
            raise error_for_status(response.status, text, detail=response.detail())

    @staticmethod
    def _executions(version: str, job_id: str) -> str:
        return f"/s/-/dw/data/{version}/jobs/{quote(job_id, safe='')}/executions"

    async def _execution(self, version: str, job_id: str, execution_id: str) -> dict[str, Any]:
        path = f"{self._executions(version, job_id)}/{quote(execution_id, safe='')}"
        return _document(await self._call("GET", path))

    async def _search(self, version: str, request: dict[str, Any]) -> list[dict[str, Any]]:
        response = await self._call(
            "POST", f"/s/-/dw/data/{version}/job_execution_search", json=request, idempotent=True
        )
        hits = _document(response).get("hits") or []
        return [hit for hit in hits if isinstance(hit, dict)] if isinstance(hits, list) else []

    # -- the protocol --

    def _version(self, params: Mapping[str, Any]) -> str:
        return str(params.get("apiVersion") or self._default_version)

    async def submit(self, submission: Submission) -> RemoteHandle:
        p = submission.params
        job_id, version = str(p["jobId"]), self._version(p)
        body = None
        if p.get("parameters") is not None:
            body = {
                "parameters": [{"name": i["name"], "value": i["value"]} for i in p["parameters"]]
            }
        document = await self._submit(p, version, job_id, body, submission.idempotency_key)
        return _handle(document, job_id, version)

    async def _submit(
        self,
        p: Mapping[str, Any],
        version: str,
        job_id: str,
        body: dict[str, Any] | None,
        key: str,
    ) -> dict[str, Any]:
        try:
            return await self._start(version, job_id, body, key)
        except PermanentError as exc:
            if _fault_type(exc.detail) != ALREADY_RUNNING:
                raise
            if p.get("onJobAlreadyRunning", "fail") != "wait":
                raise PermanentError(
                    f"{exc} (onJobAlreadyRunning is 'fail')", status=exc.status, detail=exc.detail
                ) from None
            await self._wait_for_running(version, job_id)
            try:
                return await self._start(version, job_id, body, key)
            except PermanentError as again:
                if _fault_type(again.detail) != ALREADY_RUNNING:
                    raise
                raise PermanentError(
                    f"{again} (still running after waiting for the execution that was running)",
                    status=again.status,
                    detail=again.detail,
                ) from None

    async def _start(
        self, version: str, job_id: str, body: dict[str, Any] | None, key: str
    ) -> dict[str, Any]:
        response = await self._call(
            "POST", self._executions(version, job_id), json=body, headers={"Idempotency-Key": key}
        )
        document = _document(response)
        if document.get("id") is None:
            raise PermanentError(f"POST {response.url}: the job_execution answer has no id")
        return document

    async def _wait_for_running(self, version: str, job_id: str) -> None:
        """Wait until the execution that blocks ``job_id`` has ended."""
        hits = await self._search(
            version,
            {
                "query": {
                    "bool_query": {
                        "must": [
                            _term("job_id", "is", [job_id]),
                            _term("status", "one_of", ["RUNNING", "PENDING"]),
                        ]
                    }
                },
                "sorts": [{"field": "start_time", "sort_order": "asc"}],
                "count": 1,
            },
        )
        if not hits or hits[0].get("id") is None:
            return  # it ended in between
        execution_id = str(hits[0]["id"])
        polls = 0
        while True:
            polls += 1
            await self._sleep(SCHEDULE.delay(polls, self._rng.random()))
            try:
                document = await self._execution(version, job_id, execution_id)
            except NotFoundError:
                return
            if _word(document) not in NON_TERMINAL:
                return

    async def poll(self, handle: RemoteHandle) -> PollResult:
        document = await self._execution(
            str(handle.get("apiVersion") or self._default_version),
            str(handle["jobId"]),
            str(handle["id"]),
        )
        return poll_result(document)

    async def cancel(self, handle: RemoteHandle) -> CancelResult:
        return CancelResult(supported=False, message=NO_CANCEL)

    async def find(self, submission: Submission) -> RemoteHandle | None:
        """The job's execution started since the write-ahead record, by this connection's
        ``client_id``, with the submission's parameters, that no other attempt holds."""
        not_before = submission.not_before
        if not_before is None:
            raise LookupUndecided("the time the submission was written ahead is not known")
        p = submission.params
        job_id, version = str(p["jobId"]), self._version(p)
        wanted = sorted((str(i["name"]), str(i["value"])) for i in p.get("parameters") or [])
        client_id = self.connection.credentials.get("client_id")
        claimed = {str(h.get("id")) for h in await submission.claimed() if h.get("jobId") == job_id}
        found = []
        for hit in await self._started_since(version, job_id, not_before):
            if hit.get("id") is None or str(hit["id"]) in claimed:
                continue
            if not after(wall_time(hit.get("start_time")), not_before, self._skew):
                continue
            if hit.get("client_id") is not None and hit.get("client_id") != client_id:
                continue
            params = hit.get("parameters")
            if isinstance(params, list) and wanted != sorted(
                (str(i.get("name")), str(i.get("value"))) for i in params if isinstance(i, dict)
            ):
                continue
            found.append(hit)
        if len(found) > 1:
            ids = ", ".join(str(hit["id"]) for hit in found[:5])
            raise LookupUndecided(
                f"{len(found)} executions of job {job_id} by this client started since the "
                f"submission and no other attempt holds them: {ids}"
            )
        return _handle(found[0], job_id, version) if found else None

    async def _started_since(
        self, version: str, job_id: str, not_before: float
    ) -> list[dict[str, Any]]:
        """The job's executions: ``GET /jobs/{job_id}/executions`` page by page (seed 004,
        Data API 17.2); where that route is gone, or the list is too long, the newest by
        ``job_execution_search``."""
        executions: list[dict[str, Any]] = []
        try:
            for page in range(LIST_PAGES):
                response = await self._call(
                    "GET",
                    f"{self._executions(version, job_id)}?start={page * 200}&count=200",
                )
                document = _document(response)
                data = document.get("data")
                items = [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []
                executions += items
                total = document.get("total")
                if len(items) < 200 or (isinstance(total, int) and len(executions) >= total):
                    return executions
        except AuthError:
            raise
        except PermanentError:
            pass  # no such route in this version: search instead
        since = datetime.fromtimestamp(not_before - self._skew, UTC).isoformat()
        hits = await self._search(
            version,
            {
                "query": _term("job_id", "is", [job_id]),
                "sorts": [{"field": "start_time", "sort_order": "desc"}],
                "count": 200,
            },
        )
        if hits and (wall_time(hits[-1].get("start_time")) or 0.0) >= not_before - self._skew:
            raise LookupUndecided(f"more than 200 executions of job {job_id} started since {since}")
        return hits


# -- documents --------------------------------------------------------------------------------


def _term(field: str, operator: str, values: list[str]) -> dict[str, Any]:
    return {"term_query": {"fields": [field], "operator": operator, "values": values}}


def _fault(response: Response) -> tuple[str | None, str]:
    """The fault document's ``type`` and ``message`` (the body text when there is none)."""
    detail = response.detail()
    if isinstance(detail, dict) and isinstance(detail.get("fault"), dict):
        fault = detail["fault"]
        kind = fault.get("type")
        return (str(kind) if kind else None), str(fault.get("message") or "(no message)")
    text = " ".join(str(detail).split())[:200] if detail else "(empty body)"
    return None, text


def _fault_type(detail: object) -> str | None:
    if isinstance(detail, dict) and isinstance(detail.get("fault"), dict):
        kind = detail["fault"].get("type")
        return str(kind) if kind else None
    return None


def _document(response: Response) -> dict[str, Any]:
    document = response.json()
    if not isinstance(document, dict):
        raise PermanentError(
            f"{response.url}: HTTP {response.status}: expected a JSON object, "
            f"got {type(document).__name__}"
        )
    return document


def _handle(document: Mapping[str, Any], job_id: str, version: str) -> RemoteHandle:
    execution = remote_id(document.get("id"), job_type="ocapi.job", field="id")
    handle: RemoteHandle = {"id": str(execution), "jobId": job_id, "apiVersion": version}
    if isinstance(document.get("start_time"), str):
        handle["startTime"] = document["start_time"]
    return handle


def _word(document: Mapping[str, Any]) -> str:
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
    word = _word(document)
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


# -- the job type -----------------------------------------------------------------------------


def validate(params: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    job_id = params.get("jobId")
    if "jobId" in params and (not isinstance(job_id, str) or not job_id.strip()):
        problems.append("field 'jobId': expected a non-empty string")
    if "parameters" in params:
        items = params["parameters"]
        if not isinstance(items, list):
            problems.append("field 'parameters': expected a list of {name, value} objects")
        else:
            for n, item in enumerate(items):
                problems += _parameter_problems(n, item)
    version = params.get("apiVersion")
    if "apiVersion" in params and (not isinstance(version, str) or not _VERSION.match(version)):
        problems.append("field 'apiVersion': expected a version such as 'v23_2'")
    policy = params.get("onJobAlreadyRunning")
    if "onJobAlreadyRunning" in params and policy not in ("fail", "wait"):
        problems.append("field 'onJobAlreadyRunning': expected 'fail' or 'wait'")
    return problems


def _parameter_problems(n: int, item: Any) -> list[str]:
    where = f"field 'parameters[{n}]"
    if not isinstance(item, dict):
        return [f"{where}': expected an object with 'name' and 'value'"]
    problems = []
    name, value = item.get("name"), item.get("value")
    if not isinstance(name, str) or not 1 <= len(name) <= 256:
        problems.append(f"{where}.name': expected a string of 1 to 256 characters")
    if not isinstance(value, str) or len(value) > 1000:
        problems.append(f"{where}.value': expected a string of at most 1000 characters")
    extra = sorted(set(item) - {"name", "value"})
    if extra:
        problems.append(f"{where}': unknown key {extra[0]!r} (only 'name' and 'value')")
    return problems


JOB_TYPES = (
    remote_job_type(
        "ocapi.job",
        OcapiConnector,
        connection_type="ocapi",
        required=("jobId",),
        optional=("parameters", "apiVersion", "onJobAlreadyRunning"),
        validate=validate,
        can_cancel=False,
        poll=SCHEDULE,
    ),
)
