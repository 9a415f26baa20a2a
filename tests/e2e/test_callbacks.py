"""Pushed completion against `orchestrator serve --public-url` in a process of its own and the
Trifacta simulator in another: the job group is submitted with an ``onJobDone`` webhook
override, the simulator calls it when the group ends, and the run ends long before the next
(fallback) poll would have seen it: one poll before, one confirming poll. The callback route
needs no bearer token; a forged token and a replayed one are answered 404 and change nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from orchestrator.engine.attempt import CALLBACK_FALLBACK

from .conftest import control

ROOT = Path(__file__).parents[2]
DURATION = 3.0  # seconds the job group runs at the simulator

DAG = {
    "name": "pushed",
    "jobs": {
        "wrangle": {
            "type": "trifacta.jobGroup",
            "connection": "trifacta",
            "wrangledDataset": {"id": 28629},
        }
    },
    "schedule": {"overlap": "allow"},
}


class Served:
    def __init__(self, proc: subprocess.Popen[str], base: str, token: str, home: Path) -> None:
        self.proc, self.base, self.token, self.home = proc, base, token, home

    def log(self) -> str:
        """The daemon's log, once it stopped."""
        self.proc.terminate()
        _, rest = self.proc.communicate(timeout=30)
        return rest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def daemon(tmp_path: Path, simulator_process: str) -> Iterator[Served]:
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "pushed.json").write_text(json.dumps(DAG))
    env = {**os.environ, "SIMULATOR_URL": simulator_process, "ORCHESTRATOR_HOME": str(tmp_path)}
    tokens = tmp_path / "tokens.json"
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "tokens",
            "create",
            "--role=operate",
            "--tokens",
            str(tokens),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "orchestrator", "serve", "--dags", str(folder)),
            *("--db", str(tmp_path / "orchestrator.db"), "--port", str(port)),
            *("--tokens", str(tokens), "--public-url", base),
            *("--connections", str(ROOT / "dags" / "connections.toml")),
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    said = []
    for line in proc.stderr:
        said.append(line)
        if '"daemon.started"' in line or time.monotonic() > deadline:
            break
    if not said or '"daemon.started"' not in said[-1]:
        proc.kill()
        proc.communicate(timeout=30)
        pytest.fail("the daemon did not start: " + "".join(said)[-2000:])
    try:
        yield Served(proc, base, made.stdout.strip(), tmp_path)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.communicate(timeout=30)


async def test_a_pushed_callback_ends_the_wait_and_forged_or_replayed_ones_are_refused(
    daemon: Served, simulator_process: str
) -> None:
    sim = f"{simulator_process}/trifacta"
    control(f"{sim}/_sim/reset", {})
    control(f"{sim}/_sim/script", {"duration": DURATION})
    bearer = {"Authorization": f"Bearer {daemon.token}"}
    api = f"{daemon.base}/api/v1"
    async with aiohttp.ClientSession() as http:
        started = time.monotonic()
        async with http.post(f"{api}/dags/pushed/runs", headers=bearer) as answer:
            assert answer.status == 201
            run_id = (await answer.json())["id"]
        while True:
            async with http.get(f"{api}/runs/{run_id}", headers=bearer) as answer:
                run: dict[str, Any] = await answer.json()
            if run["status"] not in ("queued", "running"):
                break
            assert time.monotonic() - started < 20, f"the run is still {run['status']}"
            await asyncio.sleep(0.05)
        took = time.monotonic() - started
        assert run["status"] == "succeeded", run
        # the fallback's next poll comes 0.8 * CALLBACK_FALLBACK after the first at the soonest
        assert DURATION <= took < 0.8 * CALLBACK_FALLBACK, took
        counters = control(f"{sim}/_sim/counters")
        assert counters["polls"] == 2  # the one after the submit, the one the callback asked for

        (delivery,) = control(f"{sim}/_sim/deliveries")["data"]
        url = delivery["url"]
        assert url.startswith(f"{daemon.base}/api/v1/callbacks/orcb_")
        assert (delivery["method"], delivery["triggerEvent"]) == ("POST", "onJobDone")
        assert delivery["status"] == 202  # no bearer token needed

        token = url.rsplit("/", 1)[1]
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        for called in (url, f"{daemon.base}/api/v1/callbacks/{forged}"):  # replayed, forged
            async with http.post(called, json={"status": "Complete"}) as answer:
                assert answer.status == 404
                assert (await answer.json())["error"]["code"] == "not_found"
        await asyncio.sleep(0.3)
        assert control(f"{sim}/_sim/counters")["polls"] == 2  # nothing polled again

    key = daemon.home / "callback.key"  # beside the database
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    log = daemon.log()
    assert '"callback.accepted"' in log
    assert log.count('"callback.refused"') == 2
    assert token not in log  # masked wherever it would appear
