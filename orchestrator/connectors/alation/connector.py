"""The Alation connector: start a job by a request or follow one by id or name, and poll jobs,
two-job chains and data dictionary tasks (see the package's docstring for the whole behaviour)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...connections import Connection
from ...errors import AuthError, ConnectorError, PermanentError
from ..base import (
    CancelResult,
    ConnectorBase,
    LookupUndecided,
    PollResult,
    PollSchedule,
    RemoteHandle,
    RemoteStatus,
    Submission,
)
from ..http.client import HttpClient, Response
from .documents import (
    clip,
    error_message,
    failed_records,
    follow_handle,
    job_label,
    job_reference,
    job_result,
    short,
    started,
    status_word,
    tracking_id,
)

__all__ = ["NO_CANCEL", "SCHEDULE", "AlationConnector"]

JOB_API = "/api/v1/bulk_metadata/job/"
TASK_API = "/integration/v1/data_dictionary/tasks/{id}"
NO_LOOKUP = (
    "Alation's job API reads one job by the id or name that the start answer gives, and lists "
    "none: a job whose start answer was lost cannot be found"
)
NO_CANCEL = "Alation's job API has no cancel endpoint; the job keeps running on the remote"
SCHEDULE = PollSchedule(initial=1.0, factor=1.5, cap=15.0)  # the SDK polls every 2-3 s


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
        follow = follow_handle(p)
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
        handle = started(document, path)
        if handle is None:
            why = error_message(document) or short(document)
            raise PermanentError(
                f"{method} {path}: HTTP {response.status}: the answer starts no job: {why}",
                status=response.status,
                detail=document,
            )
        return handle

    async def find(self, submission: Submission) -> RemoteHandle | None:
        follow = follow_handle(submission.params)
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
        first = job_reference(handle)
        if handle.get("phase") == 2 and handle.get("nextJobId") is not None:
            second = await self._job(job_id=handle["nextJobId"])
            return job_result(
                second, f"job {handle['nextJobId']}", {"jobIds": [first, handle["nextJobId"]]}
            )
        if handle.get("jobName") is not None:
            document = await self._job(name=str(handle["jobName"]))
        else:
            document = await self._job(job_id=handle["jobId"])
        word = status_word(document)
        next_id = tracking_id(document.get("result")) if word == "successful" else None
        if next_id is None:
            return job_result(document, job_label(handle), {})
        handle["phase"] = 2  # the engine's copy of the handle: the next poll goes straight there
        handle["nextJobId"] = next_id
        second = await self._job(job_id=next_id)
        return job_result(second, f"job {next_id}", {"jobIds": [first, next_id]})

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
            records = failed_records(task)
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
        return clip("; ".join(messages))
