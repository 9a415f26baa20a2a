"""The daemon's REST API and event stream, against `orchestrator serve` in a process of its own:
tokens and roles, triggers with idempotency keys (concurrent duplicates make one run), listing
with a cursor, show, cancel, attempts, errors, and the event stream resumed with Last-Event-ID.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

ROOT = Path(__file__).parents[2]

DAGS: dict[str, Any] = {
    "quick": {
        "name": "quick",
        "params": {"day": "today"},
        "jobs": {"a": {"type": "fake"}, "b": {"type": "fake"}},
        "jobGraph": {"vertices": ["a", "b"], "edges": [{"source": "a", "target": "b"}]},
        "schedule": {"overlap": "allow"},
    },
    "hang": {
        "name": "hang",
        "jobs": {"a": {"type": "fake", "hang": True}},
        "jobGraph": {"vertices": ["a"], "edges": []},
        "schedule": {"overlap": "allow"},
    },
    "two": {
        "name": "two",
        "jobs": {
            "stuck": {"type": "fake", "hang": True},
            "cleanup": {"type": "fake", "triggerRule": "all_done"},
        },
        "jobGraph": {
            "vertices": ["stuck", "cleanup"],
            "edges": [{"source": "stuck", "target": "cleanup"}],
        },
        "schedule": {"overlap": "allow"},
    },
}


def gated(gate: Path) -> dict[str, Any]:
    """``first`` succeeds; ``check`` fails until ``gate`` exists; ``last`` follows it."""
    return {
        "name": "gated",
        "jobs": {
            "first": {"type": "fake", "outputs": {"rows": 3}},
            "check": {"type": "command", "command": ["test", "-e", str(gate)]},
            "last": {"type": "fake"},
        },
        "jobGraph": {
            "vertices": ["first", "check", "last"],
            "edges": [
                {"source": "first", "target": "check"},
                {"source": "check", "target": "last"},
            ],
        },
    }


def orchestrator(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        **kwargs,
    )


class Daemon:
    def __init__(
        self, proc: subprocess.Popen[str], base: str, tokens: dict[str, str], home: Path
    ) -> None:
        self.home = home
        self.proc = proc
        self.base = base
        self.tokens = tokens

    def headers(self, role: str | None = "operate") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    home = tmp_path_factory.mktemp("api")
    started = start_daemon(home)
    try:
        yield started
    finally:
        started.proc.terminate()
        started.proc.communicate(timeout=30)
    for token in started.tokens.values():  # never in the log
        assert token not in (home / "api.db").read_bytes().decode("latin-1")


def start_daemon(home: Path) -> Daemon:
    folder = home / "dags"
    folder.mkdir()
    for name, dag in {**DAGS, "gated": gated(home / "gate")}.items():
        (folder / f"{name}.json").write_text(json.dumps(dag))
    tokens_file = home / "tokens.json"
    tokens = {}
    for role in ("read", "operate"):
        made = orchestrator("tokens", "create", "--role", role, "--tokens", str(tokens_file))
        assert made.returncode == 0, made.stderr
        tokens[role] = made.stdout.strip()
        assert tokens[role] not in made.stderr  # printed once, on stdout only
    assert all(t not in tokens_file.read_text() for t in tokens.values())  # stored hashed
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "serve",
            "--dags",
            str(folder),
            "--db",
            str(home / "api.db"),
            "--port",
            "0",
            "--tokens",
            str(tokens_file),
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    assert proc.stderr is not None
    port = None
    deadline = time.monotonic() + 30
    for line in proc.stderr:
        if '"daemon.started"' in line:
            port = json.loads(line)["port"]
            break
        assert time.monotonic() < deadline, "the daemon did not start"
    assert port is not None, "the daemon ended before it started"
    return Daemon(proc, f"http://127.0.0.1:{port}", tokens, home)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    daemon: Daemon,
    method: str,
    path: str,
    role: str | None = "operate",
    **kwargs: Any,
) -> tuple[int, Any]:
    headers = {**daemon.headers(role), **kwargs.pop("headers", {})}
    async with http.request(
        method, f"{daemon.base}/api/v1{path}", headers=headers, **kwargs
    ) as answer:
        return answer.status, await answer.json()


async def run_state(http: aiohttp.ClientSession, daemon: Daemon, run_id: str) -> str:
    status, run = await call(http, daemon, "GET", f"/runs/{run_id}", "read")
    assert status == 200
    return str(run["status"])


async def until_state(
    http: aiohttp.ClientSession, daemon: Daemon, run_id: str, *states: str
) -> str:
    deadline = time.monotonic() + 30
    while (state := await run_state(http, daemon, run_id)) not in states:
        assert time.monotonic() < deadline, f"run {run_id} is still {state}"
        await asyncio.sleep(0.05)
    return state


async def test_tokens_and_roles(http: aiohttp.ClientSession, daemon: Daemon) -> None:
    async with http.get(f"{daemon.base}/healthz") as answer:
        assert answer.status == 200  # no token needed
    for path in ("/api/v1/runs", "/metrics", "/api/v1/openapi.json"):
        async with http.get(f"{daemon.base}{path}") as answer:
            assert answer.status == 401, path
            assert answer.headers["WWW-Authenticate"] == "Bearer"
            body = await answer.json()
            assert body["error"]["code"] == "unauthorized"
    status, _ = await call(http, daemon, "GET", "/runs", "read", headers={})
    assert status == 200
    bad = {"Authorization": "Bearer orch_forged"}
    async with http.get(f"{daemon.base}/api/v1/runs", headers=bad) as answer:
        assert answer.status == 401
    status, body = await call(http, daemon, "POST", "/dags/quick/runs", "read")
    assert status == 403
    assert body["error"]["code"] == "forbidden"
    status, body = await call(http, daemon, "POST", "/dags/quick/runs", "operate")
    assert status == 201


async def test_twenty_concurrent_triggers_with_one_key_make_one_run(
    http: aiohttp.ClientSession, daemon: Daemon
) -> None:
    key = {"Idempotency-Key": f"order-{time.monotonic_ns()}"}
    d1 = {"params": {"day": "d1"}}
    answers = await asyncio.gather(
        *(call(http, daemon, "POST", "/dags/quick/runs", json=d1, headers=key) for _ in range(20))
    )
    ids = {body["id"] for _, body in answers}
    assert len(ids) == 1
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] * 19 + [201]
    [(_, first)] = [(s, b) for s, b in answers if s == 201]
    assert first["reason"] == "JobStarted"
    assert first["jobGraph"] == {"vertices": ["a", "b"], "edges": [{"source": "a", "target": "b"}]}
    assert first["jobs"] == {"data": [{"id": "a"}, {"id": "b"}]}
    run_id = ids.pop()
    assert await until_state(http, daemon, run_id, "succeeded") == "succeeded"
    _, run = await call(http, daemon, "GET", f"/runs/{run_id}", "read")
    assert (run["trigger"], run["params"]) == ("api", {"day": "d1"})
    without = [await call(http, daemon, "POST", "/dags/quick/runs") for _ in range(2)]
    assert len({body["id"] for _, body in without}) == 2  # no key: two runs


async def test_runs_are_listed_newest_first_a_page_at_a_time(
    http: aiohttp.ClientSession, daemon: Daemon
) -> None:
    made = [(await call(http, daemon, "POST", "/dags/quick/runs"))[1]["id"] for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        query = {"dag": "quick", "trigger": "api", "limit": "2"}
        if cursor:
            query["cursor"] = cursor
        status, page = await call(http, daemon, "GET", "/runs", "read", params=query)
        assert status == 200
        assert len(page["data"]) <= 2
        seen += [r["id"] for r in page["data"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen[:5] == made[::-1]  # newest first
    assert len(seen) == len(set(seen))
    status, body = await call(http, daemon, "GET", "/runs", "read", params={"cursor": "nope!"})
    assert (status, body["error"]["field"]) == (400, "cursor")
    status, body = await call(http, daemon, "GET", "/runs", "read", params={"state": "sleepy"})
    assert (status, body["error"]["field"]) == (400, "state")


async def test_cancel_is_idempotent_and_reaches_the_job(
    http: aiohttp.ClientSession, daemon: Daemon
) -> None:
    status, group = await call(http, daemon, "POST", "/dags/hang/runs")
    assert status == 201
    run_id = group["id"]
    await until_state(http, daemon, run_id, "running")
    status, body = await call(http, daemon, "POST", f"/runs/{run_id}/cancel")
    assert (status, body) == (202, {"id": run_id, "status": "cancelling"})
    assert await until_state(http, daemon, run_id, "cancelled", "failed") == "cancelled"
    status, body = await call(http, daemon, "POST", f"/runs/{run_id}/cancel")
    assert (status, body) == (200, {"id": run_id, "status": "cancelled"})
    status, attempts = await call(http, daemon, "GET", f"/runs/{run_id}/jobs/a/attempts", "read")
    assert status == 200
    [attempt] = attempts["data"]
    assert (attempt["attempt"], attempt["status"]) == (1, "cancelled")
    assert attempt["remote"] is not None
    status, body = await call(http, daemon, "POST", "/runs/nope/cancel")
    assert status == 404


async def test_bad_requests_get_json_errors_naming_the_field(
    http: aiohttp.ClientSession, daemon: Daemon
) -> None:
    cases = [
        ("POST", "/dags/nope/runs", {}, 404, None),
        ("POST", "/dags/quick/runs", {"json": {"params": {"month": "x"}}}, 422, "body.params"),
        ("POST", "/dags/quick/runs", {"json": {"param": {}}}, 422, "body"),
        ("POST", "/dags/quick/runs", {"data": b"{nope"}, 400, "body"),
        ("POST", "/dags/quick/runs", {"data": io.BytesIO(b"x" * (2 << 20))}, 413, None),
        ("GET", "/runs/nope", {}, 404, None),
        ("GET", "/runs", {"params": {"limit": "0"}}, 400, "limit"),
    ]
    for method, path, kwargs, status, field in cases:
        got, body = await call(http, daemon, method, path, **kwargs)
        assert got == status, (path, kwargs, body)
        assert body["error"]["field"] == field, body
        assert body["error"]["message"]


async def test_the_event_stream_resumed_with_last_event_id_misses_and_repeats_nothing(
    http: aiohttp.ClientSession, daemon: Daemon
) -> None:
    run_id, events = await _events(http, daemon)
    seqs = [seq for seq, _ in events]
    assert seqs == sorted(set(seqs))  # in order, none twice
    mine = [(seq, e) for seq, e in events if e["run"] == run_id]
    kinds = [(e["kind"], e["job"], e["new"]) for _, e in mine]
    assert kinds[0] == ("run", None, "queued")
    assert ("job", "b", "succeeded") in kinds
    assert kinds[-1] == ("run", None, "succeeded")
    # reconnect from the middle: the rest, from the store, nothing twice, nothing missed
    middle = mine[len(mine) // 2][0]
    _, again = await _events(http, daemon, run_id, last_id=str(middle))
    resumed = [(seq, e) for seq, e in again if e["run"] == run_id]
    assert resumed == [(seq, e) for seq, e in mine if seq > middle]


async def test_the_event_stream_filtered_by_dag_or_run_and_read_without_gzip(
    http: aiohttp.ClientSession, daemon: Daemon
) -> None:
    """A filtered stream is answered as it is (one compression serves the unfiltered ones,
    gzip when accepted); the filters keep their DAG's or run's events only."""
    params = {"dag": "quick"}
    run_id, events = await _events(http, daemon, params=params, encoding="identity")
    assert events
    assert {e["dag"] for _, e in events} == {"quick"}
    assert events[-1][1]["run"] == run_id
    first = events[0][0] - 1
    _, again = await _events(http, daemon, run_id, str(first), params={"run": run_id})
    assert again == [(seq, e) for seq, e in events if e["run"] == run_id]
    _, none = await _events(
        http, daemon, run_id, str(first), params={"run": "nope"}, until_connected=True
    )
    assert none == []


async def test_the_daemon_stopping_ends_every_event_stream(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Its streams end as answers end (their clients reconnect to the next start), and the
    stream's writer process ends with the daemon."""
    stopping = start_daemon(tmp_path)
    try:
        url = f"{stopping.base}/api/v1/events"
        answers = [
            await http.get(url, headers=stopping.headers("read")),
            await http.get(url, headers=stopping.headers("read"), params={"dag": "quick"}),
        ]
        for answer in answers:
            async with asyncio.timeout(30):
                assert await answer.content.readline() == b": connected\n"
        streamer = [p for p in children(stopping.proc.pid) if b"streamer.py" in cmdline(p)]
        assert len(streamer) == 1
        stopping.proc.terminate()
        for answer in answers:
            async with asyncio.timeout(30):
                assert await answer.content.read() in (b"", b"\n")  # the end, nothing lost
            answer.release()
        assert stopping.proc.wait(30) == 0
        assert not Path(f"/proc/{streamer[0]}").exists() or b"streamer.py" not in cmdline(
            streamer[0]
        )
    finally:
        if stopping.proc.poll() is None:
            stopping.proc.kill()
        stopping.proc.communicate(timeout=30)


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.extend(int(c) for c in (task / "children").read_text().split())
    return found


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


