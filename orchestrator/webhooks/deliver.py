"""Delivering webhooks from the outbox: at least once, signed, isolated per endpoint.

:class:`Deliverer` is an ``async with`` service: it sends every due delivery of the store, each
endpoint in its own lane (a slow or failing endpoint never delays another one, nor the jobs),
records every attempt, and schedules retries with exponential backoff and jitter over hours
(:data:`DEFAULT_SCHEDULE`, the Standard Webhooks example), honouring ``Retry-After`` on 429 and
5xx. Success is 2xx only; redirects are not followed; 410 disables the webhook; a destination
the address policy refuses (:mod:`.guard`) fails the delivery at once. Each attempt has a 30 s
deadline and reads at most 64 KiB of the answer.
"""

from __future__ import annotations

import os
import random
import re
import ssl
import time
from collections import Counter
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import anyio
import anyio.abc
import structlog

from ..errors import ConfigError, PermanentError
from ..logs import add_secrets
from ..model.durations import parse_duration
from ..store.base import DeliveryAttempt, DeliveryRecord, Store
from .guard import DestinationRefused, Egress, check_literal
from .signing import signature_header

if TYPE_CHECKING:
    import aiohttp

DEFAULT_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 50400.0, 72000.0, 86400.0)
SCHEDULE_ENV = "ORCHESTRATOR_WEBHOOK_SCHEDULE"
ATTEMPT_TIMEOUT = 30.0
MAX_RESPONSE = 64 * 1024
PER_ENDPOINT = 2  # deliveries in flight per endpoint
log = structlog.get_logger("orchestrator.webhooks")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def schedule_from_env() -> tuple[float, ...]:
    """``ORCHESTRATOR_WEBHOOK_SCHEDULE="0,5s,5m,30m,2h"``: the delay before each attempt."""
    spec = os.environ.get(SCHEDULE_ENV)
    if not spec:
        return DEFAULT_SCHEDULE
    try:
        return tuple(
            0.0 if p.strip() in ("0", "0s") else parse_duration(p.strip()) for p in spec.split(",")
        )
    except ValueError as exc:
        raise ConfigError(f"{SCHEDULE_ENV}: {exc}") from None


def resolve_secret(ref: str, where: str = "secretKey") -> str:
    """``ref`` with its ``${NAME}`` references read from the environment (at delivery time, so
    that the outbox keeps the references, never the values)."""

    def repl(m: re.Match[str]) -> str:
        try:
            return os.environ[m.group(1)]
        except KeyError:
            raise PermanentError(f"{where}: environment variable {m.group(1)} is not set") from None

    return _ENV.sub(repl, ref)


def resolve_headers(headers: dict[str, str]) -> dict[str, str]:
    """A delivery's headers with their ``${NAME}`` references resolved; the values read from
    the environment are registered as secrets."""
    resolved: dict[str, str] = {}
    for name, value in headers.items():
        resolved[name] = resolve_secret(value, f"header {name!r}") if "${" in value else value
        if resolved[name] != value:
            add_secrets(os.environ[m.group(1)] for m in _ENV.finditer(value))
    return resolved


