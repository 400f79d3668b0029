"""Flow control: rate limits, global and per-key concurrency, snooze, and the limits' read API.

Several in-process workers, each with its own Chancy and pool, serve one queue; jobs record
their runs in a side table of the test's prefix, and the tests check what ran at once.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import datetime, timedelta

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from chancy import Chancy, Job, Queue, QueuedJob, Worker
from chancy.errors import ConfigurationError, InvalidJobError
from chancy.store.claims import LIMIT_START_MARGIN
from tests.conftest import eventually
from tests.limits import jobs

ASYNC = Chancy.Executor.Async


def J(func: str, queue: str, **kw: object) -> Job:
    return Job(func=f"tests.limits.jobs.{func}", queue=queue, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def side(dsn: str, prefix: str, chancy: Chancy) -> AsyncIterator[AsyncConnectionPool]:  # type: ignore[type-arg]
    """A small pool for the jobs' side-table writes; the tables die with the prefix."""
    pool: AsyncConnectionPool = AsyncConnectionPool(  # type: ignore[type-arg]
        dsn, min_size=1, max_size=3, kwargs={"autocommit": True}, open=False
    )
    await pool.open()
    jobs.SIDE = pool
    jobs.RUNS.clear()
    try:
        yield pool
    finally:
        jobs.SIDE = None
        await pool.close()


async def make_table(pool: AsyncConnectionPool, name: str, columns: str) -> None:  # type: ignore[type-arg]
    jobs.TABLE = name
    async with pool.connection() as conn:
        await conn.execute(
            sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(name), sql.SQL(columns))  # type: ignore[arg-type]
        )


async def fleet(
    stack: AsyncExitStack, dsn: str, prefix: str, n: int, **worker_kw: object
) -> list[Worker]:
    """``n`` workers, each with its own Chancy and a pool of 3 connections."""
    workers = []
    for i in range(n):
        app = await stack.enter_async_context(
            Chancy(dsn, prefix=prefix, no_default_plugins=True, max_connection_pool_size=3)
        )
        worker = Worker(
            app,
            worker_id=f"w{i}",
            register_signal_handlers=False,
            shutdown_timeout=5,
            **worker_kw,  # type: ignore[arg-type]
        )
        await stack.enter_async_context(worker)
        workers.append(worker)
    return workers


async def push(chancy: Chancy, batch: list[Job]) -> list[object]:
    return [ref async for refs in chancy.push_many(batch) for ref in refs]


async def count_states(chancy: Chancy, queue: str) -> dict[str, int]:
    async with chancy.pool.connection() as conn:
        rows = await (
            await conn.execute(
                sql.SQL("SELECT state, count(*) FROM {} WHERE queue = %s GROUP BY state").format(
                    sql.Identifier(f"{chancy.prefix}jobs")
                ),
                (queue,),
            )
        ).fetchall()
    return {state: n for state, n in rows}


async def all_done(chancy: Chancy, queue: str, total: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        states = await count_states(chancy, queue)
        return states.get("succeeded", 0) + states.get("failed", 0) >= total

    return check


def max_in_window(times: list[float], window: float) -> int:
    """The most events any half-open window [t, t + window) holds."""
    times = sorted(times)
    return max((bisect.bisect_left(times, t + window) - i for i, t in enumerate(times)), default=0)


# -- configuration -----------------------------------------------------------------------


async def test_new_queue_fields_round_trip(chancy: Chancy) -> None:
    queue = Queue(
        "rt",
        executor=ASYNC,
        rate_limit=50,
        rate_limit_window=1,
        global_concurrency=3,
        partition_concurrency=2,
        partition_rate_limit=10,
        partition_rate_limit_window=60,
    )
    assert Queue.unpack(queue.pack()) == queue
    assert await chancy.declare(queue) == queue
    assert await chancy.get_queue("rt") == queue
    changed = Queue("rt", executor=ASYNC, global_concurrency=7)
    assert await chancy.declare(changed, upsert=True) == changed
    assert await chancy.get_queue("rt") == changed
    assert Queue.unpack(changed.pack()) == changed
    # Defaults: no limits, and the old pack keys still unpack.
    plain = Queue("plain")
    assert not plain.has_limits
    assert Queue.unpack({"name": "plain"}) == plain
    assert queue.has_limits and queue.has_partition_limits
    assert Queue("g", global_concurrency=1).has_limits


def test_limit_settings_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="go together"):
        Queue("x", partition_rate_limit=5)
    for field in ("global_concurrency", "partition_concurrency"):
        with pytest.raises(ConfigurationError, match=field):
            Queue("x", **{field: 0})  # type: ignore[arg-type]
    with pytest.raises(InvalidJobError, match="partition_key"):
        Job(func="a.b", partition_key="")
    with pytest.raises(InvalidJobError, match="partition_key"):
        Job(func="a.b", partition_key=5)  # type: ignore[arg-type]


