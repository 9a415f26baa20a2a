"""A canary secret echoed by a remote is found nowhere: not on stdout or stderr, not in
``run --json``, ``runs show`` (text and JSON), not in the bytes of the database (and its -wal).

The remote is the generic job API simulator, served by this test over real HTTP under a path
that holds a second secret (``base_url = "${SIM_BASE}/t/${PATH_TOKEN}"``), and told to echo the
connection's token in a failed job's error and in a succeeded job's outputs.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web

from orchestrator.model.states import JobState, RunState
from orchestrator.store.base import CreateRun, RunRecord
from orchestrator.store.open import open_store
from orchestrator.testing.simulators.base import Behaviour
from orchestrator.testing.simulators.jobs_api import JobsApiSimulator
from tests.store_ops import job

ROOT = Path(__file__).parents[2]
CANARY = "cnry-9f2c41d7e0b3-token"  # the connection's token, from $CANARY_TOKEN
PATH_CANARY = "pth-5a8e03c1"  # a secret in the base URL's path, from $PATH_TOKEN
HOOK_CANARY = "hook-7d1e9b44c2a0"  # a webhook header's secret, "Bearer ${HOOK_TOKEN}"
SECRETS = (CANARY, PATH_CANARY, HOOK_CANARY)


@pytest.fixture
async def remote() -> AsyncIterator[tuple[str, JobsApiSimulator, list[tuple[str, bytes]]]]:
    sim = JobsApiSimulator(token=CANARY, prefix=f"/t/{PATH_CANARY}")
    sim.rule("leaky", Behaviour(duration=0.1, outcome="failure", message=f"token {CANARY} refused"))
    sim.rule("echo", Behaviour(duration=0.1, outputs={"said": f"Bearer {CANARY}"}))
    root = web.Application()
    root.add_subapp(sim.prefix, sim.build())
    received: list[tuple[str, bytes]] = []  # webhooks: their Authorization and body

    async def alerts(request: web.Request) -> web.Response:
        received.append((request.headers.get("Authorization", ""), await request.read()))
        return web.Response(status=204)

    root.router.add_post("/alerts", alerts)
    runner = web.AppRunner(root, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", sim, received
    finally:
        await runner.cleanup()


def _job(name: str, poll_path: str = "/jobs/{id}") -> dict[str, Any]:
    return {
        "type": "http",
        "connection": "sim",
        "submit": {"path": "/jobs", "body": {"name": name}},
        "idPath": "$.id",
        "poll": {"path": poll_path},
        "statusPath": "$.state",
        "running": ["queued", "running"],
        "success": ["done"],
        "failure": ["error", "cancelled"],
        "errorPath": "$.error",
        "outputsPath": "$.result",
    }


async def _cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    with anyio.fail_after(60):
        proc = await anyio.run_process(
            [sys.executable, "-m", "orchestrator", *args], cwd=ROOT, env=env, check=False
        )
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


async def test_a_canary_secret_echoed_by_the_remote_is_found_nowhere(
    remote: tuple[str, JobsApiSimulator, list[tuple[str, bytes]]], tmp_path: Path
) -> None:
    base, sim, received = remote
    connections = tmp_path / "connections.toml"
    connections.write_text(
        '[sim]\ntype = "http"\nbase_url = "${SIM_BASE}/t/${PATH_TOKEN}"\n'
        'token = "${CANARY_TOKEN}"\n'
    )
    hook = {
        "name": "alert",
        "url": f"{base}/alerts",
        "triggerEvent": "onJobFailure",
        "headers": {"Authorization": "Bearer ${HOOK_TOKEN}"},  # resolved when sent
    }
    dag = {
        "name": "canary",
        "jobs": {
            "leak": {**_job("leaky"), "webhooks": [hook]},
            "echo": _job("echo"),
            "lost": {**_job("quick", poll_path="/nowhere/{id}"), "webhooks": [hook]},
        },
        "jobGraph": {"vertices": ["leak", "echo", "lost"], "edges": []},
    }
    path = tmp_path / "canary.json"
    path.write_text(json.dumps(dag))
    home = tmp_path / "home"
    env = {
        **os.environ,
        "ORCHESTRATOR_HOME": str(home),
        "ORCHESTRATOR_CONNECTIONS": str(connections),
        "SIM_BASE": base,
        "PATH_TOKEN": PATH_CANARY,
        "CANARY_TOKEN": CANARY,
        "HOOK_TOKEN": HOOK_CANARY,
        "ORCHESTRATOR_WEBHOOK_ALLOW": "loopback",
    }
    env.pop("ORCHESTRATOR_CRASH_AT", None)

    code, out, err = await _cli(env, "run", str(path), "--json", "--log-level", "debug")
    assert code == 1, err[-3000:]
    report = json.loads(out.strip().splitlines()[-1])
    jobs = {j["id"]: j for j in report["jobs"]["data"]}
    # the remote did echo the secrets: they arrived, masked
    assert sim.counters.submissions, "the remote was never reached"
    assert jobs["leak"]["status"] == "failed"
    assert jobs["leak"]["error"] == "token *** refused"
    assert jobs["echo"]["status"] == "succeeded"
    assert jobs["echo"]["outputs"] == {"said": "Bearer ***"}
    assert jobs["lost"]["status"] == "failed"
    assert "/t/***/nowhere/" in jobs["lost"]["error"]
    assert len(received) == 2  # the two failures' webhooks, sent before the run ended
    assert all(auth == f"Bearer {HOOK_CANARY}" for auth, _ in received)
    shown = [out, err, *(body.decode() for _, body in received)]

    code, text, err = await _cli(env, "runs", "show", report["id"])
    assert code == 0, err
    assert "token *** refused" in text
    shown += [text, err]
    code, detail, err = await _cli(env, "runs", "show", report["id"], "--json")
    assert code == 0, err
    assert "token *** refused" in detail
    shown += [detail, err]

    files = sorted(home.glob("orchestrator.db*"))
    assert files, "no database written"
    for secret in SECRETS:
        for each in shown:
            assert secret not in each
        for file in files:
            assert secret.encode() not in file.read_bytes(), file.name


async def test_runs_show_masks_a_run_stored_before_its_secrets_were_masked(
    tmp_path: Path,
) -> None:
    db = tmp_path / "old.db"
    store = await open_store(str(db))
    try:
        record = RunRecord("r1", "d", "hash", {}, "manual", RunState.QUEUED, created_at=1.0)
        await store.apply([CreateRun(record, {"name": "d"}, ["a"])])
        await store.apply([job(JobState.PENDING, JobState.FAILED, error=f"token {CANARY} refused")])
    finally:
        await store.aclose()
    connections = tmp_path / "connections.toml"
    connections.write_text(
        '[sim]\ntype = "http"\nbase_url = "http://h"\ntoken = "${CANARY_TOKEN}"\n'
    )
    env = {**os.environ, "ORCHESTRATOR_CONNECTIONS": str(connections), "CANARY_TOKEN": CANARY}
    for extra in ((), ("--json",)):
        code, out, err = await _cli(env, "runs", "show", "r1", "--db", str(db), *extra)
        assert code == 0, err
        assert "token *** refused" in out
        assert CANARY not in out + err
