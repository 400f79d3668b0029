"""``/metrics``: live gauges read from the tables, from a worker's first scrape on.

Before, ``/metrics`` only repeated what the Metrics plugin had flushed, so a fresh worker (or
one whose Metrics plugin flushes every minute) answered an empty 200: no queue depth, no
worker count, no leader, exactly when an alert on them matters most.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chancy import Chancy, Job, Queue, Worker
from chancy.plugins.leadership import Leadership
from chancy.plugins.metrics import Metrics
from chancy.plugins.recovery import Recovery
from chancy.store import Spec
from tests.api.conftest import login, make_asgi
from tests.conftest import eventually, migrated_app

httpx = pytest.importorskip("httpx")

ASYNC = Chancy.Executor.Async
NOOP = "tests.metrics.jobs.noop"
SLEEPS = "tests.metrics.jobs.sleeps"


def gauge(text: str, metric: str) -> float | None:
    """The value of one sample line (``metric`` with its labels, exactly), or None."""
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == metric:
            return float(value)
    return None


async def test_a_fresh_worker_answers_live_gauges_before_any_metrics_flush(
    dsn: str, prefix: str, client_for: Any
) -> None:
    # Flushes and samples an hour apart: nothing reaches the metrics table during the test.
    metrics = Metrics(flush_interval=3600, sample_interval=3600)
    plugins = [Leadership(poll_interval=0.5, timeout=5), Recovery(), metrics]
    async with migrated_app(dsn, prefix, plugins, pool=3) as app:
        await app.declare(Queue("default", tags={"^nobody$"}))
        await app.declare(Queue("held", tags={"^nobody$"}))
        await app.declare(Queue("work", executor=ASYNC, concurrency=2, polling_interval=0.2))
        old = datetime.now(UTC) - timedelta(minutes=10)
        for _ in range(3):
            await app.push(Job(func=NOOP, queue="held", scheduled_at=old))
        # Scheduled in the future: waiting, but not late, so it does not age the queue.
        await app.push(Job(func=NOOP, queue="held", scheduled_at=old + timedelta(days=1)))
        running = await app.push(Job(func=SLEEPS, queue="work", kwargs={"seconds": 60}))
        async with client_for(make_asgi(app)) as client:
            headers = await login(client)
            async with Worker(app, register_signal_handlers=False, shutdown_timeout=1) as worker:
                await eventually(worker.is_leader.is_set, timeout=10)

                async def is_running() -> bool:
                    job = await app.get_job(running)
                    return job is not None and job.state == "running"

                await eventually(is_running, timeout=10)
                response = await client.get("/metrics", headers=headers)
                # The Metrics plugin has written nothing yet (it writes at the latest when
                # the worker stops).
                written = await app.db.run(
                    Spec(f"SELECT count(*) AS n FROM {app.prefix}metrics", None, "one")
                )  # type: ignore[arg-type]
                await app.cancel_job(running)
            assert response.status_code == 200
            text = response.text
            assert gauge(text, 'chancy_queue_waiting_jobs{queue="held"}') == 4
            assert gauge(text, 'chancy_queue_waiting_jobs{queue="work"}') == 0
            assert gauge(text, 'chancy_queue_running_jobs{queue="work"}') == 1
            assert gauge(text, 'chancy_queue_running_jobs{queue="held"}') == 0
            age = gauge(text, 'chancy_queue_oldest_waiting_seconds{queue="held"}')
            assert age is not None and 600 <= age < 3600, text
            assert gauge(text, 'chancy_queue_oldest_waiting_seconds{queue="work"}') == 0
            assert gauge(text, "chancy_workers_live") == 1
            assert gauge(text, "chancy_leader_present") == 1
            assert gauge(text, f'chancy_leader_info{{worker_id="{worker.worker_id}"}}') == 1
            # Each family is declared once, as a gauge, before its samples.
            for family in re.findall(r"^# TYPE (\S+) ", text, flags=re.M):
                assert text.count(f"# TYPE {family} ") == 1, family
            assert "# TYPE chancy_queue_waiting_jobs gauge" in text
            assert written["n"] == 0
            assert "chancy_jobs_" not in text


async def test_the_metrics_plugin_series_follow_the_live_gauges(
    app: Chancy, client_for: Any
) -> None:
    metrics = app.plugins["chancy.metrics"]
    assert isinstance(metrics, Metrics)
    await app.declare(Queue("q", tags={"^nobody$"}))
    await app.push(Job(func=NOOP, queue="q"))
    metrics.increment("jobs.succeeded", "q", NOOP, 3)
    await metrics.sample(app)
    await metrics.flush(app)
    async with client_for(make_asgi(app)) as client:
        text = (await client.get("/metrics", headers=await login(client))).text
    assert gauge(text, 'chancy_queue_waiting_jobs{queue="q"}') == 1
    assert gauge(text, "chancy_leader_present") == 0  # no worker runs here
    assert gauge(text, f'chancy_jobs_succeeded_total{{queue="q",func="{NOOP}"}}') == 3
    # The plugin's last sample, under its own name.
    assert gauge(text, 'chancy_queue_waiting{queue="q"}') == 1
    families = re.findall(r"^# TYPE (\S+) ", text, flags=re.M)
    assert len(families) == len(set(families)), families
    assert text.index("chancy_workers_live") < text.index("chancy_jobs_succeeded_total")
