"""Logging: structlog, JSON lines (or console rendering on a terminal), secrets redacted.

One canonical line per job end and per run end at ``info``; every state change at ``debug``.
Secrets registered with :func:`add_secrets` are replaced by ``***`` in every line, at one choke
point (the last processor before rendering); :func:`redact_text` and :func:`redact` apply the
same masking to whatever else leaves the process (what remotes send back, printed JSON).

The masking rule, by value: a secret of :data:`WHOLE_WORD_BELOW` characters or more is masked
wherever it appears, even inside a longer string; a shorter one only as a whole token (not
preceded or followed by a letter, a digit or ``_``), so that a short password never mangles
the ordinary word that contains it. A secret is also masked in its URL-encoded and JSON-escaped
forms. Values shorter than :data:`MIN_SECRET` characters are not masked (too short to tell from
ordinary text).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO, cast
from urllib.parse import quote

import structlog

from .printable import printable

MIN_SECRET = 4
WHOLE_WORD_BELOW = 12
MASK = "***"
_SECRETS: set[str] = set()
_SHAPES: set[str] = set()  # regular expressions of secrets known by their shape
_PATTERN: re.Pattern[str] | None = None
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def add_secrets(values: Iterable[str]) -> None:
    """Values that must never appear in a log line, a stored record or printed output
    (tokens, passwords, webhook secrets)."""
    new = {v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET} - _SECRETS
    if not new:
        return
    _SECRETS.update(new)
    _compile()


def add_secret_shape(pattern: str) -> None:
    """A regular expression of secrets that are too many to register one by one (a token per
    attempt, say): every match is masked like a secret (give it a prefix no word has)."""
    if pattern not in _SHAPES:
        _SHAPES.add(pattern)
        _compile()


def _compile() -> None:
    global _PATTERN
    forms: dict[str, bool] = {}  # each form of each secret -> masked only as a whole token
    for secret in _SECRETS:
        whole = len(secret) < WHOLE_WORD_BELOW
        for form in (secret, quote(secret, safe=""), json.dumps(secret)[1:-1]):
            forms[form] = forms.get(form, True) and whole
    alternatives = [
        *sorted(_SHAPES),
        *(
            rf"(?<!\w){re.escape(form)}(?!\w)" if whole else re.escape(form)
            for form, whole in sorted(forms.items(), key=lambda item: -len(item[0]))
        ),
    ]
    _PATTERN = re.compile("|".join(alternatives))


_CREDENTIAL_HEADER = re.compile(
    r"authorization|cookie|token|secret|password|passwd|credential|signature|session|api-?key"
    r"|(^|[-_])key$|^x-.*key",
    re.IGNORECASE,
)


def is_credential_header(name: str) -> bool:
    """Whether a header of this name carries a credential (``Authorization``, ``Cookie``,
    ``X-Api-Key``, ``X-Auth-Token``, ...): its value is shown masked."""
    return _CREDENTIAL_HEADER.search(name) is not None


def has_secrets() -> bool:
    return _PATTERN is not None


def redact_text(text: str) -> str:
    """``text`` with every registered secret replaced by ``***`` (see the module's rule)."""
    if _PATTERN is None or not text:
        return text
    return _PATTERN.sub(MASK, text)


def redact(value: Any) -> Any:
    """``value`` (plain JSON: strings, numbers, lists, dicts) with every secret masked in its
    strings and keys; a value with nothing to mask comes back as it is."""
    if _PATTERN is None:
        return value
    return _redact(value)


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {(redact_text(k) if isinstance(k, str) else k): _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


def redact_processor(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    if _PATTERN is not None:
        for key, value in event_dict.items():
            event_dict[key] = _redact(value)
    return event_dict


class LossyStream:
    """Where log lines go: ``stream``, until writing to it fails. A log that cannot be written
    (a closed pipe, ``/dev/full``, a full disk, a closed stderr) never ends a run: the line is
    dropped and the failure said once on ``complain_to`` (stderr, while that one works)."""

    def __init__(self, stream: TextIO | None, name: str, complain_to: TextIO | None = None):
        self.stream = stream
        self.name = name
        self.complain_to = complain_to

    def isatty(self) -> bool:
        try:
            return self.stream is not None and self.stream.isatty()
        except (OSError, ValueError):
            return False

    def write(self, text: str) -> None:
        if self.stream is None:
            return
        try:
            self.stream.write(text)
        except (OSError, ValueError) as exc:
            self._failed(exc)

    def flush(self) -> None:
        if self.stream is None:
            return
        try:
            self.stream.flush()
        except (OSError, ValueError) as exc:
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        stream, self.stream = self.stream, None
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        complain_to = self.complain_to
        if complain_to is not None and complain_to is not stream:
            try:
                complain_to.write(f"orchestrator: cannot write the log to {self.name} ({why}); ")
                complain_to.write("the run goes on without it\n")
                complain_to.flush()
            except (OSError, ValueError):
                pass


def printable_processor(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = printable(value, keep_newlines=True)
    return event_dict


def configure(
    level: str = "info", *, stream: TextIO | None = None, json: bool | None = None
) -> None:
    """Send logs to ``stream`` (stderr by default): JSON lines, or console rendering when
    ``json`` is false (default: console on a terminal). A stream that fails drops the lines
    that follow (:class:`LossyStream`): logging never ends a run."""
    if stream is None:
        out = LossyStream(sys.stderr, "stderr")
    else:
        out = LossyStream(stream, getattr(stream, "name", "the log file"), sys.stderr)
    as_json = json if json is not None else not out.isatty()
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_processor,
    ]
    if as_json:  # JSON escapes every control character, and everything beyond ASCII
        processors.append(structlog.processors.JSONRenderer())
    else:  # a terminal: what remotes and DAG files said is shown escaped
        processors += [printable_processor, structlog.dev.ConsoleRenderer(colors=out.isatty())]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(cast(TextIO, out)),
        cache_logger_on_first_use=False,
    )
