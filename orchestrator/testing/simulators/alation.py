"""Alation's asynchronous job APIs (REMOTE_APIS.md §5), as a server would answer.

    POST /integration/v2/custom_field/              [{field_type, name_singular, …}]
                                                    200 {"job_id": N}
    PUT  /integration/v2/custom_field_value/async/  [{otype, oid, field_id, value}]
                                                    200 {"job_id": N}; that job's result names a
                                                    second job "(can be tracked using jobs API): M"
    POST /integration/v1/data_quality/              {…}  200 {"job_id": N, "href"}
    POST|PUT /integration/v1/business_policies/     [{…}]  202 {"task": {id, type, state: QUEUED,
                                                    status: NA, ts_started, links: []}}
    POST /api/v1/bulk_metadata/extraction/{ds_id}   200 {"job_name": "MetadataExtraction#…"}
    POST /api/v1/bulk_metadata/file_upload/{fs_id}/ 200 {"job": {"id": N}}
    GET  /api/v1/bulk_metadata/job/?id=N | ?name=…  200 {"status", "msg", "result"}

Statuses over time: ``running``, then ``successful`` or ``failed``. ``result`` has each
endpoint's shape: custom fields a list of JSON strings (``{"msg", "data": {"field_ids"}}``),
the custom field value chain a list of plain strings, data quality a dict, business policies a
prose string, extraction a JSON-encoded string (``{"number_received", "updated_objects",
"error_objects", "error"}``), file upload a list of plain strings. A failure's message goes into
the result in the same shape. A behaviour whose ``outputs`` has ``"result"`` answers that result
instead (to produce any shape over real HTTP).

The custom field value chain: the PUT's job (the first) succeeds after ``chain_delay`` seconds;
its result names the second job, which starts when the first ends and follows the behaviour.

Errors: the list shape (``[{"name_singular": ["This field is required."]}]``) for a bad custom
field body; the dict shape (``{"code": "400000", "title": "Invalid Payload", "detail",
"errors"}``) for other bad bodies and a bad job query; an unknown job id or name is 404 in the
dict shape. Auth: the ``TOKEN`` header (default ``sim-token``); 401 in the dict shape.

Rule target: the start path (e.g. ``/integration/v2/custom_field/``,
``/api/v1/bulk_metadata/extraction/7``) or, when a rule names it, the job name. Counters: a GET
of the job API counts a poll; there are no cancels (the API has none). Only the second job of a
chain counts as a submission (it carries the behaviour and the ``Idempotency-Key``).

[UNCONFIRMED] choices: a running job answers ``{"status": "running", "msg": "Job is running",
"result": null}``; the text of the chain message and of the second job's result; the names of
extraction jobs (``MetadataExtraction#<ds_id>#<n>``); the 401 and 404 documents and codes; the
custom field and business policy bodies are lists and checked only for the fields above.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from .base import Behaviour, SimJob, Simulator

_CUSTOM_FIELD = "/integration/v2/custom_field/"
_CFV_ASYNC = "/integration/v2/custom_field_value/async/"
_DATA_QUALITY = "/integration/v1/data_quality/"
_POLICIES = "/integration/v1/business_policies/"
_JOB_API = "/api/v1/bulk_metadata/job/"


def _invalid(
    detail: str, errors: list[Any], status: int = 400, code: str = "400000"
) -> web.Response:
    title = {400: "Invalid Payload", 401: "Unauthorized", 404: "Not Found"}[status]
    return web.json_response(
        {"code": code, "title": title, "detail": detail, "errors": errors}, status=status
    )


def _now() -> str:
    return datetime.now(UTC).isoformat()


class AlationSimulator(Simulator):
    name = "alation"

    def __init__(
        self, *, token: str = "sim-token", chain_delay: float = 0.05, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.token = token
        self.chain_delay = chain_delay
        self.by_name: dict[str, str] = {}

    def reset(self) -> None:
        super().reset()
        self.by_name.clear()

    # -- auth --

    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("TOKEN") == self.token

    def unauthorized(self, request: web.Request) -> web.StreamResponse:
        return _invalid("The API access token is missing, invalid or expired.", [], 401, "401000")

    # -- routes --

    def routes(self, app: web.Application) -> None:
        app.router.add_post(_CUSTOM_FIELD, self._custom_field)
        app.router.add_put(_CFV_ASYNC, self._custom_field_value)
        app.router.add_post(_DATA_QUALITY, self._data_quality)
        app.router.add_post(_POLICIES, self._business_policies)
        app.router.add_put(_POLICIES, self._business_policies)
        app.router.add_post("/api/v1/bulk_metadata/extraction/{ds_id}", self._extraction)
        app.router.add_post("/api/v1/bulk_metadata/file_upload/{fs_id}/", self._file_upload)
        app.router.add_get(_JOB_API, self._job)

    def _local(self, request: web.Request) -> str:
        path = request.path
        return path[len(self.prefix) :] if self.prefix and path.startswith(self.prefix) else path

    def _start(
        self, request: web.Request, kind: str, *, name: str | None = None, **data: Any
    ) -> SimJob:
        path = self._local(request)
        target = name if name is not None and name in self.rules else path
        job_id = str(self.next_id())
        job = self.accept(
            job_id,
            target=target,
            key=request.headers.get("Idempotency-Key"),
            name=name,
            data={"kind": kind, "path": path, **data},
        )
        if name is not None:
            self.by_name[name] = job_id
        return job

    async def _list_body(self, request: web.Request) -> list[Any] | None:
        try:
            body = await request.json()
        except ValueError:
            return None
        return body if isinstance(body, list) else None

    async def _custom_field(self, request: web.Request) -> web.Response:
        body = await self._list_body(request)
        if body is None:
            return web.json_response(
                [{"non_field_errors": ["Expected a list of items but got another type."]}],
                status=400,
            )
        errors = []
        for item in body:
            problems = {
                f: ["This field is required."]
                for f in ("field_type", "name_singular")
                if not isinstance(item, dict) or not item.get(f)
            }
            errors.append(problems)
        if any(errors):
            return web.json_response(errors, status=400)
        job = self._start(request, "custom_field", count=len(body))
        return web.json_response({"job_id": int(job.id)})

    async def _custom_field_value(self, request: web.Request) -> web.Response:
        body = await self._list_body(request)
        wanted = ("otype", "oid", "field_id", "value")
        if body is None or not body:
            return _invalid(
                "Please check the API documentation for more details on the spec.",
                [{"non_field_errors": ["Expected a non-empty list of items."]}],
            )
        bad = [
            {
                f: ["This field is required."]
                for f in wanted
                if not isinstance(i, dict) or f not in i
            }
            for i in body
        ]
        if any(bad):
            return _invalid(
                "Please check the API documentation for more details on the spec.",
                [e for e in bad if e],
            )
        first_id = str(self.next_id())
        second = self._start(request, "cfv_second", count=len(body))
        first = SimJob(
            id=first_id,
            behaviour=Behaviour(duration=self.chain_delay),
            created=second.created,
            data={"kind": "cfv_first", "path": second.data["path"], "next": second.id},
        )
        self.jobs[first_id] = first
        second.created = first.ended_at()
        return web.json_response({"job_id": int(first_id)})

    async def _data_quality(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _invalid(
                "Please check the API documentation for more details on the spec.",
                [{"non_field_errors": ["Expected a JSON object."]}],
            )
        job = self._start(request, "data_quality", count=len(body.get("fields") or []))
        return web.json_response({"job_id": int(job.id), "href": f"{_JOB_API}?id={job.id}"})

    async def _business_policies(self, request: web.Request) -> web.Response:
        body = await self._list_body(request)
        if body is None:
            return _invalid(
                "Please check the API documentation for more details on the spec.",
                [{"non_field_errors": ["Expected a list of items."]}],
            )
        job = self._start(request, "business_policy", count=len(body))
        kind = "CREATE" if request.method == "POST" else "UPDATE"
        return web.json_response(
            {
                "task": {
                    "id": int(job.id),
                    "type": f"BUSINESS_POLICY_BULK_{kind}",
                    "state": "QUEUED",
                    "status": "NA",
                    "ts_started": _now(),
                    "links": [],
                }
            },
            status=202,
        )

    async def _extraction(self, request: web.Request) -> web.Response:
        ds_id = request.match_info["ds_id"]
        if not ds_id.isdigit():
            return _invalid("The data source id must be an integer.", [{"ds_id": ["Invalid id."]}])
        name = f"MetadataExtraction#{ds_id}#{self._seq + 1}"
        self._start(request, "extraction", name=name)
        return web.json_response({"job_name": name})

    async def _file_upload(self, request: web.Request) -> web.Response:
        job = self._start(request, "file_upload", count=3)
        return web.json_response({"job": {"id": int(job.id), "status": "running"}})

    # -- the job API --

    async def _job(self, request: web.Request) -> web.Response:
        q = request.query
        if "id" in q:
            if not q["id"].isdigit():
                return _invalid(
                    "'id' must be an integer.", [{"id": ["A valid integer is required."]}]
                )
            job = self.jobs.get(q["id"])
            missing = f"Job with id {q['id']} does not exist."
        elif "name" in q:
            job = self.jobs.get(self.by_name.get(q["name"], ""))
            missing = f"Job with name {q['name']} does not exist."
        else:
            return _invalid("Give a job 'id' or 'name'.", [{"non_field_errors": ["id or name"]}])
        if job is None:
            return _invalid(missing, [], 404, "404000")
        self.counters.polls += 1
        return web.json_response(self._view(job))

    def _view(self, job: SimJob) -> dict[str, Any]:
        now = self.clock()
        phase = job.phase(now)
        if phase in ("queued", "running"):
            return {"status": "running", "msg": "Job is running", "result": None}
        ok = phase == "succeeded"
        seconds = max(0.0, job.ended_at() - job.created)
        msg = f"Job finished in {seconds:.6f} seconds at {datetime.now(UTC)}"
        if ok and "result" in job.behaviour.outputs:
            result = job.behaviour.outputs["result"]
        else:
            result = self._result(job, ok)
        return {"status": "successful" if ok else "failed", "msg": msg, "result": result}

    def _result(self, job: SimJob, ok: bool) -> Any:
        kind = job.data["kind"]
        count = job.data.get("count", 1)
        message = job.behaviour.message
        if kind == "custom_field":
            start = json.dumps({"msg": "Starting bulk creation of Custom Fields...", "data": {}})
            if not ok:
                return [start, json.dumps({"msg": message, "data": {}})]
            ids = [10000 + int(job.id) * 10 + n for n in range(count)]
            end = {"msg": "Finished bulk creation of Custom Fields", "data": {"field_ids": ids}}
            return [start, json.dumps(end)]
        if kind == "cfv_first":
            return [
                "Custom field values update has been queued "
                f"(can be tracked using jobs API): {job.data['next']}"
            ]
        if kind == "cfv_second":
            return [f"Updated {count} custom field values."] if ok else [message]
        if kind == "data_quality":
            if not ok:
                return {"error": message}
            return {
                "fields": {"created": count, "updated": 0},
                "values": {"created": 0, "updated": 0},
                "created_object_attribution": {},
                "flag_counts": {"GOOD": 0, "WARNING": 0, "ALERT": 0},
                "total_duration": round(job.ended_at() - job.created, 3),
            }
        if kind == "business_policy":
            if ok:
                return f"Successfully processed {count} items"
            return f"Failed to process {count} items: {message}"
        if kind == "extraction":
            return json.dumps(
                {
                    "number_received": 0 if not ok else 12,
                    "updated_objects": 0 if not ok else 12,
                    "error_objects": [] if ok else [message],
                    "error": None if ok else message,
                }
            )
        return ["Uploaded 3 directories and files."] if ok else [message]
