"""The unlimited claim is the function claim_jobs (migration v0017, last replaced by v0023): its
SET list is a copy of the claim_or_expire fragment the limited claims use, and must stay the
same."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from chancy import Chancy, Job, Limit, Queue, QueuedJob, Reference
from chancy.outcome import Outcome, build_outcome, evolve
from chancy.runtime.producer import fetch_claim
from chancy.store import run
from chancy.store.encode import _uuid_array_literal, _word_array_literal
from chancy.store.loader import _fragments


def _normal(text: str) -> str:
    text = re.sub(r"--[^\n]*", "", text)
    return re.sub(r"\s+", " ", text).strip()


async def test_claim_function_sets_what_the_limited_claims_set(chancy: Chancy) -> None:
    """Read as the migrations leave it, whichever migration replaced the function last."""
    fragment = _normal(_fragments()["{claim_or_expire}"]).replace("%(worker_id)s", "p_worker_id")
    pool = await chancy.open()
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT prosrc FROM pg_proc WHERE oid = to_regprocedure(%s)",
            (f"{chancy.prefix}claim_jobs(text, integer, text)",),
        )
        row = await cur.fetchone()
    assert row is not None
    body = _normal(row[0]).replace(chancy.prefix, "{prefix}")
    assert fragment.startswith("state = CASE"), fragment
    assert f"SET {fragment} WHERE j.ctid = ANY(ARRAY(SELECT ctid FROM picked))" in body, (
        "claim_jobs (as the migrations leave it) and the claim_or_expire fragment differ: a"
        " change to one needs a new migration that replaces the function with the same SET"
        " list"
    )
    claimed = _normal(_fragments()["{claim_picked}"])
    fragment = fragment.replace("p_worker_id", "%(worker_id)s")
    assert f"SET {fragment} WHERE j.ctid = ANY(ARRAY(SELECT ctid FROM picked))" in claimed


CLAIM_FORMS = {
    "plain": Queue("form"),
    "limited": Queue("form", global_concurrency=100),
    "keyed": Queue("form", partition_concurrency=10),
    "fair": Queue("form", fairness=True),
    "ordered": Queue("form", partition_ordered=True),
}


@pytest.mark.parametrize("form", list(CLAIM_FORMS))
async def test_each_claim_draws_one_claim_id_for_the_jobs_it_takes(
    chancy: Chancy, form: str
) -> None:
    """Every claim form draws its claim id once per statement (migration v0023 and the
    claim_or_expire fragment: a gen_random_uuid() per row cost about 1.6 us per claimed job):
    the jobs one claim takes share it, and the next claim, of other jobs or of the same job
    given back, draws a new one. A run is the pair (id, claim_id), which every fenced write
    matches: a write under the first claim's id changes nothing once the job runs again."""
    await chancy.declare(CLAIM_FORMS[form])
    queue = await chancy.get_queue("form")
    for i in range(8):
        await chancy.push(Job(func="tests.jobs.noop", queue="form", partition_key=f"k{i}"))
    pool = await chancy.open()
    async with pool.connection() as conn:
        first = (await fetch_claim(chancy, "w1", queue, conn, up_to=4)).jobs
        second = (await fetch_claim(chancy, "w1", queue, conn, up_to=4)).jobs
    assert len(first) == len(second) == 4
    first_ids = {job.claim_id for job in first}
    assert len(first_ids) == 1 and None not in first_ids
    assert len({job.claim_id for job in second}) == 1
    assert first[0].claim_id != second[0].claim_id
    for job in (*first, *second):
        stored = await chancy.get_job(Reference(job.id))
        assert stored is not None and (stored.state, stored.claim_id) == ("running", job.claim_id)

    # The first job given back and claimed again: a new claim id, and the old one is fenced out.
    again = first[0]
    given = Outcome(evolve(again, state=QueuedJob.State.PENDING))
    assert await chancy.db.run(chancy.store.job_complete_many([given], notify=False)) == [again.id]
    async with pool.connection() as conn:
        retaken = (await fetch_claim(chancy, "w2", queue, conn, up_to=4)).jobs
    assert [job.id for job in retaken] == [again.id]
    assert retaken[0].claim_id not in (first[0].claim_id, second[0].claim_id)
    late = build_outcome(again, None, "late", max_result_size=1000)
    assert await chancy.db.run(chancy.store.job_complete_many([late], notify=False)) == []
    stored = await chancy.get_job(Reference(again.id))
    assert stored is not None
    assert (stored.state, stored.taken_by, stored.claim_id) == (
        "running",
        "w2",
        retaken[0].claim_id,
    )


