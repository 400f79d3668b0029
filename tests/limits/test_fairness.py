"""Weighted fair share across partition keys (``Queue(fairness=True, partition_weights=...)``).

Claims are made as a worker makes them (``fetch_claim``), so the tests see exactly which jobs
each claim took; the two drains at the end run a real worker.
"""

from __future__ import annotations

import collections
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from chancy import Chancy, Job, Queue, QueuedJob, Worker
from chancy.errors import ConfigurationError
from chancy.runtime.producer import fetch_claim
from tests.conftest import eventually

NOOP = "tests.limits.jobs.noop"


@pytest.fixture
async def conn(chancy: Chancy) -> AsyncIterator[Any]:
    pool = await chancy.open()
    async with pool.connection() as c:
        yield c


async def declare(chancy: Chancy, **settings: Any) -> Queue:
    return await chancy.declare(Queue("fair", **settings), upsert=True)


async def push_keyed(chancy: Chancy, key: str | None, n: int, **kw: Any) -> None:
    job = Job(func=NOOP, queue="fair", **kw)
    if key is not None:
        job = job.with_partition_key(key)
    async for _ in chancy.push_many([job] * n, batch_size=max(n, 1)):
        pass


async def claim(chancy: Chancy, queue: Queue, conn: Any, n: int) -> list[QueuedJob]:
    got = await fetch_claim(chancy, f"w-{uuid.uuid4()}", queue, conn, up_to=n)
    return got.jobs


def keys(jobs: list[QueuedJob]) -> collections.Counter[str | None]:
    return collections.Counter(j.partition_key for j in jobs)


async def test_equal_keys_share_each_claim(chancy: Chancy, conn: Any) -> None:
    queue = await declare(chancy, fairness=True)
    await push_keyed(chancy, "a", 1000)
    await push_keyed(chancy, "b", 10)
    first = await claim(chancy, queue, conn, 10)
    assert keys(first) == {"a": 5, "b": 5}
    second = await claim(chancy, queue, conn, 10)
    # b has 5 left; a offers its share, and what b cannot use goes to a on the next claim.
    assert keys(second)["b"] == 5
    assert keys(first + second)["a"] >= 10


async def test_weights_split_claims_in_proportion(chancy: Chancy, conn: Any) -> None:
    queue = await declare(chancy, fairness=True, partition_weights={"gold": 4, "*": 1})
    await push_keyed(chancy, "gold", 500)
    await push_keyed(chancy, "free", 500)
    big = [j for _ in range(5) for j in await claim(chancy, queue, conn, 10)]
    assert keys(big) == {"gold": 40, "free": 10}
    # One job at a time (a worker with one free slot): the passes keep the same proportion.
    single = [j for _ in range(50) for j in await claim(chancy, queue, conn, 1)]
    assert keys(single) == {"gold": 40, "free": 10}


async def test_a_key_keeps_its_own_order(chancy: Chancy, conn: Any) -> None:
    queue = await declare(chancy, fairness=True)
    await push_keyed(chancy, "a", 3)
    await push_keyed(chancy, "a", 2, priority=5)
    await push_keyed(chancy, "b", 5)
    taken = [j for _ in range(10) for j in await claim(chancy, queue, conn, 1)]
    a_jobs = [j for j in taken if j.partition_key == "a"]
    assert [j.priority for j in a_jobs] == [5, 5, 0, 0, 0]
    assert [j.id for j in a_jobs[2:]] == sorted(j.id for j in a_jobs[2:])
    # Alternating keys, one job per claim: a, b, a, b, ...
    assert [j.partition_key for j in taken[:4]] in (["a", "b", "a", "b"], ["b", "a", "b", "a"])


async def test_a_new_key_starts_level_and_an_idle_key_earns_no_credit(
    chancy: Chancy, conn: Any
) -> None:
    queue = await declare(chancy, fairness=True)
    await push_keyed(chancy, "a", 300)
    for _ in range(10):
        await claim(chancy, queue, conn, 10)  # a alone: its pass moves on by 100
    await push_keyed(chancy, "b", 100)
    # b is served its half at once, but is not owed the 100 jobs a ran alone.
    assert keys(await claim(chancy, queue, conn, 10)) == {"a": 5, "b": 5}
    assert keys(await claim(chancy, queue, conn, 10)) == {"a": 5, "b": 5}


