"""The Trifacta / Alteryx Designer Cloud v4 job types (REMOTE_APIS.md §1, seed 002).

``trifacta.jobGroup``: ``POST /v4/jobGroups`` with ``wrangledDataset`` (required, ``{"id": N}``),
``overrides`` (every field of seed 002 passed through untouched: ``execution``, ``profiler``,
``writesettings``, ``publications``, ``webhooks``, ``runParameters``, …), ``runParameters`` and
``ranfrom``; 201 ``{id, jobs.data, jobGraph, …}``.

``trifacta.flow``: ``POST /v4/flows/{flowId}/run`` with optional ``overrides`` and
``runParameters``. Every ``data[i].id`` of the answer is a job group (Airflow reads
``data[0].id``; a flow with several outputs starts several). An answer that only carries
``data[i].flowRun.id`` (a shape seen in one third-party script) is followed through
``GET /v4/flowRuns/{id}/status`` instead, and cannot be cancelled.

``trifacta.deployment``: ``POST /v4/deployments/{deploymentId}/run`` with optional
``runParameters``; 201 ``{"data": [{"reason", "sessionId", "id"}]}``, every ``id`` a job group.

Handle: ``{"kind": "jobGroup"|"flow"|"deployment", "target": <dataset, flow or deployment id>,
"jobGroupIds": [int, …]}``, plus ``"flowRunIds": [int, …]`` when the answer named flow runs.

Polling: ``GET /v4/jobGroups/{id}`` of every job group (its ``status``; a bare JSON string is
accepted too, and ``GET /v4/jobGroups/{id}/status`` is asked when the object has no status).
``Created``, ``Pending``, ``InProgress`` poll again; ``Complete`` succeeds; ``Failed`` fails;
``Canceled`` and ``Cancelled`` are cancelled; any other word (``undefined`` included) fails with
"unknown remote status". Words are compared without case. With several job groups the job polls
until every group has ended, then fails if one failed (or ended in an unknown status), is
cancelled if one was cancelled, and succeeds only when all are ``Complete``. Once ended, the
child jobs come from ``GET /v4/jobGroups/{id}/jobs``: ``outputs["jobs"]`` lists their ``id``,
``jobType``, ``status`` and ``jobGroupId``; a failure's error names each failed child with its
``errorMessage``.

Errors: the ``{"exception": {"name", "message", "details"}}`` document becomes the message
(``POST /v4/jobGroups: HTTP 400: ApiValidationFailed: …``); 401/403 :class:`AuthError`, 404
:class:`NotFoundError`, other 4xx :class:`PermanentError`. Auth: ``Authorization: Bearer`` with
the connection credential ``token``.

Cancel: ``POST /v4/jobGroups/{id}/cancel`` for every group (the route is third-party evidence
only). A group that had already ended is reported as such; a ``RouteNotFoundException`` means the
instance has no cancel route (``CancelResult(supported=False)``).

Idempotency: the key is sent as an ``Idempotency-Key`` header on every submit. Whether the create
body accepts ``name`` or ``description`` is [UNCONFIRMED], so the key goes into the body only
when the connection option ``key_field`` is ``"description"`` or ``"name"``; :meth:`find` then
first searches ``GET /v4/jobGroups?filter=<key>&filterFields=<key_field>`` for a group whose
field equals the key. Otherwise it reads the job group list (``limit``, ``offset``; a page
shorter than ``limit`` is the last; at most 1000 groups) for the group of the submission's
``wrangledDataset`` created since the write-ahead time (less the option ``clock_skew``, default
5 s) that no other stored attempt holds: none is ``None``, several raise
:class:`LookupUndecided`. Flow and deployment runs' groups do not name their flow or deployment,
so their lookup is undecided (``onAmbiguousSubmit`` applies).

Push: when the engine gives a ``callback_url``, a ``trifacta.jobGroup`` submission appends to
``overrides.webhooks`` a webhook (``method: post``, ``triggerEvent: onJobDone``) that calls it;
the user's own webhooks are kept. Flow and deployment run bodies are not documented to take
webhooks, so those are polled only.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Literal

from ..connections import Connection
from ..errors import AuthError, NotFoundError, PermanentError
from .base import (
    CancelResult,
    ConnectorBase,
    LookupUndecided,
    PollResult,
    PollSchedule,
    RemoteHandle,
    RemoteStatus,
    Submission,
    after,
    clock_skew,
    remote_id,
    remote_job_type,
    wall_time,
)
from .http.client import HttpClient, Response

__all__ = [
    "JOB_TYPES",
    "TrifactaConnector",
    "validate_deployment",
    "validate_flow",
    "validate_job_group",
]

Kind = Literal["jobGroup", "flow", "deployment"]

NON_TERMINAL = frozenset({"created", "pending", "inprogress"})
SUCCESS = "complete"
FAILURE = "failed"
CANCELLED = frozenset({"canceled", "cancelled"})
SCHEDULE = PollSchedule(initial=2.0, factor=1.5, cap=30.0)  # no vendor guidance; jobs take minutes
PAGE = 25  # the list's default limit
MAX_PAGES = 40
CALLBACK_NAME = "orchestrator callback"

_WEBHOOK_METHODS = frozenset({"post", "put", "patch", "get", "delete"})
_TRIGGERS = frozenset({"onJobFailure", "onJobSuccess", "onJobDone"})
_KEY_FIELDS = frozenset({"description", "name"})


class TrifactaConnector(ConnectorBase):
    """One Trifacta connection, for one of the three job kinds."""

    def __init__(
        self, connection: Connection, kind: Kind, client: HttpClient | None = None
    ) -> None:
        self.connection = connection
        self.kind: Kind = kind
        self.client = client or HttpClient(connection)
        key_field = connection.options.get("key_field")
        self._key_field = key_field if key_field in _KEY_FIELDS else None
        self._skew = clock_skew(connection)

    async def aclose(self) -> None:
        await self.client.aclose()

    # -- requests --

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        token = self.connection.credentials.get("token")
        if not token:
            raise AuthError(
                f"connection {self.connection.name!r}: the credential 'token' is required"
            )
        return {"Authorization": f"Bearer {token}", "Accept": "application/json", **(extra or {})}

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> Response:
        """One request; an ``exception`` error document raises with its name and message."""
        try:
            return await self.client.request(
                method,
                path,
                json=json,
                params=params,
                headers=self._headers(headers),
                idempotent=idempotent,
            )
        except PermanentError as exc:
            raise _with_exception(exc, method, path) from None

    async def _object(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self._call(method, path, **kwargs)
        document = response.json()
        if not isinstance(document, dict):
            raise PermanentError(
                f"{method} {path}: HTTP {response.status}: expected a JSON object, "
                f"got {type(document).__name__}"
            )
        return document

    # -- submit --

    async def submit(self, submission: Submission) -> RemoteHandle:
        p = submission.params
        key = submission.idempotency_key
        headers = {"Idempotency-Key": key}
        if self.kind == "jobGroup":
            target = _int_id(p["wrangledDataset"]["id"])
            body = self._job_group_body(p, key, submission.callback_url)
            document = await self._object("POST", "/v4/jobGroups", json=body, headers=headers)
            if document.get("id") is None:
                raise PermanentError(
                    f"POST /v4/jobGroups: the answer has no job group id: {_short(document)}"
                )
            group = _group_id(document["id"], "trifacta.jobGroup", "id")
            return {"kind": "jobGroup", "target": target, "jobGroupIds": [group]}
        if self.kind == "flow":
            target = _int_id(p["flowId"])
            path = f"/v4/flows/{target}/run"
            run_body = {k: p[k] for k in ("overrides", "runParameters") if k in p} or None
        else:
            target = _int_id(p["deploymentId"])
            path = f"/v4/deployments/{target}/run"
            run_body = {"runParameters": p["runParameters"]} if "runParameters" in p else None
        document = await self._object("POST", path, json=run_body, headers=headers)
        return _run_handle(self.kind, target, document, path)

    def _job_group_body(
        self, p: Mapping[str, Any], key: str, callback_url: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"wrangledDataset": {"id": _int_id(p["wrangledDataset"]["id"])}}
        overrides = dict(p["overrides"]) if p.get("overrides") is not None else None
        if callback_url:
            overrides = overrides or {}
            hooks = list(overrides.get("webhooks") or [])
            hooks.append(
                {
                    "name": CALLBACK_NAME,
                    "url": callback_url,
                    "method": "post",
                    "triggerEvent": "onJobDone",
                    "body": {"text": key},
                    "headers": {},
                }
            )
            overrides["webhooks"] = hooks
        if overrides is not None:
            body["overrides"] = overrides
        for name in ("runParameters", "ranfrom"):
            if name in p:
                body[name] = p[name]
        if self._key_field is not None:
            body[self._key_field] = key
        return body

    # -- poll --

    async def _status(self, group: int) -> str:
        """The job group's status word: its object's ``status``, or the bare string of
        ``/status`` when the object has none."""
        path = f"/v4/jobGroups/{group}"
        response = await self._call("GET", path)
        document = response.json()
        if isinstance(document, str):
            return document
        if isinstance(document, dict) and isinstance(document.get("status"), str):
            return str(document["status"])
        response = await self._call("GET", f"{path}/status")
        document = response.json()
        if isinstance(document, dict):
            document = document.get("status")
        if not isinstance(document, str):
            raise PermanentError(
                f"GET {path}/status: HTTP {response.status}: no status in the answer"
            )
        return document

    async def _jobs(self, group: int) -> list[dict[str, Any]]:
        """The group's child jobs, best effort: a refusal other than auth gives none."""
        try:
            response = await self._call("GET", f"/v4/jobGroups/{group}/jobs")
            document = response.json()
        except AuthError:
            raise
        except PermanentError:
            return []
        items = document.get("data") if isinstance(document, dict) else document
        if not isinstance(items, list):
            return []
        return [item for item in items if isinstance(item, dict)]

    async def poll(self, handle: RemoteHandle) -> PollResult:
        groups = [int(g) for g in handle.get("jobGroupIds") or []]
        if not groups:
            return await self._poll_flow_runs(handle)
        words = {group: await self._status(group) for group in groups}
        for word in words.values():
            if word.lower() in NON_TERMINAL:
                return PollResult(RemoteStatus.RUNNING, remote_status=word)
        jobs = {group: await self._jobs(group) for group in groups}
        outputs: dict[str, Any] = {
            "jobGroupId": groups[0],
            "jobGroupIds": groups,
            "statuses": {str(group): word for group, word in words.items()},
            "jobs": [
                {
                    "id": job.get("id"),
                    "jobType": job.get("jobType"),
                    "status": job.get("status"),
                    "jobGroupId": group,
                }
                for group, items in jobs.items()
                for job in items
            ],
        }
        if handle.get("flowRunIds"):
            outputs["flowRunIds"] = handle["flowRunIds"]
        return _aggregate(words, jobs, outputs)

    async def _poll_flow_runs(self, handle: RemoteHandle) -> PollResult:
        runs = [int(r) for r in handle.get("flowRunIds") or []]
        if not runs:
            raise PermanentError(f"the handle names no job group and no flow run: {handle!r}")
        words: dict[int, str] = {}
        for run in runs:
            path = f"/v4/flowRuns/{run}/status"
            response = await self._call("GET", path)
            document = response.json()
            if isinstance(document, dict):
                document = document.get("status")
            if not isinstance(document, str):
                raise PermanentError(f"GET {path}: HTTP {response.status}: no status in the answer")
            words[run] = document
        for word in words.values():
            if word.lower() in NON_TERMINAL:
                return PollResult(RemoteStatus.RUNNING, remote_status=word)
        outputs = {"flowRunIds": runs, "statuses": {str(r): w for r, w in words.items()}}
        return _aggregate(words, {}, outputs, noun="flow run")

    # -- cancel, find --

    async def cancel(self, handle: RemoteHandle) -> CancelResult:
        groups = [int(g) for g in handle.get("jobGroupIds") or []]
        if not groups:
            return CancelResult(
                supported=False,
                message="only a flow run id is known and Trifacta has no flow run cancel",
            )
        notes = []
        for group in groups:
            path = f"/v4/jobGroups/{group}/cancel"
            try:
                await self._call("POST", path, idempotent=True)
            except AuthError:
                raise
            except NotFoundError as exc:
                if _exception_name(exc.detail) == "RouteNotFoundException":
                    return CancelResult(
                        supported=False, message=f"this instance has no cancel route: {exc}"
                    )
                raise
            except PermanentError:
                word = await self._status(group)
                if word.lower() in NON_TERMINAL:
                    raise
                notes.append(f"job group {group} had already ended ({word})")
            else:
                notes.append(f"job group {group}: cancel requested")
        return CancelResult(supported=True, message="; ".join(notes))

    async def find(self, submission: Submission) -> RemoteHandle | None:
        if self.kind != "jobGroup":
            raise LookupUndecided(
                f"a trifacta.{self.kind} run's job groups do not name the {self.kind}, so the "
                "job group list cannot tell which run was this submission's"
            )
        if self._key_field is not None:
            found = await self._find_by_key(submission)
            if found is not None:
                return found
        return await self._find_started(submission)

    async def _groups(self, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Every job group the list gives with ``params``, page by page; undecided when the
        pages do not end."""
        groups: list[dict[str, Any]] = []
        for page in range(MAX_PAGES):
            document = await self._object(
                "GET", "/v4/jobGroups", params={**params, "limit": PAGE, "offset": page * PAGE}
            )
            items = document.get("data")
            if not isinstance(items, list):
                raise PermanentError("GET /v4/jobGroups: the answer has no data list")
            groups += [item for item in items if isinstance(item, dict)]
            if len(items) < PAGE:
                return groups
        raise LookupUndecided(f"the job group list goes on past {MAX_PAGES * PAGE} groups")

    async def _find_by_key(self, submission: Submission) -> RemoteHandle | None:
        field = str(self._key_field)
        key = submission.idempotency_key
        target = _int_id(submission.params["wrangledDataset"]["id"])
        for item in await self._groups({"filter": key, "filterFields": field}):
            group = _int_id_or_none(item.get("id")) if item.get(field) == key else None
            if group is not None:
                return {"kind": "jobGroup", "target": target, "jobGroupIds": [group]}
        return None

    async def _find_started(self, submission: Submission) -> RemoteHandle | None:
        """The job group of the submission's dataset created since the write-ahead record
        that no other attempt holds; ``None`` if there is none."""
        not_before = submission.not_before
        if not_before is None:
            raise LookupUndecided("the time the submission was written ahead is not known")
        target = _int_id(submission.params["wrangledDataset"]["id"])
        claimed = {
            group
            for handle in await submission.claimed()
            for group in handle.get("jobGroupIds") or ()
        }
        found = []
        for item in await self._groups({}):
            dataset = item.get("wrangledDataset")
            group = _int_id_or_none(item.get("id"))
            if (
                group is not None
                and group not in claimed
                and isinstance(dataset, dict)
                and _int_id_or_none(dataset.get("id")) == target
                and after(wall_time(item.get("createdAt")), not_before, self._skew)
            ):
                found.append(group)
        if len(found) > 1:
            raise LookupUndecided(
                f"{len(found)} job groups of dataset {target} were created since the "
                f"submission and no other attempt holds them: {', '.join(map(str, found[:5]))}"
            )
        return {"kind": "jobGroup", "target": target, "jobGroupIds": found} if found else None


# -- documents --------------------------------------------------------------------------------


def _int_id(value: Any) -> int:
    found = _int_id_or_none(value)
    if found is None:
        raise PermanentError(f"not an id: {value!r}")
    return found


def _group_id(value: Any, job_type: str, field: str) -> int:
    """A job group id from an answer: an integer (or its digits); refused otherwise."""
    found = remote_id(value, job_type=job_type, field=field)
    group = _int_id_or_none(found)
    if group is None:
        raise PermanentError(
            f"{job_type}: the remote answered field {field!r} with {found!r}, which is not a "
            "job group id (an integer)"
        )
    return group


def _int_id_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _short(document: Any, limit: int = 200) -> str:
    text = " ".join(str(document).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _exception(detail: object) -> dict[str, Any] | None:
    exception = detail.get("exception") if isinstance(detail, dict) else None
    return exception if isinstance(exception, dict) else None


def _exception_name(detail: object) -> str | None:
    exception = _exception(detail)
    name = exception.get("name") if exception else None
    return str(name) if name else None


def _with_exception(exc: PermanentError, method: str, path: str) -> PermanentError:
    """The same error, its message taken from the ``exception`` document when there is one."""
    exception = _exception(exc.detail)
    if exception is None:
        return exc
    name = exception.get("name") or "exception"
    message = str(exception.get("message") or "(no message)")
    details = exception.get("details")
    text = f"{method} {path}: HTTP {exc.status}: {name}: {message}"
    if details and str(details) != message:
        text += f" ({_short(details)})"
    return type(exc)(text, status=exc.status, detail=exc.detail)


def _run_handle(kind: Kind, target: int, document: dict[str, Any], path: str) -> RemoteHandle:
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
            groups.append(_group_id(item["id"], job_type, f"data[{n}].id"))
        flow_run = item.get("flowRun")
        if isinstance(flow_run, dict) and flow_run.get("id") is not None:
            run = _group_id(flow_run["id"], job_type, f"data[{n}].flowRun.id")
            if run not in runs:
                runs.append(run)
    if not groups and not runs:
        raise PermanentError(f"POST {path}: the answer names no job group: {_short(document)}")
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


def _aggregate(
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


# -- validation -------------------------------------------------------------------------------


def _id_problem(field: str, value: Any) -> list[str]:
    found = _int_id_or_none(value)
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


JOB_TYPES = (
    remote_job_type(
        "trifacta.jobGroup",
        functools.partial(TrifactaConnector, kind="jobGroup"),
        connection_type="trifacta",
        required=("wrangledDataset",),
        optional=("overrides", "runParameters", "ranfrom"),
        validate=validate_job_group,
        poll=SCHEDULE,
    ),
    remote_job_type(
        "trifacta.flow",
        functools.partial(TrifactaConnector, kind="flow"),
        connection_type="trifacta",
        required=("flowId",),
        optional=("overrides", "runParameters"),
        validate=validate_flow,
        poll=SCHEDULE,
    ),
    remote_job_type(
        "trifacta.deployment",
        functools.partial(TrifactaConnector, kind="deployment"),
        connection_type="trifacta",
        required=("deploymentId",),
        optional=("runParameters",),
        validate=validate_deployment,
        poll=SCHEDULE,
    ),
)
