"""Requests checked against the OpenAPI document (:mod:`.document`): bodies by their schema,
query parameters by theirs. A failure is an :class:`~.errors.ApiError` naming the field."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from typing import Any

import jsonschema
from aiohttp import web

from .document import MAX_BODY, PATHS
from .errors import ApiError
from .schemas import SCHEMAS


@functools.cache
def _validator(schema: str) -> jsonschema.Draft202012Validator:
    root = {"$ref": f"#/components/schemas/{schema}", "components": {"schemas": SCHEMAS}}
    return jsonschema.Draft202012Validator(root)


def check(value: Any, schema: str, where: str = "body") -> None:
    """Raise a 422 naming the first field of ``value`` that ``schema`` refuses."""
    error = jsonschema.exceptions.best_match(_validator(schema).iter_errors(value))
    if error is not None:
        path = ".".join(str(p) for p in error.absolute_path)
        field = f"{where}.{path}" if path else where
        raise ApiError(422, f"{field}: {error.message}", field=field)


async def body(request: web.Request, schema: str) -> dict[str, Any]:
    """The request's JSON body checked against ``schema``; an empty body is ``{}``."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, f"the body is over {MAX_BODY} bytes")
    try:
        raw = await request.content.read(MAX_BODY + 1)
    except ValueError:  # aiohttp's own limit
        raise ApiError(413, f"the body is over {MAX_BODY} bytes") from None
    if len(raw) > MAX_BODY:
        raise ApiError(413, f"the body is over {MAX_BODY} bytes")
    if not raw.strip():
        value: Any = {}
    else:
        try:
            value = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"the body is not JSON: {exc}", field="body") from None
    check(value, schema)
    return dict(value)


def query(request: web.Request, path: str, method: str = "get") -> dict[str, Any]:
    """The query parameters the document declares for the operation, converted to their
    types (integers, times as epoch seconds) and checked; defaults filled in."""
    out: dict[str, Any] = {}
    for param in PATHS[path][method]["parameters"]:
        if param["in"] != "query":
            continue
        name, schema = param["name"], param["schema"]
        raw = request.query.get(name)
        if raw is None:
            if "default" in schema:
                out[name] = schema["default"]
            continue
        value: Any = raw
        if schema.get("type") == "integer":
            try:
                value = int(raw)
            except ValueError:
                message = f"{name}: expected a whole number, got {raw!r}"
                raise ApiError(400, message, field=name) from None
        elif schema.get("format") == "date-time":
            value = _time(name, raw)
        if schema.get("format") != "date-time":
            error = jsonschema.exceptions.best_match(
                jsonschema.Draft202012Validator(schema).iter_errors(value)
            )
            if error is not None:
                raise ApiError(400, f"{name}: {error.message}", field=name)
        out[name] = value
    return out


def _time(name: str, raw: str) -> float:
    try:
        at = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            400, f"{name}: expected an ISO 8601 time such as 2026-01-31T06:00Z", field=name
        ) from None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
