"""Database helpers shared by the workloads: named queries, prefixes, drains, clean-up."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg.rows import dict_row

from chancy import Chancy
from chancy.store.loader import Queries

PACKAGE = "bench.sql"


def queries(prefix: str) -> Queries:
    """The suite's named queries (bench/sql/*.sql) for one prefix."""
    return Queries(PACKAGE, prefix)


async def connect(dsn: str, **kwargs: Any) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(
        dsn, autocommit=True, row_factory=dict_row, **kwargs
    )


def drop_prefix(dsn: str, prefix: str) -> list[str]:
    """Drop every table whose name starts with ``prefix``; return their names."""
    q = queries(prefix)
    pattern = prefix.replace("_", "\\_") + "%"
    with psycopg.connect(dsn, autocommit=True) as conn:
        names = [r[0] for r in conn.execute(q["prefix_tables"], {"pattern": pattern})]
        for name in names:
            conn.execute(
                psycopg.sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(
                    psycopg.sql.Identifier(name)
                )
            )
    return names


def make_app(dsn: str, prefix: str, *, pool: int = 4) -> Chancy:
    """The driver's app: the same plugins as the workers (the defaults), a small pool."""
    return Chancy(dsn, prefix=prefix, min_connection_pool_size=1, max_connection_pool_size=pool)


@contextlib.asynccontextmanager
async def installation(dsn: str, prefix: str, *, pool: int = 4) -> AsyncIterator[Chancy]:
    """A freshly migrated chancy installation on ``prefix``, removed afterwards."""
    drop_prefix(dsn, prefix)  # leftovers of an interrupted run
    app = make_app(dsn, prefix, pool=pool)
    try:
        async with app:
            await app.migrate()
            conn = await connect(dsn)
            async with conn:
                await conn.execute(queries(prefix)["jobs_no_autovacuum"])
            try:
                yield app
            finally:
                with contextlib.suppress(Exception):
                    await app.migrate(to_version=0)
    finally:
        drop_prefix(dsn, prefix)


async def wait_drained(
    conn: psycopg.AsyncConnection[Any], prefix: str, *, timeout: float, interval: float = 0.1
) -> None:
    """Poll (cheaply, through the partial indexes) until no job waits or runs."""
    q = queries(prefix)
    deadline = time.monotonic() + timeout
    while True:
        cur = await conn.execute(q["jobs_unfinished"])
        row = await cur.fetchone()
        if row is not None and not row["busy"]:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs of {prefix} were not drained within {timeout:g}s")
        await asyncio.sleep(interval)


async def drain_window(
    conn: psycopg.AsyncConnection[Any], prefix: str, queue: str
) -> tuple[int, float, float]:
    """(jobs finished, seconds from the first claim to the last completion, first claim).

    Times are the database's clock, as epoch seconds.
    """
    cur = await conn.execute(queries(prefix)["jobs_drain_window"], {"queue": queue})
    row = await cur.fetchone()
    assert row is not None
    if not row["n"]:
        return 0, 0.0, 0.0
    start = float(row["first_start"])
    return int(row["n"]), float(row["last_done"]) - start, start


async def completion_series(
    conn: psycopg.AsyncConnection[Any], prefix: str, queue: str, start: float
) -> list[tuple[float, int]]:
    """(seconds after ``start``, jobs completed at that instant), in time order."""
    cur = await conn.execute(queries(prefix)["jobs_completion_times"], {"queue": queue})
    return [(float(r["t"]) - start, int(r["n"])) for r in await cur.fetchall()]
