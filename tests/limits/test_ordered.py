"""Strict order per partition key (``Queue(partition_ordered=True)``).

The claim-level tests make claims as a worker does (``fetch_claim``) and write job states
directly, to pin down which job each claim may take; the drains run real workers.
"""

from __future__ import annotations

import collections
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from chancy import Chancy, Job, Queue, QueuedJob
from chancy.errors import ConfigurationError
from chancy.runtime.producer import fetch_claim
from tests.conftest import eventually
from tests.limits import jobs
from tests.limits.test_limits import fleet, make_table

NOOP = "tests.limits.jobs.noop"


@pytest.fixture
async def conn(chancy: Chancy) -> AsyncIterator[Any]:
    pool = await chancy.open()
    async with pool.connection() as c:
        yield c


async def declare(chancy: Chancy, **settings: Any) -> Queue:
    return await chancy.declare(Queue("ord", partition_ordered=True, **settings), upsert=True)


async def claim(chancy: Chancy, queue: Queue, conn: Any, n: int = 10) -> list[QueuedJob]:
    return (await fetch_claim(chancy, f"w-{uuid.uuid4()}", queue, conn, up_to=n)).jobs


async def set_state(chancy: Chancy, conn: Any, job_id: str, state: str, **extra: Any) -> None:
    sets = ", ".join(f"{k} = %({k})s" for k in extra)
    await conn.execute(
        sql.SQL(
            "UPDATE {} SET state = %(state)s, taken_by = NULL, claim_id = NULL"
            + (", " + sets if sets else "")
            + " WHERE id = %(id)s"
        ).format(sql.Identifier(f"{chancy.prefix}jobs")),
        {"state": state, "id": job_id, **extra},
    )


def job(key: str | None, **kw: Any) -> Job:
    j = Job(func=NOOP, queue="ord", **kw)
    return j.with_partition_key(key) if key is not None else j


async def test_one_job_per_key_at_a_time_in_push_order(chancy: Chancy, conn: Any) -> None:
    queue = await declare(chancy)
    a1 = await chancy.push(job("a"))
    a2 = await chancy.push(job("a", priority=10))  # priority does not jump the key's queue
    b1 = await chancy.push(job("b"))
    first = await claim(chancy, queue, conn)
    assert {j.id for j in first} == {a1.identifier, b1.identifier}
    assert await claim(chancy, queue, conn) == []  # both keys are busy
    await set_state(chancy, conn, a1.identifier, "succeeded")
    assert [j.id for j in await claim(chancy, queue, conn)] == [a2.identifier]


async def test_a_scheduled_job_holds_its_key_and_the_worker_is_told_when(
    chancy: Chancy, conn: Any
) -> None:
    queue = await declare(chancy)
    later = await chancy.push(
        job("a").with_scheduled_at(await chancy_now(conn) + timedelta(hours=1))
    )
    await chancy.push(job("a"))
    other = await chancy.push(job("b"))
    got = await fetch_claim(chancy, "w", queue, conn, up_to=10)
    assert [j.id for j in got.jobs] == [other.identifier]
    assert got.held
    assert got.retry_in is not None and 3500 < got.retry_in <= 3600
    assert later.identifier not in {j.id for j in got.jobs}


async def chancy_now(conn: Any) -> Any:
    cur = await conn.execute("SELECT now()")
    return (await cur.fetchone())[0]


async def test_a_job_waiting_for_its_retry_holds_its_key(chancy: Chancy, conn: Any) -> None:
    queue = await declare(chancy)
    a1 = await chancy.push(job("a", max_attempts=3))
    a2 = await chancy.push(job("a"))
    assert [j.id for j in await claim(chancy, queue, conn)] == [a1.identifier]
    soon = await chancy_now(conn) + timedelta(hours=1)
    await set_state(chancy, conn, a1.identifier, "retrying", scheduled_at=soon, attempts=1)
    assert await claim(chancy, queue, conn) == []
    await set_state(chancy, conn, a1.identifier, "retrying", scheduled_at=await chancy_now(conn))
    assert [j.id for j in await claim(chancy, queue, conn)] == [a1.identifier]
    await set_state(chancy, conn, a1.identifier, "succeeded")
    assert [j.id for j in await claim(chancy, queue, conn)] == [a2.identifier]


