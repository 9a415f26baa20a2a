"""The fields of the ``alation.job`` job type: exactly one of ``request`` (a start call on the
connection's own host), ``jobId`` and ``jobName``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["validate"]

_METHODS = frozenset({"POST", "PUT"})
_REQUEST_KEYS = frozenset({"method", "path", "body", "query"})
_DD_UPLOAD = re.compile(r"/integration/v1/data_dictionary/[^/]+/[^/]+/upload/?\Z")


def _request_problems(request: Any) -> list[str]:
    if not isinstance(request, dict):
        return ["field 'request': expected an object with 'method', 'path' and 'body'"]
    problems = []
    method = request.get("method")
    if not isinstance(method, str) or method.upper() not in _METHODS:
        problems.append("field 'request.method': expected 'POST' or 'PUT'")
    path = request.get("path")
    if not isinstance(path, str) or not path.startswith("/") or path.startswith("//"):
        problems.append(
            "field 'request.path': expected a path on the connection such as "
            "'/integration/v2/custom_field/' (not a URL)"
        )
    elif "://" in path or any(part == ".." for part in path.split("/")):
        problems.append("field 'request.path': expected a plain path (no URL, no '..')")
    elif _DD_UPLOAD.search(path.split("?", 1)[0]):
        problems.append(
            "field 'request.path': the data dictionary upload is multipart and not supported"
        )
    query = request.get("query")
    if "query" in request and (
        not isinstance(query, dict)
        or not all(isinstance(v, str | int | float | bool) for v in query.values())
    ):
        problems.append("field 'request.query': expected an object of strings, numbers or booleans")
    extra = sorted(set(request) - _REQUEST_KEYS)
    if extra:
        problems.append(
            f"field 'request': unknown key {extra[0]!r} (only method, path, body and query)"
        )
    return problems


def validate(params: Mapping[str, Any]) -> list[str]:
    present = [k for k in ("request", "jobId", "jobName") if k in params]
    if len(present) != 1:
        given = ", ".join(present) if present else "none"
        return [f"field 'request': give exactly one of request, jobId or jobName (given: {given})"]
    problems: list[str] = []
    if "request" in params:
        problems += _request_problems(params["request"])
    if "jobId" in params:
        value = params["jobId"]
        ok = (isinstance(value, int) and not isinstance(value, bool) and value > 0) or (
            isinstance(value, str) and value.isdigit() and int(value) > 0
        )
        if not ok:
            problems.append("field 'jobId': expected a positive integer")
    if "jobName" in params and (
        not isinstance(params["jobName"], str) or not params["jobName"].strip()
    ):
        problems.append("field 'jobName': expected a non-empty string")
    return problems
