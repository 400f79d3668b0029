"""The app API against real PostgreSQL: push, get, wait, cancel, retry, purge, queues."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from chancy import Chancy, Job, Limit, Queue, QueuedJob, Reference
from chancy.errors import ConfigurationError, InvalidJobError, PushError
from chancy.executors.base import Outcome
from chancy.job import DefaultNow
from tests import jobs
from tests.conftest import eventually


def J(**kw: object) -> Job:
    return Job(func="tests.jobs.add", kwargs={"a": 1, "b": 2}, **kw)  # type: ignore[arg-type]


async def count_jobs(chancy: Chancy) -> int:
    async with chancy.pool.connection() as conn:
        row = await (await conn.execute(f"SELECT count(*) FROM {chancy.prefix}jobs")).fetchone()
    assert row is not None
    return int(row[0])


async def test_push_and_get_roundtrip(chancy: Chancy) -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    job = Job(
        func="tests.jobs.add",
        queue="q1",
        kwargs={"a": 1, "b": [1, "x", None], "c": {"d": True}},
        priority=-7,
        max_attempts=3,
        scheduled_at=when,
        limits=[Limit(Limit.Type.TIME, 30), Limit(Limit.Type.MEMORY, 1 << 20)],
        unique_key="k1",
        meta={"m": 1},
    )
    ref = await chancy.push(job)
    got = await chancy.get_job(ref)
    assert got is not None
    assert got.id == ref.identifier
    assert (got.func, got.queue, got.kwargs, got.priority, got.max_attempts) == (
        job.func,
        job.queue,
        job.kwargs,
        -7,
        3,
    )
    assert got.scheduled_at == when
    assert got.limits == job.limits
    assert got.unique_key == "k1" and got.meta == {"m": 1}
    assert got.state == QueuedJob.State.PENDING
    assert got.attempts == 0 and got.recoveries == 0 and got.errors == [] and got.result is None
    assert await chancy.get_job(uuid.uuid4()) is None


async def test_push_accepts_decorated_function(chancy: Chancy) -> None:
    ref = await chancy.push(jobs.decorated)
    got = await chancy.get_job(ref)
    assert got is not None and got.queue == "decorated" and got.priority == 5
    assert got.func == "tests.jobs.decorated"
    assert jobs.decorated(x=3) == 3  # still callable


async def test_default_scheduled_at_uses_database_time(chancy: Chancy) -> None:
    ref = await chancy.push(J())
    got = await chancy.get_job(ref)
    assert got is not None and got.created_at is not None
    # Both come from the same database now(), not from this process's clock.
    assert got.scheduled_at == got.created_at


async def test_ids_are_time_ordered(chancy: Chancy) -> None:
    refs = [await chancy.push(J()) for _ in range(20)]
    ids = [r.identifier for r in refs]
    assert ids == sorted(ids)
    fetched = await chancy.get_jobs([*reversed(refs), Reference(uuid.uuid4())])
    assert [j.id for j in fetched] == list(reversed(ids))


async def test_push_in_rolled_back_transaction_leaves_nothing(chancy: Chancy, dsn: str) -> None:
    listener = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    try:
        await listener.execute(f'LISTEN "{chancy.prefix}events"')
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            async with conn.cursor() as cur:
                ref = await chancy.push_ex(cur, J(queue="rolled"))
            await conn.rollback()
            async with conn.cursor() as cur:
                committed = await chancy.push_ex(cur, J(queue="committed"))
            await conn.commit()
        assert await chancy.get_job(ref) is None
        assert await chancy.get_job(committed) is not None
        # The first wake-up that arrives is the committed job's: the rolled-back push sent
        # none.
        gen = listener.notifies(timeout=5, stop_after=1)
        notes = [n async for n in gen]
        assert len(notes) == 1
        assert '"committed"' in notes[0].payload and "rolled" not in notes[0].payload
    finally:
        await listener.close()


async def test_sixteen_concurrent_pushers_of_one_unique_key(chancy: Chancy, dsn: str) -> None:
    conns = [await psycopg.AsyncConnection.connect(dsn) for _ in range(16)]
    try:
        barrier = asyncio.Barrier(16)

        async def pusher(conn: psycopg.AsyncConnection) -> Reference:
            await barrier.wait()
            async with conn.cursor() as cur:
                ref = await chancy.push_ex(cur, J(unique_key="only-one"))
            await conn.commit()
            return ref

        refs = await asyncio.gather(*(pusher(c) for c in conns))
    finally:
        for c in conns:
            await c.close()
    assert len(set(refs)) == 1
    assert await count_jobs(chancy) == 1


async def test_unique_key_returns_existing_and_leaves_it_untouched(chancy: Chancy) -> None:
    first = await chancy.push(J(unique_key="u", priority=1, meta={"v": 1}))
    second = await chancy.push(J(unique_key="u", priority=99, meta={"v": 2}))
    assert first == second
    got = await chancy.get_job(first)
    assert got is not None and got.priority == 1 and got.meta == {"v": 1}
    # Inside one batch: the first job with the key wins, the rest map to it.
    batches = [b async for b in chancy.push_many([J(unique_key="b"), J(), J(unique_key="b")])]
    refs = batches[0]
    assert refs[0] == refs[2] and refs[0] != refs[1]
    # Once the live job finishes, the key is free again.
    await chancy.cancel_job(first)
    third = await chancy.push(J(unique_key="u"))
    assert third != first


async def test_push_many_100k_in_caller_order(chancy: Chancy) -> None:
    n = 100_000
    source = (Job(func="tests.jobs.noop", kwargs={"i": i}) for i in range(n))
    refs: list[Reference] = []
    batches = 0
    async for batch in chancy.push_many(source, batch_size=10_000):
        refs.extend(batch)
        batches += 1
    assert batches == 10
    assert len(refs) == n and len(set(refs)) == n
    async with chancy.pool.connection() as conn:
        rows = await (
            await conn.execute(f"SELECT id, (kwargs->>'i')::int FROM {chancy.prefix}jobs")
        ).fetchall()
    by_id = {row[0]: row[1] for row in rows}
    assert len(by_id) == n
    assert all(by_id[ref.identifier] == i for i, ref in enumerate(refs))


async def test_copy_and_insert_paths_store_awkward_values_alike(chancy: Chancy) -> None:
    """COPY's text format escapes backslashes, tabs and newlines; both paths store the same."""
    nasty = ["back\\slash", "tab\there", "new\nline", "cr\rhere", "\\N", 'quote"', "ünï😀", ""]
    when = datetime(2031, 2, 3, 4, 5, 6, 789000, tzinfo=timezone(timedelta(hours=5, minutes=30)))

    def jobs(path: str) -> list[Job]:
        return [
            Job(
                func="tests.jobs.noop",
                queue=f"copy.{path}",
                kwargs={"s": text, "n": [i, 1.5, None, True], text: {"nested": text}},
                meta={"m": text},
                priority=-i,
                max_attempts=i + 1,
                scheduled_at=when if i % 2 else DefaultNow.now(tz=UTC),
                partition_key=(text or None) if i % 3 else None,
            )
            for i, text in enumerate(nasty * 300)
        ]

    stored: dict[str, list[tuple[Any, ...]]] = {}
    for path, batch_size in (("copy", 10_000), ("insert", 100)):
        source = jobs(path)
        refs = [r async for b in chancy.push_many(source, batch_size=batch_size) for r in b]
        got = [await chancy.get_job(r) for r in refs[: len(nasty) * 3]]
        stored[path] = [
            (j.kwargs, j.meta, j.priority, j.max_attempts, j.partition_key) for j in got if j
        ]
        expected = [
            (j.kwargs, j.meta, j.priority, j.max_attempts, j.partition_key)
            for j in source[: len(nasty) * 3]
        ]
        assert stored[path] == expected, path
        for job, pushed in zip(got, source, strict=False):
            assert job is not None
            if type(pushed.scheduled_at) is not DefaultNow:
                assert job.scheduled_at == when
    assert stored["copy"] == stored["insert"]