@pytest.mark.parametrize("mode", ["continue", "hold"])
async def test_a_final_failure_continues_or_holds_the_key(
    chancy: Chancy, conn: Any, mode: str
) -> None:
    queue = await declare(chancy, partition_on_failure=mode)
    a1 = await chancy.push(job("a"))
    a2 = await chancy.push(job("a"))
    assert [j.id for j in await claim(chancy, queue, conn)] == [a1.identifier]
    await set_state(chancy, conn, a1.identifier, "failed")
    nxt = await claim(chancy, queue, conn)
    if mode == "continue":
        assert [j.id for j in nxt] == [a2.identifier]
        return
    assert nxt == []
    # The operator retries the failed job: it runs again, first, and then the key goes on.
    await chancy.retry_jobs([a1])
    assert [j.id for j in await claim(chancy, queue, conn)] == [a1.identifier]
    await set_state(chancy, conn, a1.identifier, "succeeded")
    assert [j.id for j in await claim(chancy, queue, conn)] == [a2.identifier]


async def test_keyless_jobs_are_not_ordered_and_other_keys_flow(chancy: Chancy, conn: Any) -> None:
    queue = await declare(chancy)
    for _ in range(3):
        await chancy.push(job(None))
    await chancy.push(job("a"))
    await chancy.push(job("a"))
    taken = await claim(chancy, queue, conn)
    counted = collections.Counter(j.partition_key for j in taken)
    assert counted == {None: 3, "a": 1}


async def test_a_crashed_workers_job_holds_its_key_until_recovered_and_runs_first(
    chancy: Chancy, conn: Any
) -> None:
    queue = await declare(chancy)
    a1 = await chancy.push(job("a"))
    a2 = await chancy.push(job("a"))
    assert [j.id for j in await claim(chancy, queue, conn)] == [a1.identifier]
    # Its worker died: the row stays running until Recovery gives it back.
    assert await claim(chancy, queue, conn) == []
    await set_state(chancy, conn, a1.identifier, "pending")
    assert [j.id for j in await claim(chancy, queue, conn)] == [a1.identifier]
    assert a2.identifier not in {j.id for j in await claim(chancy, queue, conn)}


async def test_settings_round_trip_and_bad_ones_are_refused(chancy: Chancy) -> None:
    stored = await declare(chancy, partition_on_failure="hold")
    assert stored.partition_ordered and stored.partition_on_failure == "hold"
    assert (await chancy.get_queue("ord")).partition_on_failure == "hold"
    assert Queue.unpack(stored.pack()) == stored
    for bad, words in (
        ({"partition_ordered": True, "partition_on_failure": "stop"}, "one of"),
        ({"partition_on_failure": "hold"}, "partition_ordered=True"),
        ({"partition_ordered": "yes"}, "True or False"),
        ({"partition_ordered": True, "fairness": True}, "cannot also be fair"),
        ({"partition_ordered": True, "partition_concurrency": 2}, "per-key limits"),
    ):
        with pytest.raises(ConfigurationError, match=words):
            Queue("ord", **bad)  # type: ignore[arg-type]


@pytest.fixture
async def side(dsn: str, chancy: Chancy) -> AsyncIterator[AsyncConnectionPool]:  # type: ignore[type-arg]
    pool: AsyncConnectionPool = AsyncConnectionPool(  # type: ignore[type-arg]
        dsn, min_size=1, max_size=3, kwargs={"autocommit": True}, open=False
    )
    await pool.open()
    jobs.SIDE = pool
    try:
        yield pool
    finally:
        jobs.SIDE = None
        await pool.close()