async def test_a_claim_reads_each_job_as_stored(chancy: Chancy) -> None:
    """The claim's rows (binary, empty JSON values sent as NULL, built straight from the
    values) are the jobs ``get_job`` reads back: every field, for a job that uses them all
    and for one that uses none."""
    full = Job(
        func="tests.jobs.noop",
        queue="c",
        kwargs={"nested": {"list": [1, 2.5, "three", None]}, "text": "é\\n\"'"},
        priority=7,
        max_attempts=4,
        limits=[Limit(Limit.Type.TIME, 30), Limit(Limit.Type.MEMORY, 1 << 20)],
        meta={"tag": "x", "n": 1},
        unique_key="u1",
        deadline=datetime.now(UTC) + timedelta(hours=1),
    )
    refs = [await chancy.push(full), await chancy.push(Job(func="tests.jobs.noop", queue="c"))]
    claimed = await chancy.db.run(chancy.store.job_fetch("c", 10, "w1"))
    assert [job.id for job in claimed] == [ref.identifier for ref in refs]  # priority first
    for job in claimed:
        stored = await chancy.get_job(Reference(job.id))
        assert stored is not None and stored.state is QueuedJob.State.RUNNING
        assert dataclasses.asdict(job) == dataclasses.asdict(stored)
    assert claimed[0].kwargs == full.kwargs and claimed[0].limits == full.limits
    assert claimed[1].kwargs == {} and claimed[1].meta == {} and claimed[1].errors == []


async def test_outcomes_are_written_by_ids_sent_as_hex_digits(chancy: Chancy) -> None:
    """job_complete_many sends ids and claim ids as 32 hex digits (``_uuid_array_literal``):
    the database reads them as the same uuids, and a missing claim id as NULL (fenced out)."""
    refs = [await chancy.push(Job(func="tests.jobs.noop", queue="h")) for _ in range(3)]
    claimed = await chancy.db.run(chancy.store.job_fetch("h", 10, "w1"))
    outcomes = [build_outcome(job, None, i, max_result_size=1000) for i, job in enumerate(claimed)]
    outcomes[2] = Outcome(evolve(outcomes[2].job, claim_id=None), result_json="2")
    written = await chancy.db.run(chancy.store.job_complete_many(outcomes, notify=False))
    assert sorted(written) == sorted(job.id for job in claimed[:2])
    assert _uuid_array_literal([claimed[0].id, None]) == "{" + claimed[0].id.hex + ",NULL}"
    # Claim ids recur (one per claim): formatted once each, the same literal.
    again = [claimed[0].claim_id, None, claimed[1].claim_id, claimed[0].claim_id, claimed[2].id]
    assert _uuid_array_literal(again, repeated=True) == _uuid_array_literal(again)
    stored = [await chancy.get_job(ref) for ref in refs]
    assert [job.state if job else None for job in stored] == ["succeeded", "succeeded", "running"]


def test_outcome_states_are_written_as_their_values() -> None:
    """job_complete_many joins the states as the strings they are (not through the enum's
    ``__str__``); a state that is not a str (a plugin's odd value) still goes as its str()."""
    succeeded, failed = QueuedJob.State.SUCCEEDED, QueuedJob.State.FAILED
    assert _word_array_literal([succeeded, failed, "retrying"]) == "{succeeded,failed,retrying}"
    assert _word_array_literal([succeeded, 7]) == "{succeeded,7}"


