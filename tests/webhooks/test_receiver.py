"""`orchestrator receive`: the local receiver the README points webhook examples at."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from standardwebhooks import Webhook, WebhookVerificationError

from orchestrator.testing.receiver import build_app
from orchestrator.webhooks.signing import sign

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER = "whsec_dGhpcyBpcyBhbm90aGVyIHNlY3JldCBrZXk="
BODY = json.dumps({"type": "job.failed", "data": {"dag": "d", "job": "j", "status": "failed"}})


async def test_prints_each_webhook_and_checks_its_signature() -> None:
    out = io.StringIO()
    body = BODY.encode()
    async with TestClient(TestServer(build_app(SECRET, out, clock=lambda: 100.0))) as client:
        good = {
            "webhook-id": "msg_1",
            "webhook-timestamp": "100",
            "webhook-signature": sign(SECRET, "msg_1", 100, body),
        }
        bad = {**good, "webhook-signature": sign(SECRET, "msg_1", 101, body)}
        assert (await client.post("/hooks", data=body, headers=good)).status == 204
        assert (await client.post("/hooks", data=body, headers=bad)).status == 401
        assert (await client.post("/status/503", data=body, headers=good)).status == 503
    lines = out.getvalue().splitlines()
    assert "POST /hooks id=msg_1 signature=ok job.failed dag=d job=j status=failed" in lines[0]
    assert "signature=BAD (no matching signature)" in lines[1]
    assert "/status/503" in lines[2]


def _headers(msg_id: str | None, stamp: int | str | None, sig: str | None) -> dict[str, str]:
    named = {"webhook-id": msg_id, "webhook-timestamp": stamp, "webhook-signature": sig}
    return {k: str(v) for k, v in named.items() if v is not None}


def _forgeries(now: int) -> dict[str, tuple[dict[str, str], str, str]]:
    """name -> (headers, body, why the receiver refuses)"""
    body = BODY

    def good(stamp: int = now, secret: str = SECRET, text: str = body) -> str:
        return sign(secret, "msg_1", stamp, text.encode())

    return {
        "no signature": (_headers("msg_1", now, None), body, "missing webhook-signature"),
        "no id": (_headers(None, now, good()), body, "missing webhook-id"),
        "no timestamp": (_headers("msg_1", None, good()), body, "missing webhook-timestamp"),
        "no headers": ({}, body, "missing webhook-id, webhook-timestamp, webhook-signature"),
        "wrong secret": (_headers("msg_1", now, good(secret=OTHER)), body, "no matching"),
        "garbage": (_headers("msg_1", now, "garbage"), body, "no matching signature"),
        "empty v1": (_headers("msg_1", now, "v1,"), body, "no matching signature"),
        "not ascii": (_headers("msg_1", now, "v1,é"), body, "no matching signature"),
        "tampered body": (_headers("msg_1", now, good()), body + " ", "no matching signature"),
        "other id": (_headers("msg_2", now, good()), body, "no matching signature"),
        "an hour old": (
            _headers("msg_1", now - 3600, good(now - 3600)),
            body,
            "webhook-timestamp is 3600s old (tolerance 300s)",
        ),
        "an hour ahead": (
            _headers("msg_1", now + 3600, good(now + 3600)),
            body,
            "webhook-timestamp is 3600s in the future (tolerance 300s)",
        ),
        "timestamp not a number": (
            _headers("msg_1", "12e9", good()),
            body,
            "webhook-timestamp is not an integer",
        ),
    }


@pytest.mark.parametrize("case", sorted(_forgeries(0)))
async def test_a_forged_or_replayed_webhook_is_refused_with_401(case: str) -> None:
    now = int(time.time())
    headers, body, why = _forgeries(now)[case]
    with pytest.raises(WebhookVerificationError):  # the reference library refuses it too
        Webhook(SECRET).verify(body.encode(), headers)
    out = io.StringIO()
    async with TestClient(TestServer(build_app(SECRET, out, clock=lambda: now))) as client:
        answer = await client.post("/hooks", data=body.encode(), headers=headers)
        text = await answer.text()
    assert answer.status == 401
    assert why in text
    assert f"signature=BAD ({why}" in out.getvalue()


@pytest.mark.parametrize("offset", [0, -200, 200])
async def test_a_webhook_signed_by_the_reference_library_within_tolerance_is_accepted(
    offset: int,
) -> None:
    stamp = int(time.time()) + offset
    signature = Webhook(SECRET).sign("msg_1", datetime.fromtimestamp(stamp, UTC), BODY)
    headers = _headers("msg_1", stamp, f"v1,bm90IGl0 {signature}")  # rotation: one of several
    Webhook(SECRET).verify(BODY, headers)
    async with TestClient(TestServer(build_app(SECRET, io.StringIO()))) as client:
        answer = await client.post("/hooks", data=BODY.encode(), headers=headers)
    assert answer.status == 204


async def test_without_a_secret_every_webhook_is_printed_and_accepted() -> None:
    out = io.StringIO()
    async with TestClient(TestServer(build_app(None, out))) as client:
        assert (await client.post("/hooks", data=b"x")).status == 204
        assert (await client.post("/status/nonsense", data=b"x")).status == 204
    assert "POST /hooks id=- x" in out.getvalue()


def _post(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=BODY.encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


def test_the_receive_command_refuses_a_forgery() -> None:
    env: dict[str, Any] = {**os.environ, "WEBHOOK_SECRET": SECRET}
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "receive", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # "receiving webhooks on http://127.0.0.1:PORT/"
        url = first.split()[-1] + "hooks"
        now = int(time.time())
        signed = _headers("msg_1", now, sign(SECRET, "msg_1", now, BODY.encode()))
        assert _post(url, _headers("msg_1", now, "v1,Zm9yZ2Vk")) == 401
        assert _post(url, {}) == 401
        assert _post(url, signed) == 204
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert "signature=BAD (no matching signature)" in out
    assert "signature=ok" in out