async def test_lean_batches_store_what_the_full_statements_store(chancy: Chancy) -> None:
    """A batch whose jobs leave scheduled_at, deadline, limits, meta and the partition key at
    their defaults is written without those columns (job_copy_lean, job_insert_many_lean);
    one job that sets any of them sends the batch through the full statement, and so does a
    queue that fills them in (per-key limits, a default deadline) for COPY, which cannot
    read the queue. Every path stores the same rows: COPY of a first batch (encoded while
    COPY sends it, job_copy_streamed) and of a later one (encoded while the batch before is
    written), and the INSERT."""
    from chancy.store.encode import encode_job, insert_is_lean, jobs_are_lean

    await chancy.declare(Queue("copy.deadline", default_deadline=3600), upsert=True)
    await chancy.declare(Queue("copy.keyed", partition_concurrency=5), upsert=True)

    def jobs(queue: str, odd: Job | None = None) -> list[Job]:
        batch = [
            Job(
                func="tests.jobs.noop",
                queue=queue,
                kwargs={"i": i, "s": "back\\slash\ttab"} if i % 2 else {},
                priority=i % 3,
                max_attempts=1 + i % 4,
            )
            for i in range(2500)
        ]
        return batch if odd is None else [*batch[:-1], odd]

    later = datetime.now(UTC) + timedelta(days=1)
    odd_ones = {
        "meta": Job(func="tests.jobs.noop", meta={"m": 1}),
        "limits": Job(func="tests.jobs.noop", limits=[Limit(Limit.Type.TIME, 5)]),
        "scheduled": Job(func="tests.jobs.noop", scheduled_at=later),
        "deadline": Job(func="tests.jobs.noop", deadline=later),
        "key": Job(func="tests.jobs.noop", partition_key="k"),
    }
    for name, odd in odd_ones.items():
        source = jobs("copy.lean", dataclasses.replace(odd, queue="copy.lean"))
        assert not jobs_are_lean(source), name
        assert not insert_is_lean([encode_job(j) for j in source]), name
    plain = jobs("copy.lean")
    assert jobs_are_lean(plain) and insert_is_lean([encode_job(j) for j in plain])

    columns = (
        "kwargs, limits, meta, priority, max_attempts, state, attempts, partition_key,"
        " scheduled_at = created_at AS due_at_push, deadline - scheduled_at AS deadline_after"
    )

    async def stored(
        queue: str, batch_size: int, odd: Job | None = None, *, later: bool = False
    ) -> list[tuple[Any, ...]]:
        source = jobs(queue, None if odd is None else dataclasses.replace(odd, queue=queue))
        if later:  # the jobs make the second batch, after one of 2,500 others
            source = [*jobs("copy.filler"), *source]
        refs = [r async for b in chancy.push_many(source, batch_size=batch_size) for r in b]
        refs = refs[2500:] if later else refs
        async with chancy.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    f"SELECT id, {columns} FROM {chancy.prefix}jobs WHERE queue = %s", [queue]
                )
            ).fetchall()
        by_id = {row[0]: row[1:] for row in rows}
        return [by_id[r.identifier] for r in refs]

    lean = await stored("copy.lean", 10_000)
    assert lean == await stored("copy.insert", 100)
    assert lean == await stored("copy.later", 2500, later=True)
    # A job with meta in the last batch: that batch goes through the full statements.
    odd = odd_ones["meta"]
    for path, batch_size, after in (
        ("copy.full", 10_000, False),
        ("copy.full.later", 2500, True),
        ("insert.full", 100, False),
    ):
        full = await stored(path, batch_size, odd, later=after)
        assert full[:-1] == lean[:-1] and full[-1][2] == {"m": 1}, path
    assert all(row[8] and row[9] is None for row in lean)  # due at push, no deadline
    assert [row[0] for row in lean[:2]] == [{}, {"i": 1, "s": "back\\slash\ttab"}]
    assert [row[3:5] for row in lean[:4]] == [(0, 1), (1, 2), (2, 3), (0, 4)]
    # The queues that fill columns in get them, through the full COPY or the lean INSERT.
    for batch_size, after in ((10_000, False), (2500, True), (100, False)):
        deadlines = {row[9] for row in await stored("copy.deadline", batch_size, later=after)}
        assert deadlines == {timedelta(hours=1)}, batch_size
        keys = {row[7] for row in await stored("copy.keyed", batch_size, later=after)}
        assert keys == {""}, batch_size


async def test_push_many_unique_keys_in_caller_order(chancy: Chancy) -> None:
    existing = await chancy.push(J(unique_key="k5"))
    jobs_ = [Job(func="tests.jobs.noop", kwargs={"i": i}, unique_key=f"k{i}") for i in range(50)]
    refs = [r for b in [b async for b in chancy.push_many(jobs_, batch_size=20)] for r in b]
    assert refs[5] == existing
    got = await chancy.get_jobs(refs)
    assert [j.kwargs.get("i") for j in got if j.id != existing.identifier] == [
        i for i in range(50) if i != 5
    ]


@pytest.mark.parametrize("size", [5, 600])
async def test_push_many_error_names_committed_batches(chancy: Chancy, size: int) -> None:
    """Batches of 500+ are encoded while the one before is written; a bad job there fails
    the same way, once the batch before it has committed."""

    class Boom:
        pass

    def gen():  # type: ignore[no-untyped-def]
        for _ in range(size):
            yield J()
        yield Job(func="tests.jobs.add", kwargs={"bad": Boom()})

    yielded: list[Reference] = []
    with pytest.raises(PushError) as info:
        async for refs in chancy.push_many(gen(), batch_size=size):
            yielded.extend(refs)
    assert f"1 earlier batches ({size} jobs) were committed" in str(info.value)
    assert "not JSON-serialisable" in str(info.value)
    assert info.value.committed_batches == 1 and info.value.committed_jobs == size
    # The committed batch was handed to the caller before the next one failed.
    assert len(yielded) == size
    assert await count_jobs(chancy) == size


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: Job(func="tests.jobs.add", kwargs={"x": object()}), "not JSON-serialisable"),
        (lambda: Job(func="not a path"), "not an import path"),
        (lambda: Job(func="tests.jobs.add", priority=1.5), "priority must be an integer"),
        (lambda: Job(func="tests.jobs.add", priority=2**40), "priority must be between"),
        (lambda: Job(func="tests.jobs.add", max_attempts=0), "max_attempts must be between"),
        (lambda: Job(func="tests.jobs.add", max_attempts=-1), "max_attempts"),
        (lambda: Job(func="tests.jobs.add", max_attempts="3"), "max_attempts must be an integer"),
        (
            lambda: Job(func="tests.jobs.add", scheduled_at=datetime(2030, 1, 1)),
            "timezone-aware",
        ),
        (lambda: Limit("cpu", 3), "unknown limit type"),  # type: ignore[arg-type]
        (lambda: Job(func="tests.jobs.add", queue="bad queue!"), "not a valid queue name"),
    ],
)
async def test_bad_jobs_are_refused_before_anything_is_written(
    chancy: Chancy, make: object, fragment: str
) -> None:
    await chancy.push(J())
    with pytest.raises(InvalidJobError, match=fragment):
        job = make()  # type: ignore[operator]
        await chancy.push(job)
    assert await count_jobs(chancy) == 1


