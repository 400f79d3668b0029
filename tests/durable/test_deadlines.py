"""Deadlines: a job not started by its deadline is never started; it ends failed, saying so.

The claim itself fails such a job (in the claim's statement), so it costs nothing on the way
and is visible at once through get_job; a running job is not affected. Queues can give their
jobs a default deadline (seconds after the job is due).
"""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString, cast

import pytest

from chancy import Chancy, Job, Queue, QueuedJob, Worker
from chancy.errors import ConfigurationError, InvalidJobError
from chancy.outcome import Outcome, evolve
from chancy.plugins.metrics import Metrics
from chancy.store import Spec
from tests.conftest import eventually, migrated_app

FUNC = "tests.durable.jobs.wait_forever"
ASYNC = Chancy.Executor.Async


def soon(seconds: float = 0.3) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def db_now(chancy: Chancy) -> datetime:
    row = await chancy.db.run(Spec(cast(LiteralString, "SELECT now() AS now"), None, "one"))
    return cast(datetime, row["now"])


async def wait_past(chancy: Chancy, moment: datetime) -> None:
    """Until the database's clock is past ``moment`` (the claim compares with its now())."""

    async def passed() -> bool:
        return await db_now(chancy) > moment

    await eventually(passed, timeout=10, interval=0.05, message="the deadline passes")


async def test_a_job_past_its_deadline_is_never_started_and_fails_saying_so(
    chancy: Chancy,
) -> None:
    deadline = soon()
    late = await chancy.push(Job(func=FUNC, queue="d", deadline=deadline, priority=1))
    fine = await chancy.push(Job(func=FUNC, queue="d", deadline=soon(3600)))
    plain = await chancy.push(Job(func=FUNC, queue="d"))
    await wait_past(chancy, deadline)
    claim = await chancy.db.run(chancy.store.job_claim("d", 10, "w"))
    assert [j.id for j in claim.jobs] == [fine.identifier, plain.identifier]
    assert claim.expired == ((late.identifier, FUNC),)
    job = await chancy.get_job(late)
    assert job is not None
    assert (job.state, job.attempts, job.started_at, job.taken_by) == ("failed", 0, None, None)
    assert job.completed_at is not None and job.meta == {"expired": True}
    [error] = job.errors
    assert "had not started by its deadline" in error["traceback"]
    assert deadline.strftime("%Y-%m-%dT%H:%M:%S") in error["traceback"]
    assert job.deadline == deadline
    # Nothing left to claim.
    assert await chancy.db.run(chancy.store.job_fetch("d", 10, "w")) == []


async def test_a_running_job_is_not_affected_by_its_deadline(chancy: Chancy) -> None:
    deadline = soon()
    ref = await chancy.push(Job(func=FUNC, queue="r", deadline=deadline))
    [job] = await chancy.db.run(chancy.store.job_fetch("r", 1, "w"))
    await wait_past(chancy, deadline)
    done = evolve(job, state=QueuedJob.State.SUCCEEDED, attempts=1)
    written = await chancy.db.run(chancy.store.job_complete_many([Outcome(done)], notify=True))
    assert written == [job.id]
    got = await chancy.get_job(ref)
    assert got is not None and got.state == "succeeded"


async def test_a_retry_after_the_deadline_is_not_started(chancy: Chancy) -> None:
    deadline = soon()
    ref = await chancy.push(Job(func=FUNC, queue="rt", deadline=deadline, max_attempts=3))
    [job] = await chancy.db.run(chancy.store.job_fetch("rt", 1, "w"))
    failed = evolve(
        job,
        state=QueuedJob.State.RETRYING,
        attempts=1,
        errors=[{"attempt": 0, "traceback": "first try failed"}],
    )
    await chancy.db.run(chancy.store.job_complete_many([Outcome(failed)], notify=True))
    await wait_past(chancy, deadline)
    assert await chancy.db.run(chancy.store.job_fetch("rt", 1, "w")) == []
    got = await chancy.get_job(ref)
    assert got is not None and got.state == "failed" and got.attempts == 1
    assert [e["attempt"] for e in got.errors] == [0, 1]
    # An operator's retry runs it again: the deadline no longer applies.
    await chancy.retry_jobs([ref])
    again = await chancy.get_job(ref)
    assert again is not None and again.deadline is None and "expired" not in again.meta
    assert [j.id for j in await chancy.db.run(chancy.store.job_fetch("rt", 1, "w"))] == [job.id]


async def test_limited_queues_expire_jobs_too_without_counting_them(chancy: Chancy) -> None:
    await chancy.declare(Queue("lim", rate_limit=1, rate_limit_window=3600))
    deadline = soon()
    late = await chancy.push(Job(func=FUNC, queue="lim", deadline=deadline, priority=5))
    ok = await chancy.push(Job(func=FUNC, queue="lim"))
    await wait_past(chancy, deadline)
    queue = await chancy.get_queue("lim")
    # The rate limit leaves room for one start: the claim picks the expired job first...
    claim = await chancy.db.run(chancy.store.job_fetch_limited(queue, 10, "w"))
    assert claim.jobs == [] and claim.expired == ((late.identifier, FUNC),)
    # ...which did not count as a start, so the next claim still starts one.
    claim = await chancy.db.run(chancy.store.job_fetch_limited(queue, 10, "w"))
    assert [j.id for j in claim.jobs] == [ok.identifier] and claim.expired == ()
    got = await chancy.get_job(late)
    assert got is not None and got.state == "failed" and got.meta == {"expired": True}


