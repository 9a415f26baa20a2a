"""HttpClient against real local servers (aiohttp on 127.0.0.1), aioresponses for odd shapes.

Waits are recorded by an injected ``sleep`` that returns at once, so no test sleeps for real
beyond a few request deadlines of 0.05 s.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from unittest.mock import Mock

import aiohttp
import anyio
import pytest
from aiohttp import web
from aioresponses import aioresponses
from structlog.testing import capture_logs

from orchestrator.connections import Connection
from orchestrator.connectors.http.client import HttpClient, Response, TransientRetry
from orchestrator.connectors.http.response import loads as _loads
from orchestrator.errors import (
    AuthError,
    ConnectorError,
    NotFoundError,
    PermanentError,
    TransientError,
)

SECRET = "tok-9f8e7d6c5b4a"
NOW = 1_700_000_000.0  # the injected wall clock

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Remote:
    """A scripted server: each path answers from a queue of handlers, the last one repeating;
    every request is recorded."""

    def __init__(self) -> None:
        self.scripts: dict[str, deque[Handler]] = {}
        self.seen: list[web.Request] = []
        self.bodies: list[bytes] = []
        self.release = asyncio.Event()  # ends handlers that hang
        self.base_url = ""

    def on(self, path: str, *handlers: Handler) -> None:
        self.scripts[path] = deque(handlers)

    def hits(self, path: str) -> int:
        return sum(1 for r in self.seen if r.path == path)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request)
        self.bodies.append(await request.read())
        script = self.scripts.get(request.path)
        if not script:
            return web.json_response({"message": "no such route"}, status=404)
        handler = script.popleft() if len(script) > 1 else script[0]
        return await handler(request)


def reply(status: int = 200, body: Any = None, headers: dict[str, str] | None = None) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        if isinstance(body, bytes | str):
            return web.Response(status=status, body=body, headers=headers)
        return web.json_response(body if body is not None else {}, status=status, headers=headers)

    return handler


async def drop(request: web.Request) -> web.StreamResponse:
    """Read the request, then cut the connection without answering."""
    assert request.transport is not None
    request.transport.abort()
    return web.Response()  # never reaches the client


@pytest.fixture
async def remote() -> AsyncIterator[Remote]:
    remote = Remote()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", remote.handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    remote.base_url = f"http://127.0.0.1:{port}/api"
    yield remote
    remote.release.set()
    await runner.cleanup()


class Recorder:
    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.sleeps.append(delay)
        await anyio.lowlevel.checkpoint()


def conn(base_url: str, **kwargs: Any) -> Connection:
    return Connection(name="remote", type="http", base_url=base_url, **kwargs)


def client(
    connection: Connection,
    sleep: Recorder,
    *,
    attempts: int = 5,
    max_wait: float = 300.0,
    **kwargs: Any,
) -> HttpClient:
    return HttpClient(
        connection,
        sleep=sleep,
        rng=random.Random(7),
        clock=lambda: NOW,
        retry=TransientRetry(attempts=attempts, max_wait=max_wait),
        **kwargs,
    )


# -- success and URLs --------------------------------------------------------------------------


async def test_get_json_with_base_prefix_params_and_headers(remote: Remote) -> None:
    remote.on("/api/v4/jobGroups", reply(200, {"data": [1, 2]}))
    rec = Recorder()
    async with client(
        conn(remote.base_url), rec, headers={"Authorization": f"Bearer {SECRET}"}
    ) as http:
        resp = await http.request(
            "get", "/v4/jobGroups", params={"limit": 2, "embed": True, "skip": None, "id": [1, 2]}
        )
    assert resp.status == 200
    assert resp.json() == {"data": [1, 2]}
    assert resp.url == f"{remote.base_url}/v4/jobGroups"  # no query string
    assert resp.headers["content-type"].startswith("application/json")  # case-insensitive
    assert "application/json" not in repr(resp)
    seen = remote.seen[0]
    assert seen.method == "GET"
    assert seen.query_string == "limit=2&embed=true&id=1&id=2"
    assert seen.headers["Authorization"] == f"Bearer {SECRET}"
    assert seen.headers["User-Agent"].startswith("orchestrator/")
    assert rec.sleeps == []
    stats = http.statistics()
    assert (stats["requests"], stats["sent"], stats["retries"], stats["open"]) == (1, 1, 0, False)
    assert stats["bytes_received"] == len(resp.body)


async def test_post_json_and_absolute_url(remote: Remote) -> None:
    remote.on("/other/submit", reply(201, {"id": 5}))
    async with client(conn("http://127.0.0.1:1/unused"), Recorder()) as http:
        absolute = remote.base_url.replace("/api", "/other/submit")
        resp = await http.request("POST", absolute, json={"a": 1}, headers={"X-Key": "k"})
    assert resp.json() == {"id": 5}
    assert remote.bodies == [b'{"a": 1}']
    assert remote.seen[0].headers["X-Key"] == "k"


async def test_text_uses_charset(remote: Remote) -> None:
    remote.on(
        "/api/t",
        reply(200, "café".encode("latin-1"), {"Content-Type": "text/plain; charset=latin-1"}),
    )
    async with client(conn(remote.base_url), Recorder()) as http:
        resp = await http.request("GET", "t")
    assert resp.text() == "café"


async def test_status_accepted_by_ok(remote: Remote) -> None:
    remote.on("/api/gone", reply(404, {"message": "nope"}))
    async with client(conn(remote.base_url), Recorder()) as http:
        resp = await http.request("GET", "/gone", ok={200, 404})
    assert resp.status == 404


# -- transient statuses ----------------------------------------------------------------------


async def test_5xx_retried_then_success(remote: Remote) -> None:
    remote.on("/api/j", reply(503), reply(500), reply(502), reply(200, {"ok": True}))
    rec = Recorder()
    async with client(conn(remote.base_url), rec) as http:
        with capture_logs() as logs:
            resp = await http.request("POST", "/j", json={})
    assert resp.json() == {"ok": True}
    assert remote.hits("/api/j") == 4
    assert len(rec.sleeps) == 3
    for n, delay in enumerate(rec.sleeps, start=1):  # full jitter under the exponential cap
        assert 0.0 <= delay <= 0.5 * 2 ** (n - 1)
    retries = [e for e in logs if e["event"] == "http.retry"]
    assert [e["status"] for e in retries] == [503, 500, 502]
    assert http.statistics()["retries"] == 3


async def test_retry_after_seconds_honoured(remote: Remote) -> None:
    remote.on("/api/j", reply(429, {}, {"Retry-After": "7"}), reply(200))
    rec = Recorder()
    async with client(conn(remote.base_url), rec) as http:
        await http.request("GET", "/j")
    assert len(rec.sleeps) == 1
    assert rec.sleeps[0] >= 7.0
    assert http.statistics()["throttled"] == 1


async def test_retry_after_http_date_honoured(remote: Remote) -> None:
    when = email.utils.formatdate(NOW + 12, usegmt=True)
    remote.on("/api/j", reply(503, {}, {"Retry-After": when}), reply(200))
    rec = Recorder()
    async with client(conn(remote.base_url), rec) as http:
        await http.request("GET", "/j")
    assert len(rec.sleeps) == 1
    assert rec.sleeps[0] >= 12.0


async def test_x_ratelimit_reset_honoured(remote: Remote) -> None:
    remote.on("/api/j", reply(429, {}, {"x-ratelimit-reset": "4"}), reply(200))
    rec = Recorder()
    async with client(conn(remote.base_url), rec) as http:
        await http.request("POST", "/j")
    assert len(rec.sleeps) == 1
    assert rec.sleeps[0] >= 4.0


async def test_retries_run_out(remote: Remote) -> None:
    remote.on("/api/j", reply(503, {"message": "maintenance"}, {"Retry-After": "2"}))
    rec = Recorder()
    async with client(conn(remote.base_url), rec, attempts=3) as http:
        with pytest.raises(TransientError) as info:
            await http.request("GET", "/j")
    err = info.value
    assert (err.status, err.retry_after, err.ambiguous) == (503, 2.0, False)
    assert err.detail == {"message": "maintenance"}
    assert str(err).startswith(f"GET {remote.base_url}/j: HTTP 503: maintenance")
    assert remote.hits("/api/j") == 3
    assert len(rec.sleeps) == 2
    assert http.statistics()["failures"] == 1


async def test_long_retry_after_pauses_the_connection(remote: Remote) -> None:
    remote.on("/api/j", reply(429, {}, {"Retry-After": "3600"}))
    remote.on("/api/k", reply(200))
    rec = Recorder()
    async with client(conn(remote.base_url), rec, max_wait=60) as http:
        with pytest.raises(TransientError) as info:
            await http.request("GET", "/j")
        assert info.value.retry_after == 3600
        assert info.value.status == 429
        # Every request of the connection now waits for the remote, without being sent.
        with pytest.raises(TransientError) as other:
            await http.request("GET", "/k")
        assert other.value.retry_after is not None
        assert other.value.retry_after > 3500
    assert remote.hits("/api/j") == 1
    assert remote.hits("/api/k") == 0
    assert rec.sleeps == []


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, PermanentError),
        (401, AuthError),
        (403, AuthError),
        (404, NotFoundError),
        (409, PermanentError),
        (422, PermanentError),
        (302, PermanentError),  # redirects are not followed
    ],
)
async def test_4xx_mapped(remote: Remote, status: int, error: type[Exception]) -> None:
    remote.on("/api/x", reply(status, {"error": {"message": "bad input"}, "code": 7}))
    rec = Recorder()
    async with client(conn(remote.base_url), rec) as http:
        with pytest.raises(error) as info:
            await http.request("GET", "/x", params={"token": SECRET})
    err = info.value
    assert isinstance(err, ConnectorError)
    assert type(err) is error
    assert err.status == status
    assert err.detail == {"error": {"message": "bad input"}, "code": 7}
    assert str(err) == f"GET {remote.base_url}/x: HTTP {status}: bad input"
    assert SECRET not in str(err)
    assert rec.sleeps == []
    assert remote.hits("/api/x") == 1


async def test_text_error_detail_is_truncated(remote: Remote) -> None:
    remote.on("/api/x", reply(400, "<html>" + "x" * 2000 + "</html>"))
    async with client(conn(remote.base_url), Recorder()) as http:
        with pytest.raises(PermanentError) as info:
            await http.request("GET", "/x")
    assert isinstance(info.value.detail, str)
    assert len(info.value.detail) == 500
    assert len(str(info.value)) < 300


async def test_non_json_body(remote: Remote) -> None:
    remote.on("/api/x", reply(200, "<html>oops</html>", {"Content-Type": "text/html"}))
    async with client(conn(remote.base_url), Recorder()) as http:
        resp = await http.request("GET", "/x", params={"q": "1"})
    with pytest.raises(PermanentError) as info:
        resp.json()
    assert f"{remote.base_url}/x" in str(info.value)
    assert "not JSON" in str(info.value)
    assert "q=1" not in str(info.value)


async def test_oversized_body_by_content_length(remote: Remote) -> None:
    remote.on("/api/big", reply(200, b"x" * 5000))
    async with client(conn(remote.base_url), Recorder(), max_body=1000) as http:
        with pytest.raises(PermanentError, match="larger than 1000 bytes"):
            await http.request("GET", "/big")


async def test_oversized_streamed_body(remote: Remote) -> None:
    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(10):
            await resp.write(b"y" * 500)
        await resp.write_eof()
        return resp

    remote.on("/api/big", stream)
    async with client(conn(remote.base_url), Recorder(), max_body=1000) as http:
        with pytest.raises(PermanentError, match="larger than 1000 bytes"):
            await http.request("GET", "/big")


# -- the wire ---------------------------------------------------------------------------------


async def test_dropped_connection_get_retried(remote: Remote) -> None:
    remote.on("/api/j", drop, reply(200, {"ok": 1}))
    rec = Recorder()
    async with client(conn(remote.base_url), rec) as http:
        resp = await http.request("GET", "/j")
    assert resp.json() == {"ok": 1}
    assert remote.hits("/api/j") == 2
    assert len(rec.sleeps) == 1


async def test_dropped_connection_post_ambiguous(remote: Remote) -> None:
    remote.on("/api/j", drop, reply(201))
    rec = Recorder()
    async with client(conn(remote.base_url), rec) as http:
        with pytest.raises(TransientError) as info:
            await http.request("POST", "/j", json={"x": 1})
    assert info.value.ambiguous is True
    assert "may have been acted on" in str(info.value)
    assert remote.hits("/api/j") == 1
    assert rec.sleeps == []


async def test_dropped_connection_post_marked_idempotent_retried(remote: Remote) -> None:
    remote.on("/api/j", drop, reply(201))
    async with client(conn(remote.base_url), Recorder()) as http:
        resp = await http.request("POST", "/j", json={}, idempotent=True)
    assert resp.status == 201


async def test_timeout_get_retried_and_post_ambiguous(remote: Remote) -> None:
    async def hang(request: web.Request) -> web.StreamResponse:
        await remote.release.wait()
        return web.Response()

    remote.on("/api/slow", hang, reply(200))
    async with client(conn(remote.base_url), Recorder()) as http:
        assert (await http.request("GET", "/slow", timeout=0.05)).status == 200
    remote.on("/api/slow", hang)
    async with client(conn(remote.base_url, timeout=0.05), Recorder()) as http:
        with pytest.raises(TransientError) as info:
            await http.request("POST", "/slow")
    assert info.value.ambiguous is True
    assert "0.05s" in str(info.value)


async def test_connection_refused_always_retried() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    rec = Recorder()
    async with client(conn(f"http://127.0.0.1:{port}"), rec, attempts=3) as http:
        with pytest.raises(TransientError) as info:
            await http.request("POST", "/submit", json={})
    err = info.value
    assert err.ambiguous is False  # nothing was sent
    assert "cannot connect" in str(err)
    assert len(rec.sleeps) == 2
    assert err.__cause__ is None
    assert err.__suppress_context__


async def test_malformed_response_from_raw_server() -> None:
    hits = 0

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal hits
        hits += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 two hundred OK\r\nbroken\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with client(conn(f"http://127.0.0.1:{port}"), Recorder(), attempts=2) as http:
            with pytest.raises(TransientError) as info:
                await http.request("GET", "/x")
            assert hits == 2
            with pytest.raises(TransientError) as post:
                await http.request("POST", "/x")
            assert post.value.ambiguous is True
        assert "malformed" in str(info.value) or "closed" in str(info.value)
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("exc", "method", "ambiguous"),
    [
        (aiohttp.ClientPayloadError("cut"), "GET", False),
        (aiohttp.ClientPayloadError("cut"), "POST", True),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), "PATCH", True),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), "PUT", False),
        (aiohttp.ServerDisconnectedError(), "DELETE", False),
        (TimeoutError(), "GET", False),
        (aiohttp.SocketTimeoutError(), "POST", True),
        (aiohttp.ConnectionTimeoutError(), "POST", False),
        (
            aiohttp.ClientConnectorDNSError(Mock(host="h", port=80), OSError(-2, "no name")),
            "POST",
            False,
        ),
    ],
)
async def test_odd_wire_faults(exc: Exception, method: str, ambiguous: bool) -> None:
    """Faults as aiohttp raises them. (aioresponses 0.7.9 cannot build responses under aiohttp
    3.14, so each case fails every try and the outcome tells whether it was retried.)"""
    url = "http://remote.test/api/j"
    rec = Recorder()
    with aioresponses() as mocked:
        mocked.add(url, method=method, exception=exc, repeat=True)
        async with client(conn("http://remote.test/api"), rec, attempts=3) as http:
            with pytest.raises(TransientError) as info:
                await http.request(method, "/j")
    assert info.value.ambiguous is ambiguous
    assert len(rec.sleeps) == (0 if ambiguous else 2)
    assert info.value.__cause__ is None


async def test_odd_retry_after_values(remote: Remote) -> None:
    remote.on(
        "/api/j",
        reply(429, {}, {"Retry-After": "not a date"}),
        reply(429, {}, {"Retry-After": "-5"}),
        reply(503, {}, {"Retry-After": "1.5", "x-ratelimit-reset": "9"}),
        reply(200, b""),
    )
    rec = Recorder()
    async with client(conn(remote.base_url), rec) as http:
        resp = await http.request("GET", "/j")
    assert resp.body == b""
    assert len(rec.sleeps) == 3
    assert rec.sleeps[0] <= 0.5  # an unreadable Retry-After: plain backoff
    assert rec.sleeps[1] <= 1.0  # a negative one: no wait beyond the backoff
    assert rec.sleeps[2] >= 1.5
    with pytest.raises(PermanentError, match="not JSON"):
        resp.json()


# -- rate limit, lifetime, secrets ----------------------------------------------------------------


async def test_rate_limit_spaces_tries(remote: Remote) -> None:
    remote.on("/api/j", reply(200))
    rec = Recorder()
    async with client(conn(remote.base_url, rate=10.0, burst=2), rec) as http:
        for _ in range(5):
            await http.request("GET", "/j")
        stats = http.statistics()["rate_limit"]
    assert stats["acquired"] == 5
    assert len(rec.sleeps) == 3
    assert sum(rec.sleeps) == pytest.approx(0.3, abs=0.05)


async def test_invalid_url_is_permanent() -> None:
    rec = Recorder()
    async with client(conn("http://h"), rec) as http:
        with pytest.raises(PermanentError, match="not a valid"):
            await http.request("GET", "http://[::1/x")
    assert rec.sleeps == []


async def test_closed_client_refuses(remote: Remote) -> None:
    http = client(conn(remote.base_url), Recorder())
    await http.aclose()
    with pytest.raises(ConnectorError, match="closed"):
        await http.request("GET", "/j")


async def test_concurrent_first_requests_leave_in_the_same_turn(
    remote: Remote, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session is made at once by the first request (no CA file to load): the others do
    not queue behind a lock, one turn of the loop after another, and a run's first requests
    leave together."""
    remote.on("/api/j", reply(200, {"ok": True}))
    sent: list[str] = []
    real = aiohttp.ClientSession._request

    def record(self: aiohttp.ClientSession, method: str, url: Any, **kwargs: Any) -> Any:
        sent.append(str(url))
        return real(self, method, url, **kwargs)

    monkeypatch.setattr(aiohttp.ClientSession, "_request", record)
    async with client(conn(remote.base_url), Recorder()) as http:
        tasks = [asyncio.create_task(http.request("GET", "/j")) for _ in range(20)]
        await asyncio.sleep(0)  # one turn: each task runs up to its first wait
        assert len(sent) == 20
        assert [r.status for r in await asyncio.gather(*tasks)] == [200] * 20
    assert remote.hits("/api/j") == 20


