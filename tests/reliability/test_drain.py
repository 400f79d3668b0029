"""A large backlog drained by four worker processes: every job succeeds exactly once.

No failure is injected. Each run is recorded (in batches) in a side table; at the end every
job is ``succeeded`` on its first attempt with no recovery, and the side table holds exactly
one run per job. CI drains 20,000 jobs; the acceptance size is one million::

    CHANCY_DRAIN_JOBS=1000000 .venv/bin/pytest tests/reliability/test_drain.py -s --timeout=0
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chancy import Chancy, Job, Queue
from tests.cluster import Cluster, find_pg_bin
from tests.reliability.chaos_jobs import DRAIN_TABLE_DDL
from tests.reliability.harness import small_app, spawn_worker, worker_env

ROOT = Path(__file__).resolve().parents[2]
JOBS = int(os.environ.get("CHANCY_DRAIN_JOBS", "20000"))
WORKERS = 4
PREFIX = "drain_"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(max(300, JOBS // 200))]


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    if find_pg_bin() is None:
        pytest.skip("no PostgreSQL server binaries (Debian's postgresql package) on this machine")
    with Cluster({"shared_buffers": "256MB", "max_wal_size": "2GB"}) as running:
        yield running


async def test_a_big_backlog_drains_with_every_job_run_exactly_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    app = small_app(cluster.dsn, PREFIX)
    procs: list[subprocess.Popen[bytes]] = []
    async with app:
        await app.migrate()
        async with app.pool.connection() as conn:
            await conn.execute(DRAIN_TABLE_DDL.format(prefix=PREFIX))  # type: ignore[arg-type]
        await app.declare(
            Queue("drain", executor=Chancy.Executor.Async, concurrency=200, polling_interval=1)
        )
        await app.pause_queue("drain")
        pushed_at = time.monotonic()
        job = Job(func="tests.reliability.chaos_jobs.counted", queue="drain")
        async for _ in app.push_many([job] * JOBS, batch_size=10_000):
            pass
        push_seconds = time.monotonic() - pushed_at
        env = worker_env(cluster.dsn, PREFIX)
        try:
            procs.extend(spawn_worker(f"d{i}", env, tmp_path / f"w{i}.log") for i in range(WORKERS))
            ready = time.monotonic() + 60
            while not all("ready" in (tmp_path / f"w{i}.log").read_text() for i in range(WORKERS)):
                assert time.monotonic() < ready, "the workers did not start"
                await asyncio.sleep(0.1)
            await app.resume_queue("drain")
            deadline = time.monotonic() + max(240, JOBS / 500)
            while True:
                async with app.pool.connection() as conn:
                    row = await (
                        await conn.execute(
                            f"SELECT count(*) FILTER (WHERE state = 'succeeded'),"  # type: ignore[arg-type]
                            f" count(*) FILTER (WHERE state = 'failed') FROM {PREFIX}jobs"
                        )
                    ).fetchone()
                assert row is not None
                if row[0] + row[1] >= JOBS:
                    break
                assert time.monotonic() < deadline, f"only {row[0]} of {JOBS} succeeded"
                await asyncio.sleep(0.5)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        async with app.pool.connection() as conn:
            jobs = await (
                await conn.execute(
                    f"SELECT count(*), count(*) FILTER (WHERE state = 'succeeded'),"  # type: ignore[arg-type]
                    f" max(attempts), max(recoveries),"
                    f" extract(epoch FROM max(completed_at) - min(started_at))::float8"
                    f" FROM {PREFIX}jobs"
                )
            ).fetchone()
            runs = await (
                await conn.execute(
                    f"SELECT count(*), count(DISTINCT job_id), count(DISTINCT pid)"  # type: ignore[arg-type]
                    f" FROM {PREFIX}drain_runs"
                )
            ).fetchone()
    assert jobs is not None and runs is not None
    total, succeeded, max_attempts, max_recoveries, seconds = jobs
    assert (total, succeeded) == (JOBS, JOBS)
    assert (max_attempts, max_recoveries) == (1, 0)
    assert runs[0] == JOBS and runs[1] == JOBS, f"{runs[0]} runs of {runs[1]} distinct jobs"
    assert runs[2] >= WORKERS, "every worker process took part"
    print(
        f"\ndrained {JOBS:,} jobs with {WORKERS} workers in {seconds:.1f}s"
        f" ({JOBS / seconds:,.0f} jobs/s); pushed in {push_seconds:.1f}s"
        f" ({JOBS / push_seconds:,.0f} jobs/s); {runs[0]:,} runs, each job exactly once"
    )
