"""The API's OpenAPI 3.1 document: the one description of its shapes. Requests are checked
against it (:mod:`.checks`: bodies, query and path parameters) and the tests check answers
against it (schemathesis), so there is no second copy to drift."""

from __future__ import annotations

from typing import Any

from ...model.states import RunState
from .schemas import SCHEMAS

PREFIX = "/api/v1"
MAX_BODY = 1 << 20  # bytes of a request body, at most
MAX_KEY = 200  # characters of an Idempotency-Key


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


ERRORS = {
    str(status): _answer("Error", text)
    for status, text in (
        (400, "malformed request"),
        (401, "no valid token"),
        (403, "the token's role does not allow it"),
        (404, "not found"),
    )
}


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
    }


DAG = _path_param("dag", "a DAG's name")
RUN = _path_param("run", "a run's id")
JOB = _path_param("job", "a job's id")
DELIVERY = _path_param("delivery", "a webhook delivery's id")

RUN_QUERY = [
    {"name": "dag", "in": "query", "schema": {"type": "string", "maxLength": 200}},
    {
        "name": "state",
        "in": "query",
        "schema": {"type": "string", "enum": [s.value for s in RunState]},
    },
    {"name": "trigger", "in": "query", "schema": {"type": "string", "maxLength": 50}},
    {"name": "createdAfter", "in": "query", "schema": {"type": "string", "format": "date-time"}},
    {"name": "createdBefore", "in": "query", "schema": {"type": "string", "format": "date-time"}},
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
    },
    {"name": "cursor", "in": "query", "schema": {"type": "string", "maxLength": 500}},
]


def _op(
    summary: str,
    answers: dict[str, Any],
    *,
    params: list[dict[str, Any]] | None = None,
    body: str | None = None,
    role: str = "read",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "x-role": role,
        "parameters": params or [],
        "responses": {**answers, **ERRORS},
    }
    if body is not None:
        op["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    if extra:
        op.update(extra)
    return op


IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "description": "the same key answers with the same run (one run per key)",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY},
}

