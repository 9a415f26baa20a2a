"""The OCAPI connector: start, poll and find job executions over the Data API with an OAuth
client-credentials token (see the package's docstring for the whole behaviour)."""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import anyio

from ...connections import Connection
from ...errors import AuthError, NotFoundError, PermanentError
from ..base import (
    CancelResult,
    ConnectorBase,
    LookupUndecided,
    PollResult,
    PollSchedule,
    RemoteHandle,
    Submission,
    after,
    clock_skew,
    wall_time,
)
from ..http.client import HttpClient, Response
from ..http.statuses import error_for_status
from .documents import (
    NON_TERMINAL,
    execution_handle,
    fault,
    fault_type,
    json_document,
    poll_result,
    status_word,
    term,
)

__all__ = ["NO_CANCEL", "SCHEDULE", "OcapiConnector"]

DEFAULT_VERSION = "v23_2"
DEFAULT_TOKEN_URL = "https://account.demandware.com/dwsso/oauth2/access_token"
ALREADY_RUNNING = "JobAlreadyRunningException"
NO_CANCEL = "OCAPI has no cancel endpoint; the execution keeps running on the remote"
LIST_PAGES = 10  # of 200 executions: past that, the newest come from job_execution_search
SCHEDULE = PollSchedule(initial=1.0, factor=1.5, cap=5.0)  # clients poll every 3-5 s

_FAULT_STATUSES = frozenset({400, 401, 403, 404, 409})
_OK = frozenset(range(200, 300)) | _FAULT_STATUSES


