"""Reading the Trifacta v4 API's answers: ids, ``exception`` error documents, the job groups
a flow or deployment run started, and the result of a job once its groups have ended."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from ...errors import PermanentError
from ..base import PollResult, RemoteHandle, RemoteStatus, remote_id

Kind = Literal["jobGroup", "flow", "deployment"]

NON_TERMINAL = frozenset({"created", "pending", "inprogress"})
SUCCESS = "complete"
FAILURE = "failed"
CANCELLED = frozenset({"canceled", "cancelled"})


def int_id(value: Any) -> int:
    found = int_id_or_none(value)
    if found is None:
        raise PermanentError(f"not an id: {value!r}")
    return found


def group_id(value: Any, job_type: str, field: str) -> int:
    """A job group id from an answer: an integer (or its digits); refused otherwise."""
    found = remote_id(value, job_type=job_type, field=field)
    group = int_id_or_none(found)
    if group is None:
        raise PermanentError(
            f"{job_type}: the remote answered field {field!r} with {found!r}, which is not a "
            "job group id (an integer)"
        )
    return group


def int_id_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def short(document: Any, limit: int = 200) -> str:
    text = " ".join(str(document).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _exception(detail: object) -> dict[str, Any] | None:
    exception = detail.get("exception") if isinstance(detail, dict) else None
    return exception if isinstance(exception, dict) else None


def exception_name(detail: object) -> str | None:
    exception = _exception(detail)
    name = exception.get("name") if exception else None
    return str(name) if name else None


def with_exception(exc: PermanentError, method: str, path: str) -> PermanentError:
    """The same error, its message taken from the ``exception`` document when there is one."""
    exception = _exception(exc.detail)
    if exception is None:
        return exc
    name = exception.get("name") or "exception"
    message = str(exception.get("message") or "(no message)")
    details = exception.get("details")
    text = f"{method} {path}: HTTP {exc.status}: {name}: {message}"
    if details and str(details) != message:
        text += f" ({short(details)})"
    return type(exc)(text, status=exc.status, detail=exc.detail)


def run_handle(kind: Kind, target: int, document: dict[str, Any], path: str) -> RemoteHandle:
    """The handle of a flow or deployment run: every ``data[i].id`` is a job group."""
    items = document.get("data")
    if not isinstance(items, list):
        items = [document] if "id" in document else []
    groups: list[int] = []
    runs: list[int] = []
    job_type = f"trifacta.{kind}"
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        if item.get("id") is not None:
            groups.append(group_id(item["id"], job_type, f"data[{n}].id"))
        flow_run = item.get("flowRun")
        if isinstance(flow_run, dict) and flow_run.get("id") is not None:
            run = group_id(flow_run["id"], job_type, f"data[{n}].flowRun.id")
            if run not in runs:
                runs.append(run)
    if not groups and not runs:
        raise PermanentError(f"POST {path}: the answer names no job group: {short(document)}")
    handle: RemoteHandle = {"kind": kind, "target": target, "jobGroupIds": groups}
    if runs:
        handle["flowRunIds"] = runs
    return handle


def _failed_jobs(jobs: list[dict[str, Any]]) -> str:
    parts = []
    for job in jobs:
        message = job.get("errorMessage")
        status = str(job.get("status") or "")
        if message or status.lower() == FAILURE:
            text = f"job {job.get('id')} ({job.get('jobType') or 'unknown type'}) {status or '?'}"
            parts.append(f"{text}: {message}" if message else text)
    return "; ".join(parts)


def aggregate(
    words: Mapping[int, str],
    jobs: Mapping[int, list[dict[str, Any]]],
    outputs: dict[str, Any],
    *,
    noun: str = "job group",
) -> PollResult:
    """The job's result once every group has ended: failed, unknown, cancelled, else
    succeeded."""
    failed = [(g, w) for g, w in words.items() if w.lower() == FAILURE]
    if failed:
        errors = []
        for group, word in failed:
            children = _failed_jobs(jobs.get(group, []))
            errors.append(f"{noun} {group} {word}" + (f": {children}" if children else ""))
        return PollResult(
            RemoteStatus.FAILED,
            remote_status=failed[0][1],
            error=" | ".join(errors),
            outputs=outputs,
        )
    known = NON_TERMINAL | CANCELLED | {SUCCESS}
    unknown = [(g, w) for g, w in words.items() if w.lower() not in known]
    if unknown:
        group, word = unknown[0]
        return PollResult(
            RemoteStatus.FAILED,
            remote_status=word,
            error=f"unknown remote status {word!r} of {noun} {group}",
            outputs=outputs,
        )
    cancelled = [(g, w) for g, w in words.items() if w.lower() in CANCELLED]
    if cancelled:
        group, word = cancelled[0]
        return PollResult(
            RemoteStatus.CANCELLED,
            remote_status=word,
            error=f"{noun} {group} was {word}",
            outputs=outputs,
        )
    return PollResult(
        RemoteStatus.SUCCEEDED, remote_status=next(iter(words.values())), outputs=outputs
    )