PATHS: dict[str, Any] = {
    "/dags": {
        "get": _op(
            "List the DAGs and the files that failed to load",
            {"200": _answer("DagList", "the DAGs")},
        ),
    },
    "/dags/{dag}": {
        "get": _op(
            "Show a DAG, with its jobGraph and its jobs' fields",
            {"200": _answer("Dag", "the DAG")},
            params=[DAG],
        ),
    },
    "/dags/{dag}/pause": {
        "post": _op(
            "Pause a DAG's schedule",
            {
                "200": _answer("DagSummary", "paused"),
                "409": _answer("Error", "the DAG has no schedule"),
            },
            params=[DAG],
            role="operate",
        ),
    },
    "/dags/{dag}/unpause": {
        "post": _op(
            "Unpause a DAG's schedule",
            {
                "200": _answer("DagSummary", "unpaused"),
                "409": _answer("Error", "the DAG has no schedule"),
            },
            params=[DAG],
            role="operate",
        ),
    },
    "/dags/{dag}/runs": {
        "post": _op(
            "Trigger a run of a DAG",
            {
                "201": _answer("JobGroup", "the run, started"),
                "200": _answer("JobGroup", "the run of this Idempotency-Key, started before"),
                "409": _answer("Error", "the DAG's overlap policy refuses another run now"),
                "422": _answer("Error", "invalid parameters"),
                "503": _answer("Error", "the daemon is starting or stopping"),
            },
            params=[DAG, IDEMPOTENCY],
            body="TriggerRequest",
            role="operate",
        ),
    },
    "/runs": {
        "get": _op(
            "List runs, newest first",
            {"200": _answer("RunList", "a page of runs")},
            params=RUN_QUERY,
        ),
    },
    "/runs/{run}": {
        "get": _op(
            "Show a run: its jobs, attempts and events",
            {"200": _answer("Run", "the run")},
            params=[RUN],
        ),
    },
    "/runs/{run}/cancel": {
        "post": _op(
            "Cancel a run (its remote jobs too); a second cancel answers the same",
            {
                "202": _answer("CancelAnswer", "the cancel is under way"),
                "200": _answer("CancelAnswer", "the run is cancelled"),
                "409": _answer("Error", "the run ended otherwise"),
            },
            params=[RUN],
            role="operate",
        ),
    },
    "/runs/{run}/rerun": {
        "post": _op(
            "Run the failed jobs of an ended run again, as a new run (the jobs that succeeded "
            "are carried over with their outputs)",
            {
                "201": _answer("JobGroup", "the new run, started"),
                "409": _answer("Error", "the run has not ended, nothing failed, or overlap"),
                "503": _answer("Error", "the daemon is starting or stopping"),
            },
            params=[RUN],
            role="operate",
        ),
    },
    "/runs/{run}/jobs/{job}/cancel": {
        "post": _op(
            "Cancel one job (its remote job too), wherever its run runs; the run goes on. A "
            "second cancel answers the same way",
            {
                "202": _answer("JobCancelAnswer", "the cancel is under way"),
                "200": _answer("JobCancelAnswer", "the job is cancelled"),
                "409": _answer("Error", "the job, or its run, ended otherwise"),
            },
            params=[RUN, JOB],
            role="operate",
        ),
    },
    "/runs/{run}/jobs/{job}/attempts": {
        "get": _op(
            "A job's attempts, with their remote handle, remote status and log tail",
            {"200": _answer("AttemptList", "the attempts")},
            params=[RUN, JOB],
        ),
    },
    "/deliveries": {
        "get": _op(
            "Webhook deliveries and their attempts",
            {"200": _answer("DeliveryList", "the deliveries")},
            params=[{"name": "run", "in": "query", "schema": {"type": "string", "maxLength": 200}}],
        ),
    },
    "/deliveries/{delivery}/redeliver": {
        "post": _op(
            "Send a delivery again, now",
            {"202": _answer("Redelivered", "pending again")},
            params=[DELIVERY],
            role="operate",
        ),
    },
    "/callbacks/{token}": {
        "post": {
            "summary": "A remote pushes the end of a job: the attempt the token is bound to is "
            "polled at once (the poll confirms the state; the body is ignored). Called by "
            "remotes, without a bearer token: the token in the path is the key",
            "x-role": "none",
            "security": [],
            "parameters": [
                _path_param("token", "the attempt's callback token, from its callback URL")
            ],
            "requestBody": {
                "required": False,
                "description": "anything (at most 64 KiB read), ignored",
                "content": {"application/json": {"schema": {}}},
            },
            "responses": {
                "202": _answer("CallbackAccepted", "the attempt is being polled"),
                "404": _answer(
                    "Error",
                    "no attempt followed now has this token (forged, another attempt's, or "
                    "its attempt ended): nothing changes",
                ),
            },
        },
    },
    "/events": {
        "get": _op(
            "The live event stream (server-sent events), every run's or one run's or DAG's",
            {
                "200": {
                    "description": "events as they are committed; each has the store's sequence "
                    "as its id; reconnect with Last-Event-ID to get what was missed",
                    "content": {"text/event-stream": {"schema": _ref("StreamEvent")}},
                }
            },
            params=[
                {"name": "run", "in": "query", "schema": {"type": "string", "maxLength": 200}},
                {"name": "dag", "in": "query", "schema": {"type": "string", "maxLength": 200}},
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                },
            ],
        ),
    },
}


def document() -> dict[str, Any]:
    """The OpenAPI document served at ``/api/v1/openapi.json``."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "orchestrator",
            "version": "1",
            "description": "The daemon's API: DAGs, runs, webhook deliveries and a live event "
            "stream. Every operation but the callbacks needs a bearer token; `x-role` says "
            "which role.",
        },
        "servers": [{"url": PREFIX}],
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