async def _events(
    http: aiohttp.ClientSession,
    daemon: Daemon,
    run_id: str | None = None,
    last_id: str | None = None,
    params: dict[str, str] | None = None,
    encoding: str | None = None,
    until_connected: bool = False,
) -> tuple[str, list[tuple[int, dict[str, Any]]]]:
    """The stream's events (id, data) until ``run_id`` ended (or ``until_connected``);
    without one, a run of ``quick`` triggered once the stream is connected. Read gzip-encoded
    (aiohttp accepts it) unless ``encoding`` says what is accepted, or a filter is given."""
    headers = daemon.headers("read")
    if last_id is not None:
        headers["Last-Event-ID"] = last_id
    if encoding is not None:
        headers["Accept-Encoding"] = encoding
    out: list[tuple[int, dict[str, Any]]] = []
    url = f"{daemon.base}/api/v1/events"
    async with http.get(url, headers=headers, params=params) as answer:
        assert answer.status == 200
        assert answer.content_type == "text/event-stream"
        gzip = encoding is None and not params
        assert answer.headers.get("Content-Encoding") == ("gzip" if gzip else None)
        event_id = None
        async with asyncio.timeout(30):
            async for raw in answer.content:
                line = raw.decode().rstrip("\n")
                if line == ": connected" and until_connected:
                    assert run_id is not None
                    return run_id, out
                if line == ": connected" and run_id is None:
                    status, group = await call(http, daemon, "POST", "/dags/quick/runs")
                    assert status == 201
                    run_id = group["id"]
                elif line.startswith("id: "):
                    event_id = int(line[4:])
                elif line.startswith("data: "):
                    assert event_id is not None
                    data = json.loads(line[6:])
                    out.append((event_id, data))
                    if (
                        data["run"] == run_id
                        and data["kind"] == "run"
                        and data["new"] in ("succeeded", "failed")
                    ):
                        return run_id, out
    raise AssertionError("the stream ended before the run")


