"""The field checks of the ``granta.job`` and ``http`` job types."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.connectors import granta

IMPORT: dict[str, Any] = {
    "jobType": "ExcelImportJob",
    "files": [
        {"fileType": "Template", "path": "t.xlsx"},
        {"fileType": "Data", "path": "in/d.xlsx"},
    ],
}
EXPORT: dict[str, Any] = {
    "jobType": "ExcelExportJob",
    "databaseKey": "MI_Training",
    "records": [{"recordHistoryIdentity": 1}, {"recordHistoryIdentity": 2, "recordVersion": None}],
    "template": "t.xlsx",
}
TEXT: dict[str, Any] = {**IMPORT, "jobType": "TextImportJob"}


@pytest.mark.parametrize(
    "params",
    [
        IMPORT,
        TEXT,
        EXPORT,
        {"jobType": "ExcelImportJob", "files": [{"fileType": "Combined", "path": "c.xlsx"}]},
        {
            **IMPORT,
            "name": "nightly import",
            "description": "from the ERP",
            "culture": "en-GB",
            "scheduledExecutionDate": "2026-01-31T02:00:00Z",
            "outputDir": "out",
        },
        {**EXPORT, "scheduledExecutionDate": "2026-01-31T02:00:00+01:00"},
        {**IMPORT, "files": [*IMPORT["files"], {"fileType": "Attachment", "path": "a.pdf"}]},
    ],
)
def test_granta_valid(params: dict[str, Any]) -> None:
    assert granta.validate(params) == []


def _files(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"fileType": kind, "path": path} for kind, path in pairs]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"jobType": "ExcelImport"}, "field 'jobType': expected one of ExcelImportJob"),
        ({"name": ""}, "field 'name': expected a non-empty string"),
        ({"description": 3}, "field 'description': expected a non-empty string"),
        ({"outputDir": ["x"]}, "field 'outputDir': expected a non-empty string"),
        ({"scheduledExecutionDate": "tomorrow"}, "field 'scheduledExecutionDate': expected an"),
        ({"scheduledExecutionDate": "2026-01-31T02:00:00"}, "with a time zone"),
        ({"scheduledExecutionDate": 1760000000}, "field 'scheduledExecutionDate'"),
        ({"files": []}, "field 'files': expected a non-empty list"),
        ({"files": ["t.xlsx"]}, "field 'files[0]': expected an object"),
        ({"files": _files(("Template", "t.xlsx"), ("Csv", "d.csv"))}, "files[1].fileType"),
        (
            {"files": [{"fileType": "Data", "path": "", "x": 1}]},
            "field 'files[0]': unknown key 'x'",
        ),
        ({"files": [{"fileType": "Data", "path": ""}]}, "field 'files[0].path': expected"),
        ({"files": _files(("Template", "t.xlsx"), ("Data", "./t.xlsx"))}, "listed twice"),
        ({"files": _files(("Template", "a/t.xlsx"), ("Data", "b/t.xlsx"))}, "also named 't.xlsx'"),
        ({"files": _files(("Data", "d.xlsx"))}, "needs Combined files, or a Template and Data"),
        (
            {"files": _files(("Combined", "c.xlsx"), ("Data", "d.xlsx"))},
            "Combined files or Template + Data, not both",
        ),
        (
            {"files": _files(("Template", "t1.xlsx"), ("Template", "t2.xlsx"), ("Data", "d"))},
            "at most one Template",
        ),
        ({"template": "t.xlsx"}, "field 'template': only for ExcelExportJob"),
    ],
)
def test_granta_import_problems(change: dict[str, Any], message: str) -> None:
    problems = granta.validate({**IMPORT, **change})
    assert any(message in p for p in problems), problems


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"jobType": "ExcelImportJob"}, "field 'files': required for ExcelImportJob"),
        ({**TEXT, "files": _files(("Combined", "c.xlsx"))}, "a text import takes no Combined"),
        ({**TEXT, "files": _files(("Template", "t.txt"))}, "needs a Template and Data files"),
        ({**EXPORT, "files": IMPORT["files"]}, "field 'files': only for import jobs"),
        ({"jobType": "ExcelExportJob"}, "field 'databaseKey': required for ExcelExportJob"),
        ({"jobType": "ExcelExportJob"}, "field 'records': required for ExcelExportJob"),
        ({"jobType": "ExcelExportJob"}, "field 'template': required for ExcelExportJob"),
        ({**EXPORT, "databaseKey": ""}, "field 'databaseKey': expected a non-empty string"),
        ({**EXPORT, "records": []}, "field 'records': expected a non-empty list"),
        ({**EXPORT, "records": [7]}, "field 'records[0]': expected an object"),
        (
            {**EXPORT, "records": [{"recordHistoryIdentity": "7"}]},
            "field 'records[0].recordHistoryIdentity': expected an integer",
        ),
        (
            {**EXPORT, "records": [{"recordHistoryIdentity": True}]},
            "field 'records[0].recordHistoryIdentity': expected an integer",
        ),
        (
            {**EXPORT, "records": [{"recordHistoryIdentity": 1, "recordVersion": 1.5}]},
            "field 'records[0].recordVersion': expected an integer or null",
        ),
        (
            {**EXPORT, "records": [{"recordHistoryIdentity": 1, "guid": "x"}]},
            "field 'records[0]': unknown key 'guid'",
        ),
    ],
)
def test_granta_type_specific_problems(params: dict[str, Any], message: str) -> None:
    problems = granta.validate(params)
    assert any(message in p for p in problems), problems


def test_granta_job_type() -> None:
    (job_type,) = granta.JOB_TYPES
    assert job_type.name == "granta.job"
    assert job_type.required == ("jobType",)
    assert job_type.connection_types == ("granta",)
    assert job_type.poll.initial <= 1.0
