"""A small, safe JSON path: ``$.a.b[0].c``, ``a.b``, ``data[0].id`` (keys and list indexes)."""

from __future__ import annotations

import functools
import re
from typing import Any

_PART = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[\"([^\"]+)\"\]")


@functools.lru_cache(maxsize=512)
def parse(path: str) -> tuple[str | int, ...]:
    """The steps of ``path``; ``ValueError`` naming the path if it is not in the subset."""
    text = path[1:] if path.startswith("$") else path
    steps: list[str | int] = []
    pos = 0
    while pos < len(text):
        m = _PART.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"bad JSON path {path!r} (use keys and [n], e.g. $.data[0].id)")
        key, index, quoted = m.groups()
        steps.append(int(index) if index is not None else (key if key is not None else quoted))
        pos = m.end()
    if not steps:
        raise ValueError(f"bad JSON path {path!r}: empty")
    return tuple(steps)


class Missing(LookupError):
    """The document has nothing at that path."""


def get(document: Any, path: str) -> Any:
    value = document
    for step in parse(path):
        if isinstance(step, int):
            if not isinstance(value, list) or step >= len(value):
                raise Missing(f"nothing at {path!r}")
            value = value[step]
        else:
            if not isinstance(value, dict) or step not in value:
                raise Missing(f"nothing at {path!r}")
            value = value[step]
    return value