async def test_two_workers_keep_each_keys_order_through_retries_and_a_crash(
    dsn: str,
    prefix: str,
    chancy: Chancy,
    side: AsyncConnectionPool,  # type: ignore[type-arg]
) -> None:
    await make_table(
        side,
        f"{prefix}runs",
        "k text, n int, attempt int, at timestamptz DEFAULT clock_timestamp()",
    )
    await declare(chancy, executor=Chancy.Executor.Async, concurrency=10)
    keys = [f"k{i}" for i in range(6)]
    batch = [
        Job(
            func="tests.limits.jobs.ordered_step",
            queue="ord",
            kwargs={"n": n, "fail_first": n % 4 == 1},
            max_attempts=2,
            priority=n % 3,  # priorities vary: they must not reorder a key
        ).with_partition_key(k)
        for n in range(12)
        for k in keys
    ]
    async for _ in chancy.push_many(batch):
        pass
    # A worker that crashed holding k0's first job: the key waits for Recovery.
    queue = await chancy.get_queue("ord")
    async with (await chancy.open()).connection() as c:
        ghost = await fetch_claim(chancy, "ghost", queue, c, up_to=1)
    assert [(j.partition_key, j.kwargs["n"]) for j in ghost.jobs] == [("k0", 0)]
    ghost_job = ghost.jobs[0]
    async with AsyncExitStack() as stack:
        await fleet(stack, dsn, prefix, 2)
        # Every other key finishes; the ghost's key does not move past its running job.
        count_keys = "SELECT count(DISTINCT (k, n)) FROM {} WHERE k <> %s"

        async def others_done() -> bool:
            return await side_count(side, prefix, count_keys, "k0") >= 12 * 5

        await eventually(others_done, timeout=60, message="the other keys finished")
        ghost_key = "SELECT count(*) FROM {} WHERE k = %s"
        assert await side_count(side, prefix, ghost_key, "k0") == 0
        # Recovery gives the ghost's job back: the key resumes with it.
        async with (await chancy.open()).connection() as c:
            await set_state(chancy, c, ghost_job.id, "pending")

        async def all_done() -> bool:
            return await side_count(side, prefix, count_keys, "") >= 12 * 6

        await eventually(all_done, timeout=60, message="every key finished")
    async with side.connection() as c:
        cur = await c.execute(
            sql.SQL("SELECT k, n, attempt, at FROM {} ORDER BY at").format(
                sql.Identifier(f"{prefix}runs")
            )
        )
        runs = await cur.fetchall()
    for k in keys:
        mine = [(n, attempt) for key, n, attempt, _ in runs if key == k]
        expected = []
        for n in range(12):
            expected.append((n, 0))
            if n % 4 == 1:
                expected.append((n, 1))
        assert mine == expected, f"{k}: {mine}"


async def side_count(side: AsyncConnectionPool, prefix: str, query: str, arg: str) -> int:  # type: ignore[type-arg]
    async with side.connection() as c:
        cur = await c.execute(
            sql.SQL(query).format(sql.Identifier(f"{prefix}runs")),  # type: ignore[arg-type]
            (arg,),
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_an_expired_head_is_failed_not_started_and_the_key_goes_on(
    chancy: Chancy, conn: Any
) -> None:
    queue = await declare(chancy)
    a1 = await chancy.push(job("a"))
    a2 = await chancy.push(job("a"))
    await conn.execute(
        sql.SQL("UPDATE {} SET deadline = now() - interval '1 second' WHERE id = %s").format(
            sql.Identifier(f"{chancy.prefix}jobs")
        ),
        (a1.identifier,),
    )
    got = await fetch_claim(chancy, "w", queue, conn, up_to=10)
    assert got.jobs == [] and [str(e[0]) for e in got.expired] == [str(a1.identifier)]
    expired = await chancy.get_job(a1)
    assert expired is not None and expired.state == QueuedJob.State.FAILED
    assert [j.id for j in await claim(chancy, queue, conn)] == [a2.identifier]
