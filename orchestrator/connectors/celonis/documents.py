"""The Celonis EMS documents: the ``JobExecutionConfiguration`` body of an execute request, and
reading the answers (JSON objects, the execute answer's execution id, task log messages)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...errors import PermanentError
from ..base import remote_id
from ..http.client import Response


def configuration(params: Mapping[str, Any]) -> dict[str, Any]:
    """The ``JobExecutionConfiguration`` body (REMOTE_APIS.md §3.3)."""
    transformations = params.get("transformations")
    extractions = params.get("extractions")
    data_models = params.get("dataModels")
    return {
        "poolId": params["poolId"],
        "jobId": params["jobId"],
        "mode": params.get("mode") or "DELTA",
        "executeOnlySubsetOfTransformations": transformations is not None,
        "transformations": list(transformations or []),
        "executeOnlySubsetOfExtractions": extractions is not None,
        "extractions": [
            {
                "extractionId": item["extractionId"],
                "loadOnlySubsetOfTables": item.get("tables") is not None,
                "tables": list(item.get("tables") or []),
            }
            for item in extractions or []
        ],
        "loadOnlySubsetOfDataModels": data_models is not None,
        "dataModels": [
            {
                "dataModelExecutionId": item["dataModelExecutionId"],
                "tables": list(item.get("tables") or []),
            }
            for item in data_models or []
        ],
    }


def json_object(response: Response) -> dict[str, Any]:
    document = response.json()
    if not isinstance(document, dict):
        raise PermanentError(
            f"GET {response.url}: expected a JSON object, got {type(document).__name__}"
        )
    return document


def execution_id_of(response: Response) -> str | None:
    """The execution id, if the execute answer (its body is undocumented) carries one."""
    if not response.body.strip():
        return None
    try:
        document = response.json()
    except PermanentError:
        return None
    if isinstance(document, dict):
        for key in ("executionId", "currentExecutionId"):
            if document.get(key) is not None:
                return str(remote_id(document[key], job_type="celonis.dataJob", field=key))
    return None


def first_message(document: Any) -> str | None:
    """The first ERROR message of a ``logs/executions/detail`` page, else the first one."""
    messages = document.get("logMessages") if isinstance(document, dict) else None
    if not isinstance(messages, list):
        return None
    texts = [
        (m.get("level"), str(m["logMessage"]))
        for m in messages
        if isinstance(m, dict) and m.get("logMessage")
    ]
    for level, text in texts:
        if level == "ERROR":
            return text
    return texts[0][1] if texts else None
