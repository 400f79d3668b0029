"""Chancy 0.26's custom metrics (increment_counter, record_gauge, record_histogram_value,
get_metrics) on chancy's metrics table, its constructor keywords, and 0.26's keys for chancy's
own job series; against the real database."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from chancy import Chancy, Job, Queue, QueuedJob, Worker
from chancy.errors import ConfigurationError
from chancy.plugin import Plugin
from chancy.plugins.metrics import Metric, MetricPoint, Metrics
from tests.conftest import eventually
from tests.metrics import jobs

ASYNC = Chancy.Executor.Async


def summaries(result: dict[str, Any]) -> dict[str, Any]:
    return {key: metric.summary for key, metric in result["series"].items()}


async def test_custom_metrics_are_stored_and_read_back_with_get_metrics(
    app: Chancy, metrics: Metrics
) -> None:
    await metrics.increment_counter("orders:placed", 1)
    await metrics.increment_counter("orders:placed", 2.5)
    await metrics.record_gauge("orders:backlog", 5)
    await metrics.record_gauge("orders:backlog", 7)
    await metrics.record_histogram_value("orders:value", 10, unit="eur")
    assert await metrics.flush(app) == 3
    # A second flush into the same buckets adds to counters and histograms.
    await metrics.increment_counter("orders:placed", 1)
    await metrics.record_histogram_value("orders:value", 30, unit="eur")
    await metrics.record_histogram_value("orders:value", 20, unit="eur")
    await metrics.flush(app)

    result = await metrics.get_metrics(app, "orders")
    assert result["resolution"] == "5min"
    assert result["end"] - result["start"] == timedelta(days=1)
    assert result["start"] <= result["generated_at"] < result["end"]
    series = result["series"]
    assert set(series) == {"orders:placed", "orders:backlog", "orders:value"}
    placed, backlog, value = (
        series["orders:placed"],
        series["orders:backlog"],
        series["orders:value"],
    )
    assert isinstance(placed, Metric) and (placed.type, placed.unit) == ("counter", "count")
    assert (backlog.type, backlog.unit) == ("gauge", "number")
    assert (value.type, value.unit) == ("histogram", "eur")
    assert placed.aggregation == "sum" and backlog.aggregation == "last"
    assert value.aggregation == "summary"
    assert placed.summary == 4.5
    assert backlog.summary == 7
    assert value.summary == {"count": 3, "sum": 60.0, "avg": 20.0, "min": 10.0, "max": 30.0}
    (point,) = placed.data
    assert isinstance(point, MetricPoint) and point.value == 4.5
    assert result["start"] <= point.timestamp < result["end"]
    assert point.timestamp.minute % 5 == 0 and point.timestamp.second == 0
    assert placed.sampled_at == point.sampled_at
    # A key matches itself and its ":" descendants only.
    assert set((await metrics.get_metrics(app, "orders:placed"))["series"]) == {"orders:placed"}
    assert (await metrics.get_metrics(app, "order"))["series"] == {}
    # Every resolution has the points.
    for resolution in ("1min", "1hour", "1day"):
        got = await metrics.get_metrics(app, "orders:placed", resolution=resolution, limit=1)
        assert summaries(got) == {"orders:placed": 4.5}, resolution
    assert await metrics.list_metrics(app) == ["orders:backlog", "orders:placed", "orders:value"]


class Reporter(Plugin):
    """A plugin that reports a custom metric from a job hook, as 0.26's plugins did."""

    async def on_job_completed(
        self, *, worker: Worker, job: QueuedJob, exc: BaseException | None, result: Any
    ) -> QueuedJob:
        metrics = worker.chancy.plugins["chancy.metrics"]
        await metrics.increment_counter("plugin:completed", 1)
        return job


@pytest.fixture
async def served(app: Chancy) -> AsyncIterator[Worker]:
    jobs.APP = app
    app.plugins["tests.reporter"] = Reporter()
    await app.declare(Queue("default", tags={"^nobody$"}))
    await app.declare(Queue("m", executor=ASYNC, polling_interval=0.05))
    await app.declare(Queue("t", executor=Chancy.Executor.Threaded, polling_interval=0.05))
    try:
        async with Worker(app, register_signal_handlers=False) as worker:
            yield worker
    finally:
        jobs.APP = None
        del app.plugins["tests.reporter"]