async def test_keyless_jobs_are_one_key_weighted_like_the_rest(chancy: Chancy, conn: Any) -> None:
    queue = await declare(chancy, fairness=True, partition_weights={"vip": 3, "*": 1})
    await push_keyed(chancy, None, 100)
    await push_keyed(chancy, "vip", 100)
    taken = [j for _ in range(4) for j in await claim(chancy, queue, conn, 10)]
    assert keys(taken) == {None: 10, "vip": 30}


async def test_jobs_waiting_before_the_queue_became_fair_are_keyed_and_served(
    chancy: Chancy, conn: Any
) -> None:
    await chancy.declare(Queue("fair"))
    await push_keyed(chancy, None, 20)
    queue = await declare(chancy, fairness=True)
    await push_keyed(chancy, "a", 20)
    taken = await claim(chancy, queue, conn, 10)
    assert keys(taken) == {None: 5, "a": 5}


async def test_a_keyless_job_stored_without_the_empty_key_still_runs(
    chancy: Chancy, conn: Any
) -> None:
    """A push that raced the queue becoming fair may store NULL; the claim still finds it."""
    queue = await declare(chancy, fairness=True)
    await push_keyed(chancy, "a", 5)
    ref = await chancy.push(Job(func=NOOP, queue="fair"))
    async with conn.transaction():
        await conn.execute(
            f"UPDATE {chancy.prefix}jobs SET partition_key = NULL WHERE id = %s",  # type: ignore[arg-type]
            (ref.identifier,),
        )
    taken = [j for _ in range(6) for j in await claim(chancy, queue, conn, 1)]
    assert ref.identifier in {j.id for j in taken}


async def test_a_paused_fair_queue_claims_nothing(chancy: Chancy, conn: Any) -> None:
    queue = await declare(chancy, fairness=True)
    await push_keyed(chancy, "a", 5)
    await chancy.pause_queue("fair")
    assert await claim(chancy, queue, conn, 10) == []


async def test_passes_are_forgotten_when_a_key_runs_dry_or_the_queue_stops_being_fair(
    chancy: Chancy, conn: Any
) -> None:
    queue = await declare(chancy, fairness=True)
    await push_keyed(chancy, "a", 2)
    await push_keyed(chancy, "b", 20)
    await claim(chancy, queue, conn, 4)

    async def stored() -> set[str]:
        cur = await conn.execute(
            f"SELECT partition_key FROM {chancy.prefix}fair_keys"  # type: ignore[arg-type]
        )
        return {r[0] for r in await cur.fetchall()}

    assert await stored() == {"a", "b"}
    await claim(chancy, queue, conn, 4)  # a has nothing left waiting
    assert await stored() == {"b"}
    await chancy.declare(Queue("fair"), upsert=True)
    assert await stored() == set()


async def test_settings_round_trip_and_bad_ones_are_refused(chancy: Chancy) -> None:
    stored = await declare(chancy, fairness=True, partition_weights={"gold": 4, "*": 1.5})
    assert stored.fairness is True
    assert stored.partition_weights == {"*": 1.5, "gold": 4}
    assert (await chancy.get_queue("fair")).partition_weights == {"*": 1.5, "gold": 4}
    assert Queue.unpack(stored.pack()) == stored
    for bad, words in (
        ({"fairness": True, "partition_weights": {"a": 0}}, "above 0"),
        ({"fairness": True, "partition_weights": {"a": -1}}, "above 0"),
        ({"fairness": True, "partition_weights": {"a": float("nan")}}, "above 0"),
        ({"fairness": True, "partition_weights": {"a": True}}, "above 0"),
        ({"fairness": True, "partition_weights": {"": 1}}, "not a partition key"),
        ({"fairness": True, "partition_weights": [("a", 1)]}, "must map"),
        ({"partition_weights": {"a": 2}}, "fairness=True"),
        ({"fairness": "yes"}, "True or False"),
        ({"fairness": True, "partition_concurrency": 1}, "per-key limits"),
    ):
        with pytest.raises(ConfigurationError, match=words):
            Queue("fair", **bad)  # type: ignore[arg-type]
    # Nothing was stored by the refused settings.
    assert (await chancy.get_queue("fair")).partition_weights == {"*": 1.5, "gold": 4}


async def test_the_sql_push_function_keys_keyless_jobs_of_a_fair_queue(
    chancy: Chancy, conn: Any
) -> None:
    await declare(chancy, fairness=True)
    cur = await conn.execute(
        f"SELECT {chancy.prefix}push('fair', %s)",  # type: ignore[arg-type]
        (NOOP,),
    )
    row = await cur.fetchone()
    cur = await conn.execute(
        f"SELECT partition_key FROM {chancy.prefix}jobs WHERE id = %s",  # type: ignore[arg-type]
        (row[0],),
    )
    assert (await cur.fetchone())[0] == ""


