"""The workloads W1-W6 (and flow control), each measured against the W4 reference.

Every workload runs on its own table prefix, created fresh and dropped afterwards. Each
repetition measures the reference and chancy back to back, so a ratio compares two figures
taken under the same load on this (shared, noisy) machine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from bench import procs, reference
from bench.db import connect, installation, queries
from bench.drain import Drainer, Setup, push_backlog, reset_jobs
from bench.results import Figure, Results
from bench.stats import percentile
from chancy import Chancy, Job, Queue
from chancy.store import run

ASYNC = Chancy.Executor.Async

#: Every table prefix of this run starts with this, so two runs on one database (a
#: developer's and a test's) cannot drop each other's tables.
RUN = f"bench{os.getpid() % 100000}_"


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How big each workload is; ``quick`` is for smoke tests only."""

    push: int = 100_000
    drain_async: int = 50_000
    drain_other: int = 20_000
    latency_count: int = 2_000
    latency_rate: float = 200.0
    scale_finished: int = 5_000_000
    scale_waiting: int = 1_000_000
    scale_claims: int = 300
    scale_seconds: float = 5.0
    fleet: int = 50_000
    reps: int = 3

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            push=5_000,
            drain_async=3_000,
            drain_other=1_000,
            latency_count=200,
            scale_finished=20_000,
            scale_waiting=20_000,
            scale_claims=30,
            scale_seconds=1.0,
            fleet=3_000,
            reps=1,
        )


#: The tuned settings: the most concurrency the async executor can use here, a pool with
#: room for the producer, the completer and the plugins, and eager claiming.
TUNED_WORKER = {"pool_max": 10, "completer_batch_size": 1000, "completer_interval": 0.005}


def tuned_queue(name: str) -> Queue:
    return Queue(name, executor=ASYNC, concurrency=500, polling_interval=1)


def at_least(threshold: float, *, ratio: bool = False) -> Callable[[Figure], bool]:
    def check(f: Figure) -> bool:
        return (f.ratios.median if ratio else f.summary.median) >= threshold

    return check


def at_most(threshold: float) -> Callable[[Figure], bool]:
    return lambda f: f.summary.median <= threshold


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- W1 -------------------------------------------------------------------------------


async def w1_push(dsn: str, sizes: Sizes, results: Results) -> None:
    """push_many of N no-op jobs: the COPY path, the default batch size, unique keys."""
    prefix = f"{RUN}w1_"
    n = sizes.push
    plain = [Job(func="bench.jobs.noop", queue="push", kwargs={"n": i}) for i in range(n)]
    unique = [
        Job(func="bench.jobs.noop", queue="push", kwargs={"n": i}, unique_key=f"k{i}")
        for i in range(n)
    ]
    cases = [
        ("push_many, batch_size=10000 (COPY)", plain, 10_000, at_least(200_000), ">= 200,000/s"),
        ("push_many, default batch_size", plain, None, None, ""),
        ("push_many with unique keys", unique, None, at_least(50_000), ">= 50,000/s"),
    ]
    ref_values: list[float] = []
    values: dict[str, list[float]] = {c[0]: [] for c in cases}
    async with installation(dsn, prefix) as app:
        await reference.setup(dsn, prefix)
        try:
            for rep in range(sizes.reps):
                ref_values.append(await reference.copy_rate(dsn, prefix, n))
                for label, jobs, batch, _, _ in cases:
                    await reset_jobs(dsn, prefix)
                    kwargs = {} if batch is None else {"batch_size": batch}
                    start = time.perf_counter()
                    async for _ in app.push_many(jobs, **kwargs):
                        pass
                    values[label].append(n / (time.perf_counter() - start))
                log(
                    f"W1 rep {rep + 1}: reference COPY {ref_values[-1]:,.0f}/s, "
                    + ", ".join(f"{k}: {v[-1]:,.0f}/s" for k, v in values.items())
                )
                await reset_jobs(dsn, prefix)
        finally:
            await reference.teardown(dsn, prefix)
    for label, _, _, check, target in cases:
        results.add(
            Figure(
                "W1",
                label,
                "jobs/s",
                values[label],
                ref_values,
                "W4 COPY into a plain table",
                target=target,
                check=check,
            )
        )


