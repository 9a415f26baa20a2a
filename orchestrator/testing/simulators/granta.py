"""A Granta MI JobQueue server (REMOTE_APIS.md §4), under the service path ``/proxy/v1.svc/mi``.

A connection's ``base_url`` is the simulator's URL followed by ``/proxy/v1.svc/mi``:

    POST   …/v1alpha/job-queue/files                    multipart field ``file``: 200 "<file id>"
    POST   …/v1alpha/job-queue/jobs                     GsaCreateJobRequest: 201 GsaJob
    GET    …/v1alpha/job-queue/jobs                     ?jobType&status&nameFilter&
                                                        descriptionFilter&submitterNameFilter&
                                                        pageSize&pageNumber:
                                                        {totalResultCount, results}
    GET    …/v1alpha/job-queue/jobs/{id}                GsaJob
    DELETE …/v1alpha/job-queue/jobs/{id}                200, the job is gone (a cancel)
    GET    …/v1alpha/job-queue/jobs/{id}/outputs        ["<name>.log", ...]
    GET    …/v1alpha/job-queue/jobs/{id}/outputs:export ?fileName=: the file's bytes
    GET    …/v1alpha/job-queue/current-user             {isAdmin, username, hasWriteAccess}
    GET    …/v1alpha/schema/mi-version                  {version, majorMinorVersion, ...}

Statuses move ``Pending`` → ``Running`` → ``Succeeded`` (or ``Failed``); a job whose
``scheduledExecutionDate`` lies in the future stays ``Pending`` until then (its behaviour's
``queued`` time is lengthened). The rule target is the job's ``name``.

A behaviour's ``outcome: "failure"`` ends the job the way Granta reports a failed import or
export: status ``Succeeded`` with ``jobSpecificOutputs.summary`` (a JSON-encoded string) saying
``FinishedSuccessfully: false`` (imports) or ``NumberOfErrors: 1`` (exports), and ``Errors:
[<message>]``. A behaviour whose ``outputs`` hold ``"status": "Failed"`` ends ``Failed``
instead (a job that could not complete). Other ``outputs`` keys are merged into the summary
of a successful job. Every completed job has the output file ``<name>.log``; a successful
export also ``<name>.xlsx``.

Auth: HTTP Basic, user ``sim`` and password ``sim`` by default, or ``Bearer <token>`` when a
``token`` is given; otherwise 401 ``Unauthorized`` (text) with ``WWW-Authenticate: Basic``.
``application_names`` counts the ``X-Granta-ApplicationName`` headers received.
``counters.polls`` counts ``GET …/jobs/{id}``; ``counters.cancels`` counts DELETEs.
``counters.submissions`` counts jobs per ``Idempotency-Key`` header (Granta ignores the
header: there is no deduplication).

[UNCONFIRMED] choices: every error body is ``text/plain`` (404 ``Job not found``, 404 ``Job or
file not found``, 400 naming the problem); the name and description filters match substrings,
ignoring case; ``pageNumber`` is 1-based and without ``pageSize`` every job is returned; DELETE
removes a job in any state (Running included) and answers 200 with no body; the file id is a
uuid; ``culture`` is not checked.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import BodyPartReader, web

from .base import SimJob, Simulator

SERVICE = "/proxy/v1.svc/mi"
API = f"{SERVICE}/v1alpha/job-queue"
JOB_KINDS = ("ExcelImportJob", "ExcelExportJob", "TextImportJob")
FILE_TYPES = ("Template", "Data", "Combined", "Attachment")
_EXPORT = "ExcelExportJob"


def _text(message: str, status: int) -> web.Response:
    return web.Response(status=status, text=message)


def _iso(wall: float | None) -> str | None:
    if wall is None:
        return None
    return datetime.fromtimestamp(wall, UTC).isoformat().replace("+00:00", "Z")


class _BadRequest(Exception):
    pass


class GrantaSimulator(Simulator):
    name = "granta"

    def __init__(
        self,
        *,
        username: str = "sim",
        password: str = "sim",
        token: str | None = None,
        wall: Callable[[], float] = time.time,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.username = username
        self._basic = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self._bearer = f"Bearer {token}" if token else None
        self.wall = wall
        self.files: dict[str, tuple[str, bytes]] = {}  # id -> (file name, content)
        self.application_names: collections.Counter[str] = collections.Counter()

    def reset(self) -> None:
        super().reset()
        self.files.clear()
        self.application_names.clear()

    def authorized(self, request: web.Request) -> bool:
        name = request.headers.get("X-Granta-ApplicationName")
        if name is not None:
            self.application_names[name] = self.application_names[name] + 1
        header = request.headers.get("Authorization")
        return header is not None and header in (self._basic, self._bearer)

    def unauthorized(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            status=401, text="Unauthorized", headers={"WWW-Authenticate": 'Basic realm="MI"'}
        )

    def routes(self, app: web.Application) -> None:
        app.router.add_post(f"{API}/files", self._upload)
        app.router.add_post(f"{API}/jobs", self._create)
        app.router.add_get(f"{API}/jobs", self._list)
        app.router.add_get(f"{API}/jobs/{{id}}", self._get)
        app.router.add_delete(f"{API}/jobs/{{id}}", self._delete)
        app.router.add_get(f"{API}/jobs/{{id}}/outputs", self._outputs)
        app.router.add_get(f"{API}/jobs/{{id}}/outputs:export", self._export)
        app.router.add_get(f"{API}/current-user", self._current_user)
        app.router.add_get(f"{SERVICE}/v1alpha/schema/mi-version", self._version)

    # -- the view of a job ---------------------------------------------------------------

    def status(self, job: SimJob) -> str:
        phase = job.phase(self.clock())
        if phase == "queued":
            return "Pending"
        if phase == "running":
            return "Running"
        if phase == "cancelled":
            return "Cancelled"
        if phase == "failed" and job.behaviour.outputs.get("status") == "Failed":
            return "Failed"
        return "Succeeded"

    def _summary(self, job: SimJob) -> dict[str, Any]:
        b = job.behaviour
        failed = job.phase(self.clock()) == "failed"
        errors = [b.message] if failed else []
        if job.data["type"] == _EXPORT:
            summary: dict[str, Any] = {
                "ExportedRecords": 0 if failed else job.data["records"],
                "NumberOfTasks": 1,
                "NumberOfErrors": len(errors),
                "Errors": errors,
            }
        else:
            summary = {
                "FinishedSuccessfully": not failed,
                "NumberOfErrors": len(errors),
                "Errors": errors,
                "NumberOfRecordsCreated": 0 if failed else 1,
                "NumberOfRecordsUpdated": 0,
            }
        if not failed:
            summary.update({k: v for k, v in b.outputs.items() if k != "status"})
        return summary

    def output_files(self, job: SimJob) -> dict[str, bytes]:
        status = self.status(job)
        if status not in ("Succeeded", "Failed"):
            return {}
        name = job.name or job.id
        log = f"INFO Task started: {name}\n"
        if job.phase(self.clock()) == "failed":
            log += f"ERROR {job.behaviour.message}\n"
        files = {f"{name}.log": (log + f"INFO Task finished: {status}\n").encode()}
        if job.data["type"] == _EXPORT and job.phase(self.clock()) == "succeeded":
            files[f"{name}.xlsx"] = b"PK\x03\x04 simulated export of " + name.encode()
        return files

    def view(self, job: SimJob) -> dict[str, Any]:
        status = self.status(job)
        b = job.behaviour
        submitted = job.data["submitted"]
        started = submitted + b.queued if status != "Pending" else None
        done = None
        if status in ("Succeeded", "Failed", "Cancelled"):
            done = submitted + (job.ended_at() - job.created)
        pending = sorted(
            (j for j in self.jobs.values() if self.status(j) == "Pending"), key=lambda j: j.created
        )
        position = next((i + 1 for i, j in enumerate(pending) if j is job), None)
        outputs = {}
        if status in ("Succeeded", "Failed"):
            outputs = {"summary": json.dumps(self._summary(job))}
        return {
            "id": job.id,
            "name": job.name,
            "description": job.data.get("description"),
            "type": job.data["type"],
            "submitterName": self.username,
            "submitterRoles": ["MI_WRITE"],
            "submissionDate": _iso(submitted),
            "scheduledExecutionDate": job.data.get("scheduledExecutionDate"),
            "executionDate": _iso(started),
            "completionDate": _iso(done),
            "status": status,
            "inputFileIds": job.data["inputFileIds"],
            "outputFileNames": list(self.output_files(job)),
            "position": position,
            "jobSpecificOutputs": outputs,
        }

    # -- handlers ------------------------------------------------------------------------

    async def _upload(self, request: web.Request) -> web.Response:
        if request.content_type != "multipart/form-data":
            return _text("Expected multipart/form-data with a 'file' field", 400)
        try:
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    return _text("Expected a 'file' field", 400)
                if isinstance(part, BodyPartReader) and part.name == "file":
                    content = await part.read()
                    filename = part.filename or "file"
                    break
        except (ValueError, AssertionError, RuntimeError):
            return _text("Malformed multipart body", 400)
        file_id = str(uuid.uuid4())
        self.files[file_id] = (filename, bytes(content))
        return web.json_response(file_id)

    async def _create(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _text("The request body is not valid JSON", 400)
        try:
            data = self._check(body)
        except _BadRequest as exc:
            return _text(str(exc), 400)
        job = self.accept(
            str(uuid.uuid4()),
            target=body["name"],
            key=request.headers.get("Idempotency-Key"),
            name=body["name"],
            data=data,
        )
        when = data.get("scheduledAt")
        if when is not None and when > data["submitted"]:
            extra = when - data["submitted"]
            job.behaviour = dataclasses.replace(job.behaviour, queued=job.behaviour.queued + extra)
        return web.json_response(self.view(job), status=201)

    def _check(self, body: Any) -> dict[str, Any]:
        """The job's data from a ``GsaCreateJobRequest``; :class:`_BadRequest` if it is wrong."""
        if not isinstance(body, dict):
            raise _BadRequest("The request body must be a JSON object")
        kind = body.get("type")
        if kind not in JOB_KINDS:
            raise _BadRequest(f"Unknown job type {kind!r}")
        if not isinstance(body.get("name"), str) or not body["name"].strip():
            raise _BadRequest("A job name is required")
        ids = body.get("inputFileIds") or []
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise _BadRequest("inputFileIds must be a list of file ids")
        for file_id in ids:
            if file_id not in self.files:
                raise _BadRequest(f"Input file {file_id} not found")
        names = {self.files[i][0] for i in ids}
        try:
            parameters = json.loads(body["parameters"])
        except (KeyError, TypeError, ValueError):
            raise _BadRequest("parameters must be a JSON-encoded string") from None
        data: dict[str, Any] = {
            "type": kind,
            "description": body.get("description"),
            "inputFileIds": ids,
            "parameters": parameters,
            "submitted": self.wall(),
            "records": 0,
        }
        if kind == _EXPORT:
            if not isinstance(parameters, dict) or not isinstance(
                parameters.get("DatabaseKey"), str
            ):
                raise _BadRequest("Export parameters need a DatabaseKey")
            records = parameters.get("InputRecords")
            if not isinstance(records, list) or not records:
                raise _BadRequest("Export parameters need InputRecords")
            if parameters.get("TemplateFileName") not in names:
                raise _BadRequest("TemplateFileName does not name an input file")
            data["records"] = len(records)
        else:
            if not isinstance(parameters, list) or not parameters:
                raise _BadRequest("Import parameters must be a list of files")
            for item in parameters:
                if not isinstance(item, dict) or item.get("fileType") not in FILE_TYPES:
                    raise _BadRequest("Each import file needs a fileType")
                if item.get("filePath") not in names:
                    raise _BadRequest(f"File {item.get('filePath')!r} is not an input file")
        when = body.get("scheduledExecutionDate")
        if when is not None:
            try:
                parsed = datetime.fromisoformat(str(when))
            except ValueError:
                raise _BadRequest("scheduledExecutionDate is not a valid date") from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            data["scheduledExecutionDate"] = when
            data["scheduledAt"] = parsed.timestamp()
        return data

    async def _list(self, request: web.Request) -> web.Response:
        q = request.query
        jobs = sorted(self.jobs.values(), key=lambda j: j.created)
        found = []
        for job in jobs:
            view = self.view(job)
            if "jobType" in q and view["type"] != q["jobType"]:
                continue
            if "status" in q and view["status"] != q["status"]:
                continue
            if not all(
                q[f].lower() in str(view[k] or "").lower()
                for f, k in (
                    ("nameFilter", "name"),
                    ("descriptionFilter", "description"),
                    ("submitterNameFilter", "submitterName"),
                )
                if f in q
            ):
                continue
            found.append(view)
        page = found
        if "pageSize" in q:
            try:
                size = int(q["pageSize"])
                number = int(q.get("pageNumber", "1"))
            except ValueError:
                return _text("pageSize and pageNumber must be integers", 400)
            page = found[(number - 1) * size : number * size] if size > 0 and number > 0 else []
        return web.json_response({"totalResultCount": len(found), "results": page})

    def _job(self, request: web.Request) -> SimJob | None:
        return self.jobs.get(request.match_info["id"])

    async def _get(self, request: web.Request) -> web.Response:
        job = self._job(request)
        if job is None:
            return _text("Job not found", 404)
        self.counters.polls += 1
        return web.json_response(self.view(job))

    async def _delete(self, request: web.Request) -> web.Response:
        job = self._job(request)
        if job is None:
            return _text("Job not found", 404)
        self.counters.cancels += 1
        del self.jobs[job.id]
        return web.Response(status=200)

    async def _outputs(self, request: web.Request) -> web.Response:
        job = self._job(request)
        if job is None:
            return _text("Job not found", 404)
        return web.json_response(list(self.output_files(job)))

    async def _export(self, request: web.Request) -> web.Response:
        job = self._job(request)
        content = (
            None if job is None else self.output_files(job).get(request.query.get("fileName", ""))
        )
        if content is None:
            return _text("Job or file not found", 404)
        return web.Response(body=content, content_type="application/octet-stream")

    async def _current_user(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"isAdmin": False, "username": self.username, "hasWriteAccess": True}
        )

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "version": "25.2.0.0",
                "majorMinorVersion": "25.2",
                "binaryCompatibilityVersion": "25.2.0.0",
            }
        )
