"""The HTTP plumbing every remote connector shares.

One :class:`HttpClient` per connection: one aiohttp session with a bounded pool, TLS verified
unless the connection says otherwise, a deadline on every request, the connection's rate limit
before every try, and transient faults retried inside the call:

* 429, 500, 502, 503, 504: retried for every method (the server answered, so the request did
  not take effect), waiting at least ``Retry-After`` (seconds or an HTTP date) or Celonis'
  ``x-ratelimit-reset`` (seconds); the wait pauses every request of the connection.
* connect errors, before anything was sent: always retried.
* resets, timeouts and disconnects after sending: retried only for idempotent requests; for
  the others :class:`TransientError` with ``ambiguous=True`` is raised at once, since the
  remote may have acted on the request.

Backoff is exponential with full jitter. Other statuses outside ``ok`` become
:class:`AuthError` (401, 403), :class:`NotFoundError` (404) or :class:`PermanentError`.
:meth:`HttpClient.download` streams a large body into a file over the same pool and rate limit,
with a deadline per read instead of one for the whole answer.

No aiohttp or asyncio exception leaves :meth:`HttpClient.request`, and no message or log line
carries headers, query strings or credentials. Redirects are not followed (an SSRF guard):
a 3xx outside ``ok`` is a :class:`PermanentError`.
"""

from __future__ import annotations

import math
import random
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable, Container, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, Self

import aiohttp
import anyio
import structlog
from yarl import URL

from ...connections import Connection
from ...errors import (
    ConnectorError,
    PermanentError,
    TransientError,
)
from .ratelimit import RateLimiter
from .response import Response, snippet
from .statuses import TRANSIENT_STATUSES, error_for_status, retry_after
from .wording import display, query_pairs, tls_reason, transport_reason

__all__ = ["HttpClient", "Response", "TransientRetry"]

log = structlog.get_logger("orchestrator.http")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
USER_AGENT = "orchestrator/0.1"
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class TransientRetry:
    """How transient faults are retried inside one call.

    ``attempts`` tries in all; try ``n`` is followed by a wait drawn from
    ``[0, min(cap, base * factor ** (n - 1))]`` (full jitter), or longer if the server asked.
    A server's ``Retry-After`` longer than ``max_wait`` is not waited inside the call:
    :class:`TransientError` with ``retry_after`` is raised instead.
    """

    attempts: int = 5
    base: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    max_wait: float = 300.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0.0, min(self.cap, self.base * self.factor ** min(attempt - 1, 64)))


class _Retry(Exception):
    """A try failed in a way that may pass: wait and try again, or give up."""

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        detail: object = None,
        hint: float | None = None,
        sent: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.detail = detail
        self.hint = hint  # the server's Retry-After, seconds
        self.sent = sent  # the request may have reached the remote and taken effect