# -- W2 -------------------------------------------------------------------------------


async def w2_drain(dsn: str, sizes: Sizes, results: Results) -> dict[str, Figure]:
    """One worker drains N queued no-op jobs: tuned and default async, thread, process."""
    prefix = f"{RUN}w2_"
    setups = [
        (Setup("async, tuned", tuned_queue("tuned"), worker=TUNED_WORKER), sizes.drain_async),
        (Setup("async, default settings", Queue("defaults", executor=ASYNC)), sizes.drain_async),
        (
            Setup(
                "thread executor",
                Queue("threads", executor=Chancy.Executor.Threaded, concurrency=16),
                func="bench.jobs.noop_sync",
                worker=TUNED_WORKER,
            ),
            sizes.drain_other,
        ),
        (
            Setup(
                "process executor",
                Queue("procs", executor=Chancy.Executor.Process),
                func="bench.jobs.noop_sync",
                worker=TUNED_WORKER,
            ),
            sizes.drain_other,
        ),
    ]
    figures: dict[str, Figure] = {}
    async with installation(dsn, prefix) as app:
        await reference.setup(dsn, prefix)
        try:
            for setup, n in setups:
                values: list[float] = []
                refs: list[float] = []
                async with Drainer(app, dsn, setup, timeout=max(120.0, n / 100)) as drainer:
                    for rep in range(sizes.reps):
                        ref = await reference.drain(dsn, prefix, sizes.drain_async)
                        got = await drainer.run(n)
                        refs.append(ref["rate"])
                        values.append(got["rate"])
                        if rep == 0:
                            results.series[f"chancy {setup.name}"] = got["series"]
                            if "W4 reference" not in results.series:
                                results.series["W4 reference"] = ref["series"]
                        log(
                            f"W2 {setup.name} rep {rep + 1}: {got['rate']:,.0f}/s"
                            f" (reference {ref['rate']:,.0f}/s)"
                        )
                figure = Figure(
                    "W2",
                    f"drain {n:,} no-op jobs, {setup.name}",
                    "jobs/s",
                    values,
                    refs,
                    "W4 one-connection drain",
                )
                if setup.name == "async, tuned":
                    figure.target = ">= 60% of W4"
                    figure.check = at_least(0.6, ratio=True)
                elif setup.name == "async, default settings":
                    figure.target = ">= 30% of W4 (half of the tuned target)"
                    figure.check = at_least(0.3, ratio=True)
                elif setup.name == "process executor":
                    figure.target = ">= 5,000/s"
                    figure.check = at_least(5000)
                results.add(figure)
                figures[setup.name] = figure
        finally:
            await reference.teardown(dsn, prefix)
    return figures


# -- W3 -------------------------------------------------------------------------------


