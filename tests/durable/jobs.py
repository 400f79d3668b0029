"""Job functions of the durable-jobs tests (imported by in-process and subprocess workers).

The transactional jobs get the DSN and the table prefix in their kwargs, open their own
connection, and in one transaction bump ``{prefix}tx_counter``, record the run in
``{prefix}tx_runs`` and complete themselves with ``complete_job_ex``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from chancy import Chancy, QueuedJob

SIDE_TABLES_DDL = """
CREATE TABLE {prefix}tx_counter (id int PRIMARY KEY, n int NOT NULL);
INSERT INTO {prefix}tx_counter VALUES (1, 0);
CREATE TABLE {prefix}tx_runs (job_id uuid NOT NULL, attempt int NOT NULL);
"""

_apps: dict[tuple[str, str], Chancy] = {}


def app_for(dsn: str, prefix: str) -> Chancy:
    """A Chancy for ``complete_job_ex`` only: it runs on the job's own connection, so this
    app never opens a pool."""
    key = (dsn, prefix)
    if key not in _apps:
        _apps[key] = Chancy(dsn, prefix=prefix, no_default_plugins=True)
    return _apps[key]


def _writes(prefix: str) -> tuple[str, str]:
    return (
        f"UPDATE {prefix}tx_counter SET n = n + 1 WHERE id = 1",
        f"INSERT INTO {prefix}tx_runs (job_id, attempt) VALUES (%s, %s)",
    )


async def counted_tx(
    dsn: str,
    prefix: str,
    *,
    job: QueuedJob,
    hold: float = 0,
    raise_inside: bool = False,
    raise_after: bool = False,
) -> str:
    """Complete in one transaction with the counter; optionally fail inside or after it.

    ``raise_inside`` raises before the commit on the first attempt (all rolled back);
    ``raise_after`` raises after the commit (the completion stands).
    """
    app = app_for(dsn, prefix)
    bump, record = _writes(prefix)
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        async with conn.transaction(), conn.cursor() as cur:
            await app.complete_job_ex(cur, job, result={"via": "transaction", "id": str(job.id)})
            await cur.execute(bump)  # type: ignore[arg-type]
            await cur.execute(record, (job.id, job.attempts))  # type: ignore[arg-type]
            if hold:
                await asyncio.sleep(hold)
            if raise_inside and job.attempts == 0:
                raise RuntimeError("failed inside the transaction")
    if raise_after:
        raise RuntimeError("failed after the commit")
    return "the return value is ignored"


def counted_tx_sync(dsn: str, prefix: str, *, job: QueuedJob) -> str:
    """``counted_tx`` for the thread and process executors (sync_complete_job_ex)."""
    app = app_for(dsn, prefix)
    bump, record = _writes(prefix)
    with psycopg.connect(dsn) as conn:
        with conn.transaction(), conn.cursor() as cur:
            app.sync_complete_job_ex(cur, job, result={"via": "sync", "id": str(job.id)})
            cur.execute(bump)  # type: ignore[arg-type]
            cur.execute(record, (job.id, job.attempts))  # type: ignore[arg-type]
    return "the return value is ignored"


async def wait_forever() -> Any:
    await asyncio.sleep(3600)
