"""How the HTTP client words what it sends and what went wrong: URLs fit for messages and logs
(no credentials, query or fragment), query parameters as strings, and transport and TLS failures
in words that carry no headers, query or credentials."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import aiohttp
from yarl import URL


def display(url: str) -> str:
    """The URL fit for messages and logs: no credentials, no query string, no fragment."""
    if "@" not in url and "?" not in url and "#" not in url:
        return url  # nothing to hide (most URLs: a poll path differs per job, so no cache)
    return display_parsed(url)


@functools.lru_cache(maxsize=256)
def display_parsed(url: str) -> str:
    try:
        parsed = URL(url)
        return str(parsed.with_user(None).with_query(None).with_fragment(None))
    except (ValueError, TypeError):
        return url.split("?", 1)[0].split("#", 1)[0]


def query_pairs(params: Mapping[str, Any] | None) -> list[tuple[str, str]] | None:
    """Query parameters as strings: ``None`` dropped, booleans as ``true``/``false``, a list
    or tuple repeats the key."""
    if params is None:
        return None
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            if item is None:
                continue
            if isinstance(item, bool):
                pairs.append((key, "true" if item else "false"))
            else:
                pairs.append((key, str(item)))
    return pairs


def tls_reason(exc: Exception) -> str:
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert = exc.certificate_error
        why = getattr(cert, "verify_message", None) or type(cert).__name__
        return (
            f"TLS certificate verification failed for {exc.host}:{exc.port} ({why}); "
            "set ca_file to the remote's CA bundle, or verify_tls = false"
        )
    return f"TLS handshake failed ({type(exc).__name__})"


def transport_reason(exc: BaseException, deadline: float) -> str:
    """What went wrong on the wire, in words that carry no headers, query or credentials."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        why = os_error.strerror or type(os_error).__name__
        return f"cannot connect to {exc.host}:{exc.port} ({why})"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "timed out connecting"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the response body was cut short"
    if isinstance(exc, TimeoutError):
        return f"no complete answer within {deadline:g}s"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"malformed response ({type(exc).__name__})"
    if isinstance(exc, OSError) and exc.strerror:
        return f"connection error ({exc.strerror})"
    return f"connection error ({type(exc).__name__})"
