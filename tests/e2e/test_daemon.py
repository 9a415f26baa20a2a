"""End-to-end tests of the daemon, `orchestrator serve`: each test starts it as a process of its
own on a temporary DAG folder and SQLite store, against the generic job API of `orchestrator
simulate` (another process, which counts every submission and cancel), and checks what it did
through the command line (`runs list`, `schedules list`), the store and the simulator.

Schedules use 6-field crons (seconds first) so that ticks come every 2 s, or at the very seconds
a test needs (:func:`seconds_cron`). Every wait is on a condition, with a deadline.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from .daemon_support import (
    Setup,
    next_second,
    rows,
    seconds_cron,
    setup_in,
    sleep_until,
    wait_for,
)

EVERY_2S = "*/2 * * * * *"


@pytest.fixture
def setup(simulator_process: str, tmp_path: Path) -> Iterator[Setup]:
    with setup_in(tmp_path, f"{simulator_process}/generic") as it:
        yield it


def scheduled_runs(setup: Setup, dag: str) -> list[dict[str, Any]]:
    return [r for r in setup.runs(dag) if r["trigger"] == "schedule"]


# -- 1. on time -------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_schedule_fires_on_time(setup: Setup) -> None:
    setup.write_dag("every2", {"cron": EVERY_2S})
    daemon = setup.serve()
    daemon.started()
    wait_for(
        lambda: len([r for r in scheduled_runs(setup, "every2") if r["state"] == "succeeded"]) >= 3,
        "three scheduled runs",
        alive=daemon,
    )
    assert daemon.stop() == 0

    listed = setup.runs_list("every2")
    assert len(listed) >= 3
    assert {r["trigger"] for r in listed} == {"schedule"}
    assert {r["status"] for r in listed} == {"succeeded"}
    runs = scheduled_runs(setup, "every2")
    assert [r["id"] for r in runs] == [r["id"] for r in listed]
    nominals = [r["nominal_at"] for r in runs]
    assert all(n % 2 == 0 for n in nominals), nominals  # whole even seconds
    assert [b - a for a, b in itertools.pairwise(nominals)] == [2.0] * (len(nominals) - 1)
    for run in runs:
        delay = run["started_at"] - run["nominal_at"]
        assert 0 <= delay < 1.0, run  # on time: well within half the period
    ticks = setup.ticks("every2")
    assert [t[0] for t in ticks] == nominals
    assert all(t[2] is None for t in ticks)  # none skipped
    logged = daemon.events("tick.started")
    assert len(logged) == len(runs)
    assert all(0 <= e["delay"] < 1.0 for e in logged), logged


# -- 2. a crash between a tick and its run ----------------------------------------------------
@pytest.mark.slow
def test_a_crash_after_a_tick_then_restart_runs_it_once(setup: Setup) -> None:
    setup.write_dag("crashy", {"cron": EVERY_2S}, {"j": setup.remote("quick", 0.3)})
    crashed = setup.serve(crash="after_tick")
    assert crashed.wait_exit(30) == 70, crashed.log_text()[-3000:]
    ticks = setup.ticks("crashy")
    assert len(ticks) == 1, ticks
    nominal, run_id, skipped, _ = ticks[0]
    assert run_id is not None
    assert skipped is None
    (run,) = setup.runs("crashy")
    assert run["id"] == run_id
    assert run["state"] == "queued"  # recorded, never started
    assert run["nominal_at"] == nominal
    assert setup.sim_jobs() == []  # nothing was submitted

    daemon = setup.serve()
    assert daemon.started()["resumed"] == 1
    wait_for(
        lambda: {r["id"]: r["state"] for r in setup.runs("crashy")}.get(run_id) == "succeeded",
        "the crashed tick's run to succeed",
        alive=daemon,
    )
    assert daemon.stop() == 0

    ticks = setup.ticks("crashy")
    nominals = [t[0] for t in ticks]
    assert len(nominals) == len(set(nominals))
    assert nominals[0] == nominal  # the crashed tick is still the first, not fired again
    runs = setup.runs("crashy")
    of_nominal = [r for r in runs if r["nominal_at"] == nominal]
    assert [r["id"] for r in of_nominal] == [run_id]  # one run for that tick: the resumed one
    by_tick = {t[1] for t in ticks if t[1] is not None}
    assert by_tick == {r["id"] for r in runs}  # every run is its tick's, each tick has one run
    submitted = setup.submissions()
    assert submitted, "the resumed run submitted nothing"
    assert set(submitted.values()) == {1}, submitted  # no job submitted twice
    assert len(setup.sim_jobs()) == len(submitted)


# -- 3. catch-up after downtime ---------------------------------------------------------------
@pytest.fixture(scope="module")
def caught_up(simulator_process: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One DAG per catch-up policy on one daemon: a tick at ``first`` runs, the daemon stops,
    the ticks at ``first + 3`` and ``first + 4`` pass while it is down, and it starts again
    once both are missed (more than half their period late). The cron fires at nothing else
    for a minute, so no tick comes on time after the restart."""
    tmp = tmp_path_factory.mktemp("catchup")
    with setup_in(tmp, f"{simulator_process}/generic") as setup:
        first = next_second(time.time(), 4.0)  # the daemon starts in 1 to 2 s
        cron = seconds_cron(first, first + 3, first + 4)
        for policy in ("none", "latest", "all"):
            schedule = {"cron": cron, "catchup": policy, "overlap": "queue_all"}
            setup.write_dag(f"catchup_{policy}", schedule)
        daemon = setup.serve()
        daemon.started()
        assert time.time() < first, "the daemon started too late for the test's first tick"
        wait_for(
            lambda: all(
                [r["state"] for r in setup.runs(f"catchup_{p}")] == ["succeeded"]
                for p in ("none", "latest", "all")
            ),
            "the first tick's runs",
            alive=daemon,
        )
        assert daemon.stop() == 0
        assert time.time() < first + 3, "the daemon stopped too late: its second tick came"
        # missed: the next tick (a minute later) is 3 s after the second, so half a period is 1.5 s
        sleep_until(first + 4 + 1.6)
        again = setup.serve()
        again.started()
        yield setup, first, again


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["none", "latest", "all"])
def test_catch_up_after_downtime(caught_up: Any, policy: str) -> None:
    setup, first, daemon = caught_up
    dag = f"catchup_{policy}"
    expected_runs = {"none": 1, "latest": 2, "all": 3}[policy]
    wait_for(
        lambda: (
            len(ticks := setup.ticks(dag)) == 3
            and len(runs := setup.runs(dag)) == expected_runs
            and all(r["state"] == "succeeded" for r in runs)
            and ticks
        ),
        f"the ticks of {dag} caught up",
        alive=daemon,
    )
    ticks = setup.ticks(dag)
    assert [t[0] for t in ticks] == [first, first + 3, first + 4]
    outcome = [(t[1] is not None, t[2]) for t in ticks]
    runs = setup.runs(dag)
    if policy == "none":
        assert outcome == [(True, None), (False, "catchup"), (False, "catchup")]
        last = setup.schedules_list()[dag]["last_tick"]
        assert last["skipped"] == "catchup"
        assert last["run"] is None
    elif policy == "latest":
        assert outcome == [(True, None), (False, "catchup"), (True, None)]
        assert [r["nominal_at"] for r in runs] == [first, first + 4]
        assert setup.schedules_list()[dag]["last_tick"]["run"] == runs[-1]["id"]
    else:
        assert outcome == [(True, None), (True, None), (True, None)]
        assert [r["nominal_at"] for r in runs] == [first, first + 3, first + 4]  # in order
        started = [r["started_at"] for r in runs]
        assert started == sorted(started)
    assert {r["trigger"] for r in runs} == {"schedule"}
    assert daemon.proc.poll() is None


