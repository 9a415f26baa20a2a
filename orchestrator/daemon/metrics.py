"""The daemon's Prometheus metrics, in a registry of its own (never the process-wide one, so
that two daemons in one test process, or a library user's own metrics, do not collide).

The rest of the daemon reports through the named methods of :class:`DaemonMetrics`; ``GET
/metrics`` serves :meth:`DaemonMetrics.render`. :func:`watch_loop_lag` measures how late the
event loop wakes a sleeper, and keeps the last samples for a benchmark's percentiles.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

import anyio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..model.states import JobState, RunState

TICK_DELAY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0)
"""Seconds a cron tick started after its nominal time: a healthy tick is well under a second,
a daemon that was busy or asleep shows up to a minute (later ones land in +Inf)."""
LOOP_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Seconds the event loop woke a sleeper late: 1 ms is noise, 5 s is a blocked loop."""
LAG_SAMPLES = 10_000


class DaemonMetrics:
    """Every metric the daemon exports, with a method per thing that happens."""

    def __init__(self, *, lag_samples: int = LAG_SAMPLES) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._runs = Gauge("orchestrator_runs", "Runs by state", ["state"], registry=r)
        self._jobs = Gauge(
            "orchestrator_jobs", "Jobs of active runs by state", ["state"], registry=r
        )
        self._in_flight = Gauge(
            "orchestrator_jobs_in_flight", "Jobs submitted and not yet ended", registry=r
        )
        self._submissions = Counter(
            "orchestrator_submissions", "Jobs submitted to remote APIs", ["connection"], registry=r
        )
        self._polls = Counter(
            "orchestrator_polls", "Status polls of remote jobs", ["connection"], registry=r
        )
        self._http_errors = Counter(
            "orchestrator_http_errors",
            "HTTP faults talking to remote APIs (connect errors, 5xx, 429, bad bodies)",
            ["connection"],
            registry=r,
        )
        self._webhooks = Counter(
            "orchestrator_webhook_deliveries",
            "Webhook delivery attempts by outcome",
            ["outcome"],
            registry=r,
        )
        self._skipped = Counter(
            "orchestrator_ticks_skipped",
            "Schedule ticks not run, by reason",
            ["reason"],
            registry=r,
        )
        self._tick_delay = Histogram(
            "orchestrator_tick_delay_seconds",
            "Seconds between a tick's nominal time and its start",
            buckets=TICK_DELAY_BUCKETS,
            registry=r,
        )
        self._loop_lag = Histogram(
            "orchestrator_event_loop_lag_seconds",
            "Seconds the event loop woke a sleeper late",
            buckets=LOOP_LAG_BUCKETS,
            registry=r,
        )
        self._lags: deque[float] = deque(maxlen=lag_samples)
        self._synced: dict[tuple[str, ...], int] = {}  # the totals counted so far (see sync)
        self.set_run_counts({})  # every state present from the start, at zero
        self.set_job_counts({})

    # gauges: what is true now

    def set_run_counts(self, counts: Mapping[str, int]) -> None:
        """Runs per state; a state not in ``counts`` is zero."""
        _set_all(self._runs, [s.value for s in RunState], counts)

    def set_job_counts(self, counts: Mapping[str, int]) -> None:
        """Jobs per state; a state not in ``counts`` is zero."""
        _set_all(self._jobs, [s.value for s in JobState], counts)

    def set_jobs_in_flight(self, count: int) -> None:
        self._in_flight.set(count)

    # counters: what happened (the remotes' calls and webhook deliveries: see sync)

    def tick_started(self, delay: float) -> None:
        """A schedule tick started ``delay`` seconds after its nominal time."""
        self._tick_delay.observe(delay)

    def tick_skipped(self, reason: str) -> None:
        """A tick not run: ``reason`` such as ``overlap`` or ``catchup``."""
        self._skipped.labels(reason=reason).inc()

    def loop_lag(self, seconds: float) -> None:
        self._loop_lag.observe(seconds)
        self._lags.append(seconds)

    def sync(self, calls: Mapping[tuple[str, str], int], deliveries: Mapping[str, int]) -> None:
        """Bring the counters up to running totals kept elsewhere: the connectors' calls by
        (connection, call) and the webhook delivery attempts by outcome."""
        counters = {"submit": self._submissions, "poll": self._polls, "error": self._http_errors}
        for (connection, call), total in calls.items():
            counter = counters.get(call)
            if counter is not None:
                self._advance(counter.labels(connection=connection), ("c", connection, call), total)
        for outcome, total in deliveries.items():
            self._advance(self._webhooks.labels(outcome=outcome), ("w", outcome), total)

    def _advance(self, child: Any, key: tuple[str, ...], total: int) -> None:
        seen = self._synced.get(key, 0)
        if total > seen:
            child.inc(total - seen)
            self._synced[key] = total

    # reading

    def lag_samples(self) -> list[float]:
        """The last loop-lag samples, oldest first."""
        return list(self._lags)

    def lag_quantile(self, q: float) -> float:
        """The ``q`` quantile (0..1, nearest rank) of :meth:`lag_samples`; NaN without any."""
        samples = sorted(self._lags)
        if not samples:
            return math.nan
        rank = max(1, math.ceil(q * len(samples)))
        return samples[min(rank, len(samples)) - 1]

    def render(self) -> bytes:
        """The registry in Prometheus' text format (``prometheus_client.CONTENT_TYPE_LATEST``)."""
        return generate_latest(self.registry)


async def watch_loop_lag(metrics: DaemonMetrics, interval: float = 0.5) -> None:
    """Sleep ``interval`` seconds again and again, recording how late each wake-up is; runs
    until cancelled."""
    while True:
        start = anyio.current_time()
        await anyio.sleep(interval)
        metrics.loop_lag(max(0.0, anyio.current_time() - start - interval))


def _set_all(gauge: Gauge, known: list[str], counts: Mapping[str, int]) -> None:
    for state in dict.fromkeys([*known, *counts]):
        gauge.labels(state=state).set(counts.get(state, 0))
