"""The fields of the ``granta.job`` job type: the job kind, its input files or export records,
and the schedule."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .documents import EXPORTS, FILE_TYPES, IMPORTS, JOB_KINDS, parse_when

__all__ = ["validate"]


def _text(params: Mapping[str, Any], name: str) -> list[str]:
    value = params.get(name)
    if name in params and (not isinstance(value, str) or not value.strip()):
        return [f"field {name!r}: expected a non-empty string"]
    return []


def _files(files: Any, job_type: Any) -> list[str]:
    if not isinstance(files, list) or not files:
        return ["field 'files': expected a non-empty list of {fileType, path}"]
    problems = []
    kinds: list[str] = []
    paths: set[str] = set()
    names: set[str] = set()
    for i, item in enumerate(files):
        where = f"files[{i}]"
        if not isinstance(item, dict):
            problems.append(f"field {where!r}: expected an object with 'fileType' and 'path'")
            continue
        extra = sorted(set(item) - {"fileType", "path"})
        if extra:
            problems.append(f"field {where!r}: unknown key {extra[0]!r}")
        kind = item.get("fileType")
        if kind not in FILE_TYPES:
            problems.append(f"field '{where}.fileType': expected one of {', '.join(FILE_TYPES)}")
        else:
            kinds.append(kind)
        path = item.get("path")
        if not isinstance(path, str) or not path.strip():
            problems.append(f"field '{where}.path': expected a non-empty file path")
            continue
        full = os.path.normpath(os.path.abspath(path))
        name = os.path.basename(full)
        if full in paths:
            problems.append(f"field '{where}.path': {path!r} is listed twice")
        elif name in names:
            problems.append(
                f"field '{where}.path': another file is also named {name!r} "
                "(the server only sees file names)"
            )
        paths.add(full)
        names.add(name)
    if kinds.count("Template") > 1:
        problems.append("field 'files': at most one Template file")
    has = set(kinds)
    if job_type == "ExcelImportJob":
        if "Combined" in has and has & {"Template", "Data"}:
            problems.append(
                "field 'files': an Excel import takes Combined files or Template + Data, not both"
            )
        elif "Combined" not in has and not {"Template", "Data"} <= has:
            problems.append(
                "field 'files': an Excel import needs Combined files, or a Template and Data files"
            )
    elif job_type == "TextImportJob":
        if "Combined" in has:
            problems.append("field 'files': a text import takes no Combined files")
        if not {"Template", "Data"} <= has:
            problems.append("field 'files': a text import needs a Template and Data files")
    return problems


def _records(records: Any) -> list[str]:
    if not isinstance(records, list) or not records:
        return ["field 'records': expected a non-empty list of {recordHistoryIdentity}"]
    problems = []
    for i, record in enumerate(records):
        where = f"records[{i}]"
        if not isinstance(record, dict):
            problems.append(f"field {where!r}: expected an object with 'recordHistoryIdentity'")
            continue
        extra = sorted(set(record) - {"recordHistoryIdentity", "recordVersion"})
        if extra:
            problems.append(f"field {where!r}: unknown key {extra[0]!r}")
        identity = record.get("recordHistoryIdentity")
        if isinstance(identity, bool) or not isinstance(identity, int):
            problems.append(f"field '{where}.recordHistoryIdentity': expected an integer")
        version = record.get("recordVersion")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            problems.append(f"field '{where}.recordVersion': expected an integer or null")
    return problems


def validate(params: Mapping[str, Any]) -> list[str]:
    problems = []
    job_type = params.get("jobType")
    if "jobType" in params and job_type not in JOB_KINDS:
        problems.append(f"field 'jobType': expected one of {', '.join(JOB_KINDS)}")
    for name in ("name", "description", "culture", "outputDir"):
        problems += _text(params, name)
    if "scheduledExecutionDate" in params:
        when = params["scheduledExecutionDate"]
        try:
            parse_when(when if isinstance(when, str) else "")
        except ValueError:
            problems.append(
                "field 'scheduledExecutionDate': expected an ISO 8601 date and time with a "
                "time zone, e.g. 2026-01-31T02:00:00Z"
            )
    if job_type in IMPORTS:
        problems += [
            f"field {name!r}: only for ExcelExportJob"
            for name in ("databaseKey", "records", "template")
            if name in params
        ]
        if "files" not in params:
            problems.append(f"field 'files': required for {job_type}")
        else:
            problems += _files(params["files"], job_type)
    elif job_type in EXPORTS:
        if "files" in params:
            problems.append("field 'files': only for import jobs (an export takes 'template')")
        for name in ("databaseKey", "records", "template"):
            if name not in params:
                problems.append(f"field {name!r}: required for ExcelExportJob")
        problems += _text(params, "databaseKey") + _text(params, "template")
        if "records" in params:
            problems += _records(params["records"])
    return problems
