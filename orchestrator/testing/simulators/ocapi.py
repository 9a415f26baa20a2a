"""Salesforce B2C Commerce OCAPI Data API jobs (REMOTE_APIS.md §2), as a server would answer.

    POST   /dwsso/oauth2/access_token                 form grant_type=client_credentials, HTTP
                                                      Basic client_id:client_secret
                                                      200 {"access_token", "token_type": "bearer",
                                                      "expires_in"}
    POST   /s/-/dw/data/{v}/jobs/{job_id}/executions  {"parameters"?: [{name, value}]}
                                                      202 job_execution
    GET    /s/-/dw/data/{v}/jobs/{job_id}/executions?start=&count=
                                                      200 job_execution_result {count, data,
                                                      total} (seed 004, Data API 17.2)
    GET    /s/-/dw/data/{v}/jobs/{job_id}/executions/{id}       200 job_execution
    DELETE /s/-/dw/data/{v}/jobs/{job_id}/executions/{id}       204 once finished
    POST   /s/-/dw/data/{v}/job_execution_search      search_request
                                                      200 job_execution_search_result

Statuses over time (``execution_status`` / ``status``): ``pending``/``PENDING`` while queued,
``running``/``RUNNING``, then ``finished`` with ``OK`` (exit ``{"code": "OK", "status": "ok"}``)
or ``ERROR`` (exit ``ERROR``, the behaviour's message on the last step and in the exit status).
:meth:`OcapiSimulator.abort` aborts an execution as Business Manager would: ``aborted``.

Faults (``{"_v", "fault": {"type", "message", "arguments"}}``): ``JobNotFoundException`` 404 on
POST for a job id starting with ``Unknown`` (the rule that marks jobs unknown);
``JobAlreadyRunningException`` 400 while an execution of the same job is pending or running (when
``single_instance``, the default); ``JobExecutionNotFoundException`` 404 for an unknown job or
execution id; ``JobExecutionNotFinishedException`` 403 on DELETE while it runs;
``InvalidAccessTokenException`` 401 for an unknown, revoked or expired token (tokens last
``token_lifetime`` seconds; :meth:`OcapiSimulator.revoke_tokens` ends them all) and
``InvalidAuthorizationHeaderException`` 401 without a bearer token. The token endpoint answers
401 ``{"error": "invalid_client", "error_description"}`` for other credentials.

Search: ``match_all_query``, ``term_query`` (``is``, ``one_of``; fields ``id, job_id, status,
start_time, end_time``; values compared without case), ``bool_query`` (``must``, ``should``,
``must_not``), ``sorts`` on ``job_id, start_time, end_time, status``, ``start``/``count``
(1..200, default 25) with ``next``/``previous``.

Rule target: the job id (the ``job_id`` in the path). ``lose_answers = n``: the next ``n``
executions are created but their POST's connection is cut before the answer (a lost answer,
for ``find``). Counters: GET of an execution counts a
poll; there are no cancels (the API has none).

[UNCONFIRMED] choices: POST answers 202 (clients accept 200 or 202); a body that is not a JSON
object is 400 ``BodyDecodingException`` and a bad parameter 400
``PropertyConstraintViolationException``; a search with a query type other than those above is
400 ``UnsupportedQueryException``; an aborted execution has exit ``{"code": "ABORTED",
"status": "error"}``; the 401 token faults; ``expires_in`` is the lifetime in seconds (a float
when it is not whole); the ``Idempotency-Key`` header is recorded but not used to deduplicate;
``arguments`` values are plain strings; the execution list is oldest first, ``count`` defaults
to 25 and a bad ``start`` or ``count`` is 400 ``PropertyConstraintViolationException``;
``client_id`` is the simulator's client (the only one it issues tokens to). The behaviour's
``outputs`` are not shown (OCAPI has no place for them).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from .base import SimJob, Simulator
from .ocapi_search import SORTABLE, QueryError, matches, sort_key

_DATA = "/s/-/dw/data/{version}"
_TOKEN_PATH = "/dwsso/oauth2/access_token"
_VERSION = re.compile(r"v(\d+)_(\d+)\Z")


class OcapiSimulator(Simulator):
    name = "ocapi"

    def __init__(
        self,
        *,
        client_id: str = "sim-client",
        client_secret: str = "sim-secret",
        token_lifetime: float = 1800.0,
        single_instance: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_lifetime = token_lifetime
        self.single_instance = single_instance
        self.tokens: dict[str, float] = {}  # token -> expiry on the simulator's clock
        self.token_requests = 0
        self.lose_answers = 0  # next executions created whose answer is cut off

    def reset(self) -> None:
        super().reset()
        self.tokens.clear()
        self.token_requests = 0
        self.lose_answers = 0

    # -- control --

    def revoke_tokens(self) -> None:
        """Every token issued so far is refused from now on."""
        self.tokens.clear()

    def abort(self, execution_id: str) -> None:
        """Abort a running execution, as Business Manager would."""
        job = self.jobs[execution_id]
        if job.phase(self.clock()) in ("queued", "running"):
            job.cancelled_at = self.clock()

    # -- auth --

    def authorized(self, request: web.Request) -> bool:
        if request.path.endswith(_TOKEN_PATH):
            return True  # the token endpoint checks Basic credentials itself
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        expiry = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        return expiry is not None and self.clock() < expiry

    def unauthorized(self, request: web.Request) -> web.StreamResponse:
        version = request.match_info.get("version", "v23_2")
        if not request.headers.get("Authorization", "").lower().startswith("bearer "):
            return _fault(
                version,
                401,
                "InvalidAuthorizationHeaderException",
                "The request is unauthorized: the Authorization header is missing or not a "
                "bearer token.",
            )
        return _fault(
            version, 401, "InvalidAccessTokenException", "The access token is invalid or expired."
        )

    # -- routes --

    def routes(self, app: web.Application) -> None:
        app.router.add_post(_TOKEN_PATH, self._token)
        app.router.add_post(_DATA + "/jobs/{job_id}/executions", self._create)
        app.router.add_get(_DATA + "/jobs/{job_id}/executions", self._list)
        app.router.add_get(_DATA + "/jobs/{job_id}/executions/{id}", self._get)
        app.router.add_delete(_DATA + "/jobs/{job_id}/executions/{id}", self._delete)
        app.router.add_post(_DATA + "/job_execution_search", self._search)

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        if not self._basic_ok(request.headers.get("Authorization", "")):
            self.counters.auth_failures += 1
            return web.json_response(
                {"error": "invalid_client", "error_description": "Client authentication failed"},
                status=401,
            )
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return web.json_response(
                {
                    "error": "unsupported_grant_type",
                    "error_description": "grant_type must be client_credentials",
                },
                status=400,
            )
        token = secrets.token_urlsafe(24)
        self.tokens[token] = self.clock() + self.token_lifetime
        lifetime = self.token_lifetime
        return web.json_response(
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": int(lifetime) if float(lifetime).is_integer() else lifetime,
            }
        )

    def _basic_ok(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            pair = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        return pair == f"{self.client_id}:{self.client_secret}"

    async def _create(self, request: web.Request) -> web.Response:
        version, job_id = request.match_info["version"], request.match_info["job_id"]
        raw = await request.read()
        parameters: list[dict[str, str]] = []
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            if not isinstance(body, dict):
                return _fault(
                    version,
                    400,
                    "BodyDecodingException",
                    "The request body could not be decoded.",
                    body=raw.decode(errors="replace")[:100],
                )
            problem = _parameter_problem(body.get("parameters", []))
            if problem:
                return _fault(version, 400, "PropertyConstraintViolationException", problem)
            parameters = list(body.get("parameters", []))
        if job_id.startswith("Unknown"):
            return _fault(
                version,
                404,
                "JobNotFoundException",
                f"No job with ID '{job_id}' found.",
                jobId=job_id,
            )
        now = self.clock()
        if self.single_instance and any(
            j.data["job_id"] == job_id and j.phase(now) in ("queued", "running")
            for j in self.jobs.values()
        ):
            return _fault(
                version,
                400,
                "JobAlreadyRunningException",
                f"Job '{job_id}' is already running.",
                jobId=job_id,
            )
        job = self.accept(
            str(self.next_id()),
            target=job_id,
            key=request.headers.get("Idempotency-Key"),
            data={"job_id": job_id, "parameters": parameters, "wall": time.time()},
        )
        if self.lose_answers > 0:  # the execution exists, its answer never arrives
            self.lose_answers -= 1
            assert request.transport is not None
            request.transport.abort()
        return web.json_response(self._document(job, version), status=202)

    def _lookup(self, request: web.Request) -> SimJob | web.Response:
        version, execution_id = request.match_info["version"], request.match_info["id"]
        job = self.jobs.get(execution_id)
        if job is None or job.data["job_id"] != request.match_info["job_id"]:
            return _fault(
                version,
                404,
                "JobExecutionNotFoundException",
                f"No Job execution with id '{execution_id}' was found.",
                executionId=execution_id,
            )
        return job

    async def _get(self, request: web.Request) -> web.Response:
        job = self._lookup(request)
        if isinstance(job, web.Response):
            return job
        self.counters.polls += 1
        return web.json_response(self._document(job, request.match_info["version"]))

    async def _list(self, request: web.Request) -> web.Response:
        version, job_id = request.match_info["version"], request.match_info["job_id"]
        try:
            start = int(request.query.get("start", "0"))
            count = int(request.query.get("count", "25"))
        except ValueError:
            start, count = -1, 0
        if start < 0 or not 1 <= count <= 200:
            return _fault(
                version,
                400,
                "PropertyConstraintViolationException",
                "start must be at least 0 and count between 1 and 200.",
            )
        docs = [
            self._document(j, version) for j in self.jobs.values() if j.data["job_id"] == job_id
        ]
        page = docs[start : start + count]
        return web.json_response(
            {
                "_v": _v(version),
                "_type": "job_execution_result",
                "count": len(page),
                "data": page,
                "total": len(docs),
            }
        )

    async def _delete(self, request: web.Request) -> web.Response:
        job = self._lookup(request)
        if isinstance(job, web.Response):
            return job
        if job.phase(self.clock()) in ("queued", "running"):
            return _fault(
                request.match_info["version"],
                403,
                "JobExecutionNotFinishedException",
                f"Job execution '{job.id}' is not finished.",
                executionId=job.id,
            )
        del self.jobs[job.id]
        return web.Response(status=204)

    async def _search(self, request: web.Request) -> web.Response:
        version = request.match_info["version"]
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("query"), dict):
            return _fault(
                version, 400, "BodyDecodingException", "A search_request with a query is required."
            )
        start, count = body.get("start", 0), body.get("count", 25)
        if not isinstance(start, int) or start < 0 or not isinstance(count, int):
            return _fault(version, 400, "BodyDecodingException", "start and count are integers.")
        if not 1 <= count <= 200:
            return _fault(
                version,
                400,
                "PropertyConstraintViolationException",
                "count must be between 1 and 200.",
            )
        docs = [self._document(j, version) for j in self.jobs.values()]
        try:
            hits = [d for d in docs if matches(body["query"], d)]
            for sort in reversed(body.get("sorts") or []):
                field = sort.get("field")
                if field not in SORTABLE:
                    return _fault(
                        version,
                        400,
                        "FieldNotSortableException",
                        f"The field '{field}' is not sortable.",
                    )
                hits.sort(key=sort_key(str(field)), reverse=sort.get("sort_order") == "desc")
        except QueryError as exc:
            return _fault(version, 400, "UnsupportedQueryException", str(exc))
        page = hits[start : start + count]
        result: dict[str, Any] = {
            "_v": _v(version),
            "_type": "job_execution_search_result",
            "count": len(page),
            "hits": page,
            "query": body["query"],
            "sorts": body.get("sorts") or [],
            "start": start,
            "total": len(hits),
        }
        if start + count < len(hits):
            result["next"] = {"count": count, "start": start + count}
        if start > 0:
            result["previous"] = {"count": count, "start": max(0, start - count)}
        return web.json_response(result)

    # -- documents --

    def _document(self, job: SimJob, version: str) -> dict[str, Any]:
        now = self.clock()
        phase = job.phase(now)
        job_id = job.data["job_id"]
        start = job.data["wall"]

        def stamp(t: float) -> str:
            return _iso(start + (t - job.created))

        doc: dict[str, Any] = {
            "_v": _v(version),
            "_type": "job_execution",
            "id": job.id,
            "job_id": job_id,
            "job_description": f"Simulated job {job_id}",
            "client_id": self.client_id,
            "is_restart": False,
            "parameters": job.data["parameters"],
            "start_time": stamp(job.created),
            "modification_time": stamp(min(now, job.ended_at())),
            "log_file_path": f"/Sites/LOGS/jobs/{job_id}/Job-{job_id}-{job.id}.log",
        }
        steps = [
            _step(job, "Prepare", "ok", "OK", ""),
            _step(job, "Run", "ok", "OK", ""),
        ]
        if phase == "queued":
            doc.update(execution_status="pending", status="PENDING", step_executions=[])
        elif phase == "running":
            steps[1] = _step(job, "Run", "running", None, None)
            doc.update(execution_status="running", status="RUNNING", step_executions=steps)
        else:
            if phase == "succeeded":
                exit_status = {"_type": "status", "code": "OK", "message": "", "status": "ok"}
                doc.update(execution_status="finished", status="OK")
            elif phase == "failed":
                message = job.behaviour.message
                exit_status = {
                    "_type": "status",
                    "code": "ERROR",
                    "message": message,
                    "status": "error",
                }
                steps[1] = _step(job, "Run", "error", "ERROR", message)
                doc.update(execution_status="finished", status="ERROR")
            else:
                exit_status = {
                    "_type": "status",
                    "code": "ABORTED",
                    "message": "The job execution was aborted.",
                    "status": "error",
                }
                steps = steps[:1]
                doc.update(execution_status="aborted", status="ABORTED")
            doc.update(
                exit_status=exit_status,
                step_executions=steps,
                end_time=stamp(job.ended_at()),
                is_log_file_existing=True,
            )
        doc["duration"] = int(1000 * (min(now, job.ended_at()) - job.created))
        return doc


def _parameter_problem(parameters: Any) -> str | None:
    if not isinstance(parameters, list):
        return "parameters must be a list."
    for item in parameters:
        if not isinstance(item, dict):
            return "each parameter must be an object with name and value."
        name, value = item.get("name"), item.get("value")
        if not isinstance(name, str) or not 1 <= len(name) <= 256:
            return "parameter name must be 1 to 256 characters."
        if not isinstance(value, str) or len(value) > 1000:
            return f"parameter '{name}': value must be at most 1000 characters."
    return None


def _step(
    job: SimJob, step_id: str, status: str, code: str | None, message: str | None
) -> dict[str, Any]:
    step: dict[str, Any] = {
        "_type": "job_step_execution",
        "id": f"{job.id}-{step_id}",
        "step_id": step_id,
        "step_type_id": "ExecuteScriptModule",
        "execution_scope": "Organization",
        "execution_status": "running" if code is None else "finished",
        "status": "RUNNING" if code is None else code,
    }
    if code is not None:
        step["exit_status"] = {
            "_type": "status",
            "code": code,
            "message": message,
            "status": status,
        }
    return step


def _v(version: str) -> str:
    match = _VERSION.match(version)
    return f"{match.group(1)}.{match.group(2)}" if match else version


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fault(version: str, status: int, kind: str, message: str, **arguments: str) -> web.Response:
    fault: dict[str, Any] = {"type": kind, "message": message}
    if arguments:
        fault["arguments"] = arguments
    return web.json_response({"_v": _v(version), "fault": fault}, status=status)