async def drain_until(chancy: Chancy, done: Any) -> None:
    worker = Worker(chancy, worker_id="fair-w", register_signal_handlers=False)
    async with worker:
        await eventually(done, timeout=120, interval=0.1, message="the drain reached its goal")


async def count_done(chancy: Chancy, key: str) -> int:
    pool = await chancy.open()
    async with pool.connection() as c:
        cur = await c.execute(
            f"SELECT count(*) FROM {chancy.prefix}jobs"  # type: ignore[arg-type]
            " WHERE queue = 'fair' AND partition_key = %s AND state = 'succeeded'",
            (key,),
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def count_done_before_key(chancy: Chancy, key: str, other: str) -> int:
    """Jobs of ``key`` that finished no later than the last finished job of ``other``."""
    pool = await chancy.open()
    async with pool.connection() as c:
        cur = await c.execute(
            f"SELECT count(*) FROM {chancy.prefix}jobs"  # type: ignore[arg-type]
            " WHERE queue = 'fair' AND partition_key = %s AND state = 'succeeded'"
            f" AND completed_at <= (SELECT max(completed_at) FROM {chancy.prefix}jobs"
            " WHERE queue = 'fair' AND partition_key = %s AND state = 'succeeded')",
            (key, other),
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_a_quiet_key_is_not_starved_by_a_backlog_of_100000(chancy: Chancy) -> None:
    """The issue's figure: 100 jobs of a second key finish before 1% of the first key's."""
    await declare(chancy, fairness=True, executor=Chancy.Executor.Async, concurrency=50)
    await push_keyed(chancy, "noisy", 100_000)
    await push_keyed(chancy, "quiet", 100)

    async def quiet_done() -> bool:
        return await count_done(chancy, "quiet") == 100

    await drain_until(chancy, quiet_done)
    # Counted by the database's clock: the noisy key's jobs finished by the time the quiet
    # key's last one did (not by the time the poll saw it and the worker stopped, which adds
    # whatever ran meanwhile).
    noisy = await count_done_before_key(chancy, "noisy", "quiet")
    assert noisy < 1000, f"the noisy key finished {noisy} jobs before the quiet key's 100"


async def test_weights_hold_under_a_sustained_backlog(chancy: Chancy) -> None:
    await declare(
        chancy,
        fairness=True,
        partition_weights={"gold": 4, "*": 1},
        executor=Chancy.Executor.Async,
        concurrency=20,
    )
    await push_keyed(chancy, "gold", 5000)
    await push_keyed(chancy, "free", 5000)

    async def enough() -> bool:
        return await count_done(chancy, "gold") + await count_done(chancy, "free") >= 2000

    await drain_until(chancy, enough)
    pool = await chancy.open()
    async with pool.connection() as c:
        cur = await c.execute(
            f"SELECT partition_key FROM {chancy.prefix}jobs"  # type: ignore[arg-type]
            " WHERE queue = 'fair' AND started_at IS NOT NULL ORDER BY started_at, id"
        )
        started = [r[0] for r in await cur.fetchall()]
    # Every window of 500 consecutive starts (both keys still had a backlog) is near 4:1.
    for at in range(0, len(started) - 499, 250):
        window = collections.Counter(started[at : at + 500])
        ratio = window["gold"] / max(1, window["free"])
        assert 3.4 <= ratio <= 4.6, f"starts {at}..{at + 500}: {dict(window)}"


async def test_an_expired_job_is_failed_and_does_not_move_its_keys_pass(
    chancy: Chancy, conn: Any
) -> None:
    queue = await declare(chancy, fairness=True)
    await push_keyed(chancy, "a", 3)
    await push_keyed(chancy, "b", 3)
    await conn.execute(
        f"UPDATE {chancy.prefix}jobs SET deadline = now() - interval '1 second'"  # type: ignore[arg-type]
        " WHERE partition_key = 'a'"
    )
    got = await fetch_claim(chancy, "w", queue, conn, up_to=4)
    assert keys(got.jobs) == {"b": 2} and len(got.expired) == 2
    cur = await conn.execute(
        f"SELECT partition_key, pass FROM {chancy.prefix}fair_keys"  # type: ignore[arg-type]
    )
    passes = dict(await cur.fetchall())
    assert passes["b"] == 2 and passes.get("a", 0) == 0
