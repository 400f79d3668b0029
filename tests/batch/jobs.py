"""Job functions for the batch tests (importable by the worker processes of runner.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from chancy import QueuedJob

#: Callbacks run in this process: (batch id, counts, own kwargs).
CALLED: list[tuple[str, dict[str, int], dict[str, Any]]] = []


async def ok() -> str:
    return "ok"


async def boom() -> None:
    raise RuntimeError("fails on purpose")


async def flaky(*, job: QueuedJob) -> str:
    """Fails its first attempt, succeeds on the second."""
    if job.attempts == 0:
        raise RuntimeError("first attempt fails on purpose")
    return "second"


async def callback(*, batch_id: str, batch_counts: dict[str, int], **extra: Any) -> str:
    CALLED.append((batch_id, dict(batch_counts), extra))
    return batch_id


def not_a_callback() -> None:
    """Takes no batch_id/batch_counts: refused as a callback."""


NOT_CALLABLE = 42


async def wait_for_go(dsn: str, table: str) -> str:
    """Wait until ``table`` has a row (the test's go signal), polling the database."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        while True:
            cur = await conn.execute(f"SELECT count(*) FROM {table}")  # type: ignore[arg-type]
            row = await cur.fetchone()
            if row and row[0]:
                return "went"
            await asyncio.sleep(0.02)


async def hold_first_run(*, job: QueuedJob) -> str:
    """Runs for a long time on its first run (the test kills its worker); quick after a
    recovery."""
    if job.recoveries == 0:
        await asyncio.sleep(120)
    return f"recoveries={job.recoveries}"