async def test_no_secret_in_errors_or_logs(remote: Remote) -> None:
    remote.on("/api/j", reply(500, {"message": "boom"}))
    rec = Recorder()
    headers = {"Authorization": f"Bearer {SECRET}"}
    with capture_logs() as logs:
        async with client(
            conn(remote.base_url, credentials={"token": SECRET}), rec, headers=headers, attempts=3
        ) as http:
            with pytest.raises(TransientError) as info:
                await http.request("GET", "/j", params={"api_key": SECRET})
            stats = http.statistics()
    text = f"{info.value!s} {info.value!r} {info.value.detail!r} {logs!r} {stats!r}"
    assert SECRET not in text
    assert "api_key" not in text
    assert len([e for e in logs if e["event"] == "http.retry"]) == 2


# -- TLS ----------------------------------------------------------------------------------------


@pytest.fixture
async def tls_remote(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    trustme = pytest.importorskip("trustme", reason="trustme makes the self-signed certificate")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    async def hello(request: web.Request) -> web.StreamResponse:
        return web.json_response({"hello": "tls"})

    app = web.Application()
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = runner.addresses[0][1]
    yield f"https://127.0.0.1:{port}", ca_file
    await runner.cleanup()


async def test_tls_untrusted_certificate_is_a_clear_error(tls_remote: tuple[str, Path]) -> None:
    base_url, _ = tls_remote
    rec = Recorder()
    async with client(conn(base_url), rec) as http:
        with pytest.raises(PermanentError) as info:
            await http.request("GET", "/hello")
    assert "TLS certificate verification failed" in str(info.value)
    assert "ca_file" in str(info.value)
    assert rec.sleeps == []  # not retried: it will not pass by itself


async def test_tls_with_ca_file(tls_remote: tuple[str, Path]) -> None:
    base_url, ca_file = tls_remote
    async with client(conn(base_url, ca_file=str(ca_file)), Recorder()) as http:
        resp = await http.request("GET", "/hello")
    assert resp.json() == {"hello": "tls"}


async def test_tls_verification_off_warns_once(tls_remote: tuple[str, Path]) -> None:
    base_url, _ = tls_remote
    with capture_logs() as logs:
        async with client(conn(base_url, verify_tls=False), Recorder()) as http:
            for _ in range(2):
                assert (await http.request("GET", "/hello")).status == 200
    warnings = [e for e in logs if e["event"] == "http.tls_verification_disabled"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"


def test_response_repr_hides_headers_and_body() -> None:
    resp = Response(200, {"Set-Cookie": SECRET}, SECRET.encode(), "http://h/x")
    assert SECRET not in repr(resp)


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ("/jobs/j-1", "{base}/api/jobs/j-1"),
        ("/jobs?token=SECRET", "{base}/api/jobs"),
        ("/jobs#SECRET", "{base}/api/jobs"),
        ("http://user:SECRET@127.0.0.1:9/jobs?k=SECRET", "http://127.0.0.1:9/jobs"),
    ],
)
async def test_messages_name_the_url_without_credentials_or_query(
    remote: Remote, path: str, shown: str
) -> None:
    remote.on("/api/jobs", reply(404, {"message": "no such job"}))
    remote.on("/api/jobs/j-1", reply(404, {"message": "no such job"}))
    async with client(conn(remote.base_url), Recorder(), attempts=1) as http:
        with pytest.raises(ConnectorError) as info:
            await http.request("GET", path.replace("SECRET", SECRET))
    message = str(info.value)
    assert SECRET not in message
    assert f"GET {shown.format(base=remote.base_url.removesuffix('/api'))}:" in message


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": "\xc3\xa9"}',
        b"[1]",
        b"12",
        b" {}",
        '{"a": 1}'.encode("utf-8-sig"),
        '{"a": 1}'.encode("utf-16"),
        '{"a": 1}'.encode("utf-16-le"),
        '{"a": 1}'.encode("utf-16-be"),
        '{"a": 1}'.encode("utf-32"),
        b'{"a": "\xed\xa0\x80"}',  # a lone surrogate, as json lets through
        b"1\x00",
        b"\xe9",
        b"nope",
        b"",
    ],
)
def test_json_decoding_matches_json_loads(body: bytes) -> None:
    try:
        expected: object = json.loads(body)
    except ValueError as exc:
        with pytest.raises(type(exc)):
            _loads(body)
    else:
        assert _loads(body) == expected


# -- streamed downloads ---------------------------------------------------------------------


async def test_download_streams_into_the_file_whole_or_not_at_all(
    remote: Remote, tmp_path: Path
) -> None:
    big = b"x" * 300_000
    remote.on("/api/out", reply(200, big), reply(503, {"message": "busy"}), reply(200, big))
    target = tmp_path / "out.bin"
    async with client(conn(remote.base_url), Recorder()) as http:
        assert await http.download("/out", target, max_bytes=len(big)) == len(big)
        assert target.read_bytes() == big
        target.unlink()
        with pytest.raises(TransientError, match=r"HTTP 503"):  # not retried inside the call
            await http.download("/out", target, max_bytes=len(big))
        with pytest.raises(PermanentError, match="larger than 1000 bytes"):
            await http.download("/out", target, max_bytes=1000, what="the output")
    assert list(tmp_path.iterdir()) == []  # no part file left behind
    assert remote.hits("/api/out") == 3
    assert http.statistics()["failures"] == 2
