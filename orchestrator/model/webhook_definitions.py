"""Webhook definitions (the fields of seed 002) and their validation."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

EVENTS = ("onJobSuccess", "onJobFailure", "onJobDone")
METHODS = ("post", "put", "patch", "get", "delete")
NO_BODY = ("get", "delete")
FIELDS = (
    "name",
    "url",
    "method",
    "triggerEvent",
    "body",
    "headers",
    "sslVerification",
    "secretKey",
)
FORBIDDEN_HEADERS = frozenset(
    {"webhook-id", "webhook-timestamp", "webhook-signature", "host", "content-length"}
)


@dataclass(frozen=True, slots=True)
class Webhook:
    name: str
    url: str
    trigger_event: str
    method: str = "post"
    body: Any = None  # a template: an object (JSON), or a string
    headers: Mapping[str, str] = field(default_factory=dict)
    ssl_verification: bool = True
    secret_keys: tuple[str, ...] = field(default=(), repr=False)  # may be ${ENV} references

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Webhook:
        secret = data.get("secretKey")
        secrets: tuple[str, ...] = ()
        if isinstance(secret, str) and secret:
            secrets = tuple(secret.split())
        elif isinstance(secret, list):
            secrets = tuple(secret)
        return cls(
            name=data["name"],
            url=data["url"],
            trigger_event=data["triggerEvent"],
            method=str(data.get("method", "post")).lower(),
            body=data.get("body"),
            headers=dict(data.get("headers") or {}),
            ssl_verification=bool(data.get("sslVerification", True)),
            secret_keys=secrets,
        )

    def fires_for_job(self, state: str) -> bool:
        if self.trigger_event == "onJobDone":
            return True
        if self.trigger_event == "onJobSuccess":
            return state == "succeeded"
        return state == "failed"

    def fires_for_run(self, state: str) -> bool:
        if self.trigger_event == "onJobDone":
            return True
        if self.trigger_event == "onJobSuccess":
            return state == "succeeded"
        return state == "failed"


def literal_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a URL host denotes when it is written as an IP, in any of the forms a
    resolver accepts (``2130706433``, ``0x7f.1``, ``::ffff:127.0.0.1``)."""
    import socket

    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:  # inet_aton accepts decimal, octal, hex and short forms, as resolvers do
        return ipaddress.ip_address(socket.inet_aton(host))
    except OSError:
        return None


def validate_webhooks(hooks: Any, where: str) -> list[str]:
    """Problems with a list of webhook definitions; ``where`` prefixes each message."""
    if hooks is None:
        return []
    if not isinstance(hooks, list):
        return [f"{where}field 'webhooks': expected a list"]
    problems: list[str] = []
    names: set[str] = set()
    for i, hook in enumerate(hooks):
        at = f"{where}webhooks[{i}]"
        if not isinstance(hook, dict):
            problems.append(f"{at}: expected an object")
            continue
        name = hook.get("name")
        if isinstance(name, str) and name:
            at = f"{where}webhook {name!r}"
            if name in names:
                problems.append(f"{at}: duplicate webhook name")
            names.add(name)
        else:
            problems.append(f"{at}: field 'name': required, a non-empty string")
        for key in hook:
            if key not in FIELDS:
                problems.append(f"{at}: unknown field {key!r}")
        event = hook.get("triggerEvent")
        if event not in EVENTS:
            problems.append(
                f"{at}: field 'triggerEvent': {event!r} is not one of {', '.join(EVENTS)}"
            )
        method = hook.get("method", "post")
        if not isinstance(method, str) or method.lower() not in METHODS:
            problems.append(f"{at}: field 'method': {method!r} is not one of {', '.join(METHODS)}")
        elif method.lower() in NO_BODY and hook.get("body") is not None:
            problems.append(f"{at}: field 'body': a {method.upper()} webhook sends no body")
        url = hook.get("url")
        problems.extend(f"{at}: field 'url': {p}" for p in _url_problems(url))
        headers = hook.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            problems.append(f"{at}: field 'headers': expected an object of strings")
        else:
            for key in headers:
                if key.lower() in FORBIDDEN_HEADERS:
                    problems.append(f"{at}: field 'headers': {key!r} is set by the orchestrator")
        if "sslVerification" in hook and not isinstance(hook["sslVerification"], bool):
            problems.append(f"{at}: field 'sslVerification': expected true or false")
        secret = hook.get("secretKey")
        if secret is not None and not (
            (isinstance(secret, str) and secret)
            or (
                isinstance(secret, list)
                and secret
                and all(isinstance(s, str) and s for s in secret)
            )
        ):
            problems.append(f"{at}: field 'secretKey': expected a string or a list of strings")
        body = hook.get("body")
        if body is not None and not isinstance(body, dict | list | str):
            problems.append(f"{at}: field 'body': expected an object, a list or a string")
    return problems


def _url_problems(url: Any) -> list[str]:
    if not isinstance(url, str) or not url:
        return ["required, an http or https URL"]
    if "$" in url and "${" not in url:
        pass  # tokens are allowed in the path; the host is checked after rendering too
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return [f"{url!r} is not an http or https URL"]
    if not parts.hostname:
        return [f"{url!r} has no host"]
    if parts.username or parts.password:
        return ["credentials in the URL are not allowed (use headers)"]
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return [f"{url!r} has a bad port"]
    return []
