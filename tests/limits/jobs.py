"""Job functions for the flow-control tests (AsyncExecutor runs them in the test's loop).

Jobs record their runs in a side table of the test's prefix through ``SIDE``, a small pool the
test opens, and in process memory (``RUNS``), so the tests can check what ran at once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from chancy import QueuedJob
from chancy.errors import Snooze

#: The test's side-table pool and table name, set by the test before workers start.
SIDE: AsyncConnectionPool[Any] | None = None
TABLE: str = ""
#: (partition key, start, end) of each finished run, on the monotonic clock.
RUNS: list[tuple[str | None, float, float]] = []


def _side() -> AsyncConnectionPool[Any]:
    assert SIDE is not None, "the test must set jobs.SIDE"
    return SIDE


async def record_start(*, job: QueuedJob) -> None:
    """Record the wall-clock start (and the database's clock) in the side table."""
    started = time.time()
    async with _side().connection() as conn:
        await conn.execute(
            sql.SQL(
                "INSERT INTO {} (job_id, started_at, recorded_at)"
                " VALUES (%s, to_timestamp(%s), clock_timestamp())"
            ).format(sql.Identifier(TABLE)),
            (job.id, started),
        )


async def hold(seconds: float, *, job: QueuedJob) -> None:
    """Be present in the side table while running (a row per run, keyed by partition key).

    The side table's unique constraint on the key makes a second concurrent run of one key
    fail loudly.
    """
    start = time.monotonic()
    key = job.partition_key or str(job.id)
    async with _side().connection() as conn:
        await conn.execute(
            sql.SQL("INSERT INTO {} (key, job_id) VALUES (%s, %s)").format(sql.Identifier(TABLE)),
            (key, job.id),
        )
    try:
        await asyncio.sleep(seconds)
    finally:
        async with _side().connection() as conn:
            await conn.execute(
                sql.SQL("DELETE FROM {} WHERE job_id = %s").format(sql.Identifier(TABLE)),
                (job.id,),
            )
        RUNS.append((job.partition_key, start, time.monotonic()))


async def noop() -> None:
    return None


async def snooze_first(delay: float, *, job: QueuedJob) -> str:
    """Snooze on the first run, noting when that run started; succeed on the next."""
    if "first_started_at" not in job.meta:
        assert job.started_at is not None
        job.meta["first_started_at"] = job.started_at.isoformat()
        raise Snooze(delay)
    return "ran again"


async def ordered_step(n: int, fail_first: bool = False, *, job: QueuedJob) -> int:
    """Record this run (key, n, attempt) in the side table; fail the first attempt if asked."""
    async with _side().connection() as conn:
        await conn.execute(
            sql.SQL("INSERT INTO {} (k, n, attempt) VALUES (%s, %s, %s)").format(
                sql.Identifier(TABLE)
            ),
            (job.partition_key, n, job.attempts),
        )
    await asyncio.sleep(0.005)  # stands for the job's work, so runs of a key could overlap
    if fail_first and job.attempts == 0:
        raise RuntimeError(f"step {n} fails its first attempt")
    return n