async def w3_latency(dsn: str, sizes: Sizes, results: Results) -> None:
    """Start minus push time for single pushes at a steady rate from another process."""
    prefix = f"{RUN}w3_"
    queue = "latency"
    count, rate = sizes.latency_count, sizes.latency_rate
    stats: dict[str, list[float]] = {k: [] for k in ("p50", "p95", "p99", "max")}
    ref_stats: dict[str, list[float]] = {k: [] for k in stats}
    all_chancy: list[float] = []
    all_ref: list[float] = []
    async with installation(dsn, prefix) as app:
        await app.declare(Queue(queue, executor=ASYNC), upsert=True)
        await reference.setup(dsn, prefix)
        try:
            for rep in range(sizes.reps):
                ref_lat = await _reference_latency(dsn, prefix, count, rate)
                lat = await _chancy_latency(app, dsn, prefix, queue, count, rate)
                for summary, data in ((stats, lat), (ref_stats, ref_lat)):
                    for key, p in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100)):
                        summary[key].append(percentile(data, p) * 1000)
                if rep == 0:
                    all_chancy, all_ref = lat, ref_lat
                log(
                    f"W3 rep {rep + 1}: p50 {stats['p50'][-1]:.2f} ms, p99 {stats['p99'][-1]:.2f}"
                    f" ms (reference p50 {ref_stats['p50'][-1]:.2f} ms)"
                )
                await reset_jobs(dsn, prefix)
        finally:
            await reference.teardown(dsn, prefix)
    results.latencies["chancy (default async queue)"] = all_chancy
    results.latencies["W4 reference (LISTEN + claim)"] = all_ref
    targets = {"p50": (3.0, "<= 3 ms"), "p99": (10.0, "<= 10 ms")}
    for key in ("p50", "p95", "p99", "max"):
        threshold, target = targets.get(key, (None, ""))
        results.add(
            Figure(
                "W3",
                f"start - push latency {key}, {count:,} pushes at {rate:g}/s",
                "ms",
                stats[key],
                ref_stats[key],
                "W4 INSERT + NOTIFY, LISTEN consumer",
                higher_is_better=False,
                target=target,
                check=at_most(threshold) if threshold is not None else None,
            )
        )


async def _chancy_latency(
    app: Chancy, dsn: str, prefix: str, queue: str, count: int, rate: float
) -> list[float]:
    fd, path = tempfile.mkstemp(prefix="chancy-bench-", suffix=".json")
    os.close(fd)
    try:
        settings = {"queues": [queue], "latency_out": path}
        async with procs.workers(dsn, prefix, settings):
            # Let the worker settle (first claim done, idle, waiting for NOTIFY).
            await asyncio.sleep(0.5)

            async def push(t: float) -> None:
                await app.push(Job(func="bench.jobs.record_start", queue=queue, kwargs={"t": t}))

            await reference.trickle(dsn, prefix, count=count, rate=rate, push=push)
            conn = await connect(dsn)
            async with conn:
                from bench.db import wait_drained

                await wait_drained(conn, prefix, timeout=60)
        latencies = await asyncio.to_thread(_read_json, path)
    finally:
        os.unlink(path)
    if len(latencies) != count:
        raise RuntimeError(f"W3: {len(latencies)} of {count} jobs recorded a start")
    return latencies


def _read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


async def _reference_latency(dsn: str, prefix: str, count: int, rate: float) -> list[float]:
    fd, path = tempfile.mkstemp(prefix="chancy-bench-ref-", suffix=".json")
    os.close(fd)
    proc = procs.spawn("bench.reference", ["consume", dsn, prefix, path])
    try:
        await procs.wait_line(proc, "ready")
        await asyncio.sleep(0.5)
        await reference.trickle(dsn, prefix, count=count, rate=rate)
        await reference.wait_consumed(dsn, prefix, timeout=60)
        await procs.stop([proc])
        latencies = await asyncio.to_thread(_read_json, path)
        conn = await connect(dsn)
        async with conn:
            await conn.execute(queries(prefix)["ref_truncate"])
    finally:
        if proc.poll() is None:
            proc.kill()
        os.unlink(path)
    if len(latencies) != count:
        raise RuntimeError(f"W3 reference: {len(latencies)} of {count} jobs recorded")
    return latencies


# -- W5 -------------------------------------------------------------------------------


