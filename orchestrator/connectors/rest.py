"""The ``http`` job type: any REST job API, described per job.

Fields: ``submit`` (``{method, path, body?, headers?}``), ``idPath`` (a JSON path to the remote id
in the submit answer), ``poll`` (``{method, path}`` with ``{id}`` and ``{key}`` placeholders),
``statusPath``, ``running``, ``success``, ``failure`` (the remote's status values), optional
``errorPath``, ``outputsPath``, ``cancel`` (``{method, path}``) and ``find`` (``{method, path,
listPath}``: a search by idempotency key, used after a crash). A status in none of the three
sets fails the job ("unknown remote status"); it is never taken for success.

The connection gives ``base_url`` and auth: credential ``token`` (Bearer), or ``username`` and
``password`` (Basic), plus any ``options.headers``. Every submit carries the attempt's
``Idempotency-Key`` header.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..connections import Connection
from ..errors import PermanentError
from .base import (
    CancelResult,
    ConnectorBase,
    PollResult,
    PollSchedule,
    RemoteHandle,
    RemoteStatus,
    Submission,
    remote_job_type,
)
from .base import remote_id as remote_id_of
from .http import jsonpath
from .http.auth import bearer_or_basic
from .http.client import HttpClient

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def auth_headers(connection: Connection | None) -> dict[str, str]:
    if connection is None:
        return {}
    headers = {str(k): str(v) for k, v in dict(connection.options.get("headers", {})).items()}
    return {**headers, **bearer_or_basic(connection.credentials)}


class RestConnector(ConnectorBase):
    def __init__(self, connection: Connection, client: HttpClient | None = None) -> None:
        self.client = client or HttpClient(connection, headers=auth_headers(connection))

    async def aclose(self) -> None:
        await self.client.aclose()

    async def submit(self, submission: Submission) -> RemoteHandle:
        p = submission.params
        submit = p["submit"]
        key = submission.idempotency_key
        extra = submit.get("headers")
        headers = {**extra, "Idempotency-Key": key} if extra else {"Idempotency-Key": key}
        response = await self.client.request(
            submit.get("method", "POST"), submit["path"], json=submit.get("body"), headers=headers
        )
        document = response.json()
        try:
            remote_id = jsonpath.get(document, p["idPath"])
        except jsonpath.Missing:
            raise PermanentError(
                f"submit answer has no id at {p['idPath']!r}: {response.text()[:200]}"
            ) from None
        return self._handle(
            p, str(remote_id_of(remote_id, job_type="http", field=p["idPath"])), key
        )

    def _handle(self, p: Mapping[str, Any], remote_id: str, key: str) -> RemoteHandle:
        # The status lists are the job's own (validated as lists), not copies: a handle is only
        # read and stored, never changed, and it lives as long as the run.
        handle: RemoteHandle = {
            "id": remote_id,
            "key": key,
            "poll": {"method": p["poll"].get("method", "GET").upper(), "path": p["poll"]["path"]},
            "statusPath": p["statusPath"],
            "running": p["running"],
            "success": p["success"],
            "failure": p["failure"],
        }
        for name in ("errorPath", "outputsPath"):
            if p.get(name):
                handle[name] = p[name]
        if p.get("cancel"):
            handle["cancel"] = {
                "method": p["cancel"].get("method", "POST").upper(),
                "path": p["cancel"]["path"],
            }
        return handle

    @staticmethod
    def _path(template: str, handle: Mapping[str, Any]) -> str:
        return template.replace("{id}", str(handle["id"])).replace(
            "{key}", str(handle.get("key", ""))
        )

    async def poll(self, handle: RemoteHandle) -> PollResult:
        poll = handle["poll"]
        response = await self.client.request(poll["method"], self._path(poll["path"], handle))
        document = response.json()
        try:
            status = jsonpath.get(document, handle["statusPath"])
        except jsonpath.Missing:
            raise PermanentError(f"poll answer has no status at {handle['statusPath']!r}") from None
        word = str(status)
        if word in handle["running"]:
            return PollResult(RemoteStatus.RUNNING, remote_status=word)
        outputs: dict[str, Any] = {}
        if handle.get("outputsPath"):
            try:
                value = jsonpath.get(document, handle["outputsPath"])
                outputs = value if isinstance(value, dict) else {"result": value}
            except jsonpath.Missing:
                outputs = {}
        if word in handle["success"]:
            return PollResult(RemoteStatus.SUCCEEDED, remote_status=word, outputs=outputs)
        error = f"remote status {word}"
        if handle.get("errorPath"):
            try:
                error = str(jsonpath.get(document, handle["errorPath"]))
            except jsonpath.Missing:
                pass
        if word in handle["failure"]:
            return PollResult(RemoteStatus.FAILED, remote_status=word, error=error, outputs=outputs)
        return PollResult(
            RemoteStatus.FAILED, remote_status=word, error=f"unknown remote status {word!r}"
        )

    async def cancel(self, handle: RemoteHandle) -> CancelResult:
        cancel = handle.get("cancel")
        if not cancel:
            return CancelResult(False, "the job has no cancel request configured")
        response = await self.client.request(
            cancel["method"], self._path(cancel["path"], handle), ok=(*range(200, 300), 409)
        )
        if response.status == 409:
            return CancelResult(True, "the remote job had already ended")
        return CancelResult(True, f"cancelled (HTTP {response.status})")

    async def find(self, submission: Submission) -> RemoteHandle | None:
        p = submission.params
        find = p.get("find")
        if not find:
            return None
        key = submission.idempotency_key
        path = find["path"].replace("{key}", key)
        response = await self.client.request(find.get("method", "GET").upper(), path)
        try:
            found = jsonpath.get(response.json(), find.get("listPath", "$"))
        except jsonpath.Missing:
            return None
        items = found if isinstance(found, list) else [found]
        for item in items:
            try:
                remote_id = jsonpath.get(item, p["idPath"])
            except jsonpath.Missing:
                continue
            return self._handle(
                p, str(remote_id_of(remote_id, job_type="http", field=p["idPath"])), key
            )
        return None


def _id(value: Any, p: Mapping[str, Any]) -> str:
    """The remote id at ``idPath``, refused when it is not an id (NaN, a bool, an object…)."""
    return str(remote_id_of(value, job_type="http", field=p["idPath"]))


def _request_problems(
    name: str, value: Any, *, required: bool, key_allowed: bool = False
) -> list[str]:
    if value is None:
        return [f"field {name!r}: required"] if required else []
    if not isinstance(value, dict):
        return [f"field {name!r}: expected an object with 'method' and 'path'"]
    problems = []
    method = value.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in METHODS:
        problems.append(f"field '{name}.method': {method!r} is not one of {', '.join(METHODS)}")
    path = value.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        problems.append(f"field '{name}.path': expected a path starting with '/'")
    if "headers" in value and not (
        isinstance(value["headers"], dict)
        and all(isinstance(v, str) for v in value["headers"].values())
    ):
        problems.append(f"field '{name}.headers': expected an object of strings")
    return problems


def validate(params: Mapping[str, Any]) -> list[str]:
    problems = _request_problems("submit", params.get("submit"), required=True)
    problems += _request_problems("poll", params.get("poll"), required=True)
    problems += _request_problems("cancel", params.get("cancel"), required=False)
    problems += _request_problems("find", params.get("find"), required=False)
    for name in ("idPath", "statusPath", "errorPath", "outputsPath"):
        if name in params:
            try:
                jsonpath.parse(str(params[name]))
            except ValueError as exc:
                problems.append(f"field {name!r}: {exc}")
    find = params.get("find")
    if isinstance(find, dict) and "listPath" in find:
        try:
            jsonpath.parse(str(find["listPath"]))
        except ValueError as exc:
            problems.append(f"field 'find.listPath': {exc}")
    sets = {}
    for name in ("running", "success", "failure"):
        value = params.get(name)
        if value is None:
            continue
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            problems.append(f"field {name!r}: expected a non-empty list of status values")
        else:
            sets[name] = set(value)
    names = list(sets)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            common = sets[a] & sets[b]
            if common:
                problems.append(f"fields {a!r} and {b!r}: both list {sorted(common)[0]!r}")
    return problems


JOB_TYPES = (
    remote_job_type(
        "http",
        RestConnector,
        connection_type="http",
        required=("submit", "idPath", "poll", "statusPath", "running", "success", "failure"),
        optional=("errorPath", "outputsPath", "cancel", "find"),
        validate=validate,
        poll=PollSchedule(initial=0.5, factor=1.5, cap=30.0),
    ),
)
