"""Durations and retry policies: parsing, formatting, backoff delays, JSON form."""

from __future__ import annotations

import random
import re

import pytest

from orchestrator.model.durations import MAX_DURATION, format_duration, parse_duration
from orchestrator.model.retry import ALL_OUTCOMES, MAX_ATTEMPTS, Outcome, RetryPolicy

# -- parse_duration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("90", 90.0),
        (90, 90.0),
        (1.5, 1.5),
        ("2.5", 2.5),
        ("90s", 90.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("1d2h3m4s", 86400.0 + 7200 + 180 + 4),
        ("250ms", 0.25),
        ("1.5h", 5400.0),
        (" 5M ", 300.0),  # surrounding space and upper case
    ],
)
def test_parse_duration_accepts(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    ["", "   ", "5x", "-1", "-5m", "0", "0s", 0, 0.0, -3, True, False, "h", "ms", "1h 30m", "5 m",
     "nan", "inf", float("inf"), None, [], {"s": 5}, "m5"],
)  # fmt: skip
def test_parse_duration_rejects_naming_the_value(value: object) -> None:
    with pytest.raises(ValueError, match=re.escape(f"bad duration {value!r}")):
        parse_duration(value)


def test_parse_duration_explains_the_forms() -> None:
    with pytest.raises(ValueError, match=r"'90s', '5m', '2h', '1h30m'"):
        parse_duration("ten minutes")
    with pytest.raises(ValueError, match="must be positive"):
        parse_duration("-1")


@pytest.mark.parametrize(
    "value",
    [
        1e300,
        "31d",
        "721h",
        30 * 86400 + 1,
        pytest.param(10**400, id="int"),
        pytest.param("1" * 400, id="str"),
    ],
)
def test_parse_duration_refuses_more_than_thirty_days(value: object) -> None:
    with pytest.raises(ValueError, match=r"^bad duration .{1,80} \(at most 30 days\)$"):
        parse_duration(value)


def test_parse_duration_accepts_thirty_days_and_refuses_nan() -> None:
    assert parse_duration("30d") == MAX_DURATION == 30 * 86400.0
    with pytest.raises(ValueError, match=r"^bad duration 'nan' \(not a number\)$"):
        parse_duration("nan")


# -- format_duration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (1, "1s"),
        (45, "45s"),
        (90, "90s"),
        (60, "1m"),
        (300.0, "5m"),
        (5400, "90m"),
        (3600, "1h"),
        (7200, "2h"),
        (86400, "1d"),
        (172800, "2d"),
        (90000, "25h"),
        (0.25, "0.25s"),
        (1.5, "1.5s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [1, 59, 60, 61, 90, 3600, 5400, 86400, 90061, 0.25, 1.5])
def test_format_duration_parses_back(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_format_duration_of_tiny_value_parses_back() -> None:
    assert parse_duration(format_duration(0.00001)) == 0.00001


# -- RetryPolicy.delay ---------------------------------------------------------------------


def test_delay_ceiling_sequence_without_jitter() -> None:
    policy = RetryPolicy(attempts=10, base=1.0, factor=2.0, cap=300.0, jitter=False)
    assert [policy.delay(n) for n in range(1, 11)] == [
        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0,
    ]  # fmt: skip


def test_delay_respects_cap() -> None:
    policy = RetryPolicy(attempts=100, base=5.0, factor=3.0, cap=60.0, jitter=False)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [5.0, 15.0, 45.0, 60.0]
    assert policy.delay(100) == 60.0
    assert policy.delay(10_000) == 60.0  # a huge attempt number does not overflow


def test_delay_with_factor_one_is_constant() -> None:
    policy = RetryPolicy(attempts=5, base=7.0, factor=1.0, jitter=False)
    assert {policy.delay(n) for n in range(1, 6)} == {7.0}


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 8, 12])
def test_full_jitter_stays_within_the_ceiling(attempt: int) -> None:
    policy = RetryPolicy(attempts=20, base=0.5, factor=2.0, cap=30.0)
    ceiling = min(30.0, 0.5 * 2.0 ** (attempt - 1))
    rng = random.Random(1234)
    samples = [policy.delay(attempt, rng) for _ in range(500)]
    assert all(0.0 <= s <= ceiling for s in samples)
    # full jitter spreads over the whole range, not just near the ceiling
    assert min(samples) < ceiling * 0.1
    assert max(samples) > ceiling * 0.9
    assert len(set(samples)) > 400


