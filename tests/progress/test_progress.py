"""Progress reports: every executor, buffering, the claim fence, retries, bad input."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chancy import Chancy, Job, Queue, QueuedJob, Worker
from chancy.errors import ConfigurationError, InvalidProgressError
from chancy.plugins.recovery import Recovery
from chancy.progress import MAX_DATA_SIZE, Progress, make_report
from tests.conftest import eventually

JOBS = "tests.progress.jobs"
EXECUTORS = {
    "async": Chancy.Executor.Async,
    "thread": Chancy.Executor.Threaded,
    "process": Chancy.Executor.Process,
}


@pytest.fixture
async def worker(chancy: Chancy) -> AsyncIterator[Worker]:
    for name, executor in EXECUTORS.items():
        await chancy.declare(Queue(name, executor=executor, concurrency=2, polling_interval=60))
    w = Worker(chancy, register_signal_handlers=False, shutdown_timeout=5, progress_interval=0.5)
    async with w:
        await eventually(lambda: set(EXECUTORS) <= set(w.executors), message="queues served")
        yield w


def gated_job(queue: str, gate: Path, **fields: Any) -> Job:
    func = "agated" if queue == "async" else "gated"
    return Job(func=f"{JOBS}.{func}", queue=queue, kwargs={"gate": str(gate)}, **fields)


async def progress_of(chancy: Chancy, ref: Any) -> Progress | None:
    job = await chancy.get_job(ref)
    assert job is not None
    return job.progress


@pytest.mark.parametrize("queue", list(EXECUTORS))
async def test_each_executor_reports_and_get_job_shows_it(
    chancy: Chancy, worker: Worker, queue: str, tmp_path: Path
) -> None:
    gate = tmp_path / "go"
    ref = await chancy.push(gated_job(queue, gate))

    # Seen while the job still runs: written by the periodic flush, not at completion.
    seen = await eventually(lambda: progress_of(chancy, ref), timeout=20)
    running = await chancy.get_job(ref)
    assert running is not None and running.state == QueuedJob.State.RUNNING
    assert seen.fraction == 0.5 and seen.message == "half way"
    assert seen.data["step"] == 1
    assert seen.at is not None and seen.at.tzinfo is not None

    gate.touch()
    done = await chancy.wait_for_job(ref, timeout=20)
    assert done is not None and done.state == QueuedJob.State.SUCCEEDED, done
    # The last report, made just before the job returned, is written with its outcome.
    assert done.progress is not None
    assert (done.progress.fraction, done.progress.message, done.progress.data) == (
        1.0,
        "done",
        {"step": 2},
    )
    assert sync_progress(chancy, ref) == done.progress


def sync_progress(chancy: Chancy, ref: Any) -> Progress | None:
    job = chancy.sync_get_job(ref)
    return job.progress if job else None


@pytest.mark.parametrize("queue", ["async", "thread", "process"])
async def test_ten_thousand_reports_cost_a_handful_of_writes(
    chancy: Chancy, worker: Worker, queue: str
) -> None:
    n = 10_000
    func = "amany" if queue == "async" else "many"
    started = time.monotonic()
    ref = await chancy.push(Job(func=f"{JOBS}.{func}", queue=queue, kwargs={"n": n}))
    job = await chancy.wait_for_job(ref, timeout=60)
    elapsed = time.monotonic() - started
    assert job is not None and job.state == QueuedJob.State.SUCCEEDED, job
    assert job.progress is not None
    assert job.progress.fraction == 1.0
    assert job.progress.data == {"i": n - 1}
    assert job.progress.message == f"item {n} of {n}"
    writer = worker.progress
    # At most one statement per interval while the job ran, plus the one with its outcome.
    assert 1 <= writer.flushes <= elapsed / writer.interval + 2, (writer.flushes, elapsed)
    assert writer.fenced == 0
    if queue == "process":
        # The child forwards at most one report per 50 ms, not each of the 10,000.
        assert writer.received < n / 10, writer.received
    else:
        assert writer.received == n


@pytest.mark.parametrize("queue", ["thread", "process"])
async def test_a_report_held_back_is_written_while_the_job_still_runs(
    chancy: Chancy, worker: Worker, queue: str, tmp_path: Path
) -> None:
    gate = tmp_path / "go"
    ref = await chancy.push(Job(func=f"{JOBS}.twice", queue=queue, kwargs={"gate": str(gate)}))

    async def second() -> bool:
        progress = await progress_of(chancy, ref)
        return progress is not None and progress.message == "second"

    # The process child holds the second report back (50 ms after the first) and its
    # thread sends it then, though the job reports nothing more.
    await eventually(second, timeout=20)
    job = await chancy.get_job(ref)
    assert job is not None and job.state == QueuedJob.State.RUNNING
    gate.touch()
    assert (await chancy.wait_for_job(ref, timeout=20)) is not None


async def test_jobs_that_never_report_cause_no_progress_work(
    chancy: Chancy, worker: Worker
) -> None:
    refs = [await chancy.push(Job(func=f"{JOBS}.noop", queue="async")) for _ in range(20)]
    for ref in refs:
        job = await chancy.wait_for_job(ref, timeout=20)
        assert job is not None and job.state == QueuedJob.State.SUCCEEDED
        assert job.progress is None
    writer = worker.progress
    assert (writer.received, writer.flushes, writer.written) == (0, 0, 0)


#: What happens to a running job elsewhere meanwhile: Recovery puts it back in the queue
#: (scheduled far ahead here so that this worker does not claim it again), or it was
#: recovered and claimed again by another worker (running under another claim).
TAKEN_AWAY = {
    "recovered": (
        "state = 'pending', claim_id = NULL, taken_by = NULL, started_at = NULL,"
        " scheduled_at = now() + interval '1 hour'",
        QueuedJob.State.PENDING,
    ),
    "reclaimed": (
        "claim_id = gen_random_uuid(), taken_by = 'another-worker'",
        QueuedJob.State.RUNNING,
    ),
}


@pytest.mark.parametrize("queue", ["async", "process"])
@pytest.mark.parametrize("how", sorted(TAKEN_AWAY))
async def test_a_report_after_the_job_was_taken_away_writes_nothing(
    chancy: Chancy, worker: Worker, queue: str, how: str, tmp_path: Path
) -> None:
    gate = tmp_path / "go"
    ref = await chancy.push(gated_job(queue, gate))
    await eventually(lambda: progress_of(chancy, ref), timeout=20)
    change, state = TAKEN_AWAY[how]
    async with chancy.pool.connection() as conn:
        await conn.execute(
            f"UPDATE {chancy.prefix}jobs SET {change} WHERE id = %s",  # type: ignore[arg-type]
            (ref.identifier,),
        )
    gate.touch()  # the job reports 1.0 and returns: both writes are fenced out
    await eventually(lambda: worker.completer.fenced >= 1, timeout=20)
    assert worker.progress.fenced >= 1
    job = await chancy.get_job(ref)
    assert job is not None and job.state == state
    assert job.progress is not None and job.progress.fraction == 0.5
    assert job.progress.data["step"] == 1


@pytest.mark.parametrize("queue", ["async", "thread", "process"])
async def test_the_next_attempt_resumes_from_the_last_data(
    chancy: Chancy, worker: Worker, queue: str
) -> None:
    func = "aresumable" if queue == "async" else "resumable"
    ref = await chancy.push(
        Job(func=f"{JOBS}.{func}", queue=queue, kwargs={"total": 10}, max_attempts=2)
    )
    job = await chancy.wait_for_job(ref, timeout=30)
    assert job is not None and job.state == QueuedJob.State.SUCCEEDED, job
    assert len(job.errors) == 1 and "interrupted half way" in job.errors[0]["traceback"]
    # Attempt 0 saved offset 5 before it failed; attempt 1 started there.
    assert job.result == {"resumed_from": 5, "attempt": 1}
    assert job.progress is not None and job.progress.data == {"offset": 9}
    # A retry by hand (attempts reset) keeps it too: the rerun starts at the last offset.
    await chancy.retry_jobs([ref])
    again = await chancy.wait_for_job(ref, timeout=30)
    assert again is not None and again.state == QueuedJob.State.SUCCEEDED, again
    assert again.result == {"resumed_from": 9, "attempt": 0}


async def test_progress_survives_a_give_back_at_shutdown_and_the_next_worker_reads_it(
    chancy: Chancy, tmp_path: Path
) -> None:
    await chancy.declare(Queue("async", executor=EXECUTORS["async"], polling_interval=60))
    gate = tmp_path / "go"
    first = Worker(chancy, register_signal_handlers=False, shutdown_timeout=0)
    async with first:
        ref = await chancy.push(gated_job("async", gate))
        job = await eventually(lambda: chancy.get_job(ref), timeout=20)
        await eventually(lambda: first.progress.received >= 1, timeout=20)
    # Given back at stop (pending, no attempt used), with the report it made.
    job = await chancy.get_job(ref)
    assert job is not None and job.state == QueuedJob.State.PENDING and job.attempts == 0
    assert job.progress is not None and job.progress.data["step"] == 1
    gate.touch()
    async with Worker(chancy, register_signal_handlers=False):
        done = await chancy.wait_for_job(ref, timeout=20)
    assert done is not None and done.state == QueuedJob.State.SUCCEEDED
    assert done.progress is not None and done.progress.data == {"step": 2}


@pytest.mark.parametrize(
    ("fraction", "message", "data", "says"),
    [
        (-0.1, None, None, "between 0 and 1"),
        (1.5, None, None, "between 0 and 1"),
        (math.nan, None, None, "between 0 and 1"),
        ("0.5", None, None, "must be a number"),
        (True, None, None, "must be a number"),
        (0.5, 42, None, "message must be a string"),
        (0.5, "x\x00y", None, "NUL"),
        (0.5, "x" * 5000, None, "characters long"),
        (0.5, None, object(), "JSON-serialisable"),
        (0.5, None, {"x": math.inf}, "JSON-serialisable"),
        (0.5, None, {"x": "a\x00b"}, "NUL"),
        (0.5, None, {"x": "y" * MAX_DATA_SIZE}, "over the limit"),
    ],
)
def test_bad_reports_raise_a_clear_error(fraction: Any, message: Any, data: Any, says: str) -> None:
    job = QueuedJob(func=f"{JOBS}.noop", id=uuid.uuid4(), state=QueuedJob.State.RUNNING)
    with pytest.raises(InvalidProgressError, match=says):
        job.report_progress(fraction, message, data)
    assert job.progress is None
    # A report outside any worker is kept on the job object only.
    job.report_progress(0, "start", {"n": 0})
    assert job.progress == Progress(0.0, "start", {"n": 0})


async def test_a_bad_report_fails_the_job_and_stores_nothing(
    chancy: Chancy, worker: Worker
) -> None:
    ref = await chancy.push(Job(func=f"{JOBS}.bad_report", queue="async", kwargs={"fraction": 2}))
    job = await chancy.wait_for_job(ref, timeout=20)
    assert job is not None and job.state == QueuedJob.State.FAILED
    assert "InvalidProgressError" in job.errors[0]["traceback"]
    assert "between 0 and 1" in job.errors[0]["traceback"]
    assert job.progress is None
    assert worker.progress.received == 0


async def test_recovery_keeps_progress_and_the_rerun_reads_it(chancy: Chancy) -> None:
    await chancy.declare(Queue("async", executor=EXECUTORS["async"], polling_interval=60))
    ref = await chancy.push(Job(func=f"{JOBS}.read_progress", queue="async"))
    # A worker ("ghost", with no live heartbeat) claims the job, and its progress is written
    # with the statement a worker uses; then it dies.
    (claimed,) = await chancy.db.run(chancy.store.job_fetch("async", 1, "ghost"))
    report = make_report(0.4, "page 4 of 10", {"page": 4})
    store = chancy.store
    assert await chancy.db.run(
        store.job_progress_many({ref.identifier: (claimed.claim_id, report)})
    )
    assert await Recovery().recover(chancy) == (1, 0)
    job = await chancy.get_job(ref)
    assert job is not None and job.state == QueuedJob.State.PENDING and job.recoveries == 1
    assert job.progress is not None
    assert (job.progress.fraction, job.progress.message, job.progress.data) == (
        0.4,
        "page 4 of 10",
        {"page": 4},
    )
    # The dead worker's claim can no longer write progress.
    late = make_report(0.9, "late", {"page": 9})
    assert (
        await chancy.db.run(store.job_progress_many({ref.identifier: (claimed.claim_id, late)}))
        == []
    )
    async with Worker(chancy, register_signal_handlers=False):
        done = await chancy.wait_for_job(ref, timeout=20)
    assert done is not None and done.state == QueuedJob.State.SUCCEEDED
    assert done.result == {"page": 4}


@pytest.mark.parametrize("bad", [-1, "0.5", None, math.nan])
async def test_progress_interval_is_checked(chancy: Chancy, bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="progress_interval"):
        Worker(chancy, progress_interval=bad)


async def test_a_worker_takes_reports_only_for_runs_it_holds(
    chancy: Chancy, worker: Worker, tmp_path: Path
) -> None:
    gate = tmp_path / "go"
    ref = await chancy.push(gated_job("async", gate))
    await eventually(lambda: worker.progress.received >= 1, timeout=20)
    running = worker.runtime.ledger.get(ref.identifier)
    assert running is not None
    report = make_report(0.7)
    # Not this worker's job, or an earlier run of it (another claim): not taken.
    assert not worker.progress.offer(uuid.uuid4(), running.claim_id, report)
    assert not worker.progress.offer(ref.identifier, uuid.uuid4(), report)
    assert worker.progress.offer(ref.identifier, running.claim_id, report)
    gate.touch()
    assert (await chancy.wait_for_job(ref, timeout=20)) is not None
    # Once the run ended, a late report from it (a thread left running) is not taken either.
    assert not worker.progress.offer(ref.identifier, running.claim_id, report)
