"""The Celonis connector: execute, poll, cancel and find data job executions over the EMS
integration API (see the package's docstring for the whole behaviour)."""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

import anyio

from ...connections import Connection
from ...errors import AuthError, ConnectorError, NotFoundError, PermanentError
from ..base import (
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
    wall_time,
)
from ..http.client import HttpClient, Response
from .documents import configuration, execution_id_of, first_message, json_object

__all__ = ["SCHEDULE", "CelonisConnector", "auth_headers"]

IN_PROGRESS = frozenset({"QUEUED", "RUNNING"})
LOOKUP_ITEMS = 20  # latest executions a lookup reads
SCHEDULE = PollSchedule(initial=0.5, factor=2.0, cap=5.0)  # PyCelonis: 0.1, 0.3, 0.9, 2, 2...


def auth_headers(connection: Connection) -> dict[str, str]:
    creds = connection.credentials
    if creds.get("app_key"):
        return {"Authorization": f"AppKey {creds['app_key']}"}
    bearer = creds.get("token") or creds.get("api_key")
    return {"Authorization": f"Bearer {bearer}"} if bearer else {}


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
        execution_id = execution_id_of(response)
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
                text = first_message(detail.json())
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
        job = json_object(
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
        items = json_object(response).get("executionItems")
        return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []
