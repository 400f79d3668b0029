"""push_many writes a batch while the one before it commits, and keeps every batch whole.

The statements of batch n+1 run on a second connection while batch n commits; batch n+1
commits only after batch n has, and only once the caller asks for it. These tests hold the
cases where that could go wrong: the caller stops early, a later batch fails, an earlier
batch fails at its commit after the next one has been written.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from chancy import Chancy, Job, Queue
from chancy.errors import InvalidJobError, PushError
from chancy.store import runner
from tests.conftest import eventually


def _jobs(n: int, func: str = "tests.jobs.noop") -> list[Job]:
    return [Job(func=func, kwargs={"i": i}) for i in range(n)]


async def _stored(chancy: Chancy) -> int:
    async with chancy.pool.connection() as conn:
        cur = await conn.execute(f"SELECT count(*) FROM {chancy.prefix}jobs")
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def _fail_on(chancy: Chancy, func: str, *, at_commit: bool) -> None:
    """A trigger that refuses jobs of ``func``: at their insert, or only at commit."""
    p = chancy.prefix
    kind = "CONSTRAINT TRIGGER" if at_commit else "TRIGGER"
    when = "DEFERRABLE INITIALLY DEFERRED" if at_commit else ""
    async with chancy.pool.connection() as conn:
        await conn.execute(
            f"""CREATE FUNCTION {p}refuse() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'refused %', NEW.func; END $$"""
        )
        await conn.execute(
            f"""CREATE {kind} {p}refuse AFTER INSERT ON {p}jobs {when}
                FOR EACH ROW WHEN (NEW.func = '{func}') EXECUTE FUNCTION {p}refuse()"""
        )


@pytest.mark.parametrize("size", [100, 600])
async def test_a_caller_that_stops_early_leaves_the_next_batch_uncommitted(
    chancy: Chancy, size: int
) -> None:
    pushing = chancy.push_many(_jobs(size * 3), batch_size=size)
    first = await anext(pushing)
    assert len(first) == size
    # The second batch's statements ran while the first committed; it was not asked for.
    await pushing.aclose()
    assert await _stored(chancy) == size


async def test_a_loop_left_with_break_rolls_the_next_batch_back(chancy: Chancy) -> None:
    async for refs in chancy.push_many(_jobs(1500), batch_size=500):
        assert len(refs) == 500
        break

    # The generator is closed once collected (at once, here): its open write rolls back and
    # gives its connection back.
    def idle() -> bool:
        stats = chancy.pool.get_stats()
        return stats.get("pool_available", 0) == stats.get("pool_size", -1)

    await eventually(idle, message="every pool connection is back")
    assert await _stored(chancy) == 500


async def test_a_later_batch_that_fails_names_the_batches_committed(chancy: Chancy) -> None:
    await _fail_on(chancy, "tests.jobs.add", at_commit=False)
    jobs = [*_jobs(1000), *_jobs(1, "tests.jobs.add"), *_jobs(999)]
    got: list[int] = []
    with pytest.raises(PushError) as info:
        async for refs in chancy.push_many(jobs, batch_size=500):
            got.append(len(refs))
    assert got == [500, 500]
    assert info.value.committed_batches == 2 and info.value.committed_jobs == 1000
    assert "refused tests.jobs.add" in str(info.value)
    assert await _stored(chancy) == 1000  # batches 3 and 4 left nothing


async def test_a_batch_refused_at_its_commit_rolls_back_the_one_written_behind_it(
    chancy: Chancy,
) -> None:
    await _fail_on(chancy, "tests.jobs.add", at_commit=True)
    jobs = [*_jobs(499), *_jobs(1, "tests.jobs.add"), *_jobs(1000)]
    with pytest.raises(Exception, match=r"refused tests\.jobs\.add"):
        async for _ in chancy.push_many(jobs, batch_size=500):
            pass
    assert await _stored(chancy) == 0


async def test_batches_written_behind_each_other_commit_in_order(chancy: Chancy) -> None:
    """Every batch's jobs are stored, and the references come back in the caller's order,
    with unique keys repeated across batches mapped to the first job that has them."""
    jobs = [
        Job(func="tests.jobs.noop", kwargs={"i": i}, unique_key=f"k{i % 700}") for i in range(2100)
    ]
    refs = [r async for batch in chancy.push_many(jobs, batch_size=300) for r in batch]
    assert len(refs) == 2100 and refs[700:1400] == refs[:700] and refs[1400:] == refs[:700]
    assert await _stored(chancy) == 700
    stored = await chancy.get_jobs(refs[:700])
    assert [j.kwargs["i"] for j in stored] == list(range(700))


async def test_a_cancelled_push_rolls_back_the_batch_it_was_writing(
    chancy: Chancy, dsn: str
) -> None:
    """Cancelled while a batch's statement runs (held up here behind a table lock, released
    only after the cancel, so the statement itself completes), the push commits nothing of
    it; the batches are never committed in part."""
    p = chancy.prefix
    locker = await psycopg.AsyncConnection.connect(dsn)
    async with locker:
        await locker.execute(f"LOCK TABLE {p}jobs IN SHARE MODE")  # blocks every INSERT

        async def push() -> None:
            async for _ in chancy.push_many(_jobs(1500), batch_size=500):
                pass

        pushing = asyncio.ensure_future(push())

        async def waiting() -> bool:
            async with chancy.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE relation = %s::regclass AND NOT granted",
                    [f"{p}jobs"],
                )
                row = await cur.fetchone()
            return bool(row and row[0])

        await eventually(waiting, message="the first batch waits for the table lock")
        pushing.cancel()
        await locker.commit()  # the insert goes on, then its transaction rolls back
        with pytest.raises(asyncio.CancelledError):
            await pushing
    assert await _stored(chancy) == 0


def _keyed(keys: range, func: str = "tests.jobs.noop") -> list[Job]:
    return [Job(func=func, kwargs={"k": k}, unique_key=f"k{k}") for k in keys]


#: The statements that write a batch of jobs.
_WRITES = (
    "job_insert_many_plain",
    "job_insert_many_lean",
    "job_insert_many",
    "job_copy",
    "job_copy_lean",
    "job_copy_unique",
    "job_copy_lean_unique",
)


def _inserts(chancy: Chancy, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the push INSERT and COPY statements run from now on, in order."""
    names = {chancy.store.q[n]: n for n in _WRITES}
    seen: list[str] = []
    real = runner.run_spec

    async def recording(cur: Any, spec: Any) -> Any:
        if spec.query in names:
            seen.append(names[spec.query])
        return await real(cur, spec)

    monkeypatch.setattr(runner, "run_spec", recording)
    return seen


async def test_keys_bet_new_but_live_are_skipped_by_a_second_try(
    chancy: Chancy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """push_many inserts a batch with unique keys without ON CONFLICT first; a key that is
    live fails that try, which rolls back, and the batch is written again with ON CONFLICT,
    as are the push's later batches. Jobs with live keys map to the live jobs."""
    live = [r async for batch in chancy.push_many(_keyed(range(300))) for r in batch]
    statements = _inserts(chancy, monkeypatch)
    jobs = _keyed(range(1000))  # k0-k299 live
    refs = [r async for batch in chancy.push_many(jobs, batch_size=200) for r in batch]
    assert refs[:300] == live
    assert len(set(refs[300:]) - set(live)) == 700
    assert await _stored(chancy) == 1000
    # Batch 1 (live keys) and batch 2 (planned while batch 1 was written) bet and lost;
    # batches 3 and 4 (planned after those losses) do not bet; batch 3 finds its keys new,
    # so batch 5, planned after it, bets again (and wins).
    assert statements == [
        "job_insert_many_plain",
        "job_insert_many_lean",
        "job_insert_many_plain",
        "job_insert_many_lean",
        "job_insert_many_lean",
        "job_insert_many_lean",
        "job_insert_many_plain",
    ]
    stored = await chancy.get_jobs(refs)
    assert [j.kwargs["k"] for j in stored] == list(range(1000))


async def test_a_push_whose_keys_are_new_bets_on_them_in_every_batch(
    chancy: Chancy, monkeypatch: pytest.MonkeyPatch
) -> None:
    statements = _inserts(chancy, monkeypatch)
    refs = [
        r async for batch in chancy.push_many(_keyed(range(600)), batch_size=200) for r in batch
    ]
    assert len(set(refs)) == 600 and await _stored(chancy) == 600
    assert statements == ["job_insert_many_plain"] * 3


async def test_a_push_that_found_its_keys_live_makes_the_next_one_not_bet(
    chancy: Chancy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The periodic re-push of one set of keys loses the bet once, not on every push."""
    async for _ in chancy.push_many(_keyed(range(1000))):
        pass
    statements = _inserts(chancy, monkeypatch)
    for _ in range(3):
        refs = [r async for batch in chancy.push_many(_keyed(range(1000))) for r in batch]
        assert len(set(refs)) == 1000
    # Batches of 1,000 (COPY_BET_MIN) bet by COPY.
    assert statements == [
        "job_copy_lean_unique",  # lost
        "job_insert_many_lean",
        "job_insert_many_lean",  # no bet: the keys were live last time (and are again)
        "job_insert_many_lean",
    ]
    assert not chancy.keys_seen_new
    async for _ in chancy.push_many(_keyed(range(1000, 2000))):  # new keys, no bet
        pass
    assert chancy.keys_seen_new
    async for _ in chancy.push_many(_keyed(range(2000, 3000))):
        pass
    assert statements[-2:] == ["job_insert_many_lean", "job_copy_lean_unique"]
    assert await _stored(chancy) == 3000


@pytest.mark.parametrize("batch_size", [500, 1500])
async def test_concurrent_pushes_of_the_same_keys_store_each_key_once(
    chancy: Chancy, batch_size: int
) -> None:
    """Two pushers betting on the same keys (by INSERT, and by COPY from COPY_BET_MIN): the
    second waits for the first's rows, loses its bet once they commit, and maps its jobs to
    them."""

    async def push() -> list[Any]:
        return [
            r
            async for batch in chancy.push_many(_keyed(range(1500)), batch_size=batch_size)
            for r in batch
        ]

    first, second = await asyncio.gather(push(), push())
    assert first == second
    assert len(set(first)) == 1500 and await _stored(chancy) == 1500


async def test_a_batch_refused_for_another_reason_is_not_written_again(
    chancy: Chancy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a live key makes a lost bet: any other failure of the first try fails the push."""
    await _fail_on(chancy, "tests.jobs.add", at_commit=False)
    statements = _inserts(chancy, monkeypatch)
    jobs = [*_keyed(range(199)), *_keyed(range(199, 200), "tests.jobs.add")]
    with pytest.raises(Exception, match=r"refused tests\.jobs\.add"):
        async for _ in chancy.push_many(jobs, batch_size=200):
            pass
    assert statements == ["job_insert_many_plain"]
    assert await _stored(chancy) == 0


@contextlib.contextmanager
def _sync_app(dsn: str, prefix: str) -> Iterator[Chancy]:
    """A migrated app for sync pushes, removed after."""
    app = Chancy(dsn, prefix=prefix, no_default_plugins=True, max_connection_pool_size=2)
    asyncio.run(app.migrate())
    asyncio.run(app.close())
    try:
        with app:
            yield app
    finally:
        asyncio.run(app.migrate(to_version=0))
        asyncio.run(app.close())


def _sync_writes(app: Chancy, mp: pytest.MonkeyPatch) -> list[str]:
    """``_inserts`` for sync pushes: the write statements run from now on, in order."""
    names = {app.store.q[n]: n for n in _WRITES}
    seen: list[str] = []
    real = runner.run_spec_sync

    def recording(cur: Any, spec: Any) -> Any:
        if spec.query in names:
            seen.append(names[spec.query])
        return real(cur, spec)

    mp.setattr(runner, "run_spec_sync", recording)
    return seen


def test_sync_push_many_bets_on_new_keys_too(dsn: str, prefix: str) -> None:
    """sync_push_many: a batch whose keys are live is written again, skipping them; the
    batches after it no longer bet."""
    with _sync_app(dsn, prefix) as app:
        live = [r for b in app.sync_push_many(_keyed(range(150)), batch_size=150) for r in b]
        with pytest.MonkeyPatch.context() as mp:
            seen = _sync_writes(app, mp)
            refs = [r for b in app.sync_push_many(_keyed(range(600)), batch_size=200) for r in b]
        assert refs[:150] == live and len(set(refs)) == 600
        stored = app.sync_get_jobs(refs)
        assert [j.kwargs["k"] for j in stored] == list(range(600))
        assert seen == [
            "job_insert_many_plain",  # k0-k149 live: lost
            "job_insert_many_lean",
            "job_insert_many_lean",  # no bet after a loss; k200-k399 found new
            "job_insert_many_plain",  # so the next batch bets again
        ]


async def test_a_first_copy_batch_with_a_bad_job_writes_nothing(chancy: Chancy) -> None:
    """The first batch for COPY is encoded while COPY sends it: a job that cannot be
    encoded, found after rows were sent, fails the COPY and its transaction rolls back."""
    jobs = _jobs(3000)
    jobs[2600] = Job(func="tests.jobs.noop", kwargs={"bad": object()})
    with pytest.raises(InvalidJobError, match=r"job 2600 \(tests\.jobs\.noop\): kwargs"):
        async for _ in chancy.push_many(jobs, batch_size=10_000):
            pass
    assert await _stored(chancy) == 0
    # The connection went back to the pool usable.
    refs = [r async for b in chancy.push_many(_jobs(3000), batch_size=10_000) for r in b]
    assert len(refs) == 3000 and await _stored(chancy) == 3000


async def test_a_big_batch_bets_on_new_keys_by_copy(
    chancy: Chancy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of at least COPY_BET_MIN jobs with unique keys is written by COPY on the bet
    that its keys are new: a key repeated in the batch maps to its first job, jobs without a
    key go in too, and keys that COPY's text format must escape are stored as given."""
    from chancy.store.encode import COPY_BET_MIN

    odd_keys = ["tab\there", "back\\slash", "new\nline", "ünï"]
    jobs = [
        Job(
            func="tests.jobs.noop",
            kwargs={"i": i},
            unique_key=None if i % 7 == 0 else odd_keys[i % 4] if i < 40 else f"k{i % 1100}",
        )
        for i in range(COPY_BET_MIN + 300)
    ]
    statements = _inserts(chancy, monkeypatch)
    refs = [r async for b in chancy.push_many(jobs, batch_size=len(jobs)) for r in b]
    assert statements == ["job_copy_lean_unique"]
    first: dict[str, Any] = {}
    for job, ref in zip(jobs, refs, strict=True):
        if job.unique_key is not None:
            assert first.setdefault(job.unique_key, ref) == ref
    assert len(set(refs)) == len(first) + sum(1 for j in jobs if j.unique_key is None)
    assert await _stored(chancy) == len(set(refs))
    stored = {j.id: j for j in await chancy.get_jobs(list(set(refs))) if j is not None}
    for job, ref in zip(jobs, refs, strict=True):
        got = stored[ref.identifier]
        assert got.unique_key == job.unique_key
        if job.unique_key is None or first[job.unique_key] is ref:
            assert got.kwargs == job.kwargs


async def test_a_copy_bet_lost_to_live_keys_is_written_again(
    chancy: Chancy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A COPY that meets a live key fails on the unique index like the INSERT bet: its
    transaction rolls back and the batch is written again with ON CONFLICT, jobs with live
    keys mapping to the live jobs."""
    live = [r async for b in chancy.push_many(_keyed(range(300))) for r in b]
    statements = _inserts(chancy, monkeypatch)
    refs = [r async for b in chancy.push_many(_keyed(range(1200)), batch_size=1200) for r in b]
    assert statements == ["job_copy_lean_unique", "job_insert_many_lean"]
    assert refs[:300] == live
    assert len(set(refs)) == 1200 and await _stored(chancy) == 1200
    assert not chancy.keys_seen_new


async def test_a_copy_bet_stores_what_the_insert_stores(
    chancy: Chancy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch with unique keys whose jobs set columns of their own (meta, a partition key)
    or go to a queue that fills one in (a default deadline) bets by job_copy_unique, and
    stores what job_insert_many stores for the same jobs."""
    await chancy.declare(Queue("bet.deadline", default_deadline=3600), upsert=True)

    def jobs(tag: str) -> list[Job]:
        return [
            Job(
                func="tests.jobs.noop",
                queue="bet.deadline" if i % 3 == 0 else "default",
                kwargs={"i": i},
                meta={"m": i} if i % 2 else {},
                partition_key="p" if i % 5 == 0 else None,
                priority=i % 4,
                unique_key=f"{tag}{i}",
            )
            for i in range(1200)
        ]

    statements = _inserts(chancy, monkeypatch)
    by_copy = [r async for b in chancy.push_many(jobs("c"), batch_size=1200) for r in b]
    by_insert = [r async for b in chancy.push_many(jobs("i"), batch_size=600) for r in b]
    assert statements[0] == "job_copy_unique"
    assert "job_copy_unique" not in statements[1:]
    columns = (
        "queue, kwargs, meta, partition_key, priority, substr(unique_key, 2) AS key,"
        " deadline - scheduled_at AS deadline_after, state"
    )

    async def rows(refs: list[Any]) -> list[tuple[Any, ...]]:
        async with chancy.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {columns} FROM {chancy.prefix}jobs WHERE id = ANY(%s)"
                " ORDER BY (kwargs->>'i')::int",
                [[r.identifier for r in refs]],
            )
            return await cur.fetchall()

    copied = await rows(by_copy)
    assert len(copied) == 1200
    assert copied == await rows(by_insert)


def test_sync_push_many_bets_by_copy_too(dsn: str, prefix: str) -> None:
    """sync_push_many writes a big batch with unique keys by COPY on the bet, and a lost bet
    (keys live) again with ON CONFLICT."""
    with _sync_app(dsn, prefix) as app:
        with pytest.MonkeyPatch.context() as mp:
            seen = _sync_writes(app, mp)
            first = [r for b in app.sync_push_many(_keyed(range(1200)), batch_size=1200) for r in b]
            again = [
                r for b in app.sync_push_many(_keyed(range(600, 1800)), batch_size=1200) for r in b
            ]
        assert seen == ["job_copy_lean_unique", "job_copy_lean_unique", "job_insert_many_lean"]
        assert len(set(first)) == 1200 and again[:600] == first[600:]
        stored = app.sync_get_jobs(again)
        assert [j.kwargs["k"] for j in stored] == list(range(600, 1800))
