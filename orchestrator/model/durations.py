"""Durations written as ``90``, ``"90s"``, ``"5m"``, ``"2h"``, ``"1d"`` or ``"1h30m"``.

Every duration is positive, finite and at most :data:`MAX_DURATION` (30 days): a timeout or a
backoff longer than that is a typo (``1e300``), and would leave a job waiting forever.
"""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_DURATION = 30 * 86400.0
"""The longest duration accepted anywhere (timeouts, retry delays, connection deadlines)."""
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: object) -> float:
    """Return seconds; raise ``ValueError`` naming the value if it is not a duration."""
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r}")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an integer too large for a float
            seconds = math.inf
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
    if math.isnan(seconds):
        raise ValueError(f"bad duration {_shown(value)} (not a number)")
    if seconds <= 0:
        raise ValueError(f"bad duration {_shown(value)} (must be positive)")
    if seconds > MAX_DURATION:
        raise ValueError(f"bad duration {_shown(value)} (at most 30 days)")
    return seconds


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...{text[-8:]} ({len(text)} characters)"


def format_duration(seconds: float) -> str:
    if seconds == int(seconds):
        whole = int(seconds)
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if whole % size == 0:
                return f"{whole // size}{unit}"
        return f"{whole}s"
    text = f"{seconds:.6f}".rstrip("0")  # never an exponent: parse_duration reads it back
    return f"{text}s" if float(text) == seconds else f"{seconds * 1000:.6f}".rstrip("0") + "ms"