async def test_partition_key_round_trips(chancy: Chancy) -> None:
    job = Job(func="a.b", queue="keys").with_partition_key("customer-1")
    assert job.partition_key == "customer-1"
    assert Job.unpack(job.pack()).pack() == job.pack()
    assert Job.unpack(job.pack()).partition_key == "customer-1"
    assert "pk" not in Job(func="a.b").pack()
    # Through the database, by both push paths (multi-row insert and COPY).
    ref = await chancy.push(job)
    stored = await chancy.get_job(ref)
    assert stored is not None and stored.partition_key == "customer-1"
    refs = await push(chancy, [job.with_partition_key(f"c{i}") for i in range(2500)])
    got = await chancy.get_jobs(refs[:3])  # type: ignore[arg-type]
    assert [j.partition_key for j in got] == ["c0", "c1", "c2"]


async def test_keyless_jobs_on_a_keyed_queue_run_under_the_queue_limits_only(
    chancy: Chancy,
    side: AsyncConnectionPool,  # type: ignore[type-arg]
) -> None:
    await make_table(side, f"{chancy.prefix}held", "key text UNIQUE, job_id uuid")
    # Pushed before the queue had per-key limits, and after; by insert and by COPY.
    early = await push(chancy, [J("hold", "kl", kwargs={"seconds": 0.3}) for _ in range(3)])
    await chancy.declare(
        Queue("kl", executor=ASYNC, concurrency=50, partition_concurrency=1, polling_interval=30)
    )
    late = await push(chancy, [J("hold", "kl", kwargs={"seconds": 0.3}) for _ in range(3)])
    bulk = await push(chancy, [J("noop", "kl") for _ in range(2500)])
    async with AsyncExitStack() as stack:
        await fleet(stack, chancy.dsn, chancy.prefix, 1)
        await eventually(await all_done(chancy, "kl", 2506), timeout=60)
    done = await chancy.get_jobs([*early, *late, *bulk[:5]])  # type: ignore[arg-type]
    assert all(j.state == "succeeded" and j.partition_key is None for j in done)
    # Keyless jobs are not limited per key: the six 0.3 s jobs overlapped.
    starts = sorted(start for key, start, _ in jobs.RUNS if key is None)
    assert len(starts) == 6 and starts[-1] - starts[0] < 0.3 * 3, starts


