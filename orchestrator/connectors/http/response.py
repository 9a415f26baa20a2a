"""A complete HTTP answer, and the words of its body fit for one-line messages."""

from __future__ import annotations

import json as jsonlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...errors import PermanentError

__all__ = ["DETAIL", "Response", "loads", "one_line", "snippet"]

SNIPPET = 200
DETAIL = 500


# One per request on the engine's hot path: slotted but not frozen (a frozen dataclass costs
# several times as much to build), like Submission and PollResult. Treat it as a value.
@dataclass(slots=True)
class Response:
    """A complete answer: status, headers (case-insensitive), the whole body, and the URL
    it came from without its query string."""

    status: int
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    url: str

    def json(self) -> Any:
        """The body parsed as JSON; :class:`PermanentError` naming the URL if it is not JSON."""
        try:
            return loads(self.body)
        except ValueError:
            kind = self.headers.get("Content-Type", "no content type")
            raise PermanentError(
                f"{self.url}: HTTP {self.status}: the body is not JSON ({kind}, "
                f"{len(self.body)} bytes): {one_line(self.text(), 80)}",
                status=self.status,
                detail=self.text()[:DETAIL],
            ) from None

    def text(self) -> str:
        """The body decoded with the charset the server named (UTF-8 if none)."""
        charset = "utf-8"
        for part in self.headers.get("Content-Type", "").split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.lower() == "charset" and value:
                charset = value.strip().strip('"')
        try:
            return self.body.decode(charset, errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")

    def detail(self) -> object:
        """The remote's error document: parsed JSON, or the first 500 characters of text."""
        if self.body:
            try:
                return loads(self.body)
            except ValueError:
                pass
        return self.text()[:DETAIL]


def loads(body: bytes) -> Any:
    """``json.loads(body)`` without its encoding sniffing in the usual case: a body starting
    with an ASCII character not followed by NUL has no BOM and is not UTF-16 or UTF-32, so
    ``json`` would decode it as UTF-8 (as aiohttp's own ``json()`` does)."""
    if body and 0 < body[0] < 0x80 and body[1:2] != b"\x00":
        return jsonlib.loads(body.decode("utf-8", "surrogatepass"))
    return jsonlib.loads(body)


_MESSAGE_KEYS = ("message", "error_description", "errorMessage", "error", "detail", "title")


def snippet(detail: object) -> str:
    """A short one-line summary of an error document."""
    if isinstance(detail, dict):
        for key in _MESSAGE_KEYS:
            value = detail.get(key)
            if isinstance(value, str) and value.strip():
                return one_line(value, SNIPPET)
            if isinstance(value, dict):
                return snippet(value)
    if isinstance(detail, str):
        return one_line(detail, SNIPPET) or "(empty body)"
    return one_line(jsonlib.dumps(detail, separators=(",", ":"), default=str), SNIPPET)


def one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
