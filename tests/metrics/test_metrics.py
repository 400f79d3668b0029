"""Metrics: counted in memory, flushed in one statement, sampled by the leader, pruned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from chancy import Chancy, Job, Queue, Worker
from chancy.errors import ConfigurationError
from chancy.plugins.metrics import BUCKETS, Metrics, prometheus_text
from tests.conftest import eventually

ASYNC = Chancy.Executor.Async


async def _rows(app: Chancy, resolution: str = "1min") -> list[dict[str, Any]]:
    return await Metrics.get_series(
        app,
        ["jobs.succeeded", "jobs.failed", "jobs.retried", "jobs.runtime", "jobs.claim_latency"],
        resolution=resolution,
    )


async def test_worker_counts_outcomes_per_queue_and_function(app: Chancy, metrics: Metrics) -> None:
    await app.declare(Queue("default", tags={"^nobody$"}))
    await app.declare(Queue("m", executor=ASYNC, polling_interval=0.05))
    async with Worker(app, register_signal_handlers=False) as worker:
        refs = [await app.push(Job(func="tests.metrics.jobs.noop", queue="m")) for _ in range(5)]
        refs.append(await app.push(Job(func="tests.metrics.jobs.always_fails", queue="m")))
        refs.append(
            await app.push(Job(func="tests.metrics.jobs.always_fails", queue="m", max_attempts=2))
        )
        await app.wait_for_jobs(refs, timeout=30)
        assert worker.is_leader.is_set()

        async def flushed() -> bool:
            rows = await _rows(app)
            got = {(r["name"], r["func"]): r["count"] for r in rows}
            return (
                got.get(("jobs.succeeded", "tests.metrics.jobs.noop")) == 5
                and got.get(("jobs.failed", "tests.metrics.jobs.always_fails")) == 2
                and got.get(("jobs.retried", "tests.metrics.jobs.always_fails")) == 1
            )

        await eventually(flushed, timeout=15, message="metrics were not flushed")
    for resolution in ("1min", "5min", "1hour", "1day", "total"):
        rows = await _rows(app, resolution)
        runtime = [r for r in rows if r["name"] == "jobs.runtime" and r["func"].endswith("noop")]
        assert sum(r["count"] for r in runtime) == 5, resolution
        assert all(len(r["histogram"]) == len(BUCKETS) + 1 for r in runtime)
        assert sum(sum(r["histogram"]) for r in runtime) == 5
        assert all(r["queue"] == "m" for r in rows)
    latency = [r for r in await _rows(app) if r["name"] == "jobs.claim_latency"]
    assert sum(r["count"] for r in latency) == 8  # every run, retries included


async def test_flush_adds_to_existing_buckets(app: Chancy, metrics: Metrics) -> None:
    for _ in range(2):
        metrics.increment("jobs.succeeded", "q", "f", 3)
        metrics.observe("jobs.runtime", "q", "f", 0.2)
        assert await metrics.flush(app) == 2
    assert await metrics.flush(app) == 0  # nothing new: no statement
    rows = await Metrics.get_series(app, ["jobs.succeeded", "jobs.runtime"], resolution="total")
    by_name = {r["name"]: r for r in rows}
    assert by_name["jobs.succeeded"]["count"] == 6
    assert by_name["jobs.runtime"]["count"] == 2
    assert by_name["jobs.runtime"]["total"] == pytest.approx(0.4)
    assert sum(by_name["jobs.runtime"]["histogram"]) == 2


async def test_leader_samples_queue_depths_with_estimates_past_the_cap(
    app: Chancy, metrics: Metrics
) -> None:
    metrics.depth_cap = 3
    await app.declare(Queue("small"))
    await app.declare(Queue("big"))
    await app.push(Job(func="tests.metrics.jobs.noop", queue="small"))
    async for _ in app.push_many([Job(func="tests.metrics.jobs.noop", queue="big")] * 50):
        pass
    depths = await metrics.sample(app)
    assert depths["small"] == {"waiting": 1, "running": 0, "estimated": False}
    assert depths["big"]["estimated"] is True and depths["big"]["waiting"] >= 3
    gauges = {(g["name"], g["queue"]): g["value"] for g in await Metrics.get_latest_gauges(app)}
    assert gauges[("queue.waiting", "small")] == 1
    assert gauges[("queue.running", "big")] == 0
    names = {(n["name"], n["queue"]) for n in await Metrics.get_names(app)}
    assert ("queue.waiting", "big") in names


async def test_jobs_pushed_comes_from_the_insert_statistics(app: Chancy, metrics: Metrics) -> None:
    await metrics.sample(app)  # the first sample only sets the baseline
    assert metrics._counters == {}
    async for _ in app.push_many([Job(func="tests.metrics.jobs.noop")] * 7):
        pass

    async def counted() -> int:
        await metrics.sample(app)
        return metrics._counters.get(("jobs.pushed", "", ""), 0)

    # The statistics collector publishes a backend's counts shortly after its transaction.
    assert await eventually(counted, timeout=10, interval=0.2) == 7


async def test_cleanup_deletes_buckets_past_retention(app: Chancy, dsn: str) -> None:
    metrics = Metrics(retention={"1min": 60})
    metrics.increment("jobs.succeeded", "q", "f")
    await metrics.flush(app)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"UPDATE {app.prefix}metrics SET bucket = bucket - interval '2 minutes'"  # type: ignore[arg-type]
            " WHERE resolution = '1min'"
        )
    assert await metrics.cleanup(app) == 1
    left = {r["resolution"] for r in await _all(dsn, app.prefix)}
    assert left == {"5min", "1hour", "1day", "total"}


async def _all(dsn: str, prefix: str) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = conn.cursor(row_factory=psycopg.rows.dict_row)
        await cur.execute(f"SELECT * FROM {prefix}metrics")  # type: ignore[arg-type]
        return await cur.fetchall()


async def test_series_range_and_filters(app: Chancy, metrics: Metrics) -> None:
    metrics.increment("jobs.succeeded", "a", "f1")
    metrics.increment("jobs.succeeded", "b", "f2", 2)
    await metrics.flush(app)
    rows = await Metrics.get_series(app, ["jobs.succeeded"], queue="b")
    assert [(r["queue"], r["count"]) for r in rows] == [("b", 2)]
    future = datetime.now(UTC) + timedelta(hours=2)
    assert await Metrics.get_series(app, ["jobs.succeeded"], since=future) == []
    with pytest.raises(ValueError, match="unknown resolution"):
        await Metrics.get_series(app, ["jobs.succeeded"], resolution="2min")


async def test_prometheus_exposition(app: Chancy, metrics: Metrics) -> None:
    metrics.increment("jobs.succeeded", 'q"1', "mod.f", 4)
    metrics.observe("jobs.runtime", "q", "mod.f", 0.003)
    metrics.observe("jobs.runtime", "q", "mod.f", 7)
    await metrics.flush(app)
    await app.declare(Queue("q"))
    await metrics.sample(app)
    text = await Metrics.prometheus(app)
    assert "# TYPE chancy_jobs_succeeded_total counter" in text
    assert 'chancy_jobs_succeeded_total{queue="q\\"1",func="mod.f"} 4' in text
    assert 'chancy_jobs_runtime_seconds_bucket{queue="q",func="mod.f",le="0.005"} 1' in text
    assert 'chancy_jobs_runtime_seconds_bucket{queue="q",func="mod.f",le="+Inf"} 2' in text
    assert 'chancy_jobs_runtime_seconds_count{queue="q",func="mod.f"} 2' in text
    assert 'chancy_queue_waiting{queue="q"} 0' in text
    assert text.endswith("\n")


def test_prometheus_text_of_nothing_is_a_newline() -> None:
    assert prometheus_text([], []) == "\n"


def test_configuration_is_validated() -> None:
    with pytest.raises(ConfigurationError, match="flush_interval"):
        Metrics(flush_interval=0)
    with pytest.raises(ConfigurationError, match="unknown resolution"):
        Metrics(retention={"2min": 5})
    with pytest.raises(ConfigurationError, match="depth_cap"):
        Metrics(depth_cap=0)


async def test_migrates_forward_from_a_chancy_026_metrics_table(dsn: str, prefix: str) -> None:
    """A database whose metrics line Chancy left at version 3 moves to chancy's table."""
    app = Chancy(
        dsn,
        prefix=prefix,
        plugins=[Metrics()],
        no_default_plugins=True,
        max_connection_pool_size=2,
    )
    async with app:
        await app.migrate()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE {prefix}metrics")  # type: ignore[arg-type]
            conn.execute(
                f"CREATE TABLE {prefix}metrics (metric_key varchar(255), resolution"  # type: ignore[arg-type]
                " varchar(10), worker_id varchar(255), metric_type varchar(20))"
            )
            conn.execute(
                f"UPDATE {prefix}schema_version SET version = 3"  # type: ignore[arg-type]
                " WHERE version_of = 'metrics'"
            )
        assert not await app.is_up_to_date()
        await app.migrate()
        assert await app.is_up_to_date()
        metrics = app.plugins["chancy.metrics"]
        assert isinstance(metrics, Metrics)
        metrics.increment("jobs.succeeded")
        assert await metrics.flush(app) == 1
        await app.migrate(to_version=0)
