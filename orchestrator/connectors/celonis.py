"""The ``celonis.dataJob`` job type: Celonis EMS data jobs (REMOTE_APIS.md §3).

Fields: ``poolId`` and ``jobId`` (required); the ``JobExecutionConfiguration``: ``mode``
(``FULL`` or ``DELTA``, default ``DELTA``), ``transformations`` (task ids), ``extractions``
(``[{extractionId, tables?}]``), ``dataModels`` (``[{dataModelExecutionId, tables?}]``); each
``executeOnlySubsetOf...``/``loadOnlySubset...`` flag is sent true only when its list is given
(even empty), as PyCelonis does; ``waitIfRunning`` (default false).

Connection: ``base_url`` is the team URL (``https://<team>.<realm>.celonis.cloud``). Auth is
``Authorization: AppKey <app_key>`` with credential ``app_key``, else ``Bearer <token>`` with
credential ``token`` (or ``api_key``). Option ``appear_grace`` (seconds, default 60): how long
after the submission the job's status may still describe an older execution.

Submit: ``GET /integration/api/pools/{p}/logs/status``; if the job is ``RUNNING`` or ``QUEUED``
the submission fails ("an execution is already in progress") unless ``waitIfRunning``, which
polls on the job type's schedule until it is not. Then ``POST .../pools/{p}/jobs/{j}/execute``
with the configuration and the ``Idempotency-Key`` header (which the remote ignores).

Handle: ``{"poolId", "jobId", "submittedAt"}`` (wall-clock seconds) plus ``previousStart``, the
``lastExecutionStartDate`` the status showed before the submission (only when there was one),
and ``executionId`` when the execute answer carried one.

Status: ``logs/status`` is per job, not per execution. While it still shows ``previousStart``
with a terminal status, the new execution has not appeared yet: the poll says running, for
``appear_grace`` seconds after ``submittedAt``, then fails. A job missing from the status list
is running within that grace and :class:`NotFoundError` after it. ``QUEUED``/``RUNNING`` poll
again; ``SUCCESS`` succeeds; ``FAIL`` fails with the first log message of each failed task of
the latest execution (``logs/{j}/executions``, ``logs/executions?type=TASK``,
``logs/executions/detail``); ``CANCEL`` is cancelled; ``SKIPPED`` fails (it is not success);
any other value fails as an unknown remote status.

Cancel: ``POST .../pools/{p}/jobs/{j}/cancel``; it cancels the job's current execution.

Find: nothing on the remote carries the key. :meth:`CelonisConnector.find` takes the data job's
execution that started since the submission's write-ahead time (less the connection option
``clock_skew``, default 5 s) and that no other stored attempt holds, from the job's latest
executions (``logs/{j}/executions``) and its current execution (``currentExecutionId`` of ``GET
pools/{p}/jobs/{j}``, started at the status's ``lastExecutionStartDate``); the handle then has
its ``executionId``. None: ``None``. Several, or another attempt submitted the job since without
knowing its execution id: :class:`LookupUndecided`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

import anyio

from ..connections import Connection
from ..errors import AuthError, ConnectorError, NotFoundError, PermanentError
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

__all__ = ["JOB_TYPES", "CelonisConnector", "auth_headers", "configuration", "validate"]

IN_PROGRESS = frozenset({"QUEUED", "RUNNING"})
MODES = ("FULL", "DELTA")
LOOKUP_ITEMS = 20  # latest executions a lookup reads
SCHEDULE = PollSchedule(initial=0.5, factor=2.0, cap=5.0)  # PyCelonis: 0.1, 0.3, 0.9, 2, 2...
FIELDS = (
    "mode",
    "transformations",
    "extractions",
    "dataModels",
    "waitIfRunning",
)


def auth_headers(connection: Connection) -> dict[str, str]:
    creds = connection.credentials
    if creds.get("app_key"):
        return {"Authorization": f"AppKey {creds['app_key']}"}
    bearer = creds.get("token") or creds.get("api_key")
    return {"Authorization": f"Bearer {bearer}"} if bearer else {}


def configuration(params: Mapping[str, Any]) -> dict[str, Any]:
    """The ``JobExecutionConfiguration`` body (REMOTE_APIS.md §3.3)."""
    transformations = params.get("transformations")
    extractions = params.get("extractions")
    data_models = params.get("dataModels")
    return {
        "poolId": params["poolId"],
        "jobId": params["jobId"],
        "mode": params.get("mode") or "DELTA",
        "executeOnlySubsetOfTransformations": transformations is not None,
        "transformations": list(transformations or []),
        "executeOnlySubsetOfExtractions": extractions is not None,
        "extractions": [
            {
                "extractionId": item["extractionId"],
                "loadOnlySubsetOfTables": item.get("tables") is not None,
                "tables": list(item.get("tables") or []),
            }
            for item in extractions or []
        ],
        "loadOnlySubsetOfDataModels": data_models is not None,
        "dataModels": [
            {
                "dataModelExecutionId": item["dataModelExecutionId"],
                "tables": list(item.get("tables") or []),
            }
            for item in data_models or []
        ],
    }


class CelonisConnector(ConnectorBase):
    def __init__(
        self,
        connection: Connection,
        client: HttpClient | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.connection = connection
        self._auth = auth_headers(connection)
        self.client = client or HttpClient(connection, headers=self._auth)
        self._sleep = sleep
        self._wall = wall
        self._rng = rng or random.Random()
        self._grace = float(connection.options.get("appear_grace", 60.0))
        self._skew = clock_skew(connection)

    async def aclose(self) -> None:
        await self.client.aclose()

    # -- requests --

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        if not self._auth:
            raise AuthError(
                f"connection {self.connection.name!r}: a credential app_key, token or api_key "
                "is required for Celonis"
            )
        return await self.client.request(method, path, params=params, json=json, headers=headers)

    @staticmethod
    def _pool(pool_id: str) -> str:
        return f"/integration/api/pools/{quote(pool_id, safe='')}"

    async def _status(self, pool_id: str, job_id: str) -> dict[str, Any] | None:
        """The job's ``EntityStatus`` from the pool's status list; ``None`` if it is absent."""
        response = await self._request("GET", f"{self._pool(pool_id)}/logs/status")
        entries = response.json()
        if not isinstance(entries, list):
            raise PermanentError(
                f"GET {response.url}: expected a list of statuses, got {type(entries).__name__}"
            )
        for entry in entries:
            if isinstance(entry, dict) and entry.get("id") == job_id:
                return entry
        return None

    # -- submit --

    async def submit(self, submission: Submission) -> RemoteHandle:
        p = submission.params
        pool_id, job_id = str(p["poolId"]), str(p["jobId"])
        entry = await self._status(pool_id, job_id)
        if entry is not None and str(entry.get("status")) in IN_PROGRESS:
            if not p.get("waitIfRunning"):
                raise PermanentError(
                    f"data job {job_id} in pool {pool_id}: an execution is already in progress "
                    f"(status {entry.get('status')}); set waitIfRunning to wait for it"
                )
            entry = await self._wait_idle(pool_id, job_id)
        handle: RemoteHandle = {"poolId": pool_id, "jobId": job_id, "submittedAt": self._wall()}
        if entry is not None and entry.get("lastExecutionStartDate") is not None:
            handle["previousStart"] = entry["lastExecutionStartDate"]
        response = await self._request(
            "POST",
            f"{self._pool(pool_id)}/jobs/{quote(job_id, safe='')}/execute",
            json=configuration(p),
            headers={"Idempotency-Key": submission.idempotency_key},
        )
        execution_id = _execution_id(response)
        if execution_id is not None:
            handle["executionId"] = execution_id
        return handle

    async def _wait_idle(self, pool_id: str, job_id: str) -> dict[str, Any] | None:
        polls = 0
        while True:
            polls += 1
            await self._sleep(SCHEDULE.delay(polls, self._rng.random()))
            entry = await self._status(pool_id, job_id)
            if entry is None or str(entry.get("status")) not in IN_PROGRESS:
                return entry

    # -- poll --

    async def poll(self, handle: RemoteHandle) -> PollResult:
        pool_id, job_id = str(handle["poolId"]), str(handle["jobId"])
        entry = await self._status(pool_id, job_id)
        waited = self._wall() - float(handle.get("submittedAt", 0.0))
        if entry is None:
            if waited < self._grace:
                return PollResult(RemoteStatus.RUNNING, remote_status=None)
            raise NotFoundError(
                f"data job {job_id} has no status in pool {pool_id} ({waited:.0f}s after "
                "submission)"
            )
        status = str(entry.get("status"))
        if status in IN_PROGRESS:
            return PollResult(RemoteStatus.RUNNING, remote_status=status)
        if "previousStart" in handle and entry.get("lastExecutionStartDate") == handle.get(
            "previousStart"
        ):
            if waited < self._grace:  # still the execution before ours
                return PollResult(RemoteStatus.RUNNING, remote_status=status)
            return PollResult(
                RemoteStatus.FAILED,
                remote_status=status,
                error=(
                    f"no new execution of data job {job_id} appeared within {self._grace:g}s "
                    f"of submission (the status {status} is that of the execution started "
                    f"at {handle['previousStart']})"
                ),
            )
        outputs: dict[str, Any] = {"poolId": pool_id, "jobId": job_id, "status": status}
        if entry.get("lastExecutionStartDate") is not None:
            outputs["lastExecutionStartDate"] = entry["lastExecutionStartDate"]
        if status == "CANCEL":
            return PollResult(
                RemoteStatus.CANCELLED,
                remote_status=status,
                error="the execution was cancelled",
                outputs=outputs,
            )
        if status == "SKIPPED":
            return PollResult(
                RemoteStatus.FAILED,
                remote_status=status,
                error="the data job execution was SKIPPED, which is not success",
                outputs=outputs,
            )
        if status not in ("SUCCESS", "FAIL"):
            return PollResult(
                RemoteStatus.FAILED,
                remote_status=status,
                error=f"unknown remote status {status!r}",
                outputs=outputs,
            )
        latest = await self._latest(pool_id, job_id)
        if latest is not None:
            for source in ("executionId", "startDate", "endDate", "mode"):
                if latest.get(source) is not None:
                    outputs[source] = latest[source]
        execution_id = handle.get("executionId") or outputs.get("executionId")
        if status == "SUCCESS":
            return PollResult(RemoteStatus.SUCCEEDED, remote_status=status, outputs=outputs)
        error = await self._failure(pool_id, job_id, execution_id)
        return PollResult(RemoteStatus.FAILED, remote_status=status, error=error, outputs=outputs)

    async def _latest(self, pool_id: str, job_id: str) -> dict[str, Any] | None:
        """The latest execution item of the job, or ``None`` if it cannot be read."""
        try:
            response = await self._request(
                "GET",
                f"{self._pool(pool_id)}/logs/{quote(job_id, safe='')}/executions",
                params={"limit": 1, "page": 0},
            )
            items = response.json().get("executionItems")
        except (ConnectorError, AttributeError):
            return None
        if isinstance(items, list) and items and isinstance(items[0], dict):
            return items[0]
        return None

    async def _failure(self, pool_id: str, job_id: str, execution_id: Any) -> str:
        """Each failed task's first log message, joined; the status when there are none."""
        fallback = f"data job {job_id} ended with status FAIL"
        if execution_id is None:
            return fallback
        try:
            response = await self._request(
                "GET",
                f"{self._pool(pool_id)}/logs/executions",
                params={"executionId": execution_id, "type": "TASK", "id": job_id},
            )
            tasks = response.json()
            messages = []
            for task in tasks if isinstance(tasks, list) else []:
                if not isinstance(task, dict) or task.get("status") != "FAIL":
                    continue
                task_id = task.get("taskId") or task.get("id")
                detail = await self._request(
                    "GET",
                    f"{self._pool(pool_id)}/logs/executions/detail",
                    params={
                        "executionId": execution_id,
                        "id": task_id,
                        "type": "TASK",
                        "limit": 100,
                        "page": 0,
                    },
                )
                text = _first_message(detail.json())
                name = task.get("name") or task_id
                messages.append(f"{name}: {text}" if text else f"{name}: failed")
        except ConnectorError as exc:
            return f"{fallback} (the task logs could not be read: {exc})"
        return "; ".join(messages) or fallback

    # -- cancel, find --

    async def cancel(self, handle: RemoteHandle) -> CancelResult:
        pool_id, job_id = str(handle["poolId"]), str(handle["jobId"])
        response = await self._request(
            "POST", f"{self._pool(pool_id)}/jobs/{quote(job_id, safe='')}/cancel"
        )
        return CancelResult(True, f"cancel requested (HTTP {response.status})")

    async def find(self, submission: Submission) -> RemoteHandle | None:
        """The data job's execution started since the write-ahead record that no other
        attempt holds: the job's latest executions (``logs/{j}/executions``) and its current
        execution (``currentExecutionId`` of ``GET pools/{p}/jobs/{j}``, seed 000)."""
        not_before = submission.not_before
        if not_before is None:
            raise LookupUndecided("the time the submission was written ahead is not known")
        p = submission.params
        pool_id, job_id = str(p["poolId"]), str(p["jobId"])
        claimed, unnamed = set(), 0
        for held in await submission.claimed():
            if (held.get("poolId"), held.get("jobId")) != (pool_id, job_id):
                continue
            if held.get("executionId") is not None:
                claimed.add(str(held["executionId"]))
            elif float(held.get("submittedAt") or 0.0) >= not_before - self._skew:
                unnamed += 1  # submitted since, its execution id never known: any may be its
        starts: dict[str, float | None] = {}
        for item in await self._executions(pool_id, job_id):
            if item.get("executionId") is not None:
                starts.setdefault(str(item["executionId"]), wall_time(item.get("startDate")))
        job = _json_object(
            await self._request("GET", f"{self._pool(pool_id)}/jobs/{quote(job_id, safe='')}")
        )
        current = job.get("currentExecutionId")
        if current is not None and str(current) not in starts:  # the list lags behind
            entry = await self._status(pool_id, job_id)
            if entry is not None:
                starts[str(current)] = wall_time(entry.get("lastExecutionStartDate"))
        found = [
            execution
            for execution, started in starts.items()
            if execution not in claimed and after(started, not_before, self._skew)
        ]
        if found and unnamed:
            raise LookupUndecided(
                f"{unnamed} other attempt(s) submitted data job {job_id} since, and which "
                "execution each started is not known"
            )
        if len(found) > 1:
            raise LookupUndecided(
                f"{len(found)} executions of data job {job_id} started since the submission "
                f"and no other attempt holds them: {', '.join(found[:5])}"
            )
        if not found:
            return None
        return {
            "poolId": pool_id,
            "jobId": job_id,
            "submittedAt": not_before,
            "executionId": found[0],
        }

    async def _executions(self, pool_id: str, job_id: str) -> list[dict[str, Any]]:
        """The job's latest execution items (the first page, newest first)."""
        response = await self._request(
            "GET",
            f"{self._pool(pool_id)}/logs/{quote(job_id, safe='')}/executions",
            params={"limit": LOOKUP_ITEMS, "page": 0},
        )
        items = _json_object(response).get("executionItems")
        return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def _json_object(response: Response) -> dict[str, Any]:
    document = response.json()
    if not isinstance(document, dict):
        raise PermanentError(
            f"GET {response.url}: expected a JSON object, got {type(document).__name__}"
        )
    return document