async def test_job_code_plugins_and_hub_events_report_custom_metrics(
    app: Chancy, metrics: Metrics, served: Worker
) -> None:
    refs = [
        await app.push(Job(func="tests.metrics.jobs.reports_metrics", queue="m", kwargs={"n": n}))
        for n in (1, 2, 3)
    ]
    refs.append(
        await app.push(
            Job(func="tests.metrics.jobs.reports_metrics_from_a_thread", queue="t", kwargs={"n": 4})
        )
    )
    await app.wait_for_jobs(refs, timeout=30)
    # Chancy 0.26's Worker.increment_counter & co. emit these on the worker's hub.
    await served.increment_counter("hub:events", 2, unit="count")
    served.hub.emit("metrics.histogram", {"key": "hub:sizes", "value": 5, "unit": "bytes"})

    async def stored() -> dict[str, Any] | None:
        got = summaries(await metrics.get_metrics(app, resolution="1min", limit=10))
        want = {"shop:orders", "shop:threaded", "plugin:completed", "hub:events", "hub:sizes"}
        return got if want <= set(got) and got["plugin:completed"] == 4 else None

    # The worker flushes every 0.1 s (the fixture's flush_interval).
    got = await eventually(stored, timeout=15, message="custom metrics were not flushed")
    assert got["shop:orders"] == 6
    assert got["shop:threaded"] == 4
    assert got["shop:basket_size"] in (10, 20, 30)
    assert got["shop:latency"]["count"] == 3
    assert got["shop:latency"]["min"] == pytest.approx(0.1)
    assert got["shop:latency"]["max"] == pytest.approx(0.3)
    assert got["hub:events"] == 2
    assert got["hub:sizes"]["sum"] == 5


async def test_prometheus_shows_custom_metrics(app: Chancy, metrics: Metrics) -> None:
    await metrics.increment_counter("shop:orders", 3)
    await metrics.increment_counter("shop:revenue", 2.5, unit="eur")
    await metrics.record_gauge("shop:basket", 7)
    await metrics.record_histogram_value("shop:size", 2048, unit="bytes")
    await metrics.record_histogram_value("shop:wait", 0.2, unit="seconds")
    await metrics.flush(app)
    text = await Metrics.prometheus(app)
    assert "# TYPE chancy_shop_orders_total counter\nchancy_shop_orders_total 3\n" in text
    assert "chancy_shop_revenue_eur_total 2.5\n" in text
    assert "# TYPE chancy_shop_basket gauge\nchancy_shop_basket 7\n" in text
    assert "# TYPE chancy_shop_size_bytes summary\n" in text
    assert "chancy_shop_size_bytes_sum 2048\nchancy_shop_size_bytes_count 1\n" in text
    assert "# TYPE chancy_shop_wait_seconds histogram\n" in text
    assert 'chancy_shop_wait_seconds_bucket{le="0.25"} 1\n' in text
    assert 'chancy_shop_wait_seconds_bucket{le="0.1"} 0\n' in text


async def test_get_metrics_offers_chancys_job_series_under_026s_keys(
    app: Chancy, metrics: Metrics
) -> None:
    metrics.increment("jobs.succeeded", "m", "app.f", 3)
    metrics.increment("jobs.failed", "m", "app.f", 1)
    metrics.increment("jobs.retried", "m", "app.g", 2)
    metrics.increment("jobs.succeeded", "other", "app.g", 5)
    metrics.observe("jobs.runtime", "m", "app.f", 0.5)
    metrics.observe("jobs.runtime", "m", "app.g", 1.5)
    metrics.observe("jobs.runtime", "other", "app.g", 4.0)
    await metrics.flush(app)
    queue_m = summaries(await metrics.get_metrics(app, "queue:m"))
    assert queue_m == {
        "queue:m:succeeded": 3,
        "queue:m:failed": 1,
        "queue:m:retrying": 2,
        "queue:m:throughput": 6,
        "queue:m:execution_time": {"count": 2, "sum": 2.0, "avg": 1.0, "min": 0.5, "max": 1.5},
    }
    job_g = summaries(await metrics.get_metrics(app, "job:app.g"))
    assert job_g["job:app.g:succeeded"] == 5 and job_g["job:app.g:retrying"] == 2
    assert job_g["job:app.g:execution_time"]["count"] == 2
    assert job_g["job:app.g:execution_time"]["max"] == 4.0
    everything = summaries(await metrics.get_metrics(app, "global"))
    assert everything == {
        "global:status:succeeded": 8,
        "global:status:failed": 1,
        "global:status:retrying": 2,
    }
    execution = (await metrics.get_metrics(app, "queue:m:execution_time"))["series"]
    assert execution["queue:m:execution_time"].unit == "seconds"
    listed = await metrics.list_metrics(app)
    assert "queue:other:throughput" in listed and "job:app.f:failed" in listed


