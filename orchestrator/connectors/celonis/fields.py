"""The fields of the ``celonis.dataJob`` job type: ``poolId``, ``jobId``, ``mode``, the subsets
(``transformations``, ``extractions``, ``dataModels``) and ``waitIfRunning``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["validate"]

MODES = ("FULL", "DELTA")


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


def _items(name: str, value: Any, id_key: str) -> list[str]:
    if not isinstance(value, list):
        return [f"field {name!r}: expected a list of {{{id_key}, tables?}} objects"]
    problems = []
    for n, item in enumerate(value):
        where = f"field '{name}[{n}]"
        if not isinstance(item, dict):
            problems.append(f"{where}': expected an object with {id_key!r}")
            continue
        if not isinstance(item.get(id_key), str) or not item[id_key]:
            problems.append(f"{where}.{id_key}': required, a non-empty string")
        if "tables" in item and not _strings(item["tables"]):
            problems.append(f"{where}.tables': expected a list of table ids")
        extra = sorted(set(item) - {id_key, "tables"})
        if extra:
            problems.append(f"{where}': unknown key {extra[0]!r}")
    return problems


def validate(params: Mapping[str, Any]) -> list[str]:
    problems = []
    for name in ("poolId", "jobId"):
        if name in params and (not isinstance(params[name], str) or not params[name].strip()):
            problems.append(f"field {name!r}: expected a non-empty string")
    if "mode" in params and params["mode"] not in MODES:
        problems.append("field 'mode': expected 'FULL' or 'DELTA'")
    if "transformations" in params and not _strings(params["transformations"]):
        problems.append("field 'transformations': expected a list of task ids")
    if "extractions" in params:
        problems += _items("extractions", params["extractions"], "extractionId")
    if "dataModels" in params:
        problems += _items("dataModels", params["dataModels"], "dataModelExecutionId")
    if "waitIfRunning" in params and not isinstance(params["waitIfRunning"], bool):
        problems.append("field 'waitIfRunning': expected true or false")
    return problems
