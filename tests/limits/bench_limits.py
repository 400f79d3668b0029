"""What each flow-control limit costs in drain throughput, against an unlimited queue.

Drains a backlog of no-op async jobs with one in-process worker (``AsyncExecutor``, queue
otherwise at its defaults, no default plugins) for each variant, rounds interleaved so that
machine noise hits every variant alike, and prints jobs/s (median of the rounds) and the ratio
to the unlimited queue. Limits are set far above what one worker reaches, so the numbers show
the cost of enforcing them (the claim lock, the counting, the start log, the key skip-scan),
not the limits themselves.

    python -m tests.limits.bench_limits --dsn postgresql://postgres@127.0.0.1:5432/bench

Use a database of its own: a long transaction elsewhere in the same database keeps the dead
rows of claimed jobs alive and slows every claim. Not collected by pytest (no ``test_`` name).

Measured when written (2 shared vCPUs, PostgreSQL 15, load average 3-5 from other work, so
only the ratios mean much; 5 rounds, medians; per-key variants over 100 keys):

    variant                   jobs/s   vs unlimited
    unlimited                   6196           1.00
    rate_limit                  4692           0.76
    global_concurrency          3718           0.60   (0.70-0.81 in quieter runs)
    partition_concurrency       3130           0.51
    partition_concurrency_2     3415           0.55
    partition_rate_limit        3608           0.58
    all_limits                  2697           0.44

The unlimited queue drains as fast as before flow control existed (the same claim statement;
runs of both trees interleaved were within noise of each other). A limited claim is a short
pipelined transaction (lock, then claim): about 1.8 ms for one job against 0.5 ms unlimited
on a quiet machine. A per-key claim also walks the keys with waiting jobs, one index descent
each, and reads the heads of those with room, so its cost grows with the number of keys.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

import psycopg

from chancy import Chancy, Job, Queue, Worker
from chancy.runtime import producer

BIG = 1_000_000_000

VARIANTS: dict[str, dict[str, Any]] = {
    "unlimited": {},
    "rate_limit": {"rate_limit": BIG, "rate_limit_window": 1},
    "global_concurrency": {"global_concurrency": BIG},
    "partition_concurrency": {"partition_concurrency": BIG},
    # Two at a time per key: binding for a key whose next job waits for the previous one's
    # outcome to be written, as in real use.
    "partition_concurrency_2": {"partition_concurrency": 2},
    "partition_rate_limit": {"partition_rate_limit": BIG, "partition_rate_limit_window": 1},
    "all_limits": {
        "rate_limit": BIG,
        "rate_limit_window": 1,
        "global_concurrency": BIG,
        "partition_concurrency": BIG,
        "partition_rate_limit": BIG,
        "partition_rate_limit_window": 1,
    },
    # Weighted fair share (stride scheduling) over the same keys; no limit at all.
    "fairness": {"fairness": True},
    "fairness_weighted": {"fairness": True, "partition_weights": {"k0": 4, "k1": 2, "*": 1}},
}


async def drain(
    app: Chancy, name: str, settings: dict[str, Any], n: int, keys: int
) -> tuple[float, str]:
    queue = await app.declare(
        Queue("bench", executor=Chancy.Executor.Async, **settings), upsert=True
    )
    # (getattr and **: the unlimited variant also runs on a tree without flow control, to
    # compare unlimited queues before and after it.)
    keyed = getattr(queue, "has_partition_limits", False) or getattr(queue, "fairness", False)
    batch = (
        Job(
            func="tests.limits.jobs.noop",
            queue="bench",
            **({"partition_key": f"k{i % keys}"} if keyed else {}),
        )
        for i in range(n)
    )
    async for _ in app.push_many(batch, batch_size=5000):
        pass
    claims: list[tuple[float, int]] = []
    started = time.monotonic()
    real_claim = producer.fetch_claim

    async def timed_claim(*args: Any, **kwargs: Any) -> Any:
        begun = time.perf_counter()
        claim = await real_claim(*args, **kwargs)
        claims.append((time.perf_counter() - begun, len(claim.jobs)))
        return claim

    producer.fetch_claim = timed_claim  # type: ignore[assignment]
    try:
        async with Worker(app, register_signal_handlers=False) as worker:
            while worker.completer.written < n:  # noqa: ASYNC110 (a 5 ms poll is cheap here)
                await asyncio.sleep(0.005)
            elapsed = time.monotonic() - started
    finally:
        producer.fetch_claim = real_claim
    async with await psycopg.AsyncConnection.connect(app.dsn, autocommit=True) as conn:
        for table in ("jobs", "limit_starts", "fair_keys"):
            found = await (
                await conn.execute("SELECT to_regclass(%s)", (f"{app.prefix}{table}",))
            ).fetchone()
            if found and found[0]:
                await conn.execute(f"DELETE FROM {app.prefix}{table}")  # type: ignore[arg-type]
                await conn.execute(f"VACUUM ANALYZE {app.prefix}{table}")  # type: ignore[arg-type]
    detail = (
        f"{len(claims)} claims, {statistics.mean(c[1] for c in claims):.0f} jobs and"
        f" {1000 * statistics.mean(c[0] for c in claims):.1f} ms each"
    )
    return n / elapsed, detail


async def main(dsn: str, n: int, rounds: int, keys: int, only: list[str]) -> None:
    prefix = f"benchlim{os.getpid()}_"
    app = Chancy(dsn, prefix=prefix, no_default_plugins=True, max_connection_pool_size=3)
    results: dict[str, list[float]] = {name: [] for name in only}
    async with app:
        await app.migrate()
        try:
            for _ in range(rounds):
                for name in only:
                    rate, detail = await drain(app, name, VARIANTS[name], n, keys)
                    results[name].append(rate)
                    print(f"  {name:<24} {rate:>8.0f} jobs/s  ({detail})", flush=True)
        finally:
            await app.migrate(to_version=0)
    base = statistics.median(results["unlimited"]) if "unlimited" in results else None
    print(f"\n{n} no-op jobs, one worker, {rounds} rounds, {keys} keys for per-key variants")
    print(f"{'variant':<24} {'median jobs/s':>14} {'vs unlimited':>13}   rounds")
    for name, rates in results.items():
        median = statistics.median(rates)
        ratio = f"{median / base:.2f}" if base else "-"
        shown = ", ".join(f"{r:.0f}" for r in rates)
        print(f"{name:<24} {median:>14.0f} {ratio:>13}   {shown}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("CHANCY_BENCH_DSN", ""))
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--only", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    if not args.dsn:
        parser.error("give --dsn (or CHANCY_BENCH_DSN), preferably a database of its own")
    asyncio.run(main(args.dsn, args.jobs, args.rounds, args.keys, args.only))
