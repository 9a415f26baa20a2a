"""The fields of the Trifacta job types: a dataset, flow or deployment id, ``overrides`` (the
shapes seed 002 documents, any other key passed through) and ``runParameters``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .documents import int_id_or_none

__all__ = ["validate_deployment", "validate_flow", "validate_job_group"]

_WEBHOOK_METHODS = frozenset({"post", "put", "patch", "get", "delete"})
_TRIGGERS = frozenset({"onJobFailure", "onJobSuccess", "onJobDone"})


def _id_problem(field: str, value: Any) -> list[str]:
    found = int_id_or_none(value)
    if found is None or found <= 0:
        return [f"field '{field}': expected a positive integer id"]
    return []


def _run_parameters_problems(value: Any, field: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"field '{field}': expected an object such as {{'overrides': {{'data': [...]}}}}"]
    if "overrides" not in value:
        return []
    overrides = value["overrides"]
    if not isinstance(overrides, dict) or not isinstance(overrides.get("data"), list):
        return [f"field '{field}.overrides': expected an object with a 'data' list"]
    problems = []
    for n, item in enumerate(overrides["data"]):
        where = f"field '{field}.overrides.data[{n}]"
        if not isinstance(item, dict):
            problems.append(f"{where}': expected an object with 'key' and 'value'")
            continue
        if not isinstance(item.get("key"), str) or not item["key"]:
            problems.append(f"{where}.key': expected a non-empty string")
        if "value" not in item or isinstance(item["value"], dict | list):
            problems.append(f"{where}.value': expected a string, number or boolean")
    return problems


def _webhook_problems(n: int, hook: Any) -> list[str]:
    where = f"field 'overrides.webhooks[{n}]"
    if not isinstance(hook, dict):
        return [f"{where}': expected an object"]
    problems = []
    if not isinstance(hook.get("name"), str) or not hook["name"]:
        problems.append(f"{where}.name': expected a non-empty string")
    url = hook.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        problems.append(f"{where}.url': expected an http or https URL")
    method = hook.get("method")
    if not isinstance(method, str) or method.lower() not in _WEBHOOK_METHODS:
        problems.append(f"{where}.method': expected one of post, put, patch, get, delete")
    if hook.get("triggerEvent") not in _TRIGGERS:
        problems.append(f"{where}.triggerEvent': expected onJobFailure, onJobSuccess or onJobDone")
    if "body" in hook and not isinstance(hook["body"], dict):
        problems.append(f"{where}.body': expected an object such as {{'text': '...'}}")
    headers = hook.get("headers")
    if "headers" in hook and (
        not isinstance(headers, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
    ):
        problems.append(f"{where}.headers': expected an object of string values")
    if "sslVerification" in hook and not isinstance(hook["sslVerification"], bool):
        problems.append(f"{where}.sslVerification': expected true or false")
    if "secretKey" in hook and not isinstance(hook["secretKey"], str):
        problems.append(f"{where}.secretKey': expected a string")
    return problems


def _list_of_objects(overrides: Mapping[str, Any], name: str) -> list[str]:
    value = overrides[name]
    if not isinstance(value, list) or not all(isinstance(i, dict) for i in value):
        return [f"field 'overrides.{name}': expected a list of objects"]
    return []


def _overrides_problems(overrides: Any) -> list[str]:
    """Shapes of the overrides seed 002 documents; any other key passes through unchecked."""
    if not isinstance(overrides, dict):
        return ["field 'overrides': expected an object"]
    problems: list[str] = []
    if "execution" in overrides and not isinstance(overrides["execution"], str):
        problems.append("field 'overrides.execution': expected a string such as 'spark'")
    if "profiler" in overrides and not isinstance(overrides["profiler"], bool):
        problems.append("field 'overrides.profiler': expected true or false")
    for name in (
        "writesettings",
        "writeSettings",
        "publications",
        "sparkOptions",
        "databricksOptions",
    ):
        if name in overrides:
            problems += _list_of_objects(overrides, name)
    if "datasources" in overrides:
        sources = overrides["datasources"]
        if not isinstance(sources, dict) or not all(
            isinstance(v, list) and all(isinstance(p, str) for p in v) for v in sources.values()
        ):
            problems.append(
                "field 'overrides.datasources': expected an object of dataset name to a list "
                "of paths"
            )
    if "webhooks" in overrides:
        hooks = overrides["webhooks"]
        if not isinstance(hooks, list):
            problems.append("field 'overrides.webhooks': expected a list of webhooks")
        else:
            for n, hook in enumerate(hooks):
                problems += _webhook_problems(n, hook)
    if "runParameters" in overrides:
        problems += _run_parameters_problems(overrides["runParameters"], "overrides.runParameters")
    return problems


def validate_job_group(params: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    if "wrangledDataset" in params:
        dataset = params["wrangledDataset"]
        if not isinstance(dataset, dict) or "id" not in dataset:
            problems.append("field 'wrangledDataset': expected an object such as {'id': 28629}")
        else:
            problems += _id_problem("wrangledDataset.id", dataset["id"])
    if "overrides" in params:
        problems += _overrides_problems(params["overrides"])
    if "runParameters" in params:
        problems += _run_parameters_problems(params["runParameters"], "runParameters")
    if (
        "ranfrom" in params
        and params["ranfrom"] is not None
        and not isinstance(params["ranfrom"], str)
    ):
        problems.append("field 'ranfrom': expected a string or null")
    return problems


def validate_flow(params: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    if "flowId" in params:
        problems += _id_problem("flowId", params["flowId"])
    if "overrides" in params:
        problems += _overrides_problems(params["overrides"])
    if "runParameters" in params:
        problems += _run_parameters_problems(params["runParameters"], "runParameters")
    return problems


def validate_deployment(params: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    if "deploymentId" in params:
        problems += _id_problem("deploymentId", params["deploymentId"])
    if "runParameters" in params:
        problems += _run_parameters_problems(params["runParameters"], "runParameters")
    return problems