async def test_bad_prefix_and_bad_dsn(dsn: str) -> None:
    for bad in ("a-b", "x;drop", "", "1abc", "a" * 50):
        with pytest.raises(ConfigurationError, match="prefix"):
            Chancy(dsn, prefix=bad)
    app = Chancy("postgresql://postgres@127.0.0.1:1/postgres", connect_timeout=2)
    start = time.monotonic()
    with pytest.raises(ConnectionError, match=r"127\.0\.0\.1 port 1"):
        await app.push(J())
    assert time.monotonic() - start < 10
    await app.close()


async def test_django_style_dsn(dsn: str, prefix: str) -> None:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    settings = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": params.get("dbname", "postgres"),
        "USER": params.get("user", "postgres"),
        "PASSWORD": params.get("password", ""),
        "HOST": params.get("host", ""),
        "PORT": params.get("port", ""),
    }
    async with Chancy(settings, prefix=prefix, no_default_plugins=True) as app:
        await app.migrate()
        assert await app.is_up_to_date()
        await app.migrate(to_version=0)


async def test_wait_for_job_is_woken_by_notify(chancy: Chancy) -> None:
    ref = await chancy.push(J(queue="w"))
    waiter = asyncio.create_task(chancy.wait_for_job(ref, interval=30, timeout=20))
    # Give the waiter time to subscribe and read the job once.
    await eventually(lambda: ref.identifier in chancy.waiters._waiters)
    claimed = await chancy.db.run(chancy.store.job_fetch("w", 1, "tester"))
    assert len(claimed) == 1
    job = claimed[0]
    done = QueuedJob(**{**_fields(job), "state": QueuedJob.State.SUCCEEDED, "attempts": 1})
    await chancy.db.run(
        chancy.store.job_complete_many([Outcome(done, result_json="7")], notify=True)
    )
    finished_at = time.monotonic()
    got = await waiter
    elapsed = time.monotonic() - finished_at
    assert got is not None and got.state == QueuedJob.State.SUCCEEDED and got.result == 7
    assert elapsed < 0.1, f"wait_for_job took {elapsed * 1000:.1f} ms after completion"