def test_jitter_is_deterministic_with_a_seeded_rng() -> None:
    policy = RetryPolicy(attempts=5, base=1.0, factor=2.0, cap=100.0)
    first = [policy.delay(n, random.Random(7)) for n in range(1, 6)]
    second = [policy.delay(n, random.Random(7)) for n in range(1, 6)]
    assert first == second
    expected = [random.Random(7).uniform(0.0, 2.0 ** (n - 1)) for n in range(1, 6)]
    assert first == expected


def test_delay_with_large_backoff_returns_cap() -> None:
    policy = RetryPolicy.from_json({"attempts": 100, "backoff": 1e5, "cap": "10m", "jitter": False})
    assert policy.delay(70) == 600.0


# -- should_retry --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts", "attempt", "expected"),
    [
        (1, 1, False),  # the default: no retry
        (3, 1, True),
        (3, 2, True),
        (3, 3, False),  # the last attempt
        (3, 4, False),
    ],
)
def test_should_retry_by_attempt_count(attempts: int, attempt: int, expected: bool) -> None:
    assert RetryPolicy(attempts=attempts).should_retry(attempt, Outcome.FAILED) is expected


@pytest.mark.parametrize("outcome", list(Outcome))
def test_should_retry_by_outcome(outcome: Outcome) -> None:
    only_timeouts = RetryPolicy(attempts=3, retry_on=frozenset({Outcome.TIMEOUT}))
    assert only_timeouts.should_retry(1, outcome) is (outcome is Outcome.TIMEOUT)
    assert RetryPolicy(attempts=3).should_retry(1, outcome)  # default: every outcome


def test_default_policy() -> None:
    policy = RetryPolicy()
    assert (policy.attempts, policy.base, policy.factor, policy.cap, policy.jitter) == (
        1, 1.0, 2.0, 300.0, True,
    )  # fmt: skip
    assert policy.retry_on == ALL_OUTCOMES == frozenset(Outcome)


# -- JSON form -----------------------------------------------------------------------------


def test_from_json_full() -> None:
    policy = RetryPolicy.from_json(
        {
            "attempts": 4,
            "base": "2s",
            "backoff": 3,
            "cap": "10m",
            "jitter": False,
            "retryOn": ["failed", "timeout"],
        }
    )
    assert policy == RetryPolicy(4, 2.0, 3.0, 600.0, False, frozenset({"failed", "timeout"}))
    assert isinstance(policy.factor, float)


