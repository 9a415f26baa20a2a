"""Durations written as ``90``, ``"90s"``, ``"5m"``, ``"2h"``, ``"1d"`` or ``"1h30m"``."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: object) -> float:
    """Return seconds; raise ``ValueError`` naming the value if it is not a duration."""
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        try:
            seconds = float(text)
        except ValueError:
            pos, seconds = 0, 0.0
            for match in _PART.finditer(text):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNITS[match.group(2)]
                pos = match.end()
            if pos != len(text) or not text:
                raise ValueError(
                    f"bad duration {value!r} (use seconds or e.g. '90s', '5m', '2h', '1h30m')"
                ) from None
    else:
        raise ValueError(f"bad duration {value!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"bad duration {value!r} (must be positive)")
    return seconds


def format_duration(seconds: float) -> str:
    if seconds == int(seconds):
        whole = int(seconds)
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if whole % size == 0:
                return f"{whole // size}{unit}"
        return f"{whole}s"
    text = f"{seconds:.6f}".rstrip("0")  # never an exponent: parse_duration reads it back
    return f"{text}s" if float(text) == seconds else f"{seconds * 1000:.6f}".rstrip("0") + "ms"
