"""What the end-to-end tests share: the API simulators served by `orchestrator simulate` in a
process of its own, so that they count every request a killed or signalled orchestrator made."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parents[2]


def control(url: str, body: dict[str, Any] | None = None) -> Any:
    """GET (no body) or POST ``body`` to a simulator's control route; its JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(request, timeout=5).read())


@pytest.fixture(scope="module")
def simulator_process() -> Iterator[str]:
    """The base URL of `orchestrator simulate` on a free port (each API under its prefix)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "simulate", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            control(f"{base}/generic/_sim/counters")
            break
        except OSError:
            assert proc.poll() is None, "the simulator ended"
            assert time.monotonic() < deadline, "the simulator did not start"
            time.sleep(0.05)
    yield base
    proc.terminate()
    proc.wait(10)


def generic_job(name: str) -> dict[str, Any]:
    """A job of the generic job API simulator on the connection ``sim``, named ``name`` (the
    simulator's behaviours are keyed by it), with a cancel and a lookup by idempotency key."""
    return {
        "type": "http",
        "connection": "sim",
        "submit": {"path": "/jobs", "body": {"name": name}},
        "idPath": "$.id",
        "poll": {"path": "/jobs/{id}"},
        "statusPath": "$.state",
        "running": ["queued", "running"],
        "success": ["done"],
        "failure": ["error", "cancelled"],
        "errorPath": "$.error",
        "cancel": {"path": "/jobs/{id}/cancel"},
        "find": {"path": "/jobs?key={key}", "listPath": "$.data"},
    }