# -- rate limits -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_rate_limit_holds_across_four_workers(
    chancy: Chancy,
    side: AsyncConnectionPool,  # type: ignore[type-arg]
) -> None:
    table = f"{chancy.prefix}starts"
    await make_table(
        side, table, "job_id uuid PRIMARY KEY, started_at timestamptz, recorded_at timestamptz"
    )
    await chancy.declare(
        Queue(
            "rl",
            executor=ASYNC,
            concurrency=20,
            rate_limit=50,
            rate_limit_window=1,
            # Longer than the run: the producers wait as long as the database tells them to.
            polling_interval=60,
        )
    )
    async with AsyncExitStack() as stack:
        # Workers first, so that their start-up does not overlap the run.
        await fleet(stack, chancy.dsn, chancy.prefix, 4)
        begun = time.monotonic()
        await push(chancy, [J("record_start", "rl") for _ in range(2000)])
        await eventually(await all_done(chancy, "rl", 2000), timeout=120, interval=0.2)
        elapsed = time.monotonic() - begun

    async with side.connection() as conn:
        rows = await (
            await conn.execute(
                sql.SQL(
                    "SELECT extract(epoch FROM s.started_at)::float8,"
                    " extract(epoch FROM j.started_at)::float8, j.state,"
                    " extract(epoch FROM s.recorded_at)::float8"
                    " FROM {} AS s JOIN {} AS j ON j.id = s.job_id"
                ).format(sql.Identifier(table), sql.Identifier(f"{chancy.prefix}jobs"))
            )
        ).fetchall()
    assert len(rows) == 2000 and all(r[2] == "succeeded" for r in rows)
    starts = [r[0] for r in rows]
    claims = [r[1] for r in rows]
    assert elapsed >= 39, f"2000 jobs at 50/s took {elapsed:.1f}s"
    assert max(starts) - min(starts) >= 39
    # The limiter's own record: the claims (the jobs' started_at, database time) hold exactly.
    assert max_in_window(claims, 1.0) <= 50, "a one-second window held more than 50 claims"
    # The starts, as the jobs saw them, hold too as long as each worker started its claimed
    # jobs within the limiter's margin (a few ms normally). A worker whose event loop stalls
    # longer (a starved test machine) starts a batch late, into the next batch's window;
    # no limiter in the database can prevent that, so the check is skipped then.
    lags = [start - claim for start, claim in zip(starts, claims, strict=True)]
    if max(lags) - min(lags) <= LIMIT_START_MARGIN:
        assert max_in_window(starts, 1.0) <= 50, "a one-second window held more than 50 starts"
    # The limit is also the pace: not much slower than 50/s (the margin costs 5%).
    assert elapsed < 60, f"2000 jobs at 50/s took {elapsed:.1f}s"
    usage = await chancy.get_limit_usage("rl")
    assert usage["running"] == 0 and 0 <= usage["started_in_window"] <= 50


async def test_a_full_rate_window_survives_new_connections_and_is_logged(
    chancy: Chancy,
) -> None:
    queue = await chancy.declare(Queue("rw", executor=ASYNC, rate_limit=5, rate_limit_window=3600))
    await push(chancy, [J("noop", "rw") for _ in range(8)])
    worker = Worker(chancy, worker_id="w", register_signal_handlers=False)
    async with chancy.pool.connection() as conn:
        first = await worker.fetch_claim(queue, conn, up_to=8)
    assert len(first.jobs) == 5 and first.held and first.full
    assert first.retry_in is not None and 3599 < first.retry_in <= 3600.1
    # A new Chancy (new connections, as after a server restart) sees the same window.
    async with Chancy(
        chancy.dsn, prefix=chancy.prefix, no_default_plugins=True, max_connection_pool_size=1
    ) as other:
        async with other.pool.connection() as conn:
            second = await Worker(other, register_signal_handlers=False).fetch_claim(
                queue, conn, up_to=8
            )
        assert second.jobs == [] and second.held and second.full
        assert second.retry_in is not None and second.retry_in > 3500
    # The window is kept in a logged table, which survives a restart or crash of the server.
    async with chancy.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT relpersistence FROM pg_class WHERE relname = %s",
                (f"{chancy.prefix}limit_starts",),
            )
        ).fetchone()
    assert row is not None and row[0] == "p"
    usage = await chancy.get_limit_usage("rw")
    assert usage["started_in_window"] == 5 and usage["running"] == 5


