"""The Trifacta connector: submit, poll, cancel and find job groups, flow runs and deployment
runs over the v4 API (see the package's docstring for the whole behaviour)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...connections import Connection
from ...errors import AuthError, NotFoundError, PermanentError
from ..base import (
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
    wall_time,
)
from ..http.client import HttpClient, Response
from .documents import (
    NON_TERMINAL,
    Kind,
    aggregate,
    exception_name,
    group_id,
    int_id,
    int_id_or_none,
    run_handle,
    short,
    with_exception,
)

__all__ = ["CALLBACK_NAME", "SCHEDULE", "TrifactaConnector"]

SCHEDULE = PollSchedule(initial=2.0, factor=1.5, cap=30.0)  # no vendor guidance; jobs take minutes
PAGE = 25  # the list's default limit
MAX_PAGES = 40
CALLBACK_NAME = "orchestrator callback"

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
            raise with_exception(exc, method, path) from None

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
            target = int_id(p["wrangledDataset"]["id"])
            body = self._job_group_body(p, key, submission.callback_url)
            document = await self._object("POST", "/v4/jobGroups", json=body, headers=headers)
            if document.get("id") is None:
                raise PermanentError(
                    f"POST /v4/jobGroups: the answer has no job group id: {short(document)}"
                )
            group = group_id(document["id"], "trifacta.jobGroup", "id")
            return _group_handle(target, [group], p)
        if self.kind == "flow":
            target = int_id(p["flowId"])
            path = f"/v4/flows/{target}/run"
            run_body = {k: p[k] for k in ("overrides", "runParameters") if k in p} or None
        else:
            target = int_id(p["deploymentId"])
            path = f"/v4/deployments/{target}/run"
            run_body = {"runParameters": p["runParameters"]} if "runParameters" in p else None
        document = await self._object("POST", path, json=run_body, headers=headers)
        return run_handle(self.kind, target, document, path)

    def _job_group_body(
        self, p: Mapping[str, Any], key: str, callback_url: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"wrangledDataset": {"id": int_id(p["wrangledDataset"]["id"])}}
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
                    "sslVerification": True,
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
        if handle.get("outputPaths"):
            outputs["outputPaths"] = handle["outputPaths"]
        return aggregate(words, jobs, outputs)

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
        return aggregate(words, {}, outputs, noun="flow run")

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
                if exception_name(exc.detail) == "RouteNotFoundException":
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
        target = int_id(submission.params["wrangledDataset"]["id"])
        for item in await self._groups({"filter": key, "filterFields": field}):
            group = int_id_or_none(item.get("id")) if item.get(field) == key else None
            if group is not None:
                return _group_handle(target, [group], submission.params)
        return None

    async def _find_started(self, submission: Submission) -> RemoteHandle | None:
        """The job group of the submission's dataset created since the write-ahead record
        that no other attempt holds; ``None`` if there is none."""
        not_before = submission.not_before
        if not_before is None:
            raise LookupUndecided("the time the submission was written ahead is not known")
        target = int_id(submission.params["wrangledDataset"]["id"])
        claimed = {
            group
            for handle in await submission.claimed()
            for group in handle.get("jobGroupIds") or ()
        }
        found = []
        for item in await self._groups({}):
            dataset = item.get("wrangledDataset")
            group = int_id_or_none(item.get("id"))
            if (
                group is not None
                and group not in claimed
                and isinstance(dataset, dict)
                and int_id_or_none(dataset.get("id")) == target
                and after(wall_time(item.get("createdAt")), not_before, self._skew)
            ):
                found.append(group)
        if len(found) > 1:
            raise LookupUndecided(
                f"{len(found)} job groups of dataset {target} were created since the "
                f"submission and no other attempt holds them: {', '.join(map(str, found[:5]))}"
            )
        return _group_handle(target, found, submission.params) if found else None


def _group_handle(target: int, groups: list[int], params: Mapping[str, Any]) -> RemoteHandle:
    """A job group's handle; with the paths its ``overrides.writesettings`` write to, which
    its outputs then show (``outputPaths``: what a downstream job reads, as
    ``{{ wrangle.outputPaths[0] }}``)."""
    handle: dict[str, Any] = {"kind": "jobGroup", "target": target, "jobGroupIds": groups}
    overrides = params.get("overrides")
    settings = overrides.get("writesettings") if isinstance(overrides, Mapping) else None
    if isinstance(settings, list):
        paths = [
            w["path"] for w in settings if isinstance(w, Mapping) and isinstance(w.get("path"), str)
        ]
        if paths:
            handle["outputPaths"] = paths
    return handle