async def w5_scale(dsn: str, sizes: Sizes, results: Results, small: Figure | None = None) -> None:
    """Claim latency and drain rate with many finished and waiting jobs in the table."""
    prefix = f"{RUN}w5_"
    queue = "scale"
    finished, waiting = sizes.scale_finished, sizes.scale_waiting
    async with installation(dsn, prefix) as app:
        await reference.setup(dsn, prefix)
        try:
            # The small table first: only the jobs the claims take.
            await push_backlog(app, queue, "bench.jobs.noop", sizes.scale_claims * 100)
            small_claims = await _claim_latencies(app, dsn, prefix, queue, sizes.scale_claims)
            await reset_jobs(dsn, prefix)
            start = time.monotonic()
            await _load(dsn, prefix, queue, finished, waiting)
            results.timings["W5 load"] = time.monotonic() - start
            conn = await connect(dsn)
            async with conn:
                cur = await conn.execute(queries(prefix)["scale_table_size"])
                size = await cur.fetchone()
            assert size is not None
            results.info["W5 table"] = (
                f"{size['rows']:,} rows, heap {size['heap'] / 2**20:,.0f} MiB, with indexes"
                f" {size['total'] / 2**20:,.0f} MiB"
            )
            log(f"W5 loaded {size['rows']:,} rows in {results.timings['W5 load']:.0f}s")
            claim_p50, claim_p99, ref_p50, ref_p99 = [], [], [], []
            rates, ref_rates = [], []
            setup = Setup("scale", tuned_queue(queue), worker=TUNED_WORKER)
            await app.declare(setup.queue, upsert=True)
            for rep in range(sizes.reps):
                ref = await reference.drain(dsn, prefix, sizes.drain_async)
                big = await _claim_latencies(app, dsn, prefix, queue, sizes.scale_claims)
                claim_p50.append(percentile(big, 50) * 1000)
                claim_p99.append(percentile(big, 99) * 1000)
                ref_p50.append(percentile(ref["claims"], 50) * 1000)
                ref_p99.append(percentile(ref["claims"], 99) * 1000)
                rates.append(await _timed_drain(app, dsn, prefix, setup, sizes.scale_seconds))
                ref_rates.append(ref["rate"])
                log(
                    f"W5 rep {rep + 1}: claim p99 {claim_p99[-1]:.2f} ms, drain"
                    f" {rates[-1]:,.0f}/s (reference {ref_rates[-1]:,.0f}/s)"
                )
        finally:
            await reference.teardown(dsn, prefix)
    label = f"{finished:,} finished + {waiting:,} waiting"
    small_p99 = percentile(small_claims, 99) * 1000
    results.add(
        Figure(
            "W5",
            f"claim of 100, p50, {label}",
            "ms",
            claim_p50,
            ref_p50,
            "W4 claim of 100 on a small plain table",
            higher_is_better=False,
            note=f"small table (no finished jobs): p50 {percentile(small_claims, 50) * 1000:.2f}"
            " ms",
        )
    )
    results.add(
        Figure(
            "W5",
            f"claim of 100, p99, {label}",
            "ms",
            claim_p99,
            ref_p99,
            "W4 claim of 100 on a small plain table",
            higher_is_better=False,
            target="< 5 ms",
            check=lambda f: f.summary.median < 5,
            note=f"small table (no finished jobs): p99 {small_p99:.2f} ms",
        )
    )
    drain = Figure(
        "W5",
        f"drain rate (async, tuned), {label}",
        "jobs/s",
        rates,
        ref_rates,
        "W4 one-connection drain",
    )
    if small is not None:
        # Compared through the ratios to the reference (the W2 drain ran minutes earlier).
        small_ratio = small.ratios.median
        drain.target = f">= 80% of the small-table rate (W2 async tuned: ratio {small_ratio:.2f})"
        drain.check = lambda f: f.ratios.median >= 0.8 * small_ratio
        drain.note = (
            f"{drain.ratios.median / small_ratio:.0%} of the W2 tuned rate, by ratio to W4"
            f" ({drain.summary.median / small.summary.median:.0%} by absolute medians)"
        )
    results.add(drain)