async def test_a_rate_limited_producer_waits_instead_of_spinning(chancy: Chancy) -> None:
    await chancy.declare(
        Queue(
            "spin",
            executor=ASYNC,
            concurrency=10,
            rate_limit=2,
            rate_limit_window=2,
            polling_interval=30,
        )
    )
    await push(chancy, [J("noop", "spin") for _ in range(6)])
    claims = 0
    async with AsyncExitStack() as stack:
        (worker,) = await fleet(stack, chancy.dsn, chancy.prefix, 1)
        await eventually(lambda: "spin" in worker.served.producers)
        producer = worker.served.producers["spin"]
        real_fetch = producer._fetch

        async def counting_fetch(up_to: int) -> object:
            nonlocal claims
            claims += 1
            return await real_fetch(up_to)

        producer._fetch = counting_fetch  # type: ignore[assignment,method-assign]
        # Pushes to a full queue must not wake it either.
        for _ in range(5):
            await push(chancy, [J("noop", "spin")])
        started = time.monotonic()
        await eventually(await all_done(chancy, "spin", 11), timeout=30, interval=0.1)
        elapsed = time.monotonic() - started
    # 11 jobs at 2 per 2 s: five more windows after the first, each claimed once when its
    # slot frees (computed by the database), not once per push or per loop turn.
    assert 9 <= elapsed < 15, elapsed
    assert claims <= 12, f"{claims} claims for 6 windows"


# -- global concurrency ------------------------------------------------------------------


async def test_global_concurrency_across_four_workers(
    chancy: Chancy,
    side: AsyncConnectionPool,  # type: ignore[type-arg]
) -> None:
    table = f"{chancy.prefix}running"
    await make_table(side, table, "key text, job_id uuid")
    # A poll would come only after the whole run: slots are refilled by the wake-ups alone.
    polling = 30.0
    await chancy.declare(
        Queue(
            "gc",
            executor=ASYNC,
            concurrency=10,
            global_concurrency=3,
            polling_interval=polling,
        )
    )
    n, seconds = 60, 0.1

    samples: list[int] = []
    stop = asyncio.Event()

    async def sample() -> None:
        async with await psycopg.AsyncConnection.connect(chancy.dsn, autocommit=True) as conn:
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            while not stop.is_set():
                row = await (await conn.execute(query)).fetchone()
                samples.append(row[0] if row else 0)
                await asyncio.sleep(0.002)

    sampler = asyncio.create_task(sample())
    try:
        async with AsyncExitStack() as stack:
            await fleet(stack, chancy.dsn, chancy.prefix, 4)
            await push(chancy, [J("hold", "gc", kwargs={"seconds": seconds}) for _ in range(n)])
            await eventually(await all_done(chancy, "gc", n), timeout=60, interval=0.05)
    finally:
        stop.set()
        await sampler

    assert len(samples) > 100 and max(samples) <= 3, f"max sampled running: {max(samples)}"
    assert (await count_states(chancy, "gc")) == {"succeeded": n}
    runs = sorted(jobs.RUNS, key=lambda r: r[1])
    assert len(runs) == n
    # Never more than three at once, by the jobs' own clocks either.
    events = sorted([(s, 1) for _, s, _ in runs] + [(e, -1) for _, _, e in runs])
    level, peak = 0, 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    assert peak == 3
    # Throughput at the limit: while work waited (until the last start), fewer than three ran
    # only briefly (about 20 ms per hand-over here; the bound leaves room for a loaded machine,
    # and is far below the polling interval that a missed wake-up would cost).
    last_start = runs[-1][1]
    level, gap_since, longest = 0, None, 0.0
    for t, step in events:
        if t > last_start:
            break
        level += step
        if level < 3 and gap_since is None:
            gap_since = t
        elif level >= 3 and gap_since is not None:
            longest = max(longest, t - gap_since)
            gap_since = None
    assert longest < 2.0, f"an idle slot lasted {longest:.3f}s while work waited"
    # And the slots stayed busy overall: about 20 ms per hand-over here (2.4 s in all); the
    # bound, 100 ms per hand-over, leaves room for a loaded machine.
    span = runs[-1][2] - runs[0][1]
    ideal = n * seconds / 3
    assert span < ideal + n * 0.1, f"{n} jobs took {span:.2f}s at concurrency 3 (ideal {ideal}s)"


