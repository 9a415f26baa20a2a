"""The API's errors: JSON ``{"error": {"code", "message", "field"}}`` with the status that says
what went wrong (400 malformed, 401 no token, 403 not allowed, 404 not found, 409 conflicts with
the state, 413 too large, 422 invalid), never a 500 for a bad request."""

from __future__ import annotations

from typing import Any

from aiohttp import web

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    500: "internal",
    503: "unavailable",
}


class ApiError(Exception):
    """An answer that is an error: raised by a handler, answered by the error middleware."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.code = code or CODES.get(status, "error")
        self.headers = headers or {}

    def response(self) -> web.Response:
        return error_response(self.status, self.message, self.field, self.code, self.headers)


def error_response(
    status: int,
    message: str,
    field: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body: dict[str, Any] = {
        "error": {"code": code or CODES.get(status, "error"), "message": message, "field": field}
    }
    return web.json_response(body, status=status, headers=headers)


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found")