async def test_queues_with_per_key_limits_expire_jobs_too(chancy: Chancy) -> None:
    await chancy.declare(Queue("keyed", partition_concurrency=1))
    deadline = soon()
    late = await chancy.push(
        Job(func=FUNC, queue="keyed", deadline=deadline, partition_key="a", priority=5)
    )
    ok = await chancy.push(Job(func=FUNC, queue="keyed", partition_key="a"))
    await wait_past(chancy, deadline)
    queue = await chancy.get_queue("keyed")
    claim = await chancy.db.run(chancy.store.job_fetch_limited(queue, 10, "w"))
    if not claim.jobs:  # the key's one place went to the expired job: it ran nothing
        claim2 = await chancy.db.run(chancy.store.job_fetch_limited(queue, 10, "w"))
        claim = dataclasses.replace(claim2, expired=claim.expired + claim2.expired)
    assert [j.id for j in claim.jobs] == [ok.identifier]
    assert claim.expired == ((late.identifier, FUNC),)


# -- queue defaults --------------------------------------------------------------------------


async def test_a_queue_default_deadline_applies_to_jobs_without_one(chancy: Chancy) -> None:
    await chancy.declare(Queue("dd", default_deadline=90))
    stored = await chancy.get_queue("dd")
    assert stored == Queue("dd", default_deadline=90) and stored.default_deadline == 90
    assert Queue.unpack(stored.pack()) == stored
    own = soon(3600)
    at = datetime.now(UTC) + timedelta(hours=2)
    refs = [
        await chancy.push(Job(func=FUNC, queue="dd")),
        await chancy.push(Job(func=FUNC, queue="dd", deadline=own)),
        await chancy.push(Job(func=FUNC, queue="dd", scheduled_at=at)),
        await chancy.push(Job(func=FUNC, queue="other")),
    ]
    a, b, c, d = await chancy.get_jobs(refs)
    assert a.deadline == a.scheduled_at + timedelta(seconds=90)
    assert b.deadline == own
    assert c.deadline == at + timedelta(seconds=90)
    assert d.deadline is None
    # Large batches go through COPY; the default applies there as well.
    batch = [r async for rs in chancy.push_many([Job(func=FUNC, queue="dd")] * 2500) for r in rs]
    jobs = await chancy.get_jobs([batch[0], batch[-1]])
    assert all(j.deadline == j.scheduled_at + timedelta(seconds=90) for j in jobs)


@pytest.mark.parametrize("bad", [0, -5, math.nan, math.inf, True, "60"])
def test_bad_default_deadlines_are_refused(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="default_deadline must be a positive number"):
        Queue("q", default_deadline=bad)


# -- bad input ---------------------------------------------------------------------------------


async def test_bad_deadlines_are_refused_and_nothing_is_stored(chancy: Chancy) -> None:
    with pytest.raises(InvalidJobError, match="deadline must be timezone-aware"):
        Job(func=FUNC, deadline=datetime.now() + timedelta(hours=1))
    with pytest.raises(InvalidJobError, match="deadline must be a datetime"):
        Job(func=FUNC, deadline="tomorrow")  # type: ignore[arg-type]
    past = Job(func=FUNC, queue="bad", deadline=datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(InvalidJobError, match="has already passed"):
        await chancy.push(past)
    good = Job(func=FUNC, queue="bad", deadline=soon(3600))
    with pytest.raises(InvalidJobError, match=r"job 1 .* has already passed"):
        async for _ in chancy.push_many([good, past]):
            pass
    later = datetime.now(UTC) + timedelta(hours=2)
    with pytest.raises(InvalidJobError, match="is not after its scheduled_at"):
        await chancy.push(Job(func=FUNC, queue="bad", scheduled_at=later, deadline=soon(60)))
    assert await chancy.db.run(chancy.store.job_fetch("bad", 10, "w")) == []


def test_with_deadline_and_pack_round_trip() -> None:
    deadline = soon(3600)
    job = Job(func=FUNC).with_deadline(deadline)
    assert job.deadline == deadline
    assert Job.unpack(job.pack()).deadline == deadline
    assert Job.unpack(Job(func=FUNC).pack()).deadline is None
    assert job.with_deadline(None).deadline is None
    # The run's time limit (0.26's private name) is another thing entirely.
    queued = QueuedJob(func=FUNC, id=__import__("uuid").uuid4()).with_time_limit(30)
    remaining = queued.time_remaining()
    assert remaining is not None and 29 < remaining <= 30 and queued.deadline is None


# -- with a worker: waiters woken, expired jobs counted -------------------------------------


async def test_a_worker_expires_jobs_wakes_waiters_and_counts_them(dsn: str, prefix: str) -> None:
    metrics = Metrics()
    async with migrated_app(dsn, prefix, [metrics]) as app:
        await app.declare(Queue("w", executor=ASYNC, polling_interval=60))
        await app.pause_queue("w")
        deadline = soon()
        late = await app.push(Job(func=FUNC, queue="w", deadline=deadline))
        await wait_past(app, deadline)
        async with Worker(app, register_signal_handlers=False, shutdown_timeout=2) as worker:
            await eventually(lambda: "w" in worker.executors, message="queue served")
            finished: list[Any] = []
            worker.hub.on("job.finished", lambda event: finished.extend(event.body["ids"]))
            await app.resume_queue("w")
            # The claim announces the expired job as finished (NOTIFY), waking waiters.
            await eventually(lambda: str(late) in finished, message="job.finished announced")
            job = await app.wait_for_job(late, timeout=10, interval=30)
            assert job is not None and job.state == "failed" and job.meta == {"expired": True}
            await metrics.flush(app)
        query = cast(
            LiteralString,
            f"SELECT sum(count) AS n FROM {prefix}metrics"
            " WHERE name = 'jobs.expired' AND resolution = 'total' AND queue = 'w'"
            " AND func = %(func)s",
        )
        row = await app.db.run(Spec(query, {"func": FUNC}, "one"))
        assert row["n"] == 1
