"""A webhook receiver for trying webhooks locally: ``orchestrator receive [--port 9000]``.

Prints one line per webhook received (its id, the event's type, the job and status). Given the
secret, it checks each one as a Standard Webhooks consumer does and refuses with 401 a webhook
whose ``webhook-id``, ``webhook-timestamp`` or ``webhook-signature`` is missing, whose
timestamp is more than five minutes from now (replay) or whose signature does not match.
``/status/<code>`` answers with that status (``/status/503`` to watch retries), any other path
answers 204.
"""

from __future__ import annotations

import binascii
import hmac
import json
import sys
import time
from collections.abc import Callable
from typing import TextIO

import anyio
from aiohttp import web

from ..errors import ConfigError
from ..webhooks.signing import secret_bytes, sign

TOLERANCE = 300  # seconds between a webhook's timestamp and now, as the reference libraries


def check_secret(secret: str) -> None:
    """Refuse a secret that cannot sign (a ``whsec_`` one that is not base64, or none)."""
    try:
        key = secret_bytes(secret)
    except (binascii.Error, ValueError):
        raise ConfigError(
            "--secret (or $WEBHOOK_SECRET): a whsec_ secret must be base64 after its prefix"
        ) from None
    if not key:
        raise ConfigError(
            "--secret (or $WEBHOOK_SECRET): no key in it "
            "(a whsec_ secret is base64 after its prefix)"
        )


def refusal(
    secret: str, headers: dict[str, str], body: bytes, now: float, tolerance: int = TOLERANCE
) -> str | None:
    """Why a webhook does not verify (``None``: it does)."""
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    signature = headers.get("webhook-signature")
    if not msg_id or not stamp or not signature:
        named = (("id", msg_id), ("timestamp", stamp), ("signature", signature))
        return "missing " + ", ".join(f"webhook-{name}" for name, value in named if not value)
    if not (stamp.isascii() and stamp.isdigit()):
        return "webhook-timestamp is not an integer"
    away = int(stamp) - now
    if abs(away) > tolerance:
        when = "old" if away < 0 else "in the future"
        return f"webhook-timestamp is {abs(away):.0f}s {when} (tolerance {tolerance}s)"
    expected = sign(secret, msg_id, int(stamp), body).encode()
    given = signature.encode("utf-8", "surrogateescape").split()
    if not any(hmac.compare_digest(expected, part) for part in given):
        return "no matching signature"
    return None


def build_app(
    secret: str | None = None,
    out: TextIO | None = None,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    stream = out or sys.stdout
    if secret:
        check_secret(secret)

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        msg_id = headers.get("webhook-id", "-")
        why = refusal(secret, headers, body, clock()) if secret else None
        if secret:
            checked = f" signature=BAD ({why})" if why else " signature=ok"
        else:
            checked = " signed" if "webhook-signature" in headers else ""
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            data = {}
        summary = ""
        if isinstance(data, dict) and "type" in data:
            inner = data.get("data") or {}
            inner = inner if isinstance(inner, dict) else {}
            job, status = inner.get("job"), inner.get("status")
            summary = f" {data['type']} dag={inner.get('dag')} job={job} status={status}"
        elif body:
            summary = " " + body[:200].decode("utf-8", "replace")
        stamp_text = time.strftime("%H:%M:%S")
        print(
            f"{stamp_text} {request.method} {request.path} id={msg_id}{checked}{summary}",
            file=stream,
            flush=True,
        )
        if why:
            return web.Response(status=401, text=f"webhook refused: {why}\n")
        code = request.path.removeprefix("/status/")
        if request.path.startswith("/status/") and code.isdigit() and 200 <= int(code) <= 599:
            retry = {"Retry-After": "5"} if code in ("429", "503") else {}
            return web.Response(status=int(code), headers=retry)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def serve(host: str, port: int, secret: str | None) -> None:
    runner = web.AppRunner(build_app(secret), handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound = runner.addresses[0][1] if runner.addresses else port
        print(f"receiving webhooks on http://{host}:{bound}/", flush=True)
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()