def test_from_json_number_of_attempts_and_factor_alias() -> None:
    assert RetryPolicy.from_json(3) == RetryPolicy(attempts=3)
    assert RetryPolicy.from_json({"attempts": 2, "factor": 1.5}).factor == 1.5
    assert RetryPolicy.from_json({}) == RetryPolicy()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"attempts": 0}, "retries.attempts: expected a whole number >= 1, got 0"),
        ({"attempts": "3"}, "retries.attempts: expected a whole number >= 1, got '3'"),
        ({"attempts": True}, "retries.attempts: expected a whole number >= 1, got True"),
        ({"attempts": 2.5}, "retries.attempts: expected a whole number >= 1, got 2.5"),
        ({"backoff": 0.5}, "retries.backoff: expected a number >= 1, got 0.5"),
        ({"backoff": "2"}, "retries.backoff: expected a number >= 1, got '2'"),
        ({"factor": True}, "retries.backoff: expected a number >= 1, got True"),
        ({"base": "5x"}, "retries.base: bad duration '5x'"),
        ({"base": 0}, "retries.base: bad duration 0"),
        ({"cap": "-1"}, "retries.cap: bad duration '-1'"),
        ({"jitter": "yes"}, "retries.jitter: expected true or false, got 'yes'"),
        ({"retryOn": "failed"}, "retries.retryOn: expected a list"),
        ({"retryOn": ["crashed"]}, "retries.retryOn: values must be among failed, timeout, error"),
        ({"tries": 3}, "retries: unknown field 'tries'"),
        ({"attempts": 10**12}, "retries.attempts: at most 1000, got 1000000000000"),
        ({"attempts": 1001}, "retries.attempts: at most 1000, got 1001"),
        ({"base": 1e300}, "retries.base: bad duration 1e+300 (at most 30 days)"),
        ({"cap": "365d"}, "retries.cap: bad duration '365d' (at most 30 days)"),
        ({"backoff": float("nan")}, "retries.backoff: expected a number >= 1, got nan"),
        ({"backoff": float("inf")}, "retries.backoff: expected a number >= 1, got inf"),
        (10**12, "retries.attempts: at most 1000, got 1000000000000"),
        ("3", "retries: expected an object or a number of attempts"),
        (True, "retries: expected an object or a number of attempts"),
        ([3], "retries: expected an object or a number of attempts"),
    ],
)
def test_from_json_errors_name_the_field(data: object, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        RetryPolicy.from_json(data)


def test_from_json_accepts_the_bounds() -> None:
    policy = RetryPolicy.from_json({"attempts": MAX_ATTEMPTS, "base": "30d", "cap": "30d"})
    assert (policy.attempts, policy.base, policy.cap) == (1000, MAX_DURATION, MAX_DURATION)


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (RetryPolicy(attempts=10**12), "retries.attempts: at most 1000"),
        (RetryPolicy(attempts=0), "retries.attempts: expected a whole number >= 1"),
        (RetryPolicy(base=1e300), "retries.base: expected a positive duration up to 30 days"),
        (RetryPolicy(cap=float("nan")), "retries.cap: expected a positive duration up to 30"),
        (RetryPolicy(cap=-1.0), "retries.cap: expected a positive duration up to 30 days"),
        (RetryPolicy(factor=float("nan")), "retries.backoff: expected a finite number >= 1"),
        (RetryPolicy(factor=float("inf")), "retries.backoff: expected a finite number >= 1"),
    ],
)
def test_a_policy_built_in_python_names_what_is_out_of_bounds(
    policy: RetryPolicy, message: str
) -> None:
    problem = policy.problem()
    assert problem is not None
    assert problem.startswith(message)


def test_a_policy_in_bounds_has_no_problem() -> None:
    assert (
        RetryPolicy(attempts=MAX_ATTEMPTS, base=0.001, factor=1e5, cap=MAX_DURATION).problem()
        is None
    )


@pytest.mark.parametrize(
    "policy",
    [
        RetryPolicy(),
        RetryPolicy(attempts=5, base=0.25, factor=1.5, cap=90.0, jitter=False),
        RetryPolicy(attempts=3, base=60.0, cap=7200.0, retry_on=frozenset({Outcome.ERROR})),
        RetryPolicy(attempts=2, retry_on=frozenset()),
    ],
)
def test_to_json_round_trips(policy: RetryPolicy) -> None:
    assert RetryPolicy.from_json(policy.to_json()) == policy


def test_to_json_shape() -> None:
    assert RetryPolicy(attempts=3, base=2.0, cap=3600.0).to_json() == {
        "attempts": 3,
        "base": "2s",
        "backoff": 2.0,
        "cap": "1h",
        "jitter": True,
        "retryOn": ["error", "failed", "timeout"],
    }
