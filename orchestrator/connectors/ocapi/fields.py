"""The fields of the ``ocapi.job`` job type: ``jobId``, ``parameters`` (``{name, value}``
strings), ``apiVersion`` and ``onJobAlreadyRunning``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["validate"]

_VERSION = re.compile(r"v\d+_\d+\Z")


def validate(params: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    job_id = params.get("jobId")
    if "jobId" in params and (not isinstance(job_id, str) or not job_id.strip()):
        problems.append("field 'jobId': expected a non-empty string")
    if "parameters" in params:
        items = params["parameters"]
        if not isinstance(items, list):
            problems.append("field 'parameters': expected a list of {name, value} objects")
        else:
            for n, item in enumerate(items):
                problems += _parameter_problems(n, item)
    version = params.get("apiVersion")
    if "apiVersion" in params and (not isinstance(version, str) or not _VERSION.match(version)):
        problems.append("field 'apiVersion': expected a version such as 'v23_2'")
    policy = params.get("onJobAlreadyRunning")
    if "onJobAlreadyRunning" in params and policy not in ("fail", "wait"):
        problems.append("field 'onJobAlreadyRunning': expected 'fail' or 'wait'")
    return problems


def _parameter_problems(n: int, item: Any) -> list[str]:
    where = f"field 'parameters[{n}]"
    if not isinstance(item, dict):
        return [f"{where}': expected an object with 'name' and 'value'"]
    problems = []
    name, value = item.get("name"), item.get("value")
    if not isinstance(name, str) or not 1 <= len(name) <= 256:
        problems.append(f"{where}.name': expected a string of 1 to 256 characters")
    if not isinstance(value, str) or len(value) > 1000:
        problems.append(f"{where}.value': expected a string of at most 1000 characters")
    extra = sorted(set(item) - {"name", "value"})
    if extra:
        problems.append(f"{where}': unknown key {extra[0]!r} (only 'name' and 'value')")
    return problems
