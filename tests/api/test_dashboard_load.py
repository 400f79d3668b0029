"""An open dashboard costs the database little next to the workers it watches.

CI runs a short version (30 s at 300 jobs/s, after a warm-up round that is not counted).
The acceptance run (10 minutes at 500 jobs/s) is the same test with larger numbers::

    CHANCY_DASHBOARD_LOAD_SECONDS=600 CHANCY_DASHBOARD_LOAD_RATE=500 \\
        .venv/bin/pytest tests/api/test_dashboard_load.py -s --timeout=0

The database's own accounting is the measure: the test runs a throwaway cluster with
``pg_stat_statements`` loaded (never the shared server), and the workers, the pusher and the
dashboard each log in as their own role, so the statements' calls and their execution and
planning time on the server are summed per role. The dashboard is polled as two open pages
poll it: the overview and the jobs list every 5 seconds, the jobs page's state counts every
15 seconds.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from chancy import Chancy, Job, Queue, Worker
from chancy.plugins.leadership import ImmediateLeadership
from chancy.plugins.metrics import Metrics
from tests.api.conftest import USERS, make_asgi
from tests.cluster import Cluster, find_pg_bin

httpx = pytest.importorskip("httpx")

SECONDS = float(os.environ.get("CHANCY_DASHBOARD_LOAD_SECONDS", "30"))
RATE = int(os.environ.get("CHANCY_DASHBOARD_LOAD_RATE", "300"))
POLL = 5.0
ROLES = ("load_workers", "load_pusher", "load_dashboard")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    if find_pg_bin() is None:
        pytest.skip("no PostgreSQL server binaries (Debian's postgresql package) on this machine")
    settings = {
        "shared_preload_libraries": "pg_stat_statements",
        "pg_stat_statements.track": "all",
        "pg_stat_statements.track_planning": "on",
    }
    with Cluster(settings) as running:
        with psycopg.connect(running.dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
            for role in ROLES:
                conn.execute(f"CREATE ROLE {role} LOGIN SUPERUSER")  # type: ignore[arg-type]
        yield running


@pytest.mark.slow
@pytest.mark.timeout(int(SECONDS * 3 + 120))
async def test_dashboard_load_is_under_five_percent_of_the_workers(cluster: Cluster) -> None:
    prefix = "load_"

    def app(role: str, *plugins: Any) -> Chancy:
        return Chancy(
            _as(cluster.dsn, role),
            prefix=prefix,
            plugins=list(plugins),
            no_default_plugins=True,
            min_connection_pool_size=1,
            max_connection_pool_size=3,
        )

    workers = app("load_workers", ImmediateLeadership(), Metrics(flush_interval=5))
    pusher = app("load_pusher")
    dashboard = app("load_dashboard", Metrics())
    async with workers, pusher, dashboard:
        await workers.migrate()
        await workers.declare(Queue("default", tags={"^nobody$"}))
        await workers.declare(
            Queue("load", executor=Chancy.Executor.Async, concurrency=100, polling_interval=1)
        )
        pushed = 0
        batch = [Job(func="tests.metrics.jobs.noop", queue="load")] * max(1, RATE // 10)
        paths = ["/api/v1/overview", "/api/v1/jobs?limit=50", "/api/v1/jobs/counts"]
        transport = httpx.ASGITransport(app=make_asgi(dashboard, cache_ttl=1))
        async with (
            Worker(workers, register_signal_handlers=False),
            httpx.AsyncClient(transport=transport, base_url="http://dashboard.test") as client,
        ):
            login = await client.post(
                "/api/v1/login", json={"username": "admin", "password": USERS["admin"]}
            )
            headers = {"Authorization": f"Bearer {login.json()['token']}"}
            # Warm-up, not measured: each side's first statements (cold caches, planning,
            # connections) say nothing about what an open dashboard costs over time.
            refs = [r async for b in pusher.push_many(batch) for r in b]
            for path in paths:
                assert (await client.get(path, headers=headers)).status_code == 200
            await workers.wait_for_jobs(refs, timeout=30, interval=0.1)
            with psycopg.connect(cluster.dsn, autocommit=True) as conn:
                conn.execute("SELECT pg_stat_statements_reset()")
            deadline = time.monotonic() + SECONDS

            async def push() -> None:
                nonlocal pushed
                tick = time.monotonic()
                while time.monotonic() < deadline:
                    async for refs in pusher.push_many(batch):
                        pushed += len(refs)
                    tick += 0.1
                    await asyncio.sleep(max(0.0, tick - time.monotonic()))

            async def watch() -> int:
                requests = 0
                polls = 0
                while time.monotonic() < deadline:
                    tick = time.monotonic()
                    # The jobs page refreshes its counts every 15 s, the rest every 5 s.
                    wanted = paths if polls % 3 == 0 else paths[:2]
                    polls += 1
                    for path in wanted:
                        response = await client.get(path, headers=headers)
                        assert response.status_code == 200, response.text
                        requests += 1
                    await asyncio.sleep(max(0.0, tick + POLL - time.monotonic()))
                return requests

            _, requests = await asyncio.gather(push(), watch())
        with psycopg.connect(cluster.dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT r.rolname, sum(s.calls)::float8,"
                " sum(s.total_exec_time + s.total_plan_time)::float8"
                " FROM pg_stat_statements AS s JOIN pg_roles AS r ON r.oid = s.userid"
                " GROUP BY r.rolname"
            ).fetchall()
            top = conn.execute(
                "SELECT s.calls, (s.total_exec_time + s.total_plan_time)::float8,"
                " left(regexp_replace(s.query, '\\s+', ' ', 'g'), 100)"
                " FROM pg_stat_statements AS s JOIN pg_roles AS r ON r.oid = s.userid"
                " WHERE r.rolname = 'load_dashboard'"
                " ORDER BY s.total_exec_time + s.total_plan_time DESC LIMIT 6"
            ).fetchall()
            done = conn.execute(
                f"SELECT count(*) FROM {prefix}jobs WHERE state = 'succeeded'"  # type: ignore[arg-type]
            ).fetchone()
    stats = {name: (calls, ms) for name, calls, ms in rows}
    work_n, work_ms = stats["load_workers"]
    dash_n, dash_ms = stats["load_dashboard"]
    succeeded = done[0] if done else 0
    print(
        f"\n{SECONDS:g}s at {RATE}/s: pushed {pushed}, succeeded {succeeded}; workers"
        f" {work_n:.0f} statements {work_ms / 1000:.2f}s; dashboard {dash_n:.0f} statements"
        f" {dash_ms / 1000:.3f}s over {requests} requests"
        f" ({dash_n / max(work_n, 1):.2%} of the statements,"
        f" {dash_ms / max(work_ms, 1e-9):.2%} of the server time)"
    )
    for calls, ms, query in top:
        print(f"  dashboard: {calls:5d} calls {ms:9.1f} ms  {query}")
    assert succeeded > pushed * 0.5, "the workers fell far behind; the measurement is not fair"
    assert requests >= 2 * (SECONDS // POLL)
    assert dash_n < 0.05 * work_n
    assert dash_ms < 0.05 * work_ms


def _as(dsn: str, role: str) -> str:
    return make_conninfo("", **{**conninfo_to_dict(dsn), "user": role, "application_name": role})