async def _claim_latencies(
    app: Chancy, dsn: str, prefix: str, queue: str, claims: int
) -> list[float]:
    """Time ``claims`` claims of 100 jobs, as a worker makes them; then finish those jobs."""
    worker_id = f"bench-claims-{uuid.uuid4()}"
    pool = await app.open()
    times: list[float] = []
    async with pool.connection() as conn:
        async with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            for _ in range(claims):
                start = time.perf_counter()
                got = await run(cur, app.store.job_fetch(queue, 100, worker_id))
                times.append(time.perf_counter() - start)
                if len(got) < 100:
                    raise RuntimeError("W5: the table ran out of waiting jobs")
            await cur.execute(queries(prefix)["jobs_finish_running"], {"worker_id": worker_id})
    return times


async def _timed_drain(app: Chancy, dsn: str, prefix: str, setup: Setup, seconds: float) -> float:
    """Let one worker drain the backlog for ``seconds``; its rate from the database clock."""
    q = queries(prefix)
    conn = await connect(dsn)
    async with conn:
        cur = await conn.execute(q["db_now"])
        row = await cur.fetchone()
        assert row is not None
        since = row["now"]
        settings = {**setup.worker, "queues": [setup.queue.name]}
        async with procs.workers(dsn, prefix, settings):
            await asyncio.sleep(seconds)
        cur = await conn.execute(q["jobs_drained_since"], {"since": since})
        row = await cur.fetchone()
    assert row is not None
    if not row["n"]:
        raise RuntimeError("W5: the worker finished no job")
    return int(row["n"]) / float(row["last_done"] - row["first_start"])


async def _load(dsn: str, prefix: str, queue: str, finished: int, waiting: int) -> None:
    """Bulk-load finished and waiting jobs directly, secondary indexes rebuilt after."""
    q = queries(prefix)
    # Ids and times as chancy makes them: time-ordered, finished ones two hours ago.
    now_ms = int(time.time() * 1000)
    base_ms = now_ms - 2 * 3600 * 1000
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        rows = await (await conn.execute(q["scale_secondary_indexes"])).fetchall()
        for name, _ in rows:
            await conn.execute(
                psycopg.sql.SQL("DROP INDEX {}").format(psycopg.sql.Identifier(*name.split(".")))
            )
        chunk = 1_000_000
        for offset in range(0, finished, chunk):
            await conn.execute(
                q["scale_load_finished"],
                {
                    "n": min(chunk, finished - offset),
                    "ms": base_ms + offset // 1000,
                    "base": offset,
                    "queue": queue,
                },
            )
        await conn.execute(
            q["scale_load_waiting"],
            {"n": waiting, "ms": now_ms - 60_000, "base": finished, "queue": queue},
        )
        for _, definition in rows:
            await conn.execute(definition)
        await conn.execute(q["vacuum_analyze_jobs"])


# -- W6 -------------------------------------------------------------------------------


async def w6_fleet(dsn: str, sizes: Sizes, results: Results) -> None:
    """1, 2 and 4 worker processes draining one queue."""
    prefix = f"{RUN}w6_"
    n = sizes.fleet
    by_count: dict[int, Figure] = {}
    async with installation(dsn, prefix, pool=4) as app:
        await reference.setup(dsn, prefix)
        try:
            for count in (1, 2, 4):
                setup = Setup(
                    f"{count} workers",
                    tuned_queue("fleet"),
                    worker={**TUNED_WORKER, "pool_max": 6},
                    workers=count,
                )
                values, refs = [], []
                async with Drainer(app, dsn, setup, timeout=max(120.0, n / 100)) as drainer:
                    for rep in range(sizes.reps):
                        ref = await reference.drain(dsn, prefix, sizes.drain_async)
                        got = await drainer.run(n)
                        values.append(got["rate"])
                        refs.append(ref["rate"])
                        log(f"W6 {count} worker(s) rep {rep + 1}: {got['rate']:,.0f}/s")
                by_count[count] = results.add(
                    Figure(
                        "W6",
                        f"{count} worker process{'es' if count > 1 else ''}, drain {n:,} (async,"
                        " tuned)",
                        "jobs/s",
                        values,
                        refs,
                        "W4 one-connection drain",
                    )
                )
        finally:
            await reference.teardown(dsn, prefix)
    # Judged on the ratios to the reference: the absolute rates of different minutes on this
    # shared machine are not comparable.
    for count, previous in ((2, 1), (4, 2)):
        fig, prev = by_count[count], by_count[previous]
        fig.target = f"ratio not below {previous} worker{'s' if previous > 1 else ''}"
        fig.check = lambda f, prev=prev: f.ratios.median >= prev.ratios.median
        fig.note = (
            f"ratio {fig.ratios.median / prev.ratios.median:.2f}x the {previous}-worker ratio"
            f" (absolute medians {fig.summary.median / prev.summary.median:.2f}x)"
        )


