"""A webhook receiver for trying webhooks locally: ``orchestrator receive [--port 9000]``.

Prints one line per webhook received (its id, the event's type, the job and status) and, given
the secret, whether its Standard Webhooks signature verifies. ``/status/<code>`` answers with that
status (``/status/503`` to watch retries), any other path answers 204.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

import anyio
from aiohttp import web

from ..webhooks.signing import verify


def build_app(secret: str | None = None, out: TextIO | None = None) -> web.Application:
    stream = out or sys.stdout

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        msg_id = request.headers.get("webhook-id", "-")
        stamp = request.headers.get("webhook-timestamp", "0")
        signature = request.headers.get("webhook-signature")
        checked = ""
        if secret and signature:
            ok = stamp.isdigit() and verify(secret, msg_id, int(stamp), body, signature)
            checked = " signature=ok" if ok else " signature=BAD"
        elif signature:
            checked = " signed"
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            data = {}
        summary = ""
        if isinstance(data, dict) and "type" in data:
            inner = data.get("data") or {}
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
        if request.path.startswith("/status/"):
            code = int(request.path.rsplit("/", 1)[-1])
            return web.Response(
                status=code, headers={"Retry-After": "5"} if code in (429, 503) else {}
            )
        return web.Response(status=204)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def serve(host: str, port: int, secret: str | None) -> None:
    runner = web.AppRunner(build_app(secret), handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(f"receiving webhooks on http://{host}:{port}/", flush=True)
    try:
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()
