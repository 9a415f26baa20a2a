"""The command line against a running daemon: ``--server URL`` (or ``ORCHESTRATOR_SERVER``)
sends ``runs list|show|cancel``, ``trigger`` and ``dags`` to its API, with the token of
``ORCHESTRATOR_TOKEN``; they print what they print against the store."""

from __future__ import annotations

import json
import os
import urllib.parse
from typing import Any

from ..errors import ConfigError

SERVER_ENV = "ORCHESTRATOR_SERVER"
TOKEN_ENV = "ORCHESTRATOR_TOKEN"
SERVER_HELP = f"a running daemon's URL (default ${SERVER_ENV}); its token from ${TOKEN_ENV}"
TIMEOUT = 30.0


def server(args: Any) -> str | None:
    """The daemon to talk to, if any: ``--server`` or the environment."""
    url = getattr(args, "server", None) or os.environ.get(SERVER_ENV)
    if not url:
        return None
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(
            f"--server {url!r}: expected an http(s) URL such as http://127.0.0.1:8080"
        )
    return url.rstrip("/")


class RemoteError(Exception):
    """The daemon answered with an error (or not at all): its message, and the status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def call(
    base: str,
    method: str,
    path: str,
    *,
    query: dict[str, Any] | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One API request; its status and JSON answer. An error answer is a :class:`RemoteError`
    with the daemon's message."""
    import urllib.error  # here: a command that talks to no daemon does not load them
    import urllib.request

    url = f"{base}/api/v1{path}"
    if query:
        url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    token = os.environ.get(TOKEN_ENV)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = exc.reason
        raise RemoteError(exc.code, f"{base}: {message} (HTTP {exc.code})") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RemoteError(0, f"{base}: cannot reach the daemon ({reason})") from None