class HttpClient:
    """HTTP to one connection. Use as ``async with HttpClient(conn) as http:`` or call
    :meth:`aclose`; the session is opened on the first request, inside the running loop."""

    def __init__(
        self,
        connection: Connection,
        *,
        headers: Mapping[str, str] | None = None,
        max_body: int = 8 * 1024 * 1024,
        retry: TransientRetry = TransientRetry(),
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.connection = connection
        self._headers = {"User-Agent": USER_AGENT, **(headers or {})}
        self._max_body = max_body
        self._retry = retry
        self._rng = rng or random.Random()
        self._clock = clock  # wall time, for Retry-After dates
        # A limiter may be shared by every client of one connection; by default the client
        # owns one (no rate when the connection sets none, but 429 pauses all the same).
        self._limiter = limiter or RateLimiter(
            connection.rate or math.inf, connection.burst, sleep=sleep
        )
        self._base = connection.base_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._open_lock = anyio.Lock()
        self._closed = False
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connection.connect_timeout, sock_read=connection.timeout
        )
        self._stats = {
            "requests": 0,  # calls of request()
            "sent": 0,  # tries sent
            "responses": 0,
            "retries": 0,
            "throttled": 0,  # 429 answers
            "failures": 0,  # calls that raised
            "bytes_received": 0,
            "waited_seconds": 0.0,  # backoff and Retry-After waits
        }

    @property
    def limiter(self) -> RateLimiter:
        return self._limiter

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            with anyio.CancelScope(shield=True):
                await session.close()

    def statistics(self) -> dict[str, Any]:
        return {
            **self._stats,
            "connection": self.connection.name,
            "open": self._session is not None,
            "rate_limit": self._limiter.statistics(),
        }

    # -- the session --

    async def _open(self) -> aiohttp.ClientSession:
        """The session, made at the first request. Only a CA file to load makes it wait (in a
        thread, under a lock); otherwise it is made at once, so that the first requests of a
        run leave together rather than one turn of the loop after another, each behind the
        lock (the staggered start lasted the whole run: 1,000 `bench_http.py` jobs through
        the connector took 10-15% more CPU)."""
        if self._session is not None:
            return self._session
        conn = self.connection
        if not (conn.verify_tls and conn.ca_file):
            return self._create(conn.verify_tls)
        async with self._open_lock:
            if self._session is None and not self._closed:
                context = await anyio.to_thread.run_sync(self._ssl_context, conn.ca_file)
                return self._create(context)
            return self._create(True)  # made meanwhile, or closed: said by _create

    def _create(self, ssl_arg: ssl.SSLContext | bool) -> aiohttp.ClientSession:
        if self._closed:
            raise ConnectorError(f"connection {self.connection.name!r}: the client is closed")
        if self._session is not None:
            return self._session
        conn = self.connection
        if ssl_arg is False:
            log.warning(
                "http.tls_verification_disabled", connection=conn.name, host=URL(conn.base_url).host
            )
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=conn.max_connections, ssl=ssl_arg),
            timeout=aiohttp.ClientTimeout(total=conn.timeout, sock_connect=conn.connect_timeout),
            headers=self._headers,
            trust_env=False,
        )
        # aiohttp silently resends an idempotent request once when a pooled connection drops;
        # the retries here must be the only ones (counted, logged, rate limited).
        if hasattr(self._session, "_retry_connection"):
            self._session._retry_connection = False
        return self._session

    def _ssl_context(self, ca_file: str) -> ssl.SSLContext:
        try:
            return ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise PermanentError(
                f"connection {self.connection.name!r}: cannot load ca_file {ca_file}: "
                f"{type(exc).__name__}"
            ) from None

    def _timeout(self, deadline: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(deadline)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(
                total=deadline, sock_connect=self.connection.connect_timeout
            )
            self._timeouts[deadline] = timeout
        return timeout

    def url(self, path: str) -> str:
        """``path`` joined to the connection's base URL (its path prefix kept); absolute
        URLs as they are."""
        if path.startswith(("http://", "https://")):
            return path
        return f"{self._base}/{path.lstrip('/')}" if path else self._base

    # -- requests --

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        ok: Container[int] = range(200, 300),
        idempotent: bool | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Send one request, retrying transient faults; return the answer if its status is in
        ``ok``, else raise the matching :mod:`orchestrator.errors` exception."""
        method = method.upper()
        url = self.url(path)
        shown = display(url)
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        deadline = timeout if timeout is not None else self.connection.timeout
        query = query_pairs(params)
        self._stats["requests"] += 1
        limiter = self._limiter
        try:
            session = self._session if self._session is not None else await self._open()
            attempt = 0
            while True:
                attempt += 1
                if not limiter.try_acquire():  # paused, throttled or others waiting
                    paused = limiter.paused_for()
                    if paused > self._retry.max_wait:
                        raise TransientError(
                            f"{method} {shown}: the remote asked for a pause of {paused:.0f}s "
                            f"(longer than {self._retry.max_wait:.0f}s)",
                            retry_after=paused,
                        )
                    await limiter.acquire()
                try:
                    return await self._try(
                        session, method, url, shown, query, json, data, headers, ok, deadline
                    )
                except _Retry as fault:
                    if fault.sent and not idempotent:
                        raise TransientError(
                            f"{method} {shown}: {fault.reason}; the request may have been "
                            "acted on, so it is not sent again",
                            status=fault.status,
                            detail=fault.detail,
                            ambiguous=True,
                        ) from None
                    await self._before_retry(fault, method, shown, attempt)
        except ConnectorError:
            self._stats["failures"] += 1
            raise

    async def _before_retry(self, fault: _Retry, method: str, shown: str, attempt: int) -> None:
        """Wait before try ``attempt + 1``, or raise if there is to be none."""
        hint = fault.hint
        if hint is not None:
            # The server's word holds for the whole connection, not only this request.
            self._limiter.pause_for(hint)
        if hint is not None and hint > self._retry.max_wait:
            _give_up(fault, method, shown, f"the remote asked to wait {hint:.0f}s")
        if attempt >= self._retry.attempts:
            _give_up(fault, method, shown, f"gave up after {attempt} tries")
        delay = self._retry.backoff(attempt, self._rng)
        if hint is not None:
            delay = max(delay, hint)
        self._stats["retries"] += 1
        self._stats["waited_seconds"] += delay
        log.info(
            "http.retry",
            connection=self.connection.name,
            method=method,
            url=shown,
            attempt=attempt,
            status=fault.status,
            reason=fault.reason,
            delay=round(delay, 3),
        )
        await self._limiter.sleep(delay)

    async def _try(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        shown: str,
        query: list[tuple[str, str]] | None,
        json: Any,
        data: Any,
        headers: Mapping[str, str] | None,
        ok: Container[int],
        deadline: float,
    ) -> Response:
        """One try: a :class:`Response` in ``ok``, or :class:`_Retry`, or a final error."""
        self._stats["sent"] += 1
        try:
            async with session.request(
                method,
                url,
                params=query,
                json=json,
                data=data,
                headers=headers,
                allow_redirects=False,
                timeout=self._timeout(deadline),
            ) as resp:
                length = resp.content_length
                if length is not None and length > self._max_body:
                    self._too_large(method, shown, resp.status, length)
                if length is not None:  # announced and small enough: one read
                    body = await resp.content.readexactly(length) if length else b""
                else:
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in resp.content.iter_chunked(64 * 1024):
                        size += len(chunk)
                        if size > self._max_body:
                            self._too_large(method, shown, resp.status, size)
                        chunks.append(chunk)
                    body = b"".join(chunks)
                self._stats["bytes_received"] += len(body)
                response = Response(resp.status, resp.headers, body, shown)
        except aiohttp.InvalidURL:
            raise PermanentError(f"{method} {shown}: not a valid http or https URL") from None
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as exc:
            raise PermanentError(f"{method} {shown}: {tls_reason(exc)}") from None
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise _Retry(transport_reason(exc, deadline)) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _Retry(transport_reason(exc, deadline), sent=True) from None
        self._stats["responses"] += 1
        status = response.status
        if status in ok:
            return response
        detail = response.detail()
        message = f"{method} {shown}: HTTP {status}: {snippet(detail)}"
        if status in TRANSIENT_STATUSES:
            if status == 429:
                self._stats["throttled"] += 1
            raise _Retry(
                f"HTTP {status}: {snippet(detail)}",
                status=status,
                detail=detail,
                hint=retry_after(response.headers, self._clock()),
            )
        raise error_for_status(status, message, detail=detail)

    async def download(
        self,
        path: str,
        target: Path,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        max_bytes: int,
        what: str | None = None,
    ) -> int:
        """``GET path`` streamed into the file ``target``, written whole or not at all (a part
        file beside it, renamed at the end); the bytes written. No overall deadline: the
        connection's ``timeout`` bounds each read. Not retried inside the call: a broken or
        stalled transfer, a 429 or a 5xx is a :class:`TransientError` (try again later); a body
        over ``max_bytes`` or a file that cannot be written is a :class:`PermanentError`.
        ``what`` names the file in messages (default: the URL)."""
        url = self.url(path)
        shown = what or f"GET {display(url)}"
        part = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
        self._stats["requests"] += 1
        size = 0
        try:
            session = self._session if self._session is not None else await self._open()
            await self._limiter.acquire()
            self._stats["sent"] += 1
            async with session.get(
                url,
                params=query_pairs(params),
                headers=headers,
                allow_redirects=False,
                timeout=self._stream_timeout,
            ) as resp:
                self._stats["responses"] += 1
                if resp.status != 200:
                    text = (await resp.content.read(500)).decode("utf-8", "replace")
                    raise error_for_status(resp.status, f"{shown}: HTTP {resp.status}: {text}")
                if (resp.content_length or 0) > max_bytes:
                    raise PermanentError(f"{shown} is larger than {max_bytes} bytes")
                async with await anyio.open_file(part, "wb") as out:
                    async for chunk in resp.content.iter_chunked(_CHUNK):
                        size += len(chunk)
                        if size > max_bytes:
                            raise PermanentError(f"{shown} is larger than {max_bytes} bytes")
                        await out.write(chunk)
            await anyio.Path(part).replace(target)
        except ConnectorError:
            self._stats["failures"] += 1
            raise
        except aiohttp.ClientError as exc:
            self._stats["failures"] += 1
            raise TransientError(f"{shown}: download broke off ({type(exc).__name__})") from None
        except TimeoutError:
            self._stats["failures"] += 1
            raise TransientError(f"{shown}: no data within {self.connection.timeout:g}s") from None
        except OSError as exc:
            self._stats["failures"] += 1
            raise PermanentError(
                f"{shown}: cannot write {target}: {exc.strerror or type(exc).__name__}"
            ) from None
        finally:
            self._stats["bytes_received"] += size
            with anyio.CancelScope(shield=True):
                await anyio.Path(part).unlink(missing_ok=True)
        return size

    def _too_large(self, method: str, shown: str, status: int, size: int) -> NoReturn:
        raise PermanentError(
            f"{method} {shown}: HTTP {status}: the body is larger than {self._max_body} bytes "
            f"({'at least ' if size > self._max_body else ''}{size})",
            status=status,
        )


def _give_up(fault: _Retry, method: str, shown: str, why: str) -> NoReturn:
    raise TransientError(
        f"{method} {shown}: {fault.reason} ({why})",
        status=fault.status,
        detail=fault.detail,
        retry_after=fault.hint,
    ) from None
