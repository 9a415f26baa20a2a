"""Field validation of the ``ocapi.job`` and ``celonis.dataJob`` job types."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.connectors import celonis, ocapi

OCAPI: dict[str, Any] = {
    "jobId": "CustomerImportJob",
    "parameters": [{"name": "SiteScope", "value": '{"all_storefront_sites":true}'}],
    "apiVersion": "v25_6",
    "onJobAlreadyRunning": "wait",
}
CELONIS: dict[str, Any] = {
    "poolId": "pool-1",
    "jobId": "job-1",
    "mode": "FULL",
    "transformations": ["t1"],
    "extractions": [{"extractionId": "e1"}, {"extractionId": "e2", "tables": ["ORDERS"]}],
    "dataModels": [{"dataModelExecutionId": "dm1", "tables": []}],
    "waitIfRunning": True,
}


def test_valid_fields_have_no_problems() -> None:
    assert ocapi.validate(OCAPI) == []
    assert ocapi.validate({"jobId": "J"}) == []
    assert ocapi.validate({"jobId": "J", "parameters": [{"name": "n", "value": ""}]}) == []
    assert celonis.validate(CELONIS) == []
    assert celonis.validate({"poolId": "p", "jobId": "j"}) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"jobId": ""}, "field 'jobId': expected a non-empty string"),
        ({"jobId": 7}, "field 'jobId': expected a non-empty string"),
        ({"parameters": {"name": "a"}}, "field 'parameters': expected a list"),
        ({"parameters": ["a=b"]}, "field 'parameters[0]': expected an object"),
        ({"parameters": [{"name": "", "value": "v"}]}, "field 'parameters[0].name'"),
        ({"parameters": [{"name": "x" * 257, "value": "v"}]}, "field 'parameters[0].name'"),
        ({"parameters": [{"name": "n", "value": 3}]}, "field 'parameters[0].value'"),
        ({"parameters": [{"name": "n", "value": "v" * 1001}]}, "field 'parameters[0].value'"),
        ({"parameters": [{"name": "n"}]}, "field 'parameters[0].value'"),
        (
            {"parameters": [{"name": "n", "value": "v", "type": "s"}]},
            "field 'parameters[0]': unknown key 'type'",
        ),
        ({"apiVersion": "23.2"}, "field 'apiVersion': expected a version such as 'v23_2'"),
        ({"onJobAlreadyRunning": "queue"}, "field 'onJobAlreadyRunning': expected 'fail' or"),
    ],
)
def test_ocapi_problems(change: dict[str, Any], message: str) -> None:
    problems = ocapi.validate({**OCAPI, **change})
    assert any(p.startswith(message) for p in problems), problems


def test_ocapi_boundaries() -> None:
    edge = [{"name": "x" * 256, "value": "v" * 1000}]
    assert ocapi.validate({"jobId": "J", "parameters": edge}) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"poolId": ""}, "field 'poolId': expected a non-empty string"),
        ({"jobId": 12}, "field 'jobId': expected a non-empty string"),
        ({"mode": "delta"}, "field 'mode': expected 'FULL' or 'DELTA'"),
        ({"transformations": "t1"}, "field 'transformations': expected a list of task ids"),
        ({"transformations": ["t1", 2]}, "field 'transformations'"),
        ({"extractions": {"extractionId": "e"}}, "field 'extractions': expected a list"),
        ({"extractions": ["e1"]}, "field 'extractions[0]': expected an object"),
        ({"extractions": [{"tables": []}]}, "field 'extractions[0].extractionId': required"),
        (
            {"extractions": [{"extractionId": "e", "tables": "T"}]},
            "field 'extractions[0].tables'",
        ),
        (
            {"extractions": [{"extractionId": "e", "mode": "FULL"}]},
            "field 'extractions[0]': unknown key 'mode'",
        ),
        ({"dataModels": [{"id": "d"}]}, "field 'dataModels[0].dataModelExecutionId': required"),
        ({"waitIfRunning": "yes"}, "field 'waitIfRunning': expected true or false"),
    ],
)
def test_celonis_problems(change: dict[str, Any], message: str) -> None:
    problems = celonis.validate({**CELONIS, **change})
    assert any(p.startswith(message) for p in problems), problems


def test_celonis_configuration_flags_follow_the_given_lists() -> None:
    everything = celonis.configuration({"poolId": "p", "jobId": "j"})
    assert everything["mode"] == "DELTA"
    assert not everything["executeOnlySubsetOfTransformations"]
    assert not everything["executeOnlySubsetOfExtractions"]
    assert not everything["loadOnlySubsetOfDataModels"]
    subset = celonis.configuration(CELONIS)
    assert subset["executeOnlySubsetOfTransformations"]
    assert subset["extractions"][0] == {
        "extractionId": "e1",
        "loadOnlySubsetOfTables": False,
        "tables": [],
    }
    assert subset["extractions"][1]["loadOnlySubsetOfTables"]
    assert subset["loadOnlySubsetOfDataModels"]


def test_job_types() -> None:
    (ocapi_job,) = ocapi.JOB_TYPES
    assert ocapi_job.name == "ocapi.job"
    assert ocapi_job.required == ("jobId",)
    assert ocapi_job.connection_types == ("ocapi",)
    assert not ocapi_job.can_cancel
    assert not ocapi_job.dedup_by_key
    (celonis_job,) = celonis.JOB_TYPES
    assert celonis_job.name == "celonis.dataJob"
    assert celonis_job.required == ("poolId", "jobId")
    assert celonis_job.connection_types == ("celonis",)
    assert celonis_job.can_cancel
    assert not celonis_job.dedup_by_key
    for job_type in (ocapi_job, celonis_job):
        assert job_type.poll.initial <= 1.0  # starts short