async def test_windows_follow_026s_rules(app: Chancy, metrics: Metrics) -> None:
    start, end = metrics.window("1hour", limit=3)
    assert end - start == timedelta(hours=3) and start.minute == 0 and start.tzinfo is not None
    assert metrics.window("1min", range_seconds=600)[1] - metrics.window("1min")[0] == timedelta(
        seconds=metrics.retention("1min")
    )
    aligned = datetime(2030, 1, 1, 10, 0, tzinfo=UTC)
    assert metrics.window("5min", start=aligned, end=aligned + timedelta(minutes=15)) == (
        aligned,
        aligned + timedelta(minutes=15),
    )
    for kwargs, match in (
        ({"start": aligned + timedelta(minutes=1), "end": aligned + timedelta(hours=1)}, "bound"),
        ({"start": aligned.replace(tzinfo=None), "end": aligned}, "timezone-aware"),
        ({"range_seconds": 90}, "multiple of 300"),
        ({"range_seconds": 30 * 86400}, "within the retention"),
        ({"limit": 2, "range_seconds": 600}, "cannot be combined"),
        ({"limit": 10_000}, "buckets"),
    ):
        with pytest.raises(ValueError, match=match):
            metrics.window("5min", **kwargs)
    with pytest.raises(ValueError, match="resolution must be one of"):
        await metrics.get_metrics(app, resolution="2min")
    with pytest.raises(ValueError, match="cannot filter by worker_id"):
        await metrics.get_metrics(app, "orders", "worker-1")
    for i in range(101):
        metrics.increment("jobs.succeeded", f"q{i:03}", "app.f")
    await metrics.flush(app)
    with pytest.raises(ValueError, match="more than 100; choose a narrower prefix"):
        await metrics.get_metrics(app, "queue")
    assert len((await metrics.get_metrics(app, "queue:q001"))["series"]) == 2