# -- flow control ---------------------------------------------------------------------


async def flow_control(dsn: str, sizes: Sizes, results: Results) -> None:
    """Drain cost of each limit (set far above the drain rate) against an unlimited queue.

    The limits are never reached, so the figures show what enforcing them costs: the claim
    lock, the counting, the start log and, per key, the walk over the keys with waiting jobs.
    """
    prefix = f"{RUN}fc_"
    n = sizes.drain_async
    keys = 100
    never = 10_000_000
    cases: list[tuple[str, Queue, int]] = [
        ("unlimited", tuned_queue("unlimited"), 0),
        (
            f"rate_limit {never:,} per 1 s",
            dataclasses.replace(tuned_queue("rated"), rate_limit=never, rate_limit_window=1),
            0,
        ),
        (
            "global_concurrency 100,000",
            dataclasses.replace(tuned_queue("capped"), global_concurrency=100_000),
            0,
        ),
        (
            f"partition_concurrency 100,000, {keys} keys",
            dataclasses.replace(tuned_queue("keyed"), partition_concurrency=100_000),
            keys,
        ),
        (
            f"partition_rate_limit {never:,} per 1 s, {keys} keys",
            dataclasses.replace(
                tuned_queue("keyrated"),
                partition_rate_limit=never,
                partition_rate_limit_window=1,
            ),
            keys,
        ),
        (
            f"all four limits, {keys} keys",
            dataclasses.replace(
                tuned_queue("all"),
                rate_limit=never,
                rate_limit_window=1,
                global_concurrency=100_000,
                partition_concurrency=100_000,
                partition_rate_limit=never,
                partition_rate_limit_window=1,
            ),
            keys,
        ),
    ]
    rates: dict[str, list[float]] = {}
    refs: dict[str, list[float]] = {}
    async with installation(dsn, prefix) as app:
        await reference.setup(dsn, prefix)
        try:
            drainers = []
            for label, queue, nkeys in cases:
                drainers.append(
                    (
                        label,
                        Drainer(
                            app,
                            dsn,
                            Setup(label, queue, worker=TUNED_WORKER, keys=nkeys),
                            timeout=max(120.0, n / 100),
                        ),
                    )
                )
            for label, drainer in drainers:
                async with drainer:
                    for _rep in range(sizes.reps):
                        ref = await reference.drain(dsn, prefix, n)
                        refs.setdefault(label, []).append(ref["rate"])
                        rates.setdefault(label, []).append((await drainer.run(n))["rate"])
                log(f"flow control {label}: {rates[label]}")
        finally:
            await reference.teardown(dsn, prefix)
    base: Figure | None = None
    for label, _, _ in cases:
        fig = Figure(
            "flow",
            f"drain {n:,}, {label}",
            "jobs/s",
            rates[label],
            refs[label],
            "W4 one-connection drain",
        )
        if base is None:
            base = fig
        else:
            fig.note = f"{fig.ratios.median / base.ratios.median:.0%} of unlimited, by ratio to W4"
        results.add(fig)


__all__ = [
    "Sizes",
    "flow_control",
    "w1_push",
    "w2_drain",
    "w3_latency",
    "w5_scale",
    "w6_fleet",
]