def test_serving_beyond_this_machine_needs_tokens(tmp_path: Path) -> None:
    (tmp_path / "dags").mkdir()
    refused = orchestrator(
        "serve",
        "--dags",
        str(tmp_path / "dags"),
        "--db",
        str(tmp_path / "x.db"),
        "--host",
        "0.0.0.0",
        "--tokens",
        str(tmp_path / "none.json"),
    )
    assert refused.returncode == 2
    assert "--host 0.0.0.0: serving beyond this machine needs API tokens" in refused.stderr


CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "ignored_auth",
    )
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "operations",
    [
        ["--exclude-path", "/events", "-n", "20"],
        # the stream never ends: each request is cut after a second, its events checked
        ["--include-path", "/events", "-n", "3", "--request-timeout", "1"],
    ],
    ids=["rest", "events"],
)
def test_schemathesis_finds_no_500_and_no_answer_outside_the_document(
    daemon: Daemon, operations: list[str], tmp_path: Path
) -> None:
    """Every operation fuzzed from the OpenAPI document (a bounded number of examples, in
    deterministic mode): no 500, and every answer's status, type and body as documented."""
    schemathesis = Path(sys.executable).with_name("schemathesis")
    found = subprocess.run(
        [
            str(schemathesis),
            "run",
            f"{daemon.base}/api/v1/openapi.json",
            "-H",
            f"Authorization: Bearer {daemon.tokens['operate']}",
            "--generation-deterministic",
            "--checks",
            CHECKS,
            *operations,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # where it keeps its cache
        timeout=300,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    assert found.returncode == 0, found.stdout[-4000:]
    assert "passed" in found.stdout


def test_the_command_line_against_the_daemon(daemon: Daemon) -> None:
    env = {**os.environ, "ORCHESTRATOR_SERVER": daemon.base}
    operate = {**env, "ORCHESTRATOR_TOKEN": daemon.tokens["operate"]}
    read = {**env, "ORCHESTRATOR_TOKEN": daemon.tokens["read"]}
    started = orchestrator("trigger", "quick", "--param", "day=monday", env=operate)
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.split()[1]
    assert started.stdout.strip() == f"run {run_id} of quick"
    refused = orchestrator("trigger", "quick", env=read)
    assert refused.returncode == 2
    assert "cannot POST" in refused.stderr
    assert "(HTTP 403)" in refused.stderr
    listed = orchestrator("runs", "list", "--dag", "quick", "--json", env=read)
    assert listed.returncode == 0, listed.stderr
    assert run_id in [r["id"] for r in json.loads(listed.stdout)]
    deadline = time.monotonic() + 30
    while True:
        shown = orchestrator("runs", "show", run_id, "--json", env=read)
        assert shown.returncode == 0, shown.stderr
        view = json.loads(shown.stdout)
        if view["status"] == "succeeded":
            break
        assert time.monotonic() < deadline, view["status"]
        time.sleep(0.1)
    assert view["params"] == {"day": "monday"}
    assert [j["id"] for j in view["jobs"]["data"]] == ["a", "b"]
    table = orchestrator("runs", "list", "--dag", "quick", env=read)
    assert table.stdout.startswith("RUN")
    assert run_id in table.stdout
    dags = orchestrator("dags", env=read)
    assert dags.returncode == 0, dags.stderr
    names = [line.split("\t")[0] for line in dags.stdout.splitlines()]
    assert names == ["gated", "hang", "quick", "two"]
    hanging = orchestrator("trigger", "hang", "--json", env=operate)
    hang_id = json.loads(hanging.stdout)["id"]
    cancelled = orchestrator("runs", "cancel", hang_id, env=operate)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == f"run {hang_id}: cancel requested"
    two = json.loads(orchestrator("trigger", "two", "--json", env=operate).stdout)["id"]
    one_job = orchestrator("runs", "cancel", two, "--job", "stuck", env=operate)
    assert one_job.returncode == 0, one_job.stderr
    assert one_job.stdout.strip() in (  # at once if it had not started
        f"job stuck of run {two}: cancel requested",
        f"job stuck of run {two}: cancelled",
    )
    missing = orchestrator("runs", "show", "nope", env=read)
    assert missing.returncode == 2
    assert "run 'nope' not found (HTTP 404)" in missing.stderr


async def test_rerun_runs_the_failed_jobs_again_and_carries_the_rest(
    http: aiohttp.ClientSession, daemon: Daemon
) -> None:
    status, group = await call(http, daemon, "POST", "/dags/gated/runs")
    assert status == 201
    first = group["id"]
    assert await until_state(http, daemon, first, "succeeded", "failed") == "failed"
    status, body = await call(http, daemon, "POST", f"/runs/{first}/rerun", "read")
    assert status == 403
    (daemon.home / "gate").touch()  # check passes from now on
    status, group = await call(http, daemon, "POST", f"/runs/{first}/rerun")
    assert status == 201, group
    second = group["id"]
    assert second != first
    assert await until_state(http, daemon, second, "succeeded", "failed") == "succeeded"
    _, run = await call(http, daemon, "GET", f"/runs/{second}", "read")
    jobs = {j["id"]: j for j in run["jobs"]["data"]}
    assert run["trigger"] == "rerun"
    assert (jobs["first"]["status"], jobs["first"]["attempts"]) == ("succeeded", 0)  # carried
    assert jobs["first"]["outputs"] == {"rows": 3}
    assert f"carried over from run {first} (succeeded)" in jobs["first"]["notes"]
    assert (jobs["check"]["status"], jobs["check"]["attempts"]) == ("succeeded", 1)
    assert jobs["last"]["status"] == "succeeded"
    assert [a["job"] for a in run["attempts"]] == ["check", "last"]  # nothing else submitted
    status, body = await call(http, daemon, "POST", f"/runs/{second}/rerun")
    assert status == 409
    assert "nothing to rerun" in body["error"]["message"]


async def test_cancel_one_job_and_the_run_goes_on(
    http: aiohttp.ClientSession, daemon: Daemon
) -> None:
    status, group = await call(http, daemon, "POST", "/dags/two/runs")
    assert status == 201
    run_id = group["id"]
    await cancel_stuck_once_submitted(http, daemon, run_id)
    # its final job (all_done) ran and succeeded: the run is decided by it, as Airflow's is
    assert await until_state(http, daemon, run_id, "failed", "succeeded") == "succeeded"
    await assert_stuck_cancelled_and_the_run_went_on(http, daemon, run_id)
    status, _ = await call(http, daemon, "POST", f"/runs/{run_id}/jobs/nope/cancel")
    assert status == 404


def started_run(proc: subprocess.Popen[str]) -> str:
    """The id of the run an `orchestrator run --json` started (read from its log)."""
    assert proc.stderr is not None
    for line in proc.stderr:
        if '"run.started"' in line:
            return str(json.loads(line)["run"])
    raise AssertionError("the run did not start")


async def cancel_stuck_once_submitted(
    http: aiohttp.ClientSession, daemon: Daemon, run_id: str
) -> None:
    """Cancel job ``stuck`` of DAG ``two`` once its remote job is recorded."""
    path = f"/runs/{run_id}/jobs/stuck"
    deadline = time.monotonic() + 30
    while True:
        _, attempts = await call(http, daemon, "GET", f"{path}/attempts", "read")
        if attempts["data"] and attempts["data"][0]["remote"] is not None:
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    status, body = await call(http, daemon, "POST", f"{path}/cancel")
    assert (status, body) == (202, {"id": "stuck", "run": run_id, "status": "cancelling"})


async def assert_stuck_cancelled_and_the_run_went_on(
    http: aiohttp.ClientSession, daemon: Daemon, run_id: str
) -> None:
    _, run = await call(http, daemon, "GET", f"/runs/{run_id}", "read")
    jobs = {j["id"]: j for j in run["jobs"]["data"]}
    assert (jobs["stuck"]["status"], jobs["stuck"]["error"]) == (
        "cancelled",
        "cancelled through the API",
    )
    assert jobs["cleanup"]["status"] == "succeeded"  # all_done: the run went on
    status, body = await call(http, daemon, "POST", f"/runs/{run_id}/jobs/stuck/cancel")
    assert (status, body["status"]) == (200, "cancelled")  # a second cancel: the same
    status, _ = await call(http, daemon, "POST", f"/runs/{run_id}/jobs/cleanup/cancel")
    assert status == 409  # it ended otherwise


async def test_cancel_one_job_of_a_run_of_another_process(
    http: aiohttp.ClientSession, daemon: Daemon
) -> None:
    """The run belongs to an `orchestrator run` on the daemon's store: the job's cancel goes
    through the store, the run's owner cancels the job (its remote job too), the run goes on."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "run",
            str(daemon.home / "dags" / "two.json"),
            "--db",
            str(daemon.home / "api.db"),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        run_id = await asyncio.to_thread(started_run, proc)
        await cancel_stuck_once_submitted(http, daemon, run_id)
        await asyncio.to_thread(proc.communicate, timeout=60)
        assert proc.returncode == 0  # its final job (all_done) decided the run: succeeded
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    await assert_stuck_cancelled_and_the_run_went_on(http, daemon, run_id)
