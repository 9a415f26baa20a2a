"""The Granta MI JobQueue connector: upload the inputs and create the job, poll it, download
its outputs, delete it while pending to cancel it, and find it by the key in its description
(see the package's docstring for the whole behaviour)."""

from __future__ import annotations

import os
from pathlib import Path

import anyio

from ...connections import Connection
from ...errors import ConfigError, ConnectorError, NotFoundError, PermanentError, TransientError
from ..base import (
    CancelResult,
    ConnectorBase,
    LookupUndecided,
    PollResult,
    RemoteHandle,
    RemoteStatus,
    Submission,
    remote_id,
)
from ..http.auth import bearer_or_basic
from ..http.client import HttpClient
from .documents import (
    FILES,
    JOBS,
    create_request,
    file_id,
    input_files,
    job_name,
    job_path,
    json_object,
    key_marker,
    local_name,
    multipart,
    poll_result,
)

__all__ = ["GrantaConnector", "auth_headers"]

APPLICATION_NAME = "orchestrator"
MAX_FILE_BYTES = 256 * 1024 * 1024


def auth_headers(connection: Connection) -> dict[str, str]:
    """Basic (``username``/``password``) or Bearer (``token``), and the application name."""
    name = str(connection.options.get("application_name", APPLICATION_NAME))
    headers = {"X-Granta-ApplicationName": name}
    return {**headers, **bearer_or_basic(connection.credentials)}


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
        job = json_object(response, "a job")
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
        body, content_type = multipart(path.name, content)
        # An upload only adds a short-lived file: sending it again after a reset is harmless.
        response = await self.client.request(
            "POST", FILES, data=body, headers={"Content-Type": content_type}, idempotent=True
        )
        return file_id(response)

    # -- poll --

    async def poll(self, handle: RemoteHandle) -> PollResult:
        job_id = str(handle["id"])
        try:
            response = await self.client.request("GET", job_path(job_id))
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
        result = poll_result(handle, json_object(response, "a job"))
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
        target = folder / local_name(name)
        shown = f"output file {name!r} of job {job_id}"
        try:
            await anyio.Path(folder).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PermanentError(
                f"{shown}: cannot write {target}: {exc.strerror or type(exc).__name__}"
            ) from None
        await self.client.download(
            f"{job_path(job_id)}/outputs:export",
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
            job = json_object(await self.client.request("GET", job_path(job_id)), "a job")
        except NotFoundError:
            return CancelResult(True, "the job is no longer on the server")
        status = job.get("status")
        if status == "Pending":
            await self.client.request("DELETE", job_path(job_id), ok=(200, 202, 204, 404))
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
        page = json_object(response, "a job list")
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
