"""What the daemon's end-to-end tests share: `orchestrator serve` in a process of its own (its
JSON log in a file, read back line by line), a DAG folder and a SQLite store in a temporary
folder, the store read with sqlite3, and waiting on conditions with a deadline."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from .conftest import control, generic_job

ROOT = Path(__file__).parents[2]
POLL = 0.1  # seconds between two looks at a condition
T = TypeVar("T")


def wait_for(
    condition: Callable[[], T],
    what: str,
    *,
    timeout: float = 30.0,
    alive: Daemon | None = None,
) -> T:
    """Poll ``condition`` every 0.1 s until it returns something true (returned); fail after
    ``timeout`` seconds, or as soon as the daemon ``alive`` ended."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if alive is not None and alive.proc.poll() is not None:
            raise AssertionError(
                f"the daemon ended ({alive.proc.returncode}) while waiting for {what}\n"
                + alive.log_text()[-3000:]
            )
        if time.monotonic() > deadline:
            tail = alive.log_text()[-3000:] if alive is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{tail}")
        time.sleep(POLL)


def sleep_until(at: float) -> None:
    """Sleep until the wall clock reads ``at`` (to let a schedule's ticks pass)."""
    while (left := at - time.time()) > 0:
        time.sleep(min(left, POLL))


def rows(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The rows of a read-only query of the store (none before the store exists)."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # not migrated yet
            return []
        raise


def utc(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


def seconds_cron(*at: float) -> str:
    """A 6-field cron (seconds first) that fires at the wall-clock seconds ``at`` (whole
    seconds) of every minute: a test makes its ticks come when it needs them."""
    seconds = sorted({round(t) % 60 for t in at})
    assert len(seconds) == len(at), "the ticks must fall on distinct seconds of a minute"
    return f"{','.join(map(str, seconds))} * * * * *"


def next_second(after: float, margin: float) -> float:
    """The first whole second at least ``margin`` seconds after ``after``."""
    return float(math.ceil(after + margin))


@dataclass
class Daemon:
    """One `orchestrator serve` process."""

    proc: subprocess.Popen[bytes]
    log: Path
    started_at: float  # wall clock, when launched

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines (of event ``name``) written so far."""
        out = []
        for line in self.log_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and (name is None or event.get("event") == name):
                out.append(event)
        return out

    def wait_event(
        self,
        name: str,
        where: Callable[[dict[str, Any]], bool] = lambda e: True,
        *,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        found = wait_for(
            lambda: [e for e in self.events(name) if where(e)],
            f"the log event {name}",
            timeout=timeout,
            alive=self,
        )
        return found[0]

    def started(self, timeout: float = 30.0) -> dict[str, Any]:
        return self.wait_event("daemon.started", timeout=timeout)

    @property
    def port(self) -> int:
        return int(self.started()["port"])

    def get(self, path: str) -> tuple[int, str]:
        """GET a path of the daemon's server: (status, body)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the daemon did not exit in {timeout}s\n" + self.log_text()[-3000:]
            ) from None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, and its exit status."""
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)


@dataclass
class Setup:
    """A DAG folder, a SQLite store and the connections of one test, against the generic job
    API simulator (``sim``); ``tag`` makes its simulator job names its own."""

    tmp: Path
    sim: str  # the generic simulator's base URL
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    daemons: list[Daemon] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.dags.mkdir(parents=True, exist_ok=True)
        self.connections.write_text(
            f'[sim]\ntype = "http"\nbase_url = "{self.sim}"\ntoken = "sim-token"\n'
        )

    @property
    def dags(self) -> Path:
        return self.tmp / "dags"

    @property
    def db(self) -> Path:
        return self.tmp / "state.db"

    @property
    def connections(self) -> Path:
        return self.tmp / "connections.toml"

    @property
    def env(self) -> dict[str, str]:
        env = {**os.environ, "ORCHESTRATOR_HOME": str(self.tmp / "home")}
        env.pop("ORCHESTRATOR_CRASH_AT", None)
        env.pop("ORCHESTRATOR_CONNECTIONS", None)
        return env

    # -- the remote ------------------------------------------------------------------------
    def remote(self, name: str, duration: float) -> dict[str, Any]:
        """A job on the simulator that takes ``duration`` seconds (its name is this test's)."""
        target = f"{self.tag}-{name}"
        control(f"{self.sim}/_sim/behaviour", {"target": target, "duration": duration})
        return generic_job(target)

    def sim_jobs(self) -> list[dict[str, Any]]:
        """The simulator's jobs of this test: id, name, state."""
        request = urllib.request.Request(
            f"{self.sim}/jobs", headers={"Authorization": "Bearer sim-token"}
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            jobs = json.loads(answer.read())["data"]
        return [j for j in jobs if str(j.get("name", "")).startswith(f"{self.tag}-")]

    def submissions(self) -> dict[str, int]:
        """How many times the simulator accepted each idempotency key of this test's store."""
        counted = control(f"{self.sim}/_sim/counters")["submissions"]
        keys = [k for (k,) in rows(self.db, "SELECT key FROM attempts")]
        return {k: int(counted.get(k, 0)) for k in keys}

    # -- DAG files -------------------------------------------------------------------------
    def write_dag(
        self, name: str, schedule: dict[str, Any] | None, jobs: dict[str, Any] | None = None
    ) -> Path:
        jobs = jobs or {"a": {"type": "fake"}}
        dag: dict[str, Any] = {
            "name": name,
            "jobs": jobs,
            "jobGraph": {"vertices": list(jobs), "edges": []},
        }
        if schedule is not None:
            dag["schedule"] = schedule
        path = self.dags / f"{name}.json"
        tmp = path.with_name(f".{path.name}.tmp")  # hidden: the catalog ignores it
        tmp.write_text(json.dumps(dag))
        tmp.replace(path)  # whole, never half-written
        return path

    # -- processes -------------------------------------------------------------------------
    def serve(self, *extra: str, crash: str | None = None, grace: float = 10.0) -> Daemon:
        n = len(self.daemons)
        log = self.tmp / f"daemon-{n}.log"
        env = self.env
        if crash:
            env["ORCHESTRATOR_CRASH_AT"] = crash
        with log.open("wb") as err:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "orchestrator",
                    "serve",
                    "--dags",
                    str(self.dags),
                    "--db",
                    str(self.db),
                    "--port",
                    "0",
                    "--connections",
                    str(self.connections),
                    "--grace",
                    str(grace),
                    *extra,
                ],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        daemon = Daemon(proc, log, time.time())
        self.daemons.append(daemon)
        return daemon

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orchestrator", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def cli_json(self, *args: str) -> Any:
        done = self.cli(*args, "--json")
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)

    def runs_list(self, dag: str | None = None) -> list[dict[str, Any]]:
        """`orchestrator runs list --json`, oldest first."""
        more = ["--dag", dag] if dag else []
        runs = self.cli_json("runs", "list", "--db", str(self.db), "--limit", "1000", *more)
        return list(reversed(runs))

    def schedules_list(self) -> dict[str, dict[str, Any]]:
        listed = self.cli_json("schedules", "list", "--dags", str(self.dags), "--db", str(self.db))
        return {row["dag"]: row for row in listed}

    # -- the store -------------------------------------------------------------------------
    def ticks(self, dag: str) -> list[tuple[float, str | None, str | None, int]]:
        """(nominal, run id, skipped, backfill) of each tick of ``dag``, oldest first."""
        return [
            (float(n), r, s, int(b))
            for n, r, s, b in rows(
                self.db,
                "SELECT nominal, run_id, skipped, backfill FROM ticks WHERE dag = ? "
                "ORDER BY nominal",
                (dag,),
            )
        ]

    def runs(self, dag: str) -> list[dict[str, Any]]:
        """The runs of ``dag`` in the store, by creation."""
        cols = ("id", "state", "trigger", "nominal_at", "created_at", "started_at", "ended_at")
        found = rows(
            self.db,
            f"SELECT {', '.join(cols)} FROM runs WHERE dag = ? ORDER BY created_at",
            (dag,),
        )
        return [dict(zip(cols, r, strict=True)) for r in found]

    def kill_all(self) -> None:
        for daemon in self.daemons:
            if daemon.proc.poll() is None:
                daemon.proc.kill()
                daemon.proc.wait(10)


@contextmanager
def setup_in(tmp: Path, sim: str) -> Iterator[Setup]:
    """A :class:`Setup` whose daemons are killed at the end, whatever happened."""
    setup = Setup(tmp, sim)
    try:
        yield setup
    finally:
        setup.kill_all()
