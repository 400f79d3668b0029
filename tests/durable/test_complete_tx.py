"""Transactional completion: a job finishes itself inside the caller's transaction.

``complete_job_ex`` marks the running job succeeded, with its result, in the transaction
that also holds the job's own writes; fenced by the claim, so a job recovered elsewhere
meanwhile raises ``JobNoLongerOwned`` and the transaction rolls back. The worker's own
completion of the run then writes nothing and is not counted as a lost (fenced) write.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator
from typing import Any, LiteralString, cast

import psycopg
import pytest

from chancy import Chancy, Job, Queue, QueuedJob, Worker
from chancy.errors import InvalidJobError, JobNoLongerOwned
from chancy.outcome import Outcome, evolve
from chancy.store import Spec
from tests.conftest import eventually
from tests.durable.jobs import SIDE_TABLES_DDL
from tests.plugins.conftest import Fleet

ASYNC = Chancy.Executor.Async
JOBS = "tests.durable.jobs"


async def _sql(chancy: Chancy, text: str, params: Any = None, fetch: Any = "none") -> Any:
    query = cast(LiteralString, text.format(prefix=chancy.prefix))
    return await chancy.db.run(Spec(query, params, fetch))


@pytest.fixture
async def tables(chancy: Chancy) -> AsyncIterator[None]:
    for statement in SIDE_TABLES_DDL.strip().split(";"):
        if statement.strip():
            await _sql(chancy, statement)
    try:
        yield
    finally:
        for table in ("tx_counter", "tx_runs"):
            await _sql(chancy, "DROP TABLE IF EXISTS {prefix}" + table)


async def counter(chancy: Chancy) -> int:
    row = await _sql(chancy, "SELECT n FROM {prefix}tx_counter WHERE id = 1", fetch="one")
    return int(row["n"])


async def runs(chancy: Chancy) -> list[dict[str, Any]]:
    return list(await _sql(chancy, "SELECT * FROM {prefix}tx_runs", fetch="all"))


def tx_job(chancy: Chancy, queue: str, func: str = "counted_tx", **kwargs: Any) -> Job:
    return Job(
        func=f"{JOBS}.{func}",
        queue=queue,
        kwargs={"dsn": chancy.dsn, "prefix": chancy.prefix, **kwargs},
    )


async def claim(chancy: Chancy, queue: str) -> QueuedJob:
    (job,) = await chancy.db.run(chancy.store.job_fetch(queue, 1, "test-worker"))
    return job


# -- the statement, without a worker ---------------------------------------------------------


async def test_success_result_and_the_callers_writes_commit_together(
    chancy: Chancy, tables: None
) -> None:
    ref = await chancy.push(tx_job(chancy, "q"))
    job = await claim(chancy, "q")
    async with await psycopg.AsyncConnection.connect(chancy.dsn) as conn:
        async with conn.transaction(), conn.cursor() as cur:
            await chancy.complete_job_ex(cur, job, result={"answer": 42})
            await cur.execute(
                cast(LiteralString, f"UPDATE {chancy.prefix}tx_counter SET n = n + 1")
            )
            # Not visible outside the transaction yet.
            outside = await chancy.get_job(ref)
            assert outside is not None and outside.state == "running"
    done = await chancy.get_job(ref)
    assert done is not None
    assert (done.state, done.result, done.attempts) == ("succeeded", {"answer": 42}, 1)
    assert done.completed_at is not None
    assert await counter(chancy) == 1

    # The worker's own (late) completion of the run matches nothing, is recognised as
    # settled by the run itself, and does not overwrite the result.
    late = evolve(job, state=QueuedJob.State.SUCCEEDED, attempts=1)
    written = await chancy.db.run(
        chancy.store.job_complete_many([Outcome(late, result_json='"late"')], notify=True)
    )
    assert written == []
    settled = await chancy.db.run(chancy.store.job_settled_by_claim([(job.id, job.claim_id)]))
    assert settled == {job.id}
    again = await chancy.get_job(ref)
    assert again is not None and again.result == {"answer": 42} and again.attempts == 1


async def test_a_rollback_leaves_the_job_running_and_nothing_written(
    chancy: Chancy, tables: None
) -> None:
    ref = await chancy.push(tx_job(chancy, "q"))
    job = await claim(chancy, "q")
    async with await psycopg.AsyncConnection.connect(chancy.dsn) as conn:
        with pytest.raises(RuntimeError, match="boom"):
            async with conn.transaction(), conn.cursor() as cur:
                await chancy.complete_job_ex(cur, job, result=1)
                await cur.execute(
                    cast(LiteralString, f"UPDATE {chancy.prefix}tx_counter SET n = n + 1")
                )
                raise RuntimeError("boom")
    got = await chancy.get_job(ref)
    assert got is not None and (got.state, got.result, got.attempts) == ("running", None, 0)
    assert await counter(chancy) == 0
    # The run is still the job's owner: its normal completion is written.
    written = await chancy.db.run(
        chancy.store.job_complete_many(
            [Outcome(evolve(job, state=QueuedJob.State.SUCCEEDED, attempts=1))], notify=True
        )
    )
    assert written == [job.id]


async def test_a_job_recovered_elsewhere_raises_and_nothing_is_committed(
    chancy: Chancy, tables: None
) -> None:
    ref = await chancy.push(tx_job(chancy, "q"))
    job = await claim(chancy, "q")
    # What Recovery does to the job of a dead worker: back to pending, its claim cleared.
    await _sql(
        chancy,
        "UPDATE {prefix}jobs SET state = 'pending', claim_id = NULL, taken_by = NULL,"
        " started_at = NULL, recoveries = recoveries + 1 WHERE id = %(id)s",
        {"id": job.id},
    )
    async with await psycopg.AsyncConnection.connect(chancy.dsn) as conn:
        with pytest.raises(JobNoLongerOwned, match="no longer running under this run's claim"):
            async with conn.transaction(), conn.cursor() as cur:
                await cur.execute(
                    cast(LiteralString, f"UPDATE {chancy.prefix}tx_counter SET n = n + 1")
                )
                await chancy.complete_job_ex(cur, job, result="zombie")
    got = await chancy.get_job(ref)
    assert got is not None and (got.state, got.result, got.attempts) == ("pending", None, 0)
    assert await counter(chancy) == 0

    # Taken again by another run: the old run's claim still does not match.
    rerun = await claim(chancy, "q")
    assert rerun.claim_id != job.claim_id
    with psycopg.connect(chancy.dsn) as conn, conn.cursor() as cur:
        with pytest.raises(JobNoLongerOwned):
            chancy.sync_complete_job_ex(cur, job, result="zombie")
        conn.rollback()
        chancy.sync_complete_job_ex(cur, rerun, result="rerun")
    done = await chancy.get_job(ref)
    assert done is not None and (done.state, done.result) == ("succeeded", "rerun")


async def test_cancelled_or_finished_jobs_cannot_be_completed(chancy: Chancy) -> None:
    await chancy.push(Job(func=f"{JOBS}.wait_forever", queue="q"))
    job = await claim(chancy, "q")
    assert await chancy.cancel_job(job.id, "not needed")
    async with await psycopg.AsyncConnection.connect(chancy.dsn) as conn:
        async with conn.cursor() as cur:
            with pytest.raises(JobNoLongerOwned):
                await chancy.complete_job_ex(cur, job)
    got = await chancy.get_job(job.id)
    assert got is not None and got.state == "failed" and got.cancel_reason == "not needed"


async def test_bad_input_is_refused_before_anything_is_written(chancy: Chancy) -> None:
    ref = await chancy.push(Job(func=f"{JOBS}.wait_forever", queue="q"))
    job = await claim(chancy, "q")
    async with await psycopg.AsyncConnection.connect(chancy.dsn) as conn:
        async with conn.cursor() as cur:
            with pytest.raises(TypeError, match="QueuedJob your job function received"):
                await chancy.complete_job_ex(cur, Job(func=f"{JOBS}.wait_forever"))  # type: ignore[arg-type]
            unclaimed = await chancy.get_job(ref)
            assert unclaimed is not None
            with pytest.raises(InvalidJobError, match="carries no claim"):
                await chancy.complete_job_ex(cur, evolve(unclaimed, claim_id=None))
            with pytest.raises(InvalidJobError, match="not JSON-serialisable"):
                await chancy.complete_job_ex(cur, job, result=object())
            with pytest.raises(InvalidJobError, match="over the"):
                await chancy.complete_job_ex(cur, job, result="x" * (2 * 1024 * 1024))
    got = await chancy.get_job(ref)
    assert got is not None and got.state == "running"


# -- with a worker ------------------------------------------------------------------------------


@pytest.fixture
async def worker(chancy: Chancy, tables: None) -> AsyncIterator[Worker]:
    await chancy.declare(Queue("a", executor=ASYNC, concurrency=4, polling_interval=60))
    await chancy.declare(
        Queue("t", executor=Chancy.Executor.Threaded, concurrency=2, polling_interval=60)
    )
    await chancy.declare(
        Queue("p", executor=Chancy.Executor.Process, concurrency=1, polling_interval=60)
    )
    w = Worker(chancy, register_signal_handlers=False, shutdown_timeout=5)
    async with w:
        await eventually(lambda: {"a", "t", "p"} <= set(w.executors), message="queues served")
        yield w


async def test_the_worker_writes_nothing_more_after_a_transactional_completion(
    chancy: Chancy, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chancy")
    refs = [
        await chancy.push(tx_job(chancy, "a")),
        await chancy.push(tx_job(chancy, "t", func="counted_tx_sync")),
        await chancy.push(tx_job(chancy, "p", func="counted_tx_sync")),
        # Raises after its commit: the completion stands, the failure is not written.
        await chancy.push(tx_job(chancy, "a", raise_after=True).with_max_attempts(3)),
    ]
    jobs = await chancy.wait_for_jobs(refs, timeout=30)
    for job, via in zip(jobs, ["transaction", "sync", "sync", "transaction"], strict=True):
        assert job.state == "succeeded", job
        assert job.result == {"via": via, "id": str(job.id)}
        assert (job.attempts, job.errors) == (1, [])
    assert await counter(chancy) == 4
    await eventually(lambda: worker.completer.settled == 4, message="four runs settled")
    assert worker.completer.fenced == 0
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not noisy, [r.getMessage() for r in noisy]
    assert not any("were not written" in r.getMessage() for r in caplog.records)


async def test_an_error_inside_the_transaction_rolls_it_back_and_the_job_retries(
    chancy: Chancy, worker: Worker
) -> None:
    ref = await chancy.push(tx_job(chancy, "a", raise_inside=True).with_max_attempts(2))
    job = await chancy.wait_for_job(ref, timeout=30)
    assert job is not None and job.state == "succeeded" and job.attempts == 2
    assert len(job.errors) == 1 and "failed inside the transaction" in job.errors[0]["traceback"]
    assert await counter(chancy) == 1
    assert [r["attempt"] for r in await runs(chancy)] == [1]
    # With no attempt left, the same error fails the job and nothing is counted.
    ref = await chancy.push(tx_job(chancy, "a", raise_inside=True))
    job = await chancy.wait_for_job(ref, timeout=30)
    assert job is not None and job.state == "failed" and job.result is None
    assert await counter(chancy) == 1


# -- crashes: two workers, one killed mid-transaction ---------------------------------------

N = 120


async def test_a_counter_written_with_the_completion_ends_exact_despite_a_killed_worker(
    chancy: Chancy, tables: None, fleet: Fleet
) -> None:
    await chancy.declare(
        Queue("k", executor=ASYNC, concurrency=4, tags={"role=k"}, polling_interval=1)
    )
    doomed = fleet.start("doomed", tags=("role=k",))
    other = fleet.start("other", tags=("role=k",))
    await eventually(lambda: doomed.started() and other.started(), timeout=30, message="up")
    # Each run holds its transaction open (counter bumped, job completed, not committed yet)
    # for a while, so the kill lands inside open transactions.
    refs = [
        r
        async for batch in chancy.push_many(tx_job(chancy, "k", hold=0.15) for _ in range(N))
        for r in batch
    ]

    async def doomed_busy() -> bool:
        jobs = await chancy.get_jobs(refs)
        done = sum(j.state == "succeeded" for j in jobs)
        mine = sum(j.state == "running" and j.taken_by == doomed.worker_id for j in jobs)
        return done >= 10 and mine >= 2

    await eventually(doomed_busy, timeout=60, interval=0.01, message="doomed worker busy")
    doomed.kill()
    assert doomed.popen.returncode == -signal.SIGKILL
    jobs = await chancy.wait_for_jobs(refs, timeout=90, interval=0.5)
    assert [j.state for j in jobs] == ["succeeded"] * N, fleet.logs()
    interrupted = sum(j.recoveries for j in jobs)
    assert interrupted >= 1, "the kill interrupted no open transaction"
    print(f"\n{N} jobs, {interrupted} interrupted by the kill mid-transaction and rerun")
    assert await counter(chancy) == N
    recorded = await runs(chancy)
    assert len(recorded) == N and len({r["job_id"] for r in recorded}) == N
    for job in jobs:
        assert job.result == {"via": "transaction", "id": str(job.id)}
        assert job.attempts == 1
    other.signal(signal.SIGTERM)
    await eventually(lambda: not other.alive(), timeout=20, message="other exits")
    exit_line = other.exit_line()
    assert exit_line is not None and exit_line["fenced"] == 0, exit_line