async def test_a_claim_commits_durably(chancy: Chancy) -> None:
    """job_fetch must not turn synchronous_commit off for its transaction (see jobs.sql): a
    claim undone by a crash of PostgreSQL leaves the worker holding jobs that are pending
    again; claiming one it still holds runs it twice in one process and loses an outcome."""
    await chancy.push(Job(func="tests.jobs.noop", queue="c"))
    pool = await chancy.open()
    async with pool.connection() as conn:
        async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            assert len(await run(cur, chancy.store.job_fetch("c", 1, "w1"))) == 1
            setting = await (await cur.execute("SHOW synchronous_commit")).fetchone()
            assert setting == {"synchronous_commit": "on"}


@pytest.mark.parametrize("limited", [False, True], ids=["plain", "limited"])
async def test_racing_claims_take_every_job_once_while_rows_change(
    chancy: Chancy, dsn: str, prefix: str, limited: bool
) -> None:
    """Claims update the rows they picked by row version (ctid, migration v0022 and the
    claim_picked fragment). Four claimers race over one queue while another session keeps
    rewriting waiting rows (a new version of each, committed between a claim's snapshot and
    its lock): every job is claimed exactly once, and each stored row is running under the
    claimer and claim id that took it. A row picked in a version the claim's snapshot cannot
    see is left waiting for a later claim, never lost or taken twice."""
    total = 3000
    queue = Queue("race", global_concurrency=100_000) if limited else Queue("race")
    await chancy.declare(queue)
    declared = await chancy.get_queue("race")
    assert declared.has_limits is limited
    refs = [
        ref
        async for batch in chancy.push_many(
            [Job(func="tests.jobs.noop", queue="race", kwargs={"n": i}) for i in range(total)]
        )
        for ref in batch
    ]
    jobs = sql.Identifier(f"{prefix}jobs")
    done = asyncio.Event()

    async def claimer(name: str) -> list[QueuedJob]:
        taken: list[QueuedJob] = []
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            while True:
                async with conn.cursor(row_factory=dict_row) as cur:
                    if limited:
                        async with conn.transaction():
                            got = (
                                await run(cur, chancy.store.job_fetch_limited(declared, 50, name))
                            ).jobs
                    else:
                        got = await run(cur, chancy.store.job_fetch("race", 50, name))
                    taken += got
                    if not got:
                        left = await cur.execute(
                            sql.SQL("SELECT count(*) AS n FROM {} WHERE state = 'pending'").format(
                                jobs
                            )
                        )
                        if (await left.fetchone() or {"n": 1})["n"] == 0:
                            return taken

    async def rewriter() -> int:
        rewrites = 0
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            while not done.is_set():
                cur = await conn.execute(
                    sql.SQL(
                        "UPDATE {} SET meta = meta WHERE id IN (SELECT id FROM {} WHERE state"
                        " = 'pending' ORDER BY random() LIMIT 20)"
                    ).format(jobs, jobs)
                )
                rewrites += cur.rowcount
        return rewrites

    rewriting = asyncio.create_task(rewriter())
    try:
        results = await asyncio.gather(*(claimer(f"w{i}") for i in range(4)))
    finally:
        done.set()
        rewrites = await rewriting
    assert rewrites > 0
    claimed = [job for taken in results for job in taken]
    assert len(claimed) == total
    assert {job.id for job in claimed} == {ref.identifier for ref in refs}
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(
            sql.SQL("SELECT id, state, taken_by, claim_id FROM {}").format(jobs)
        )
        stored = {row[0]: row[1:] for row in await cur.fetchall()}
    for name, taken in zip((f"w{i}" for i in range(4)), results, strict=True):
        for job in taken:
            assert stored[job.id] == ("running", name, job.claim_id)
