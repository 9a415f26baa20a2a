"""``$tokens`` in job fields: ``$runId``, ``$dagName``, ``$jobId``, ``$attempt``, each run parameter
by its name. ``$$`` is a literal ``$``; ``${NAME}`` (environment interpolation, used in
connections) and unknown tokens are left as they are."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_TOKEN = re.compile(r"\$(\$|[A-Za-z_][A-Za-z0-9_]*)")  # $name, or $$ for a literal $


def has_tokens(value: Any) -> bool:
    """Whether a string in ``value`` (nested dicts and lists) holds a token."""
    if isinstance(value, str):
        return "$" in value and _TOKEN.search(value) is not None
    if isinstance(value, dict):
        return any(has_tokens(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_tokens(v) for v in value)
    return False


def substitute(value: Any, tokens: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        if "$" not in value:
            return value

        def repl(m: re.Match[str]) -> str:
            name = m.group(1)
            if name == "$":
                return "$"
            if name in tokens:
                return str(tokens[name])
            return m.group(0)

        return _TOKEN.sub(repl, value)
    if isinstance(value, dict):
        return {k: substitute(v, tokens) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, tokens) for v in value]
    return value