def _fields(job: QueuedJob) -> dict[str, object]:
    return {f.name: getattr(job, f.name) for f in dataclasses.fields(job)}


async def test_wait_for_job_timeout_and_missing(chancy: Chancy) -> None:
    ref = await chancy.push(J())
    with pytest.raises(asyncio.TimeoutError):
        await chancy.wait_for_job(ref, interval=0.05, timeout=0.2)
    assert await chancy.wait_for_job(uuid.uuid4(), timeout=1) is None
    got = await chancy.wait_for_job(ref, states=["pending"], timeout=1)
    assert got is not None and got.state == "pending"


async def test_wait_for_job_polls_without_notifications(dsn: str, prefix: str) -> None:
    async with Chancy(dsn, prefix=prefix, notifications=False, no_default_plugins=True) as app:
        await app.migrate()
        try:
            ref = await app.push(J(queue="p"))
            waiter = asyncio.create_task(app.wait_for_job(ref, interval=0.05, timeout=10))
            claimed = await app.db.run(app.store.job_fetch("p", 1, "tester"))
            done = QueuedJob(**{**_fields(claimed[0]), "state": QueuedJob.State.FAILED})
            await app.db.run(app.store.job_complete_many([Outcome(done)], notify=False))
            got = await waiter
            assert got is not None and got.state == QueuedJob.State.FAILED
        finally:
            await app.migrate(to_version=0)


async def test_stale_claim_id_completion_changes_nothing(chancy: Chancy) -> None:
    ref = await chancy.push(J(queue="f"))
    (job,) = await chancy.db.run(chancy.store.job_fetch("f", 10, "w1"))
    assert job.claim_id is not None
    stale = QueuedJob(
        **{**_fields(job), "claim_id": uuid.uuid4(), "state": QueuedJob.State.SUCCEEDED}
    )
    written = await chancy.db.run(
        chancy.store.job_complete_many([Outcome(stale, result_json='"zombie"')], notify=True)
    )
    assert written == []
    got = await chancy.get_job(ref)
    assert got is not None and got.state == "running" and got.result is None
    good = QueuedJob(**{**_fields(job), "state": QueuedJob.State.SUCCEEDED, "attempts": 1})
    assert await chancy.db.run(
        chancy.store.job_complete_many([Outcome(good, result_json='"ok"')], notify=True)
    ) == [job.id]
    # A second, late write of the same claim changes nothing either.
    assert await chancy.db.run(chancy.store.job_complete_many([Outcome(good)], notify=True)) == []
    got = await chancy.get_job(ref)
    assert got is not None and got.state == "succeeded" and got.result == "ok"