async def test_a_crashed_workers_running_jobs_count_until_recovered(chancy: Chancy) -> None:
    queue = await chancy.declare(Queue("cr", executor=ASYNC, global_concurrency=2))
    await push(chancy, [J("noop", "cr") for _ in range(4)])
    # A worker that claimed two jobs and died: its rows stay running.
    ghost = Worker(chancy, worker_id="ghost", register_signal_handlers=False)
    async with chancy.pool.connection() as conn:
        assert len(await ghost.fetch_jobs(queue, conn, up_to=10)) == 2
    live = Worker(chancy, worker_id="live", register_signal_handlers=False)
    async with chancy.pool.connection() as conn:
        held = await live.fetch_claim(queue, conn, up_to=10)
    assert held.jobs == [] and held.held and held.full
    assert held.wake_ids is not None and len(held.wake_ids) == 2
    assert (await chancy.get_limit_usage("cr"))["running"] == 2
    # Recovery gives them back (pending, no claim): the slots are free again.
    async with chancy.pool.connection() as conn:
        await conn.execute(
            sql.SQL(
                "UPDATE {} SET state = 'pending', taken_by = NULL, claim_id = NULL,"
                " started_at = NULL, recoveries = recoveries + 1 WHERE taken_by = 'ghost'"
            ).format(sql.Identifier(f"{chancy.prefix}jobs"))
        )
        again = await live.fetch_claim(queue, conn, up_to=10)
    assert len(again.jobs) == 2


# -- per-key limits ----------------------------------------------------------------------


async def test_per_key_concurrency_keeps_other_keys_flowing(
    chancy: Chancy,
    side: AsyncConnectionPool,  # type: ignore[type-arg]
) -> None:
    # The side table's unique key makes a second concurrent run of one key fail its job.
    await make_table(side, f"{chancy.prefix}held", "key text UNIQUE, job_id uuid")
    await chancy.declare(
        Queue(
            "pk",
            executor=ASYNC,
            concurrency=10,
            partition_concurrency=1,
            polling_interval=30,
        )
    )
    # The slow key's 50 jobs are at the front of the queue (pushed first, higher priority).
    slow = [
        J("hold", "pk", kwargs={"seconds": 0.1}, priority=1, partition_key="k0") for _ in range(50)
    ]
    fast = [
        J("hold", "pk", kwargs={"seconds": 0.0}, partition_key=f"k{1 + i % 9}") for i in range(450)
    ]
    await push(chancy, slow)
    await push(chancy, fast)
    async with AsyncExitStack() as stack:
        await fleet(stack, chancy.dsn, chancy.prefix, 3)
        await eventually(await all_done(chancy, "pk", 500), timeout=90, interval=0.05)
    assert (await count_states(chancy, "pk")) == {"succeeded": 500}, "a key ran twice at once"

    by_key: dict[str | None, list[tuple[float, float]]] = {}
    for key, start, end in jobs.RUNS:
        by_key.setdefault(key, []).append((start, end))
    assert sorted(by_key, key=str) == [f"k{i}" for i in range(10)]
    for key, runs in by_key.items():
        runs.sort()
        for (_, end), (start, _) in itertools.pairwise(runs):
            assert start >= end, f"two jobs of key {key} overlapped"
    # The other keys drained while the slow key still had most of its backlog.
    fast_done = max(end for key, runs in by_key.items() if key != "k0" for _, end in runs)
    slow_done_by_then = sum(1 for _, end in by_key["k0"] if end <= fast_done)
    assert slow_done_by_then < 40, (
        f"the slow key had finished {slow_done_by_then} of 50 when the others were done"
    )


