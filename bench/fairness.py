"""Fair share across partition keys, measured: the issue's two figures, exactly.

1. 100,000 jobs of one key, then 100 of another, equal weights: how many of the first key's
   jobs finished by the time the second key's 100 had all finished (the goal: under 1,000).
2. Weights 4:1 with a sustained backlog for both keys: the served ratio in every 10-second
   window of starts (the goal: within 10% of 4:1 in each).

And the cost: the drain rate of the same backlog through a plain queue and a fair one.

    .venv/bin/python bench/fairness.py --dsn postgresql://postgres@127.0.0.1:5432/postgres

One worker (AsyncExecutor, concurrency 50) in this process, its own table prefix, dropped at
the end. Figures are printed as a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.db import queries
from chancy import Chancy, Job, Queue, Worker

NOOP = "bench.jobs.noop"


async def push(app: Chancy, queue: str, key: str, n: int) -> None:
    job = Job(func=NOOP, queue=queue).with_partition_key(key)
    async for _ in app.push_many([job] * n, batch_size=max(n, 1)):
        pass


async def counts(app: Chancy, queue: str) -> dict[str, int]:
    pool = await app.open()
    async with pool.connection() as conn:
        cur = await conn.execute(
            queries(app.prefix)["fair_done_by_key"],  # type: ignore[arg-type]
            {"queue": queue},
        )
        return {row[0]: int(row[1]) for row in await cur.fetchall()}


async def starvation(app: Chancy) -> tuple[int, float]:
    await app.declare(Queue("fair1", fairness=True, executor=Chancy.Executor.Async, concurrency=50))
    await push(app, "fair1", "noisy", 100_000)
    await push(app, "fair1", "quiet", 100)
    start = time.monotonic()
    async with Worker(app, register_signal_handlers=False):
        while (await counts(app, "fair1")).get("quiet", 0) < 100:  # noqa: ASYNC110 (polls)
            await asyncio.sleep(0.05)
        took = time.monotonic() - start
    return (await counts(app, "fair1")).get("noisy", 0), took


async def weighted(app: Chancy, seconds: float) -> list[tuple[int, int]]:
    await app.declare(
        Queue(
            "fair2",
            fairness=True,
            partition_weights={"gold": 4, "*": 1},
            executor=Chancy.Executor.Async,
            concurrency=50,
        )
    )
    await push(app, "fair2", "gold", 400_000)
    await push(app, "fair2", "free", 400_000)
    async with Worker(app, register_signal_handlers=False):
        await asyncio.sleep(seconds)
    pool = await app.open()
    async with pool.connection() as conn:
        cur = await conn.execute(
            queries(app.prefix)["fair_starts_by_window"],  # type: ignore[arg-type]
            {"queue": "fair2", "window": 10.0},
        )
        rows = await cur.fetchall()
    by_window: dict[int, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for window, key, n in rows:
        by_window[int(window)][key] += int(n)
    # The last window is cut short by the worker's stop: leave it out.
    full = sorted(by_window)[:-1]
    return [(by_window[w]["gold"], by_window[w]["free"]) for w in full]


async def drain_rate(app: Chancy, name: str, fair: bool, n: int) -> float:
    await app.declare(Queue(name, fairness=fair, executor=Chancy.Executor.Async, concurrency=50))
    batch = [Job(func=NOOP, queue=name).with_partition_key(f"k{i % 100}") for i in range(n)]
    async for _ in app.push_many(batch, batch_size=n):
        pass
    start = time.monotonic()
    async with Worker(app, register_signal_handlers=False):
        while sum((await counts(app, name)).values()) < n:  # noqa: ASYNC110 (polls the table)
            await asyncio.sleep(0.05)
    return n / (time.monotonic() - start)


async def main(dsn: str, seconds: float, drain: int) -> None:
    prefix = f"benchfair{os.getpid()}_"
    app = Chancy(dsn, prefix=prefix, no_default_plugins=True, max_connection_pool_size=4)
    async with app:
        await app.migrate()
        try:
            noisy, took = await starvation(app)
            windows = await weighted(app, seconds)
            plain = await drain_rate(app, "plain", False, drain)
            fair = await drain_rate(app, "fairq", True, drain)
        finally:
            await app.migrate(to_version=0)
    print("| figure | measured | goal |")
    print("|---|---:|---|")
    print(
        f"| noisy key's jobs finished when the quiet key's 100 were done ({took:.1f} s) |"
        f" {noisy:,} of 100,000 | under 1,000 |"
    )
    for i, (gold, free) in enumerate(windows):
        ratio = gold / max(1, free)
        print(
            f"| 4:1 weights, starts in window {i + 1} (10 s): gold {gold:,}, free {free:,} |"
            f" {ratio:.2f} : 1 | 3.6 to 4.4 |"
        )
    print(
        f"| drain of {drain:,} jobs over 100 keys: plain {plain:,.0f}/s, fair {fair:,.0f}/s |"
        f" {fair / plain:.2f} | |"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("CHANCY_DSN", ""))
    parser.add_argument("--seconds", type=float, default=35.0, help="weighted run length")
    parser.add_argument("--drain", type=int, default=20_000, help="jobs in the cost drain")
    args = parser.parse_args()
    if not args.dsn:
        sys.exit("give --dsn or set CHANCY_DSN")
    asyncio.run(main(args.dsn, args.seconds, args.drain))