class Deliverer:
    def __init__(
        self,
        store: Store,
        *,
        schedule: Sequence[float] | None = None,
        egress: Egress | None = None,
        rng: random.Random | None = None,
        poll_interval: float = 1.0,
        attempt_timeout: float = ATTEMPT_TIMEOUT,
    ) -> None:
        self._store = store
        self._schedule = tuple(schedule) if schedule is not None else schedule_from_env()
        self._egress = egress if egress is not None else Egress.from_env()
        self._rng = rng or random.Random()
        self._poll_interval = poll_interval
        self._timeout = attempt_timeout
        self._wake = anyio.Event()
        self._in_flight: set[str] = set()
        # a delivery whose attempt was recorded while outbox scan N was reading: scan N may
        # still show it pending (its snapshot is older); scans after N do not
        self._scans = 0
        self.outcomes: Counter[str] = Counter()  # delivery attempts by outcome, for metrics
        self._recorded: dict[str, int] = {}
        self._lanes: dict[str, anyio.Semaphore] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._sessions: dict[bool, aiohttp.ClientSession] = {}
        self._idle = anyio.Event()

    async def __aenter__(self) -> Deliverer:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._loop)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        try:
            return await self._tg.__aexit__(et, e, tb)
        finally:
            with anyio.CancelScope(shield=True):
                for session in self._sessions.values():
                    await session.close()

    def notify(self) -> None:
        """New deliveries were written: look for them now."""
        self._wake.set()

    async def drain(self, run_id: str, timeout: float = 10.0) -> bool:
        """Wait until every delivery of ``run_id`` is settled (delivered, failed or disabled);
        False if some are still pending after ``timeout`` seconds (they stay in the outbox)."""
        with anyio.move_on_after(timeout):
            while True:
                pending = [
                    d for d, _ in await self._store.list_deliveries(run_id) if d.state == "pending"
                ]
                if not pending:
                    return True
                self.notify()
                await anyio.sleep(0.05)
        return False

    async def drain_due(self, timeout: float) -> int:
        """Deliver what is pending and falls due within ``timeout`` seconds (of any run);
        return how many deliveries are still pending afterwards."""
        deadline = time.time() + timeout
        with anyio.move_on_after(timeout):
            while True:
                pending = [
                    d for d, _ in await self._store.list_deliveries() if d.state == "pending"
                ]
                if not any((d.next_at or 0.0) <= deadline for d in pending) and not self._in_flight:
                    return len(pending)
                self.notify()
                await anyio.sleep(0.05)
        return len([d for d, _ in await self._store.list_deliveries() if d.state == "pending"])

    async def _loop(self) -> None:
        while True:
            self._scans += 1
            scan = self._scans
            try:
                due = await self._store.due_deliveries(time.time(), limit=500)
            except Exception as exc:  # the store is down: try again later
                log.warning("webhook.outbox_unreadable", error=str(exc))
                due = []
            assert self._tg is not None
            recorded = self._recorded
            for delivery in due:
                if delivery.id in self._in_flight or recorded.get(delivery.id, 0) >= scan:
                    continue  # being sent, or just sent and this scan read too early
                self._in_flight.add(delivery.id)
                self._tg.start_soon(self._deliver, delivery)
            if recorded:
                self._recorded = {k: n for k, n in recorded.items() if n >= scan}
            with anyio.move_on_after(self._poll_interval):
                await self._wake.wait()
            self._wake = anyio.Event()

    def _lane(self, delivery: DeliveryRecord) -> anyio.Semaphore:
        parts = urlsplit(delivery.url)
        key = f"{parts.scheme}://{parts.hostname}:{parts.port}"
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = anyio.Semaphore(PER_ENDPOINT)
        return lane

    def _session(self, verify: bool) -> aiohttp.ClientSession:
        session = self._sessions.get(verify)
        if session is None:
            import aiohttp  # a run without webhooks never imports it

            from .resolver import GuardedResolver

            connector = aiohttp.TCPConnector(
                resolver=GuardedResolver(self._egress),
                ssl=verify,
                limit=100,
                limit_per_host=PER_ENDPOINT,
            )
            session = self._sessions[verify] = aiohttp.ClientSession(connector=connector)
        return session

    async def _deliver(self, delivery: DeliveryRecord) -> None:
        try:
            async with self._lane(delivery):
                await self._attempt(delivery)
        except Exception:  # never let one delivery take the deliverer down; it stays pending
            log.exception("webhook.deliverer_error", delivery=delivery.id)
            await anyio.sleep(1.0)
        finally:
            self._recorded[delivery.id] = self._scans  # before it leaves the in-flight set
            self._in_flight.discard(delivery.id)

    async def _attempt(self, d: DeliveryRecord) -> None:
        import aiohttp  # its exceptions: once a delivery is sent, it is imported already

        from ..connectors.http.statuses import retry_after

        number = d.attempts + 1
        started = time.time()
        fields = {
            "delivery": d.id,
            "run": d.run_id,
            "job": d.job_id,
            "webhook": d.webhook,
            "attempt": number,
        }
        status: int | None = None
        wait: float | None = None
        refused = False
        try:
            secrets = [resolve_secret(ref) for ref in d.secret_refs]
            add_secrets(secrets)
            timestamp = int(started)
            headers = resolve_headers(d.headers)
            headers["webhook-id"] = d.id
            headers["webhook-timestamp"] = str(timestamp)
            if secrets:
                headers["webhook-signature"] = signature_header(secrets, d.id, timestamp, d.body)
            if not d.ssl_verification:
                log.warning("webhook.tls_unverified", url=d.url, **fields)
            host = urlsplit(d.url).hostname or ""
            check_literal(host, self._egress)
            session = self._session(d.ssl_verification)
            with anyio.fail_after(self._timeout):
                async with session.request(
                    d.method.upper(),
                    d.url,
                    data=d.body if d.method not in ("get", "delete") else None,
                    headers=headers,
                    allow_redirects=False,
                ) as response:
                    status = response.status
                    await response.content.read(MAX_RESPONSE)  # read at most this much
                    wait = retry_after(response.headers, time.time())
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except TimeoutError:
            error = f"no answer within {self._timeout:g}s"
        except DestinationRefused as exc:  # the address policy: no retry would be sent
            error, refused = str(exc), True
        except PermanentError as exc:
            error = str(exc)
        except aiohttp.ClientSSLError as exc:
            error = f"TLS error: {exc}"
        except ssl.SSLError as exc:
            error = f"TLS error: {getattr(exc, 'reason', None) or exc}"
        except (aiohttp.ClientError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        attempt = DeliveryAttempt(d.id, number, started, status, error, time.time() - started)
        if error is None:
            log.info("webhook.delivered", status=status, **fields)
            self.outcomes["delivered"] += 1
            await self._store.record_delivery(attempt, state="delivered", next_at=None)
            return
        if status == 410:
            log.warning("webhook.disabled", status=status, **fields)
            self.outcomes["disabled"] += 1
            await self._store.record_delivery(attempt, state="disabled", next_at=None)
            await self._store.disable_webhook(
                d.dag, d.webhook, "the endpoint answered 410 Gone", time.time()
            )
            return
        if refused or number >= len(self._schedule):
            log.error("webhook.failed", status=status, error=error, **fields)
            self.outcomes["failed"] += 1
            await self._store.record_delivery(attempt, state="failed", next_at=None)
            return
        delay = self._schedule[number] * self._rng.uniform(0.9, 1.1)
        if wait is not None and (status == 429 or (status or 0) >= 500):
            delay = max(delay, wait)
        log.warning("webhook.retrying", status=status, error=error, delay=round(delay, 3), **fields)
        self.outcomes["retry"] += 1
        await self._store.record_delivery(attempt, state="pending", next_at=time.time() + delay)