async def test_bad_and_conflicting_observations_are_dropped_with_a_warning(
    app: Chancy, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    await metrics.increment_counter("k:count", 1)
    for key, value, unit in (
        ("k:nan", math.nan, "count"),
        ("k:inf", math.inf, "count"),
        ("k:bool", True, "count"),
        ("k:text", "7", "count"),
        ("", 1, "count"),
        ("x" * 1025, 1, "count"),
        ("k:unit", 1, ""),
        ("jobs.succeeded", 1, "count"),  # one of chancy's own names
    ):
        metrics._last_warning = -math.inf  # see every warning, not one a minute
        with caplog.at_level(logging.WARNING, logger="chancy.metrics"):
            await metrics.increment_counter(key, value, unit=unit)  # type: ignore[arg-type]
        assert "dropped the counter metric" in caplog.text
        caplog.clear()
    metrics._last_warning = -math.inf
    with caplog.at_level(logging.WARNING, logger="chancy.metrics"):
        await metrics.record_gauge("k:count", 3)  # first recorded as a counter
    assert "first recorded as a counter in 'count'" in caplog.text
    await metrics.increment_counter("k:count", 1, unit="seconds")  # another unit
    await metrics.flush(app)
    assert summaries(await metrics.get_metrics(app, "k")) == {"k:count": 1}
    assert await metrics.list_metrics(app) == ["k:count"]


async def test_a_conflict_between_processes_keeps_the_first_definition(
    app: Chancy, metrics: Metrics
) -> None:
    other = Metrics()  # another worker process, with its own buffer
    await metrics.increment_counter("shared:key", 2)
    await metrics.flush(app)
    await other.record_gauge("shared:key", 99)
    await other.flush(app)
    got = await metrics.get_metrics(app, "shared")
    assert got["series"]["shared:key"].type == "counter"
    assert summaries(got) == {"shared:key": 2}


async def test_a_gauge_keeps_its_latest_observation_across_workers(
    app: Chancy, metrics: Metrics
) -> None:
    other = Metrics()
    await metrics.record_gauge("room:temperature", 20)
    await other.record_gauge("room:temperature", 21)
    # This process observed its value a minute before the other did, but flushes last: the
    # newer observation stays.
    value, seen = metrics._gauges[("room:temperature", "", "")]
    metrics._gauges[("room:temperature", "", "")] = (value, seen - 60)
    await other.flush(app)
    await metrics.flush(app)
    got = await metrics.get_metrics(app, "room", resolution="1min", limit=5)
    assert summaries(got) == {"room:temperature": 21}
    (point,) = got["series"]["room:temperature"].data
    assert point.sampled_at > datetime.now(UTC) - timedelta(seconds=30)


async def test_the_buffer_of_custom_metrics_is_bounded(app: Chancy) -> None:
    metrics = Metrics(max_buffered_points=8)  # two keys, four resolutions each
    await metrics.increment_counter("a", 1)
    await metrics.increment_counter("b", 1)
    await metrics.increment_counter("c", 1)  # dropped: the buffer is full
    await metrics.increment_counter("a", 1)  # a key already buffered still counts
    assert await metrics.flush(app) == 2
    await metrics.increment_counter("c", 1)  # room again after the flush
    await metrics.flush(app)
    assert summaries(await metrics.get_metrics(app)) == {"a": 2, "b": 1, "c": 1}


def test_026s_constructor_keywords_map_onto_ours() -> None:
    metrics = Metrics(
        sync_interval=5,
        collection_interval=7,
        max_points_per_resolution={"5min": 144},
        maximum_metric_age=86400 * 7,
        max_buffered_points=100,
    )
    assert metrics.flush_interval == 5 and metrics.sample_interval == 7
    assert metrics.retention("5min") == 144 * 300 == metrics.retention["5min"]
    assert metrics.retention("1min") == 6 * 3600  # chancy's default, under the cap
    assert metrics.retention("1day") == metrics.retention("1hour") == 86400 * 7
    assert metrics.max_buffered_points == 100
    assert Metrics().flush_interval == 15 and Metrics().sample_interval == 60
    for kwargs, match in (
        ({"sync_interval": 5, "flush_interval": 5}, "both flush_interval= and sync_interval="),
        ({"collection_interval": 0}, "sample_interval"),
        ({"max_points_per_resolution": {"2min": 5}}, "unknown resolution '2min'"),
        ({"max_points_per_resolution": {"1min": 0}}, "positive number of buckets"),
        (
            {"max_points_per_resolution": {"1min": 5}, "retention": {"1min": 60}},
            "in both retention= and max_points_per_resolution=",
        ),
        ({"maximum_metric_age": -1}, "maximum_metric_age"),
        ({"max_buffered_points": 0}, "max_buffered_points"),
    ):
        with pytest.raises(ConfigurationError, match=match):
            Metrics(**kwargs)
    with pytest.raises(ValueError, match="unknown resolution"):
        metrics.retention("2min")


async def test_a_metrics_table_of_version_4_gains_units_and_keeps_its_rows(
    app: Chancy, metrics: Metrics, dsn: str
) -> None:
    (line,) = [m for m in app.migrators() if m.key == "metrics"]
    assert line.head == 5
    pool = await app.open()
    async with pool.connection() as conn, conn.transaction():
        async with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            await line.migrate(cur, 4)
    assert not await app.is_up_to_date()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {app.prefix}metrics (name, kind, resolution, bucket, queue, func, count)"  # type: ignore[arg-type]
            " VALUES ('jobs.succeeded', 'counter', 'total', '2000-01-01', 'm', 'f', 9)"
        )
    await app.migrate()
    assert await app.is_up_to_date()
    totals = await Metrics.get_totals(app)
    assert [(r["name"], r["count"], r["unit"]) for r in totals] == [("jobs.succeeded", 9, None)]
    await metrics.record_histogram_value("after:upgrade", 1.5, unit="seconds")
    await metrics.flush(app)
    assert summaries(await metrics.get_metrics(app, "after"))["after:upgrade"]["max"] == 1.5
