"""What an HTTP answer's status and headers mean, said once for every client of the project:
the error a status maps to, and how long a server asked to wait."""

from __future__ import annotations

import email.utils
import math
from collections.abc import Mapping
from datetime import UTC

from ...errors import AuthError, ConnectorError, NotFoundError, PermanentError, TransientError

__all__ = ["TRANSIENT_STATUSES", "error_for_status", "retry_after"]

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


def error_for_status(status: int, message: str, *, detail: object = None) -> ConnectorError:
    """The error of an answer whose status is not success: :class:`AuthError` (401, 403),
    :class:`NotFoundError` (404), :class:`TransientError` (429, 500, 502, 503, 504, which may
    pass), else :class:`PermanentError`."""
    if status in (401, 403):
        return AuthError(message, status=status, detail=detail)
    if status == 404:
        return NotFoundError(message, status=status, detail=detail)
    if status in TRANSIENT_STATUSES:
        return TransientError(message, status=status, detail=detail)
    return PermanentError(message, status=status, detail=detail)


def retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds the server asked to wait, from wall time ``now``: ``Retry-After`` (seconds or an
    HTTP date), else ``x-ratelimit-reset`` (seconds, Celonis); ``None`` if neither says."""
    value = headers.get("Retry-After")
    if value is not None:
        value = value.strip()
        try:
            seconds = float(value)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError):
                when = None
            if when is not None:
                if when.tzinfo is None:  # "-0000": UTC all the same
                    when = when.replace(tzinfo=UTC)
                return max(0.0, when.timestamp() - now)
        else:
            if math.isfinite(seconds):
                return max(0.0, seconds)
    reset = headers.get("x-ratelimit-reset")
    if reset is not None:
        try:
            seconds = float(reset.strip())
        except ValueError:
            return None
        if math.isfinite(seconds):
            return max(0.0, seconds)
    return None