# -- 4. overlap policies ----------------------------------------------------------------------
POLICIES = ("skip", "queue", "queue_all", "cancel_previous", "allow")


@pytest.fixture(scope="module")
def overlapped(simulator_process: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One DAG per overlap policy, every 2 s, each run a 3-second remote job (seen ended 3.2 to
    5 s after it started: the polls back off), on one daemon for five ticks; stopped between
    two ticks. Yields the setup, the simulator's jobs, each DAG's ticks and runs, and each DAG's
    attempts (stored, and accepted by the remote)."""
    tmp = tmp_path_factory.mktemp("overlap")
    with setup_in(tmp, f"{simulator_process}/generic") as setup:
        for policy in POLICIES:
            job = setup.remote(f"overlap-{policy}", 3.0)
            setup.write_dag(f"overlap_{policy}", {"cron": EVERY_2S, "overlap": policy}, {"j": job})
        daemon = setup.serve()
        daemon.started()
        wait_for(
            lambda: all(len(setup.ticks(f"overlap_{p}")) >= 5 for p in POLICIES),
            "five ticks of every DAG",
            alive=daemon,
            timeout=60,
        )
        # stop half a period after the last tick: its cancel (cancel_previous) is done
        sleep_until(max(t[0] for p in POLICIES for t in setup.ticks(f"overlap_{p}")) + 1.0)
        assert daemon.stop() == 0
        stored = {p: (setup.ticks(f"overlap_{p}"), setup.runs(f"overlap_{p}")) for p in POLICIES}
        tried = {p: attempts(setup, f"overlap_{p}") for p in POLICIES}
        yield setup, setup.sim_jobs(), stored, tried


def attempts(setup: Any, dag: str) -> tuple[int, int]:
    """How many runs of ``dag`` have an attempt stored, and how many of those attempts the
    remote accepted (a handle stored)."""
    [(stored, accepted)] = rows(
        setup.db,
        "SELECT COUNT(*), COUNT(a.handle) FROM attempts a JOIN runs r ON r.id = a.run_id "
        "WHERE r.dag = ?",
        (dag,),
    )
    return int(stored), int(accepted)


WAITING = 0.1  # seconds: a run queued longer than this before it started was waiting


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most of ``spans`` (start, end) that were open at one time."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = now = 0
    for _, step in edges:  # an end before a start at the same time
        now += step
        most = max(most, now)
    return most


def _running(runs: list[dict[str, Any]]) -> int:
    """The most runs that ran at once (a run not ended runs on)."""
    return _most_at_once(
        [(r["started_at"], r["ended_at"] or math.inf) for r in runs if r["started_at"]]
    )


def _waiting(runs: list[dict[str, Any]]) -> int:
    """The most runs that waited at once, queued behind another (a run not started waits on;
    the last ``WAITING`` seconds of a wait, when it is being started, do not count)."""
    spans = [(r["created_at"], (r["started_at"] or math.inf) - WAITING) for r in runs]
    return _most_at_once([(a, b) for a, b in spans if b > a])


@pytest.mark.slow
@pytest.mark.parametrize("policy", POLICIES)
def test_overlap_policy(overlapped: Any, policy: str) -> None:
    _, sim_jobs, stored, tried = overlapped
    ticks, runs = stored[policy]
    skipped = [t[2] for t in ticks if t[2] is not None]
    assert set(skipped) <= {"overlap"}, ticks
    assert len(runs) + len(skipped) == len(ticks)
    assert {r["trigger"] for r in runs} == {"schedule"}
    remote = [j for j in sim_jobs if j["name"].endswith(f"-overlap-{policy}")]
    # one remote job a run that submitted its job: every accepted attempt, and at most the
    # attempts stored (a run started just before the daemon stopped, a queued one at any
    # moment, may have stopped before its write-ahead record, or before the remote's answer)
    attempted, accepted = tried[policy]
    assert accepted <= len(remote) <= attempted <= len([r for r in runs if r["started_at"]])
    assert accepted >= len([r for r in runs if r["started_at"]]) - 1
    if policy == "skip":
        assert skipped, "no tick was skipped while a run was active"
        assert _running(runs) == 1
        assert _waiting(runs) == 0
    elif policy == "queue":
        assert skipped, "no tick was skipped with a run waiting already"
        assert _running(runs) == 1
        assert _waiting(runs) == 1  # one run waits, never more
    elif policy == "queue_all":
        assert skipped == []  # every tick has its run
        assert _running(runs) == 1
        assert _waiting(runs) >= 2  # they pile up behind the active one
        started = [r for r in runs if r["started_at"]]
        assert [r["nominal_at"] for r in started] == sorted(r["nominal_at"] for r in started)
    elif policy == "cancel_previous":
        assert skipped == []
        states = [r["state"] for r in runs]
        assert states[:-1] == ["cancelled"] * (len(runs) - 1), states  # each by the next tick
        assert states[-1] == "running"  # left running by the stop
        cancelled_remote = [j for j in remote if j["state"] == "cancelled"]
        assert len(cancelled_remote) == len(runs) - 1, remote
        assert _waiting(runs) == 0
    else:  # allow
        assert skipped == []
        assert _waiting(runs) == 0
        assert _running(runs) >= 2


@pytest.mark.slow
def test_queue_all_stays_one_at_a_time_across_a_restart(overlapped: Any) -> None:
    """The runs left queued by a stopped daemon wait their turn after its restart (they were
    all resumed at once before)."""
    setup = overlapped[0]
    queued = {r["id"] for r in setup.runs("overlap_queue_all") if r["state"] == "queued"}
    assert len(queued) >= 2, "the daemon stopped with fewer than two runs waiting"
    daemon = setup.serve()
    daemon.started()
    most = 0

    def two_started() -> bool:
        nonlocal most
        runs = setup.runs("overlap_queue_all")
        most = max(most, len([r for r in runs if r["state"] == "running"]))
        return len([r for r in runs if r["id"] in queued and r["state"] != "queued"]) >= 2

    wait_for(two_started, "two of the runs left queued to start", alive=daemon, timeout=60)
    assert daemon.stop() == 0
    assert most == 1, f"{most} runs of a queue_all DAG ran at once after a restart"
    waited = [r for r in setup.runs("overlap_queue_all") if r["id"] in queued]
    started = [r["started_at"] for r in waited if r["started_at"]]
    assert started == sorted(started)  # in the order they were queued


# -- 5. pause, unpause, backfill --------------------------------------------------------------
@pytest.mark.slow
def test_pause_unpause_and_backfill(setup: Setup) -> None:
    setup.write_dag("pausable", {"cron": EVERY_2S})
    daemon = setup.serve()
    daemon.started()
    wait_for(lambda: scheduled_runs(setup, "pausable"), "a first run", alive=daemon)

    paused = setup.cli("schedules", "pause", "pausable", "--db", str(setup.db))
    assert paused.returncode == 0, paused.stderr
    assert "paused" in paused.stdout
    paused_at = time.time()
    wait_for(
        lambda: len([t for t in setup.ticks("pausable") if t[0] > paused_at]) >= 2,
        "two ticks after the pause",
        alive=daemon,
    )
    after_pause = [t for t in setup.ticks("pausable") if t[0] > paused_at]
    assert all(t[1] is None and t[2] == "paused" for t in after_pause), after_pause
    listed = setup.schedules_list()["pausable"]
    assert listed["paused"] is True
    assert listed["last_tick"]["skipped"] == "paused"

    unpaused = setup.cli("schedules", "unpause", "pausable", "--db", str(setup.db))
    assert unpaused.returncode == 0, unpaused.stderr
    unpaused_at = time.time()
    wait_for(
        lambda: [r for r in scheduled_runs(setup, "pausable") if r["nominal_at"] > unpaused_at],
        "a run after the unpause",
        alive=daemon,
    )
    assert not [
        r for r in scheduled_runs(setup, "pausable") if paused_at < r["nominal_at"] < unpaused_at
    ]
    assert setup.schedules_list()["pausable"]["paused"] is False

    # a backfill of a past range, while the daemon runs: one run per tick, then nothing again
    start = datetime.now(UTC).replace(microsecond=0, second=0) - timedelta(hours=1)
    end = start + timedelta(seconds=6)
    args = ["schedules", "backfill", "pausable", "--dags", str(setup.dags)]
    args += ["--from", start.isoformat(), "--to", end.isoformat(), "--db", str(setup.db)]
    filled = setup.cli(*args)
    assert filled.returncode == 0, filled.stderr[-2000:]
    assert "pausable: 4 runs, 0 ticks recorded before" in filled.stdout, filled.stdout
    backfilled = [r for r in setup.runs_list("pausable") if r["trigger"] == "backfill"]
    assert len(backfilled) == 4
    assert {r["status"] for r in backfilled} == {"succeeded"}
    ticks = [t for t in setup.ticks("pausable") if t[3]]
    wanted = [(start + timedelta(seconds=s)).timestamp() for s in (0, 2, 4, 6)]
    assert [t[0] for t in ticks] == wanted
    assert {t[1] for t in ticks} == {r["id"] for r in backfilled}

    again = setup.cli(*args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "pausable: 0 runs, 4 ticks recorded before" in again.stdout, again.stdout
    assert len([r for r in setup.runs_list("pausable") if r["trigger"] == "backfill"]) == 4
    assert daemon.proc.poll() is None
    assert daemon.stop() == 0


# -- 6. a broken DAG file ---------------------------------------------------------------------
def test_a_broken_dag_file_is_reported_and_the_rest_scheduled(setup: Setup) -> None:
    setup.write_dag("good", {"cron": EVERY_2S})
    setup.write_dag("also_good", {"cron": EVERY_2S})
    (setup.dags / "broken.json").write_text('{"name": "broken", "jobs": {')
    setup.write_dag("bad_cron", {"cron": "every tuesday"})

    listed = setup.cli("dags", "--dags", str(setup.dags))
    assert listed.returncode == 2, listed.stdout + listed.stderr
    assert "broken.json" in listed.stderr
    assert "bad_cron.json" in listed.stderr
    assert "good" in listed.stdout

    daemon = setup.serve()
    started = daemon.started()
    assert started["errors"] == 2
    assert started["scheduled"] == 2
    failed = {Path(e["path"]).name for e in daemon.events("dag.load_failed")}
    assert failed == {"broken.json", "bad_cron.json"}
    wait_for(
        lambda: scheduled_runs(setup, "good") and scheduled_runs(setup, "also_good"),
        "runs of the good DAGs",
        alive=daemon,
    )
    assert daemon.get("/healthz")[0] == 200
    status, body = daemon.get("/readyz")
    assert status == 200, body
    assert rows(setup.db, "SELECT COUNT(*) FROM runs WHERE dag NOT IN ('good', 'also_good')") == [
        (0,)
    ]
    assert daemon.stop() == 0


# -- 7. reloading the folder ------------------------------------------------------------------
@pytest.mark.slow
def test_reload_on_sighup_and_on_file_changes(setup: Setup) -> None:
    gone = setup.write_dag("gone", {"cron": EVERY_2S}, {"j": setup.remote("gone", 4.0)})
    daemon = setup.serve()
    daemon.started()
    first = wait_for(
        lambda: [r for r in scheduled_runs(setup, "gone") if r["state"] == "running"],
        "a run of the DAG to remove",
        alive=daemon,
    )[0]
    wait_for(lambda: setup.sim_jobs(), "its remote job", alive=daemon)

    def scheduled() -> str:
        return str(json.loads(daemon.get("/readyz")[1])["checks"]["schedules"]["detail"])

    assert scheduled() == "1 scheduled"
    # removed without a signal (the watcher sees it): no longer scheduled, its run goes on
    gone.unlink()
    wait_for(lambda: scheduled() == "0 scheduled", "the DAG removed", alive=daemon)
    removed_at = time.time()
    assert [r["state"] for r in setup.runs("gone")] == ["running"]

    # added, then SIGHUP
    setup.write_dag("added", {"cron": EVERY_2S})
    daemon.signal(signal.SIGHUP)
    daemon.wait_event("daemon.reloading")
    wait_for(lambda: scheduled_runs(setup, "added"), "a run of the DAG added", alive=daemon)
    assert scheduled() == "1 scheduled"

    # added without a signal: the watcher sees it
    setup.write_dag("watched", {"cron": EVERY_2S})
    wait_for(lambda: scheduled_runs(setup, "watched"), "a run of the DAG watched", alive=daemon)
    assert len(daemon.events("daemon.reloading")) == 1
    assert scheduled() == "2 scheduled"

    wait_for(
        lambda: {r["id"]: r["state"] for r in setup.runs("gone")}[first["id"]] == "succeeded",
        "the removed DAG's run to end",
        alive=daemon,
        timeout=60,
    )
    sleep_until(max(time.time(), removed_at + 2.5))  # a tick of it would have come
    late = [t for t in setup.ticks("gone") if t[0] > removed_at]
    assert late == [], late
    assert [j["state"] for j in setup.sim_jobs()] == ["done"]
    assert daemon.stop() == 0


# -- 8. stopping mid-run, then a restart -------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_stop_mid_run_then_restart_finishes_it(setup: Setup, sig: signal.Signals) -> None:
    at = next_second(time.time(), 3.5)  # the daemon starts in 1 to 2 s
    setup.write_dag("once", {"cron": seconds_cron(at)}, {"j": setup.remote("slow", 4.0)})
    grace = 10.0
    daemon = setup.serve(grace=grace)
    daemon.started()
    assert time.time() < at, "the daemon started too late for the test's tick"
    wait_for(
        lambda: rows(setup.db, "SELECT state FROM jobs") == [("running",)],
        "the job running at the simulator",
        alive=daemon,
    )
    (run,) = setup.runs("once")
    stopped_at = time.monotonic()
    daemon.signal(sig)
    code = daemon.wait_exit(grace + 5)
    if sig == signal.SIGTERM:
        assert code == 0, daemon.log_text()[-3000:]
        assert time.monotonic() - stopped_at < grace
        assert daemon.events("daemon.stopped")
        assert "Traceback" not in daemon.log_text()
    else:
        assert code == -signal.SIGKILL
    (remote,) = setup.sim_jobs()
    assert remote["state"] == "running"  # left running, not cancelled
    assert [r["state"] for r in setup.runs("once")] == ["running"]  # for the next start

    again = setup.serve()
    assert again.started()["resumed"] == 1
    wait_for(
        lambda: [r["state"] for r in setup.runs("once")] == ["succeeded"],
        "the run to finish after the restart",
        alive=again,
    )
    assert again.stop() == 0
    assert [r["id"] for r in setup.runs("once")] == [run["id"]]
    assert rows(setup.db, "SELECT state FROM jobs") == [("succeeded",)]
    assert setup.submissions() == {k: 1 for k in setup.submissions()}
    assert len(setup.submissions()) == 1
    (remote,) = setup.sim_jobs()
    assert remote["state"] == "done"


# -- 9. health, readiness, metrics ------------------------------------------------------------
def _metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@pytest.mark.slow
def test_health_readiness_and_metrics(setup: Setup) -> None:
    setup.write_dag(
        "metered", {"cron": EVERY_2S, "overlap": "skip"}, {"a": {"type": "fake", "duration": "3s"}}
    )
    daemon = setup.serve()
    daemon.started()
    status, body = daemon.get("/healthz")
    assert status == 200
    assert json.loads(body)["status"] == "ok"
    status, body = daemon.get("/readyz")
    assert status == 200, body
    ready = json.loads(body)
    assert ready["status"] == "ok"
    assert set(ready["checks"]) == {"store", "schedules", "accepting"}
    assert all(check["ok"] for check in ready["checks"].values()), ready
    assert ready["checks"]["schedules"]["detail"] == "1 scheduled"

    def enough() -> str | None:
        status, text = daemon.get("/metrics")
        assert status == 200
        skipped = _metric(text, 'orchestrator_ticks_skipped_total{reason="overlap"}')
        started = _metric(text, "orchestrator_tick_delay_seconds_count")
        return text if skipped >= 1 and started >= 1 else None

    text = wait_for(enough, "a tick started and one skipped in /metrics", alive=daemon)
    assert "orchestrator_ticks_skipped_total" in text
    assert "orchestrator_tick_delay_seconds_bucket" in text
    assert daemon.stop() == 0


# -- 10. one daemon per SQLite file -----------------------------------------------------------
def test_a_second_daemon_on_the_same_database_is_refused(setup: Setup) -> None:
    setup.write_dag("solo", {"cron": EVERY_2S})
    first = setup.serve()
    first.started()
    second = setup.serve()
    assert second.wait_exit(30) == 2
    message = second.log_text()
    assert f"another daemon (pid {first.proc.pid})" in message, message
    assert str(setup.db) in message
    assert "Traceback" not in message
    assert first.proc.poll() is None
    assert first.get("/healthz")[0] == 200
    assert first.stop() == 0