async def test_per_key_rate_limit(chancy: Chancy) -> None:
    queue = await chancy.declare(
        Queue(
            "pr",
            executor=ASYNC,
            partition_rate_limit=2,
            partition_rate_limit_window=60,
        )
    )
    await push(
        chancy,
        [J("noop", "pr", partition_key=f"k{i % 3}") for i in range(12)]
        + [J("noop", "pr") for _ in range(2)],
    )
    worker = Worker(chancy, worker_id="w", register_signal_handlers=False)
    async with chancy.pool.connection() as conn:
        first = await worker.fetch_claim(queue, conn, up_to=20)
        second = await worker.fetch_claim(queue, conn, up_to=20)
    keys = sorted(str(j.partition_key) for j in first.jobs)
    # Two per key in the window, and keyless jobs are limited only by the queue.
    assert keys == ["None", "None", "k0", "k0", "k1", "k1", "k2", "k2"]
    assert first.held and not first.full
    assert second.jobs == [] and second.held
    assert second.retry_in is not None and 59 < second.retry_in <= 60.1
    usage = await chancy.get_limit_usage("pr")
    assert usage["partitions"] == {
        f"k{i}": {"running": 2, "started_in_window": 2} for i in range(3)
    }
    assert usage["running"] == 8 and usage["started_in_window"] is None


async def test_the_key_skip_scan_finds_other_keys_behind_a_large_blocked_key(
    chancy: Chancy,
) -> None:
    queue = await chancy.declare(Queue("big", executor=ASYNC, partition_concurrency=1))
    await push(chancy, [J("noop", "big", priority=5, partition_key="a") for _ in range(5000)])
    await push(chancy, [J("noop", "big", partition_key=f"z{i}") for i in range(20)])
    worker = Worker(chancy, worker_id="w", register_signal_handlers=False)
    async with chancy.pool.connection() as conn:
        first = await worker.fetch_claim(queue, conn, up_to=100)
        started = time.monotonic()
        second = await worker.fetch_claim(queue, conn, up_to=100)
        took = time.monotonic() - started
    assert len(first.jobs) == 21 and first.jobs[0].partition_key == "a"
    assert second.jobs == [] and second.held
    # One descent per key, not a scan of key a's 5000 waiting jobs (generous bound).
    assert took < 0.5, took


# -- snooze ------------------------------------------------------------------------------


async def test_snooze_delays_without_using_an_attempt_or_adding_an_error(
    chancy: Chancy,
) -> None:
    await chancy.declare(Queue("sn", executor=ASYNC, polling_interval=0.2))
    ref = await chancy.push(J("snooze_first", "sn", kwargs={"delay": 1.5}, max_attempts=1))
    async with AsyncExitStack() as stack:
        await fleet(stack, chancy.dsn, chancy.prefix, 1)
        job = (await chancy.wait_for_jobs([ref], timeout=20, interval=0.1))[0]
    assert job.state == QueuedJob.State.SUCCEEDED and job.result == "ran again"
    assert job.attempts == 1 and job.errors == [] and job.meta["snoozed"] == 1
    first = datetime.fromisoformat(job.meta["first_started_at"])
    assert job.started_at is not None
    delay = job.started_at - first
    assert timedelta(seconds=1.5) <= delay < timedelta(seconds=1.5 + 0.2 + 1.0), delay


# -- unlimited queues --------------------------------------------------------------------


async def test_unlimited_queues_never_take_the_limited_path(
    chancy: Chancy, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an unlimited queue took the limited claim path")

    monkeypatch.setattr(chancy.store, "job_fetch_limited", refuse)
    queue = await chancy.declare(Queue("free", executor=ASYNC))
    await push(chancy, [J("noop", "free") for _ in range(3)])
    worker = Worker(chancy, worker_id="w", register_signal_handlers=False)
    async with chancy.pool.connection() as conn:
        claim = await worker.fetch_claim(queue, conn, up_to=10)
    assert len(claim.jobs) == 3 and not claim.held
    stored = await chancy.get_queue("free")
    assert not stored.has_limits
