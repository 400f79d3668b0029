"""An open dashboard costs the database little next to the workers it watches.

CI runs a short version. The acceptance run (10 minutes at 500 jobs/s) is the same test with
larger numbers::

    CHANCY_DASHBOARD_LOAD_SECONDS=600 CHANCY_DASHBOARD_LOAD_RATE=500 \\
        .venv/bin/pytest tests/api/test_dashboard_load.py -s --timeout=0

Every statement is counted and timed by wrapping ``psycopg.AsyncCursor.execute``, attributed to
the workers, the pusher or the dashboard by each pool's ``application_name``. The dashboard
is polled as two open pages poll it: the overview and the jobs list every 5 seconds, the
jobs page's state counts every 15 seconds.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from chancy import Chancy, Job, Queue, Worker
from chancy.plugins.leadership import ImmediateLeadership
from chancy.plugins.metrics import Metrics
from tests.api.conftest import USERS, make_asgi
from tests.conftest import drop_prefix

httpx = pytest.importorskip("httpx")

SECONDS = float(os.environ.get("CHANCY_DASHBOARD_LOAD_SECONDS", "12"))
RATE = int(os.environ.get("CHANCY_DASHBOARD_LOAD_RATE", "200"))
POLL = 5.0


def _named(dsn: str, name: str) -> str:
    return make_conninfo("", **{**conninfo_to_dict(dsn), "application_name": name})


@pytest.mark.slow
@pytest.mark.timeout(int(SECONDS * 3 + 120))
async def test_dashboard_load_is_under_five_percent_of_the_workers(
    dsn: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stats: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    original = psycopg.AsyncCursor.execute

    async def counted(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return await original(self, query, params, **kwargs)
        finally:
            name = self.connection.info.parameter_status("application_name") or "?"
            entry = stats[name]
            entry[0] += 1
            entry[1] += time.perf_counter() - start

    def app(name: str, *plugins: Any) -> Chancy:
        return Chancy(
            _named(dsn, name),
            prefix=prefix,
            plugins=list(plugins),
            no_default_plugins=True,
            min_connection_pool_size=1,
            max_connection_pool_size=3,
        )

    workers = app("load-workers", ImmediateLeadership(), Metrics(flush_interval=5))
    pusher = app("load-pusher")
    dashboard = app("load-dashboard", Metrics())
    try:
        async with workers, pusher, dashboard:
            await workers.migrate()
            await workers.declare(Queue("default", tags={"^nobody$"}))
            await workers.declare(
                Queue("load", executor=Chancy.Executor.Async, concurrency=100, polling_interval=1)
            )
            monkeypatch.setattr(psycopg.AsyncCursor, "execute", counted)
            stats.clear()
            deadline = time.monotonic() + SECONDS
            pushed = 0

            async def push() -> None:
                nonlocal pushed
                batch = [Job(func="tests.metrics.jobs.noop", queue="load")] * max(1, RATE // 10)
                tick = time.monotonic()
                while time.monotonic() < deadline:
                    async for refs in pusher.push_many(batch):
                        pushed += len(refs)
                    tick += 0.1
                    await asyncio.sleep(max(0.0, tick - time.monotonic()))

            async def watch() -> int:
                requests = 0
                transport = httpx.ASGITransport(app=make_asgi(dashboard, cache_ttl=1))
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://dashboard.test"
                ) as client:
                    login = await client.post(
                        "/api/v1/login", json={"username": "admin", "password": USERS["admin"]}
                    )
                    headers = {"Authorization": f"Bearer {login.json()['token']}"}
                    polls = 0
                    while time.monotonic() < deadline:
                        tick = time.monotonic()
                        paths = ["/api/v1/overview", "/api/v1/jobs?limit=50"]
                        if polls % 3 == 0:  # the jobs page refreshes its counts every 15 s
                            paths.append("/api/v1/jobs/counts")
                        polls += 1
                        for path in paths:
                            response = await client.get(path, headers=headers)
                            assert response.status_code == 200, response.text
                            requests += 1
                        await asyncio.sleep(max(0.0, tick + POLL - time.monotonic()))
                return requests

            async with Worker(workers, register_signal_handlers=False):
                _, requests = await asyncio.gather(push(), watch())
            monkeypatch.undo()
            done = await workers._run(
                __import__("chancy.store", fromlist=["Spec"]).Spec(
                    f"SELECT count(*) AS n FROM {prefix}jobs WHERE state = 'succeeded'",  # type: ignore[arg-type]
                    None,
                    "one",
                )
            )
            await workers.migrate(to_version=0)
    finally:
        drop_prefix(dsn, prefix)
    work_n, work_t = stats["load-workers"]
    dash_n, dash_t = stats["load-dashboard"]
    print(
        f"\n{SECONDS:g}s at {RATE}/s: pushed {pushed}, succeeded {done['n']}; workers"
        f" {work_n:.0f} statements {work_t:.2f}s; dashboard {dash_n:.0f} statements"
        f" {dash_t:.3f}s over {requests} requests"
        f" ({dash_n / max(work_n, 1):.2%} of the statements,"
        f" {dash_t / max(work_t, 1e-9):.2%} of the time)"
    )
    assert done["n"] > pushed * 0.5, "the workers fell far behind; the measurement is not fair"
    # Statements are the measure: the dashboard and the workers share one event loop here, so
    # the wall time of a statement includes waiting for the loop (reported, not asserted).
    assert dash_n < 0.05 * work_n
