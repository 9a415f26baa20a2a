"""What a webhook sends: its ``body`` template rendered with ``$tokens``, or the default JSON
payload ``{"type", "timestamp", "data"}``.

Tokens: ``$event $dagName $runId $runStatus $jobId $jobStatus $jobError $remoteJobId $attempt
$startedAt $endedAt $duration``. In an object or list body every string value is rendered and
the result serialised as JSON (so values are escaped by construction); a string body that is
JSON (it starts with ``{`` or ``[``, or the headers say JSON) gets each token JSON-escaped; any
other string body gets the values as they are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

_TOKEN = re.compile(r"\$(\$|[A-Za-z_][A-Za-z0-9_]*)")
TOKENS = (
    "event",
    "dagName",
    "runId",
    "runStatus",
    "jobId",
    "jobStatus",
    "jobError",
    "remoteJobId",
    "attempt",
    "startedAt",
    "endedAt",
    "duration",
)


def _render(text: str, values: Mapping[str, Any], escape: bool) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if name == "$":
            return "$"
        if name not in values:
            return m.group(0)
        value = values[name]
        text = "" if value is None else str(value)
        return json.dumps(text)[1:-1] if escape else text

    return _TOKEN.sub(repl, text)


def _render_value(value: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return _render(value, values, escape=False)
    if isinstance(value, dict):
        return {k: _render_value(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_value(v, values) for v in value]
    return value


def render_body(
    template: Any, values: Mapping[str, Any], headers: Mapping[str, str]
) -> tuple[bytes, str]:
    """The body bytes and their content type."""
    if isinstance(template, dict | list):
        return json.dumps(_render_value(template, values)).encode(), "application/json"
    text = str(template)
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    is_json = "json" in content_type.lower() or text.lstrip().startswith(("{", "["))
    rendered = _render(text, values, escape=is_json)
    return rendered.encode(), content_type or ("application/json" if is_json else "text/plain")


def default_payload(event_type: str, timestamp: str, values: Mapping[str, Any]) -> bytes:
    """``{"type": "job.failed", "timestamp": ISO-8601, "data": {...}}``."""
    data = {
        "event": values.get("event"),
        "dag": values.get("dagName"),
        "run": values.get("runId"),
        "runStatus": values.get("runStatus"),
        "job": values.get("jobId"),
        "status": values.get("jobStatus") or values.get("runStatus"),
        "attempt": values.get("attempt"),
        "remoteId": values.get("remoteJobId"),
        "error": values.get("jobError"),
        "startedAt": values.get("startedAt"),
        "endedAt": values.get("endedAt"),
        "duration": values.get("duration"),
    }
    return json.dumps({"type": event_type, "timestamp": timestamp, "data": data}).encode()
