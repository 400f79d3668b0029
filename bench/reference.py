"""W4, the reference: a hand-written psycopg loop on a plain table, on the same server.

It does the least a job queue must do per job: claim 100 with ``FOR UPDATE SKIP LOCKED``,
call the job, mark the batch done in one statement (one connection), and insert with COPY.
Every chancy figure is divided by the matching reference figure measured in the same run.
The latency reference is a LISTEN consumer in its own process, woken by an INSERT that
carries ``pg_notify``: ``python -m bench.reference consume DSN PREFIX OUT``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
import warnings
from typing import Any

import psycopg
from psycopg.rows import dict_row

from bench import jobs
from bench.db import connect, queries
from chancy.utils import chancy_uuid

QUEUE = "ref"


async def setup(dsn: str, prefix: str) -> None:
    conn = await connect(dsn)
    async with conn:
        q = queries(prefix)
        await conn.execute(q["ref_drop"])
        await conn.execute(q["ref_create"])


async def teardown(dsn: str, prefix: str) -> None:
    conn = await connect(dsn)
    async with conn:
        await conn.execute(queries(prefix)["ref_drop"])


async def copy_rate(dsn: str, prefix: str, n: int) -> float:
    """Jobs per second inserted with COPY in one transaction (ids made client-side)."""
    q = queries(prefix)
    conn = await connect(dsn)
    async with conn:
        await conn.execute(q["ref_truncate"])
        start = time.perf_counter()
        async with conn.transaction():
            cur = conn.cursor()
            async with cur.copy(q["ref_copy"]) as copy:
                for _ in range(n):
                    await copy.write_row((chancy_uuid(), QUEUE, "bench.jobs.noop", "{}"))
        elapsed = time.perf_counter() - start
        await conn.execute(q["ref_truncate"])
    return n / elapsed


async def drain(dsn: str, prefix: str, n: int, batch: int = 100) -> dict[str, Any]:
    """Drain ``n`` queued no-op jobs on one connection; return the rate and its time series."""
    q = queries(prefix)
    conn = await connect(dsn)
    async with conn:
        await conn.execute(q["ref_truncate"])
        await conn.execute(q["ref_fill"], {"n": n, "queue": QUEUE})
        # Fresh statistics, as for chancy's table (see bench.drain.push_backlog).
        await conn.execute(q["ref_analyze"])
        claim, done = q["ref_claim"], q["ref_done"]
        params = {"queue": QUEUE, "limit": batch}
        series: list[tuple[float, int]] = []
        claims: list[float] = []
        finished = 0
        start = time.perf_counter()
        while True:
            t = time.perf_counter()
            cur = await conn.execute(claim, params)
            rows = await cur.fetchall()
            claims.append(time.perf_counter() - t)
            if not rows:
                break
            for _row in rows:
                await jobs.noop()
            await conn.execute(done, {"ids": [r["id"] for r in rows]})
            finished += len(rows)
            series.append((time.perf_counter() - start, len(rows)))
        elapsed = series[-1][0] if series else 0.0
        await conn.execute(q["ref_truncate"])
    if finished != n:
        raise RuntimeError(f"reference drain finished {finished} of {n} jobs")
    return {"rate": n / elapsed, "seconds": elapsed, "series": series, "claims": claims[:-1]}


async def trickle(dsn: str, prefix: str, *, count: int, rate: float, push: Any = None) -> float:
    """Push ``count`` jobs at a steady ``rate`` per second; return the achieved rate.

    ``push(t)`` pushes one job stamped with ``t``; by default a reference job is inserted
    with its NOTIFY on one connection.
    """
    conn = None
    if push is None:
        conn = await connect(dsn)
        query = queries(prefix)["ref_push_notify"]

        async def push(t: float) -> None:
            await conn.execute(query, {"queue": QUEUE, "t": t})

    try:
        start = time.monotonic()
        for i in range(count):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await push(time.time())
        return count / (time.monotonic() - start)
    finally:
        if conn is not None:
            await conn.close()


async def wait_consumed(dsn: str, prefix: str, timeout: float) -> None:
    """Wait until the latency consumer has taken every reference job."""
    conn = await connect(dsn)
    async with conn:
        deadline = time.monotonic() + timeout
        while True:
            cur = await conn.execute(queries(prefix)["ref_pending"])
            row = await cur.fetchone()
            if row is not None and row["n"] == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the reference consumer did not take every job")
            await asyncio.sleep(0.05)


def consume(dsn: str, prefix: str, out: str) -> None:
    """The reference latency consumer: LISTEN, claim on each wake-up, record start - push."""
    stopping = False

    def on_term(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    # notifies() is only used to wait; the handler is what sees every notification.
    warnings.filterwarnings("ignore", "using 'notifies", RuntimeWarning)
    q = queries(prefix)
    latencies: list[float] = []
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        # A handler sees notifications that arrive while a query runs, too.
        woken = [False]
        conn.add_notify_handler(lambda _n: woken.__setitem__(0, True))
        conn.execute(q["ref_listen"])
        print("ready", flush=True)
        params = {"queue": QUEUE, "limit": 100}
        while not stopping:
            if not woken[0]:
                for _ in conn.notifies(timeout=0.2, stop_after=1):
                    pass
            if not woken[0]:
                continue
            woken[0] = False
            while True:
                rows = conn.execute(q["ref_claim"], params).fetchall()
                if not rows:
                    break
                now = time.time()
                latencies.extend(now - r["pushed_at"] for r in rows)
                conn.execute(q["ref_done"], {"ids": [r["id"] for r in rows]})
    with open(out, "w") as f:
        json.dump(latencies, f)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "consume":
        consume(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        raise SystemExit("usage: python -m bench.reference consume DSN PREFIX OUT")
