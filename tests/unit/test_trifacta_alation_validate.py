"""The field checks of the ``trifacta.*`` and ``alation.job`` job types."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.connectors import alation, trifacta
from orchestrator.connectors.alation import validate as validate_alation
from orchestrator.connectors.trifacta import (
    validate_deployment,
    validate_flow,
    validate_job_group,
)

WEBHOOK = {
    "name": "webhook override",
    "url": "http://example.com",
    "method": "post",
    "triggerEvent": "onJobFailure",
    "body": {"text": "override"},
    "headers": {"testHeader": "val1"},
    "sslVerification": True,
    "secretKey": "123",
}


@pytest.mark.parametrize(
    "params",
    [
        {"wrangledDataset": {"id": 28629}},
        {"wrangledDataset": {"id": "28629"}, "ranfrom": None},
        {
            "wrangledDataset": {"id": 28629},
            "overrides": {
                "profiler": True,
                "execution": "spark",
                "writesettings": [{"path": "p", "format": "csv", "header": True}],
                "publications": [{"path": ["prod_db"], "tableName": "T", "connectionId": 3}],
                "datasources": {"airlines - region 1": ["s3://b/a.csv"]},
                "webhooks": [WEBHOOK],
                "runParameters": {"overrides": {"data": [{"key": "varRegion", "value": "02"}]}},
                "sparkOptions": [{"key": "spark.executor.cores", "value": "2"}],
                "databricksOptions": [{"key": "maxWorkers", "value": 8}],
                "somethingNew": {"passes": "through"},
            },
        },
    ],
)
def test_valid_job_groups(params: dict[str, Any]) -> None:
    assert validate_job_group(params) == []


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"wrangledDataset": 28629}, "field 'wrangledDataset': expected an object"),
        ({"wrangledDataset": {"id": 0}}, "field 'wrangledDataset.id': expected a positive"),
        ({"wrangledDataset": {"id": True}}, "field 'wrangledDataset.id': expected a positive"),
        ({"wrangledDataset": {"id": "abc"}}, "field 'wrangledDataset.id': expected a positive"),
        ({"overrides": []}, "field 'overrides': expected an object"),
        ({"overrides": {"profiler": "yes"}}, "field 'overrides.profiler': expected true or false"),
        ({"overrides": {"execution": 1}}, "field 'overrides.execution': expected a string"),
        ({"overrides": {"writesettings": {}}}, "field 'overrides.writesettings': expected a list"),
        ({"overrides": {"datasources": {"a": "s3://x"}}}, "field 'overrides.datasources'"),
        ({"overrides": {"webhooks": {}}}, "field 'overrides.webhooks': expected a list"),
        (
            {"overrides": {"webhooks": [{**WEBHOOK, "triggerEvent": "onJobStart"}]}},
            "field 'overrides.webhooks[0].triggerEvent'",
        ),
        (
            {"overrides": {"webhooks": [{**WEBHOOK, "method": "send"}]}},
            "field 'overrides.webhooks[0].method'",
        ),
        (
            {"overrides": {"webhooks": [{**WEBHOOK, "url": "ftp://x"}]}},
            "field 'overrides.webhooks[0].url'",
        ),
        (
            {"overrides": {"webhooks": [{k: v for k, v in WEBHOOK.items() if k != "name"}]}},
            "field 'overrides.webhooks[0].name'",
        ),
        (
            {"overrides": {"webhooks": [{**WEBHOOK, "headers": {"a": 1}}]}},
            "field 'overrides.webhooks[0].headers'",
        ),
        (
            {"overrides": {"webhooks": [{**WEBHOOK, "sslVerification": "no"}]}},
            "field 'overrides.webhooks[0].sslVerification'",
        ),
        (
            {"overrides": {"webhooks": [{**WEBHOOK, "body": "text"}]}},
            "field 'overrides.webhooks[0].body'",
        ),
        ({"overrides": {"webhooks": ["x"]}}, "field 'overrides.webhooks[0]': expected an object"),
        (
            {"overrides": {"runParameters": {"overrides": {"data": {}}}}},
            "field 'overrides.runParameters.overrides'",
        ),
        ({"runParameters": []}, "field 'runParameters': expected an object"),
        (
            {"runParameters": {"overrides": {"data": [{"value": "02"}]}}},
            "field 'runParameters.overrides.data[0].key'",
        ),
        (
            {"runParameters": {"overrides": {"data": [{"key": "k", "value": [1]}]}}},
            "field 'runParameters.overrides.data[0].value'",
        ),
        ({"ranfrom": 3}, "field 'ranfrom': expected a string or null"),
    ],
)
def test_job_group_problems(params: dict[str, Any], problem: str) -> None:
    problems = validate_job_group(params)
    assert len(problems) == 1, problems
    assert problems[0].startswith(problem)


def test_flow_and_deployment() -> None:
    assert validate_flow({"flowId": 5, "overrides": {"execution": "photon"}}) == []
    assert validate_flow({"flowId": "5", "runParameters": {}}) == []
    assert validate_flow({"flowId": -1}) == ["field 'flowId': expected a positive integer id"]
    assert validate_flow({"flowId": 5, "overrides": 1}) == ["field 'overrides': expected an object"]
    assert validate_deployment({"deploymentId": 2}) == []
    run = {"overrides": {"data": [{"key": "varRegion", "value": "02"}]}}
    assert validate_deployment({"deploymentId": 2, "runParameters": run}) == []
    assert validate_deployment({"deploymentId": 2.5}) == [
        "field 'deploymentId': expected a positive integer id"
    ]
    assert validate_deployment({"deploymentId": 2, "runParameters": "x"})[0].startswith(
        "field 'runParameters'"
    )


def test_trifacta_job_types() -> None:
    types = {t.name: t for t in trifacta.JOB_TYPES}
    assert set(types) == {"trifacta.jobGroup", "trifacta.flow", "trifacta.deployment"}
    assert types["trifacta.jobGroup"].required == ("wrangledDataset",)
    assert types["trifacta.flow"].required == ("flowId",)
    assert types["trifacta.deployment"].required == ("deploymentId",)
    assert all(t.connection_types == ("trifacta",) and t.can_cancel for t in types.values())
    assert all(t.poll.initial <= 2 for t in types.values())


@pytest.mark.parametrize(
    "params",
    [
        {"request": {"method": "POST", "path": "/integration/v2/custom_field/", "body": []}},
        {"request": {"method": "put", "path": "/integration/v2/custom_field_value/async/"}},
        {
            "request": {
                "method": "POST",
                "path": "/api/v1/bulk_metadata/extraction/7",
                "query": {"force": True},
            }
        },
        {"jobId": 12},
        {"jobId": "12"},
        {"jobName": "MetadataExtraction#7#1"},
    ],
)
def test_valid_alation_jobs(params: dict[str, Any]) -> None:
    assert validate_alation(params) == []


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({}, "field 'request': give exactly one of request, jobId or jobName (given: none)"),
        ({"jobId": 1, "jobName": "x"}, "field 'request': give exactly one of request, jobId or"),
        ({"request": []}, "field 'request': expected an object"),
        ({"request": {"method": "GET", "path": "/x/"}}, "field 'request.method'"),
        ({"request": {"method": "POST", "path": "x/"}}, "field 'request.path': expected a path"),
        (
            {"request": {"method": "POST", "path": "https://evil.example/x"}},
            "field 'request.path'",
        ),
        ({"request": {"method": "POST", "path": "//evil.example/x"}}, "field 'request.path'"),
        ({"request": {"method": "POST", "path": "/a/../b"}}, "field 'request.path': expected a"),
        (
            {
                "request": {
                    "method": "PUT",
                    "path": "/integration/v1/data_dictionary/table/5/upload/",
                }
            },
            "field 'request.path': the data dictionary upload is multipart",
        ),
        ({"request": {"method": "POST", "path": "/x/", "query": []}}, "field 'request.query'"),
        ({"request": {"method": "POST", "path": "/x/", "data": 1}}, "field 'request': unknown key"),
        ({"jobId": 0}, "field 'jobId': expected a positive integer"),
        ({"jobId": "a1"}, "field 'jobId': expected a positive integer"),
        ({"jobId": True}, "field 'jobId': expected a positive integer"),
        ({"jobName": " "}, "field 'jobName': expected a non-empty string"),
    ],
)
def test_alation_problems(params: dict[str, Any], problem: str) -> None:
    problems = validate_alation(params)
    assert len(problems) == 1, problems
    assert problems[0].startswith(problem)


def test_alation_job_type() -> None:
    (job_type,) = alation.JOB_TYPES
    assert job_type.name == "alation.job"
    assert job_type.connection_types == ("alation",)
    assert not job_type.can_cancel
    assert job_type.required == ()
