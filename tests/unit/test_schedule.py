"""Schedules as pure functions: fire times across daylight saving time (Debian cron's rule), the
deterministic jitter, and what happens to ticks missed while no scheduler ran.

The expected fire times are written out here from the rule, not computed by the code under test:
a daily job in a spring-forward gap fires once, at the transition; one in a fall-back repeated
hour fires once; jobs with a wildcard hour or minute fire every real hour, in both passes of a
repeated hour, and skip the local times that do not exist.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from orchestrator.model.schedule import (
    Catchup,
    Schedule,
    Skip,
    Tick,
    due_ticks,
    jitter,
    next_fires,
)

DST = [
    # Europe/Berlin, 2026: 29 March 02:00 -> 03:00; 25 October 03:00 -> 02:00
    ("30 2 * * *", "Europe/Berlin", "2026-03-28T00:00:00+01:00",
     ["2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]),
    ("30 2 * * *", "Europe/Berlin", "2026-10-24T00:00:00+02:00",
     ["2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]),
    ("0 * * * *", "Europe/Berlin", "2026-03-29T00:30:00+01:00",
     ["2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"]),
    ("0 * * * *", "Europe/Berlin", "2026-10-25T01:30:00+02:00",
     ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"]),
    ("*/15 * * * *", "Europe/Berlin", "2026-03-29T01:40:00+01:00",
     ["2026-03-29T01:45:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T03:15:00+02:00"]),
    ("*/15 * * * *", "Europe/Berlin", "2026-10-25T02:40:00+02:00",
     ["2026-10-25T02:45:00+02:00", "2026-10-25T02:00:00+01:00", "2026-10-25T02:15:00+01:00"]),
    # America/New_York, 2026: 8 March 02:00 -> 03:00; 1 November 02:00 -> 01:00
    ("30 2 * * *", "America/New_York", "2026-03-07T00:00:00-05:00",
     ["2026-03-07T02:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]),
    ("30 1 * * *", "America/New_York", "2026-10-31T00:00:00-04:00",
     ["2026-10-31T01:30:00-04:00", "2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]),
    ("0 * * * *", "America/New_York", "2026-03-08T00:30:00-05:00",
     ["2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T04:00:00-04:00"]),
    ("0 * * * *", "America/New_York", "2026-11-01T00:30:00-04:00",
     ["2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T02:00:00-05:00"]),
    ("*/15 * * * *", "America/New_York", "2026-03-08T01:40:00-05:00",
     ["2026-03-08T01:45:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T03:15:00-04:00"]),
    ("*/15 * * * *", "America/New_York", "2026-11-01T01:40:00-04:00",
     ["2026-11-01T01:45:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T01:15:00-05:00"]),
    # Australia/Lord_Howe, 2026, a 30-minute shift: 5 April 02:00 -> 01:30; 4 October 02:00 -> 02:30
    ("15 2 * * *", "Australia/Lord_Howe", "2026-10-03T00:00:00+10:30",
     ["2026-10-03T02:15:00+10:30", "2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"]),
    ("45 1 * * *", "Australia/Lord_Howe", "2026-04-04T00:00:00+11:00",
     ["2026-04-04T01:45:00+11:00", "2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"]),
    ("0 * * * *", "Australia/Lord_Howe", "2026-10-04T00:30:00+10:30",
     ["2026-10-04T01:00:00+10:30", "2026-10-04T03:00:00+11:00", "2026-10-04T04:00:00+11:00"]),
    ("0 * * * *", "Australia/Lord_Howe", "2026-04-05T00:30:00+11:00",
     ["2026-04-05T01:00:00+11:00", "2026-04-05T02:00:00+10:30", "2026-04-05T03:00:00+10:30"]),
    ("*/15 * * * *", "Australia/Lord_Howe", "2026-10-04T01:40:00+10:30",
     ["2026-10-04T01:45:00+10:30", "2026-10-04T02:30:00+11:00", "2026-10-04T02:45:00+11:00"]),
    ("*/15 * * * *", "Australia/Lord_Howe", "2026-04-05T01:40:00+11:00",
     ["2026-04-05T01:45:00+11:00", "2026-04-05T01:30:00+10:30", "2026-04-05T01:45:00+10:30"]),
]  # fmt: skip


@pytest.mark.parametrize(("cron", "zone", "after", "expected"), DST)
def test_fire_times_across_daylight_saving_time(
    cron: str, zone: str, after: str, expected: list[str]
) -> None:
    schedule = Schedule(cron, zone)
    got = next_fires(schedule, datetime.fromisoformat(after), len(expected))
    assert [t.isoformat() for t in got] == expected


def test_aliases() -> None:
    after = datetime.fromisoformat("2026-06-01T10:20:00+00:00")
    assert next_fires(Schedule("@hourly"), after, 1)[0].isoformat() == "2026-06-01T11:00:00+00:00"
    assert next_fires(Schedule("@daily"), after, 1)[0].isoformat() == "2026-06-02T00:00:00+00:00"


def test_jitter_is_the_same_everywhere_and_never_reaches_the_next_tick() -> None:
    schedule = Schedule("*/5 * * * *", jitter=3600)  # asks for more than the period
    ticks = next_fires(schedule, datetime.fromisoformat("2026-06-01T00:00:00+00:00"), 50)
    delays = [jitter(schedule, "nightly", t) for t in ticks]
    assert delays == [jitter(schedule, "nightly", t) for t in ticks]  # deterministic
    assert all(0 <= d < 300 for d in delays)
    assert len(set(delays)) > 40  # spread, not one value
    assert jitter(schedule, "other", ticks[0]) != delays[0]  # per DAG
    assert jitter(Schedule("*/5 * * * *"), "nightly", ticks[0]) == 0.0


H = timedelta(hours=1)
T0 = datetime.fromisoformat("2026-06-01T00:00:00+00:00")


def hourly(**fields: object) -> Schedule:
    return Schedule("0 * * * *", **fields)  # type: ignore[arg-type]


def test_a_tick_on_time_runs() -> None:
    ticks, last = due_ticks(hourly(), T0, T0 + H + timedelta(seconds=5))
    assert ticks == [Tick(T0 + H)]
    assert last == T0 + H
    assert due_ticks(hourly(), T0 + H, T0 + H + timedelta(minutes=30)) == ([], None)


def test_a_new_schedule_catches_up_nothing() -> None:
    ticks, last = due_ticks(hourly(catchup=Catchup.ALL), None, T0 + timedelta(minutes=30))
    assert (ticks, last) == ([], None)


@pytest.mark.parametrize(
    ("catchup", "expected"),
    [
        (Catchup.NONE, [Skip.CATCHUP] * 4),
        (Catchup.LATEST, [Skip.CATCHUP] * 3 + [None]),
        (Catchup.ALL, [None] * 4),
    ],
)
def test_ticks_missed_during_a_downtime(catchup: Catchup, expected: list[Skip | None]) -> None:
    # down from just after 00:00 until 04:30: the 01:00 to 04:00 ticks were missed
    ticks, last = due_ticks(hourly(catchup=catchup), T0, T0 + 4.5 * H)
    assert [t.nominal for t in ticks] == [T0 + H, T0 + 2 * H, T0 + 3 * H, T0 + 4 * H]
    assert [t.skip for t in ticks] == expected
    assert last == T0 + 4 * H


def test_latest_does_not_catch_up_when_a_tick_is_on_time() -> None:
    ticks, _ = due_ticks(hourly(catchup=Catchup.LATEST), T0, T0 + 4 * H + timedelta(seconds=10))
    assert [(t.nominal, t.skip) for t in ticks] == [
        (T0 + H, Skip.CATCHUP),
        (T0 + 2 * H, Skip.CATCHUP),
        (T0 + 3 * H, Skip.CATCHUP),
        (T0 + 4 * H, None),
    ]


def test_missed_ticks_older_than_the_window_are_skipped_as_such() -> None:
    schedule = hourly(catchup=Catchup.ALL, window=2.25 * 3600)  # back to 02:15
    ticks, _ = due_ticks(schedule, T0, T0 + 4.5 * H)
    assert [t.skip for t in ticks] == [Skip.OUTSIDE_WINDOW, Skip.OUTSIDE_WINDOW, None, None]


def test_catchup_all_runs_a_few_missed_ticks_per_call_and_the_rest_next() -> None:
    schedule = hourly(catchup=Catchup.ALL, cap=2, window=86_400)
    now = T0 + 5.5 * H
    first, last = due_ticks(schedule, T0, now)
    assert [(t.nominal, t.skip) for t in first] == [(T0 + H, None), (T0 + 2 * H, None)]
    assert last == T0 + 2 * H
    second, last = due_ticks(schedule, last, now)
    assert [t.nominal for t in second] == [T0 + 3 * H, T0 + 4 * H]
    third, last = due_ticks(schedule, last, now)
    assert [t.nominal for t in third] == [T0 + 5 * H]
    assert last == T0 + 5 * H


def test_a_paused_schedule_skips_its_ticks() -> None:
    ticks, last = due_ticks(hourly(paused=True), T0, T0 + 2 * H + timedelta(seconds=1))
    assert [(t.nominal, t.skip) for t in ticks] == [
        (T0 + H, Skip.PAUSED),
        (T0 + 2 * H, Skip.PAUSED),
    ]
    assert last == T0 + 2 * H


def test_from_a_dags_schedule() -> None:
    schedule = Schedule.from_json(
        {"cron": "@daily", "timezone": "Europe/Berlin", "catchup": "latest", "jitter": "90s"}
    )
    assert (schedule.expression, schedule.catchup, schedule.jitter) == (
        "0 0 * * *",
        Catchup.LATEST,
        90.0,
    )
