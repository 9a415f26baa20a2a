"""The daemon's metrics: their own registry, gauges that forget states, and the loop lag."""

from __future__ import annotations

import math

import anyio
import prometheus_client

from orchestrator.daemon.metrics import DaemonMetrics, watch_loop_lag


def value(metrics: DaemonMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_metrics_live_in_their_own_registry() -> None:
    one, two = DaemonMetrics(), DaemonMetrics()
    one.sync({("ocapi", "poll"): 1}, {})
    assert value(one, "orchestrator_polls_total", connection="ocapi") == 1
    assert value(two, "orchestrator_polls_total", connection="ocapi") is None
    default = prometheus_client.REGISTRY
    assert default.get_sample_value("orchestrator_polls_total", {"connection": "ocapi"}) is None


def test_counts_set_every_state() -> None:
    metrics = DaemonMetrics()
    metrics.set_run_counts({"running": 3, "queued": 1})
    metrics.set_run_counts({"queued": 2})
    assert value(metrics, "orchestrator_runs", state="running") == 0
    assert value(metrics, "orchestrator_runs", state="queued") == 2
    metrics.set_job_counts({"retry_wait": 4})
    assert value(metrics, "orchestrator_jobs", state="retry_wait") == 4
    assert value(metrics, "orchestrator_jobs", state="pending") == 0
    metrics.set_jobs_in_flight(7)
    assert value(metrics, "orchestrator_jobs_in_flight") == 7


def test_counters_and_histograms() -> None:
    metrics = DaemonMetrics()
    calls = {("granta", "submit"): 1, ("granta", "error"): 1}
    metrics.sync(calls, {"retry": 1})
    metrics.sync(calls, {"retry": 1})  # running totals: the same totals count once
    metrics.tick_skipped("overlap")
    metrics.tick_started(0.4)
    metrics.tick_started(75.0)
    assert value(metrics, "orchestrator_submissions_total", connection="granta") == 1
    assert value(metrics, "orchestrator_http_errors_total", connection="granta") == 1
    assert value(metrics, "orchestrator_webhook_deliveries_total", outcome="retry") == 1
    assert value(metrics, "orchestrator_ticks_skipped_total", reason="overlap") == 1
    assert value(metrics, "orchestrator_tick_delay_seconds_bucket", le="0.5") == 1
    assert value(metrics, "orchestrator_tick_delay_seconds_bucket", le="60.0") == 1
    assert value(metrics, "orchestrator_tick_delay_seconds_count") == 2


def test_lag_quantiles_keep_the_last_samples() -> None:
    metrics = DaemonMetrics(lag_samples=100)
    assert math.isnan(metrics.lag_quantile(0.99))
    for i in range(1, 201):
        metrics.loop_lag(i / 1000)
    assert len(metrics.lag_samples()) == 100
    assert metrics.lag_samples()[0] == 0.101
    assert metrics.lag_quantile(0.99) == 0.199
    assert metrics.lag_quantile(0.5) == 0.150
    assert value(metrics, "orchestrator_event_loop_lag_seconds_count") == 200


async def test_watch_loop_lag_records_until_cancelled() -> None:
    metrics = DaemonMetrics()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_loop_lag, metrics, 0.01)
            while len(metrics.lag_samples()) < 3:
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    assert all(0 <= lag < 5 for lag in metrics.lag_samples())
