"""`orchestrator receive`: the local receiver the README points webhook examples at."""

from __future__ import annotations

import io
import json

from aiohttp.test_utils import TestClient, TestServer

from orchestrator.testing.receiver import build_app
from orchestrator.webhooks.signing import sign

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def test_prints_each_webhook_and_checks_its_signature() -> None:
    out = io.StringIO()
    body = json.dumps(
        {"type": "job.failed", "data": {"dag": "d", "job": "j", "status": "failed"}}
    ).encode()
    async with TestClient(TestServer(build_app(SECRET, out))) as client:
        good = {
            "webhook-id": "msg_1",
            "webhook-timestamp": "100",
            "webhook-signature": sign(SECRET, "msg_1", 100, body),
        }
        bad = {**good, "webhook-signature": sign(SECRET, "msg_1", 101, body)}
        assert (await client.post("/hooks", data=body, headers=good)).status == 204
        assert (await client.post("/hooks", data=body, headers=bad)).status == 204
        assert (await client.post("/status/503", data=body, headers=good)).status == 503
    lines = out.getvalue().splitlines()
    assert "POST /hooks id=msg_1 signature=ok job.failed dag=d job=j status=failed" in lines[0]
    assert "signature=BAD" in lines[1]
    assert "/status/503" in lines[2]