async def test_claim_order_priority_then_fifo_and_schedule(chancy: Chancy) -> None:
    low = await chancy.push(J(queue="o", priority=0))
    high = await chancy.push(J(queue="o", priority=10))
    low2 = await chancy.push(J(queue="o", priority=0))
    future = await chancy.push(
        J(queue="o", priority=100, scheduled_at=datetime.now(UTC) + timedelta(hours=1))
    )
    claimed = await chancy.db.run(chancy.store.job_fetch("o", 10, "w"))
    assert [j.id for j in claimed] == [high.identifier, low.identifier, low2.identifier]
    assert future.identifier not in {j.id for j in claimed}
    assert all(j.state == "running" and j.taken_by == "w" for j in claimed)
    # One claim id per claim statement (migration v0023); each run is (id, claim_id).
    assert len({j.claim_id for j in claimed}) == 1 and claimed[0].claim_id is not None


async def test_cancel_retry_purge(chancy: Chancy) -> None:
    ref = await chancy.push(J(queue="c"))
    assert await chancy.cancel_job(ref) is True
    assert await chancy.cancel_job(ref) is False  # already finished
    got = await chancy.get_job(ref)
    assert got is not None and got.state == "failed" and got.meta.get("cancelled") is True
    assert "cancelled" in got.errors[-1]["traceback"].lower()
    # A cancelled pending job is never claimed.
    assert await chancy.db.run(chancy.store.job_fetch("c", 10, "w")) == []

    retried = await chancy.retry_jobs([ref])
    assert retried == [ref] and retried.skipped == []
    got = await chancy.get_job(ref)
    assert got is not None and got.state == "retrying" and got.attempts == 0
    assert len(got.errors) == 1 and "cancelled" not in got.meta
    assert [j.id for j in await chancy.db.run(chancy.store.job_fetch("c", 10, "w"))] == [
        ref.identifier
    ]
    # A finished job whose unique key is live again elsewhere is skipped, not raised.
    a = await chancy.push(J(unique_key="same"))
    await chancy.cancel_job(a)
    b = await chancy.push(J(unique_key="same"))
    result = await chancy.retry_jobs([a])
    assert list(result) == [] and result.skipped == [a]
    assert (await chancy.get_job(b)).state == "pending"  # type: ignore[union-attr]

    assert await chancy.purge_jobs([ref, a, uuid.uuid4()]) == 2
    assert await chancy.get_job(ref) is None


async def test_cancel_running_job_is_fenced(chancy: Chancy) -> None:
    ref = await chancy.push(J(queue="cr"))
    (job,) = await chancy.db.run(chancy.store.job_fetch("cr", 1, "w"))
    assert await chancy.cancel_job(ref)
    late = QueuedJob(**{**_fields(job), "state": QueuedJob.State.SUCCEEDED, "attempts": 1})
    assert await chancy.db.run(chancy.store.job_complete_many([Outcome(late)], notify=True)) == []
    got = await chancy.get_job(ref)
    assert got is not None and got.state == "failed" and got.attempts == 0


async def test_queues_declare_upsert_pause_resume_delete(chancy: Chancy) -> None:
    q = Queue("emails", concurrency=3, executor=Chancy.Executor.Async, polling_interval=0.5)
    stored = await chancy.declare(q)
    assert stored == q
    assert await chancy.get_queue("emails") == q
    # Without upsert the stored settings win; with upsert they are replaced.
    changed = Queue("emails", concurrency=9, tags={"web.*"}, rate_limit=5, rate_limit_window=2)
    assert await chancy.declare(changed) == q
    assert await chancy.declare(changed, upsert=True) == changed
    assert Queue.unpack(changed.pack()) == changed

    paused = await chancy.pause_queue("emails", resume_at=timedelta(hours=1))
    assert paused.state == Queue.State.PAUSED and paused.resume_at is not None
    assert await chancy.resume_queue("emails") == changed
    when = datetime(2031, 1, 1, tzinfo=UTC)
    assert (await chancy.pause_queue("emails", resume_at=when)).resume_at == when
    with pytest.raises(KeyError):
        await chancy.pause_queue("nope")

    await chancy.push(J(queue="emails"))
    assert [x.name for x in await chancy.get_all_queues()] == ["emails"]
    assert await chancy.delete_queue("emails") is True
    with pytest.raises(KeyError):
        await chancy.get_queue("emails")
    assert await count_jobs(chancy) == 0