def _execution_id(response: Response) -> str | None:
    """The execution id, if the execute answer (its body is undocumented) carries one."""
    if not response.body.strip():
        return None
    try:
        document = response.json()
    except PermanentError:
        return None
    if isinstance(document, dict):
        for key in ("executionId", "currentExecutionId"):
            if document.get(key) is not None:
                return str(remote_id(document[key], job_type="celonis.dataJob", field=key))
    return None


def _first_message(document: Any) -> str | None:
    """The first ERROR message of a ``logs/executions/detail`` page, else the first one."""
    messages = document.get("logMessages") if isinstance(document, dict) else None
    if not isinstance(messages, list):
        return None
    texts = [
        (m.get("level"), str(m["logMessage"]))
        for m in messages
        if isinstance(m, dict) and m.get("logMessage")
    ]
    for level, text in texts:
        if level == "ERROR":
            return text
    return texts[0][1] if texts else None


# -- the job type -----------------------------------------------------------------------------


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


def _items(name: str, value: Any, id_key: str) -> list[str]:
    if not isinstance(value, list):
        return [f"field {name!r}: expected a list of {{{id_key}, tables?}} objects"]
    problems = []
    for n, item in enumerate(value):
        where = f"field '{name}[{n}]"
        if not isinstance(item, dict):
            problems.append(f"{where}': expected an object with {id_key!r}")
            continue
        if not isinstance(item.get(id_key), str) or not item[id_key]:
            problems.append(f"{where}.{id_key}': required, a non-empty string")
        if "tables" in item and not _strings(item["tables"]):
            problems.append(f"{where}.tables': expected a list of table ids")
        extra = sorted(set(item) - {id_key, "tables"})
        if extra:
            problems.append(f"{where}': unknown key {extra[0]!r}")
    return problems


def validate(params: Mapping[str, Any]) -> list[str]:
    problems = []
    for name in ("poolId", "jobId"):
        if name in params and (not isinstance(params[name], str) or not params[name].strip()):
            problems.append(f"field {name!r}: expected a non-empty string")
    if "mode" in params and params["mode"] not in MODES:
        problems.append("field 'mode': expected 'FULL' or 'DELTA'")
    if "transformations" in params and not _strings(params["transformations"]):
        problems.append("field 'transformations': expected a list of task ids")
    if "extractions" in params:
        problems += _items("extractions", params["extractions"], "extractionId")
    if "dataModels" in params:
        problems += _items("dataModels", params["dataModels"], "dataModelExecutionId")
    if "waitIfRunning" in params and not isinstance(params["waitIfRunning"], bool):
        problems.append("field 'waitIfRunning': expected true or false")
    return problems


JOB_TYPES = (
    remote_job_type(
        "celonis.dataJob",
        CelonisConnector,
        connection_type="celonis",
        required=("poolId", "jobId"),
        optional=FIELDS,
        validate=validate,
        poll=SCHEDULE,
    ),
)
