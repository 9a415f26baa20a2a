"""JSON as the stores write it: compact, in one call of the C encoder, strict where the store must
read it back."""

from __future__ import annotations

import json
import json.encoder
from typing import Any

from ..errors import StoreError


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _c_encoder(allow_nan: bool) -> Any:
    if getattr(json.encoder, "c_make_encoder", None) is None:  # pragma: no cover
        return None
    return json.encoder.c_make_encoder(  # type: ignore[attr-defined]
        None,
        _not_json,
        json.encoder.encode_basestring_ascii,
        None,
        ":",
        ",",
        False,
        False,
        allow_nan,
    )


_ENCODE = _c_encoder(allow_nan=True)
_ENCODE_STRICT = _c_encoder(allow_nan=False)


def json_text(value: Any) -> str:
    """``value`` (plain JSON: no cycles) as compact JSON text, in one call of the C encoder
    (``json.dumps`` makes an encoder per call)."""
    if _ENCODE is None:  # pragma: no cover - a Python without the json accelerator
        return json.dumps(value, separators=(",", ":"))
    return "".join(_ENCODE(value, 0))


def strict_json_text(value: Any) -> str:
    """:func:`json_text` for what the store must be able to read back as JSON (SQLite's JSON
    functions too): no NaN or infinity (ValueError), nothing but plain JSON (TypeError)."""
    if _ENCODE_STRICT is None:  # pragma: no cover - a Python without the json accelerator
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    return "".join(_ENCODE_STRICT(value, 0))


def handle_json(run_id: str, job_id: str, handle: Any) -> str:
    """A remote handle as JSON text, or a :class:`StoreError` that names the job."""
    try:
        return strict_json_text(handle)
    except (TypeError, ValueError) as exc:
        raise StoreError(
            f"run {run_id}: job {job_id}: its remote handle cannot be stored ({exc})"
        ) from None