class OcapiConnector(ConnectorBase):
    """One OCAPI instance: an :class:`HttpClient` and a cached access token."""

    def __init__(
        self,
        connection: Connection,
        client: HttpClient | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.connection = connection
        self.client = client or HttpClient(connection)
        self._sleep = sleep
        self._clock = clock
        self._wall = wall
        self._rng = rng or random.Random()
        options = connection.options
        self._token_url = str(options.get("token_url") or DEFAULT_TOKEN_URL)
        self._default_version = str(options.get("api_version") or DEFAULT_VERSION)
        self._skew = clock_skew(connection)
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = anyio.Lock()

    async def aclose(self) -> None:
        await self.client.aclose()

    # -- auth --

    async def _bearer(self, stale: str | None = None) -> str:
        """The cached token, fetched when there is none, it is about to expire, or it is
        ``stale`` (the remote refused it)."""
        async with self._token_lock:
            fresh = self._token is not None and self._clock() < self._token_expires
            if self._token is None or not fresh or self._token == stale:
                self._token, self._token_expires = await self._fetch_token()
            return self._token

    async def _fetch_token(self) -> tuple[str, float]:
        creds = self.connection.credentials
        client_id, secret = creds.get("client_id"), creds.get("client_secret")
        if not client_id or not secret:
            raise AuthError(
                f"connection {self.connection.name!r}: credentials client_id and "
                "client_secret are required for OCAPI"
            )
        basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        try:
            response = await self.client.request(
                "POST",
                self._token_url,
                data={"grant_type": "client_credentials"},
                headers={"Authorization": f"Basic {basic}"},
                idempotent=True,  # asking for a token twice does no harm
            )
        except AuthError:
            raise
        except PermanentError as exc:
            raise AuthError(
                f"cannot get an access token: {exc}", status=exc.status, detail=exc.detail
            ) from None
        document = response.json()
        token = document.get("access_token") if isinstance(document, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthError(f"POST {response.url}: the token answer has no access_token")
        lifetime = document.get("expires_in", 1800)
        if not isinstance(lifetime, int | float) or isinstance(lifetime, bool):
            lifetime = 1800
        margin = min(60.0, 0.1 * float(lifetime))
        return token, self._clock() + max(0.0, float(lifetime) - margin)

    # -- requests --

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> Response:
        """One Data API request with the bearer token; a fault document raises with its type
        and message. An ``InvalidAccessTokenException`` renews the token once."""
        token = await self._bearer()
        renewed = False
        while True:
            response = await self.client.request(
                method,
                path,
                json=json,
                headers={**(headers or {}), "Authorization": f"Bearer {token}"},
                ok=_OK,
                idempotent=idempotent,
            )
            if response.status < 300:
                return response
            kind, message = fault(response)
            if response.status == 401 and kind == "InvalidAccessTokenException" and not renewed:
                renewed = True
                token = await self._bearer(stale=token)
                continue
            text = f"{method} {response.url}: HTTP {response.status}: {kind or 'fault'}: {message}"
            raise error_for_status(response.status, text, detail=response.detail())

    @staticmethod
    def _executions(version: str, job_id: str) -> str:
        return f"/s/-/dw/data/{version}/jobs/{quote(job_id, safe='')}/executions"

    async def _execution(self, version: str, job_id: str, execution_id: str) -> dict[str, Any]:
        path = f"{self._executions(version, job_id)}/{quote(execution_id, safe='')}"
        return json_document(await self._call("GET", path))

    async def _search(self, version: str, request: dict[str, Any]) -> list[dict[str, Any]]:
        response = await self._call(
            "POST", f"/s/-/dw/data/{version}/job_execution_search", json=request, idempotent=True
        )
        hits = json_document(response).get("hits") or []
        return [hit for hit in hits if isinstance(hit, dict)] if isinstance(hits, list) else []

    # -- the protocol --

    def _version(self, params: Mapping[str, Any]) -> str:
        return str(params.get("apiVersion") or self._default_version)

    async def submit(self, submission: Submission) -> RemoteHandle:
        p = submission.params
        job_id, version = str(p["jobId"]), self._version(p)
        body = None
        if p.get("parameters") is not None:
            body = {
                "parameters": [{"name": i["name"], "value": i["value"]} for i in p["parameters"]]
            }
        document = await self._submit(p, version, job_id, body, submission.idempotency_key)
        return execution_handle(document, job_id, version)

    async def _submit(
        self,
        p: Mapping[str, Any],
        version: str,
        job_id: str,
        body: dict[str, Any] | None,
        key: str,
    ) -> dict[str, Any]:
        try:
            return await self._start(version, job_id, body, key)
        except PermanentError as exc:
            if fault_type(exc.detail) != ALREADY_RUNNING:
                raise
            if p.get("onJobAlreadyRunning", "fail") != "wait":
                raise PermanentError(
                    f"{exc} (onJobAlreadyRunning is 'fail')", status=exc.status, detail=exc.detail
                ) from None
            await self._wait_for_running(version, job_id)
            try:
                return await self._start(version, job_id, body, key)
            except PermanentError as again:
                if fault_type(again.detail) != ALREADY_RUNNING:
                    raise
                raise PermanentError(
                    f"{again} (still running after waiting for the execution that was running)",
                    status=again.status,
                    detail=again.detail,
                ) from None

    async def _start(
        self, version: str, job_id: str, body: dict[str, Any] | None, key: str
    ) -> dict[str, Any]:
        response = await self._call(
            "POST", self._executions(version, job_id), json=body, headers={"Idempotency-Key": key}
        )
        document = json_document(response)
        if document.get("id") is None:
            raise PermanentError(f"POST {response.url}: the job_execution answer has no id")
        return document

    async def _wait_for_running(self, version: str, job_id: str) -> None:
        """Wait until the execution that blocks ``job_id`` has ended."""
        hits = await self._search(
            version,
            {
                "query": {
                    "bool_query": {
                        "must": [
                            term("job_id", "is", [job_id]),
                            term("status", "one_of", ["RUNNING", "PENDING"]),
                        ]
                    }
                },
                "sorts": [{"field": "start_time", "sort_order": "asc"}],
                "count": 1,
            },
        )
        if not hits or hits[0].get("id") is None:
            return  # it ended in between
        execution_id = str(hits[0]["id"])
        polls = 0
        while True:
            polls += 1
            await self._sleep(SCHEDULE.delay(polls, self._rng.random()))
            try:
                document = await self._execution(version, job_id, execution_id)
            except NotFoundError:
                return
            if status_word(document) not in NON_TERMINAL:
                return

    async def poll(self, handle: RemoteHandle) -> PollResult:
        document = await self._execution(
            str(handle.get("apiVersion") or self._default_version),
            str(handle["jobId"]),
            str(handle["id"]),
        )
        return poll_result(document)

    async def cancel(self, handle: RemoteHandle) -> CancelResult:
        return CancelResult(supported=False, message=NO_CANCEL)

    async def find(self, submission: Submission) -> RemoteHandle | None:
        """The job's execution started since the write-ahead record, by this connection's
        ``client_id``, with the submission's parameters, that no other attempt holds."""
        not_before = submission.not_before
        if not_before is None:
            raise LookupUndecided("the time the submission was written ahead is not known")
        p = submission.params
        job_id, version = str(p["jobId"]), self._version(p)
        wanted = sorted((str(i["name"]), str(i["value"])) for i in p.get("parameters") or [])
        client_id = self.connection.credentials.get("client_id")
        claimed = {str(h.get("id")) for h in await submission.claimed() if h.get("jobId") == job_id}
        found = []
        for hit in await self._started_since(version, job_id, not_before):
            if hit.get("id") is None or str(hit["id"]) in claimed:
                continue
            if not after(wall_time(hit.get("start_time")), not_before, self._skew):
                continue
            if hit.get("client_id") is not None and hit.get("client_id") != client_id:
                continue
            params = hit.get("parameters")
            if isinstance(params, list) and wanted != sorted(
                (str(i.get("name")), str(i.get("value"))) for i in params if isinstance(i, dict)
            ):
                continue
            found.append(hit)
        if len(found) > 1:
            ids = ", ".join(str(hit["id"]) for hit in found[:5])
            raise LookupUndecided(
                f"{len(found)} executions of job {job_id} by this client started since the "
                f"submission and no other attempt holds them: {ids}"
            )
        return execution_handle(found[0], job_id, version) if found else None

    async def _started_since(
        self, version: str, job_id: str, not_before: float
    ) -> list[dict[str, Any]]:
        """The job's executions: ``GET /jobs/{job_id}/executions`` page by page (seed 004,
        Data API 17.2); where that route is gone, or the list is too long, the newest by
        ``job_execution_search``."""
        executions: list[dict[str, Any]] = []
        try:
            for page in range(LIST_PAGES):
                response = await self._call(
                    "GET",
                    f"{self._executions(version, job_id)}?start={page * 200}&count=200",
                )
                document = json_document(response)
                data = document.get("data")
                items = [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []
                executions += items
                total = document.get("total")
                if len(items) < 200 or (isinstance(total, int) and len(executions) >= total):
                    return executions
        except AuthError:
            raise
        except PermanentError:
            pass  # no such route in this version: search instead
        since = datetime.fromtimestamp(not_before - self._skew, UTC).isoformat()
        hits = await self._search(
            version,
            {
                "query": term("job_id", "is", [job_id]),
                "sorts": [{"field": "start_time", "sort_order": "desc"}],
                "count": 200,
            },
        )
        if hits and (wall_time(hits[-1].get("start_time")) or 0.0) >= not_before - self._skew:
            raise LookupUndecided(f"more than 200 executions of job {job_id} started since {since}")
        return hits