async def test_declare_refuses_unknown_executor(chancy: Chancy) -> None:
    with pytest.raises(ConfigurationError, match=r"chancy\.executors\.thread\.ThreadedExecutor"):
        await chancy.declare(Queue("x", executor="no.such.Executor"))
    assert await chancy.get_all_queues() == []


async def test_duplicate_plugin_identifier_is_an_error(dsn: str) -> None:
    from chancy.plugin import Plugin

    class P(Plugin):
        pass

    with pytest.raises(ConfigurationError, match="identifier"):
        Chancy(dsn, plugins=[P(), P()])


async def test_two_prefixes_share_a_database(dsn: str, prefix: str) -> None:
    other = prefix + "b_"
    a = Chancy(dsn, prefix=prefix, no_default_plugins=True, max_connection_pool_size=2)
    b = Chancy(dsn, prefix=other, no_default_plugins=True, max_connection_pool_size=2)
    async with a, b:
        await a.migrate()
        await b.migrate()
        try:
            await a.declare(Queue("shared"))
            ra = await a.push(J(queue="shared", unique_key="k"))
            rb = await b.push(J(queue="shared", unique_key="k"))  # same key, other install
            assert ra != rb
            assert await a.get_job(rb) is None and await b.get_job(ra) is None
            assert [q.name for q in await b.get_all_queues()] == []
            assert [j.id for j in await b.db.run(b.store.job_fetch("shared", 10, "w"))] == [
                rb.identifier
            ]
            await b.migrate(to_version=0)
            assert await a.get_job(ra) is not None
            assert await a.is_up_to_date() and not await b.is_up_to_date()
        finally:
            await a.migrate(to_version=0)
            await b.migrate(to_version=0)


def test_sync_facade(dsn: str, prefix: str) -> None:
    app = Chancy(dsn, prefix=prefix, no_default_plugins=True, max_connection_pool_size=2)
    asyncio.run(app.migrate())
    asyncio.run(app.close())
    try:
        with app:
            q = app.sync_declare(Queue("s", executor=Chancy.Executor.Threaded))
            assert q.executor == "chancy.executors.thread.ThreadedExecutor"
            ref = app.sync_push(J(queue="s"))
            got = app.sync_get_job(ref)
            assert got is not None and got.queue == "s"
            batches = list(app.sync_push_many([J(queue="s") for _ in range(5)], batch_size=2))
            # One list per batch, as Chancy 0.26 yields them.
            assert [len(refs) for refs in batches] == [2, 2, 1]
            with psycopg.connect(dsn) as conn:
                with conn.cursor() as cur:
                    rolled = app.sync_push_ex(cur, J(queue="s"))
                    many = app.sync_push_many_ex(cur, [J(queue="s"), J(queue="s")])
                    app.sync_notify(cur, "custom", {"x": 1})
                conn.rollback()
            assert app.sync_get_job(rolled) is None and app.sync_get_job(many[0]) is None
    finally:
        asyncio.run(app.migrate(to_version=0))
        asyncio.run(app.close())


async def test_concurrent_declares_of_one_new_queue_all_return_it(chancy: Chancy, dsn: str) -> None:
    # Each declare waits for the first insert and must then read the row it could not see.
    conns = [await psycopg.AsyncConnection.connect(dsn) for _ in range(8)]
    try:
        barrier = asyncio.Barrier(8)

        async def declare(conn: psycopg.AsyncConnection) -> Queue:
            async with conn.cursor() as cur:
                await barrier.wait()
                stored = await chancy.declare_ex(cur, Queue("raced", concurrency=2))
            await conn.commit()
            return stored

        for _ in range(3):
            got = await asyncio.gather(*(declare(c) for c in conns))
            assert all(q == Queue("raced", concurrency=2) for q in got)
            await chancy.delete_queue("raced")
    finally:
        for c in conns:
            await c.close()
