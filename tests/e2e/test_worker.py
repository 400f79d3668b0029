"""The worker's acceptance tests: real ``chancy worker start`` processes on a real database.

Jobs record each run in a side table whose UNIQUE job id column makes a second run of the same
job fail, and whose serial column gives the order runs started in.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chancy import Chancy, Job, Queue, QueuedJob, Reference
from chancy.executors.base import MAX_AHEAD
from tests.conftest import eventually
from tests.e2e.conftest import E2E

JOBS = "tests.e2e.jobs"
Async = Chancy.Executor.Async
Threaded = Chancy.Executor.Threaded
Process = Chancy.Executor.Process


def rec(queue: str, label: str = "", **fields: Any) -> Job:
    """A sync job that records its run."""
    return Job(func=f"{JOBS}.record", queue=queue, kwargs={"label": label}, **fields)


def arec(queue: str, label: str = "", **fields: Any) -> Job:
    """An async job that records its run."""
    return Job(func=f"{JOBS}.arecord", queue=queue, kwargs={"label": label}, **fields)


async def push_all(chancy: Chancy, jobs: list[Job]) -> list[Reference]:
    refs: list[Reference] = []
    async for batch in chancy.push_many(jobs):
        refs.extend(batch)
    return refs


def states(jobs: list[QueuedJob]) -> list[str]:
    return [str(j.state) for j in jobs]


async def test_async_thread_and_process_queues_in_one_worker(e2e: E2E) -> None:
    chancy = e2e.chancy
    await chancy.declare(Queue("aio", executor=Async, concurrency=20))
    await chancy.declare(Queue("thr", executor=Threaded, concurrency=4))
    await chancy.declare(Queue("proc", executor=Process, concurrency=2))
    worker = e2e.start_worker()

    aio = await push_all(chancy, [arec("aio", f"a{i}") for i in range(20)])
    thr = await push_all(chancy, [rec("thr", f"t{i}") for i in range(12)])
    proc = await push_all(chancy, [rec("proc", f"p{i}") for i in range(6)])
    # Async job functions also run on the thread and process executors.
    mixed = await push_all(chancy, [arec("thr", "t-async"), arec("proc", "p-async")])
    retried = await chancy.push(Job(func=f"{JOBS}.fail_once", queue="proc", max_attempts=2))

    done = await e2e.wait_for([*aio, *thr, *proc, *mixed, retried], timeout=60)
    assert states(done) == ["succeeded"] * len(done), [(j.func, j.queue, j.errors) for j in done]
    last = done[-1]
    assert last.attempts == 2 and len(last.errors) == 1 and last.result == 1

    runs = {r["label"]: r for r in await e2e.runs()}
    assert len(runs) == 20 + 12 + 6 + 2
    for label, run in runs.items():
        if label.startswith("a"):
            assert run["pid"] == worker.pid  # in the worker's event loop
        elif label.startswith("t"):
            assert run["pid"] == worker.pid
            assert run["thread"] != "MainThread"
        else:
            assert run["pid"] != worker.pid  # in a child process
    assert len({r["pid"] for label, r in runs.items() if label.startswith("p")}) <= 2
    assert worker.alive()


async def test_priority_then_fifo_at_concurrency_one(e2e: E2E) -> None:
    chancy = e2e.chancy
    await chancy.declare(Queue("ordered", executor=Async, concurrency=1))
    priorities = [0, 5, -1, 5, 0, 10, -1, 10, 5, 0, 3, 3]
    # Pushed one by one before any worker runs, so every job waits and order is all that
    # decides; ids are time-ordered, so FIFO within a priority means push order.
    refs = [
        await chancy.push(arec("ordered", str(i), priority=p)) for i, p in enumerate(priorities)
    ]
    e2e.start_worker()
    done = await e2e.wait_for(refs)
    assert states(done) == ["succeeded"] * len(refs)

    expected = [str(i) for i, _ in sorted(enumerate(priorities), key=lambda ip: (-ip[1], ip[0]))]
    assert [r["label"] for r in await e2e.runs()] == expected


async def test_scheduled_job_does_not_start_early(e2e: E2E) -> None:
    chancy = e2e.chancy
    await chancy.declare(Queue("sched", executor=Async, polling_interval=0.5))
    worker = e2e.start_worker()
    await worker.wait_ready()

    at = datetime.now(UTC) + timedelta(seconds=3)
    later = await chancy.push(arec("sched", "later", scheduled_at=at))
    now = await chancy.push(arec("sched", "now"))
    [first] = await e2e.wait_for([now])
    assert first.state == QueuedJob.State.SUCCEEDED
    if datetime.now(UTC) < at - timedelta(milliseconds=300):
        job = await chancy.get_job(later)
        assert job is not None and job.state == QueuedJob.State.PENDING

    [job] = await e2e.wait_for([later], timeout=20)
    assert job.state == QueuedJob.State.SUCCEEDED
    assert job.started_at is not None and job.started_at >= at
    # ... and not much later: the polling interval is 0.5 s.
    assert job.started_at - at < timedelta(seconds=3)
    [run] = [r for r in await e2e.runs() if r["label"] == "later"]
    assert run["at"] >= at


async def test_paused_queue_runs_nothing_until_resumed(e2e: E2E) -> None:
    chancy = e2e.chancy
    await chancy.declare(Queue("held", executor=Async, state=Queue.State.PAUSED))
    await chancy.declare(Queue("control", executor=Async))
    held = await push_all(chancy, [arec("held", f"h{i}") for i in range(5)])
    worker = e2e.start_worker()
    await worker.wait_ready()

    # The worker is running jobs (the control queue), yet the paused queue stays untouched.
    await e2e.wait_for([await chancy.push(arec("control", "c1"))])
    assert states(await e2e.jobs(held)) == ["pending"] * 5

    await chancy.resume_queue("held")
    assert states(await e2e.wait_for(held)) == ["succeeded"] * 5

    # Paused with a timed resume while the worker runs: nothing starts before resume_at,
    # then the queue resumes without anyone calling resume_queue.
    paused = await chancy.pause_queue("held", resume_at=timedelta(seconds=2))
    assert paused.state == Queue.State.PAUSED and paused.resume_at is not None
    timed = await push_all(chancy, [arec("held", f"r{i}") for i in range(5)])
    await e2e.wait_for([await chancy.push(arec("control", "c2"))])
    if datetime.now(UTC) < paused.resume_at - timedelta(milliseconds=300):
        assert states(await e2e.jobs(timed)) == ["pending"] * 5

    done = await e2e.wait_for(timed, timeout=20)
    assert states(done) == ["succeeded"] * 5
    for job in done:
        assert job.started_at is not None and job.started_at >= paused.resume_at
    assert (await chancy.get_queue("held")).state == Queue.State.ACTIVE


async def test_worker_tags_choose_the_queues_served(e2e: E2E) -> None:
    chancy = e2e.chancy
    await chancy.declare(Queue("gpu", executor=Async, tags={"gpu"}))
    await chancy.declare(Queue("control", executor=Async))
    plain = e2e.start_worker()
    await plain.wait_ready()
    held = await chancy.push(arec("gpu", "gpu-job"))
    await e2e.wait_for([await chancy.push(arec("control", "c"))])
    assert states(await e2e.jobs([held])) == ["pending"]

    tagged = e2e.start_worker(tags=["gpu", "zone=eu"])
    [job] = await e2e.wait_for([held])
    assert job.state == QueuedJob.State.SUCCEEDED
    assert [r["pid"] for r in await e2e.runs() if r["label"] == "gpu-job"] == [tagged.pid]
    workers = {w["worker_id"]: w for w in await chancy.get_all_workers()}
    assert {"gpu", "zone=eu"} <= set(workers[tagged.worker_id]["tags"])


async def test_pause_holds_jobs_pushed_right_after_it(e2e: E2E) -> None:
    """Once pause_queue() returns, no job of that queue starts until it is resumed.

    The push comes a moment after the pause, while the worker may not have taken the pause
    in yet; the claim itself has to respect the paused state in the database.
    """
    chancy = e2e.chancy
    await chancy.declare(Queue("q", executor=Async, polling_interval=60))
    await chancy.declare(Queue("control", executor=Async))
    worker = e2e.start_worker()
    await worker.wait_ready()
    for i in range(10):
        await chancy.pause_queue("q")
        held = await chancy.push(arec("q", f"q{i}"))
        # A job pushed after it, on another queue, has run: the worker saw both pushes.
        await e2e.wait_for([await chancy.push(arec("control", f"c{i}"))])
        [job] = await e2e.jobs([held])
        assert job.state == QueuedJob.State.PENDING, f"round {i}: {job.state} while paused"
        await chancy.resume_queue("q")
        assert states(await e2e.wait_for([held])) == ["succeeded"]


@pytest.mark.slow
async def test_two_then_four_workers_drain_a_backlog_running_each_job_once(e2e: E2E) -> None:
    # Big enough that the late workers, which take about a second to start, join while most
    # of it is still waiting: two workers drain 10,000 of these jobs in about one second.
    total = 40_000
    chancy = e2e.chancy
    await chancy.declare(Queue("bulk", executor=Async, concurrency=100))
    first = [e2e.start_worker(), e2e.start_worker()]
    for worker in first:
        await worker.wait_ready()

    started = time.monotonic()
    refs: list[Reference] = []
    async for batch in chancy.push_many(
        (arec("bulk", str(i)) for i in range(total)), batch_size=2000
    ):
        refs.extend(batch)

    async def finished() -> int:
        counts = await e2e.state_counts()
        return counts.get("succeeded", 0) + counts.get("failed", 0)

    # Two more workers join while the backlog drains.
    await eventually(lambda: _at_least(finished(), 1000), timeout=60, interval=0.05)
    late = [e2e.start_worker(), e2e.start_worker()]
    late_ready_with = []
    for worker in late:
        await worker.wait_ready()
        # Jobs nobody has claimed yet (busy workers claim short jobs ahead of their slots).
        late_ready_with.append((await e2e.state_counts()).get("pending", 0))

    await eventually(
        lambda: _at_least(finished(), total), timeout=90, interval=0.25, message="drained"
    )
    elapsed = time.monotonic() - started

    counts = await e2e.state_counts()
    failed = await e2e.query(
        "SELECT id, taken_by, attempts, errors FROM {prefix}jobs WHERE state <> 'succeeded' LIMIT 5"
    )
    assert counts == {"succeeded": total}, (counts, failed)
    [row] = await e2e.query(
        "SELECT count(*) AS runs, count(DISTINCT job_id) AS jobs FROM {prefix}e2e_runs"
    )
    assert row["runs"] == row["jobs"] == total
    [row] = await e2e.query(
        "SELECT count(*) AS n FROM {prefix}jobs WHERE attempts <> 1 OR errors <> '[]'::jsonb"
    )
    assert row["n"] == 0
    per_worker = {
        r["pid"]: r["n"]
        for r in await e2e.query("SELECT pid, count(*) AS n FROM {prefix}e2e_runs GROUP BY pid")
    }
    for worker in first:
        assert per_worker.get(worker.pid, 0) > 0
    # Each busy worker claims up to its slots plus MAX_AHEAD jobs at a time, and claims again
    # while its jobs run: a late worker is sure to get some only if more were unclaimed when
    # it was ready than the two busy ones take in one claim each (with 500 as the bar, a
    # late worker ready with 800 waiting lost them all to the busy workers' next claims).
    bar = 2 * (100 + MAX_AHEAD)
    for worker, left in zip(late, late_ready_with, strict=True):
        if left > bar:
            assert per_worker.get(worker.pid, 0) > 0, (per_worker, late_ready_with)
    assert all(w.alive() for w in [*first, *late])
    print(
        f"drained {total} jobs in {elapsed:.1f}s; runs per worker pid: {per_worker};"
        f" waiting when the late ones were ready: {late_ready_with}"
    )


async def _at_least(count: Awaitable[int], n: int) -> bool:
    return await count >= n


@pytest.mark.parametrize("executor", [Threaded, Process])
async def test_sigterm_finishes_or_gives_back_running_jobs(e2e: E2E, executor: str) -> None:
    chancy = e2e.chancy
    shutdown_timeout = 2.0
    await chancy.declare(Queue("slow", executor=executor, concurrency=4))
    worker = e2e.start_worker(shutdown_timeout=shutdown_timeout)

    def sleeper(seconds: float, label: str) -> Job:
        return Job(
            func=f"{JOBS}.sleep_then_record",
            queue="slow",
            kwargs={"seconds": seconds, "label": label},
        )

    short = await push_all(chancy, [sleeper(0.01, "short1"), sleeper(0.01, "short2")])
    assert states(await e2e.wait_for(short, timeout=30)) == ["succeeded"] * 2

    medium = await push_all(chancy, [sleeper(1.0, "medium1"), sleeper(1.0, "medium2")])
    long = await push_all(chancy, [sleeper(120, "long1"), sleeper(120, "long2")])

    async def all_running() -> bool:
        return states(await e2e.jobs([*medium, *long])) == ["running"] * 4

    await eventually(all_running, timeout=20, message="the four jobs run")

    signalled = time.monotonic()
    worker.signal(signal.SIGTERM)
    code = await worker.wait_exit(timeout=shutdown_timeout + 10)
    took = time.monotonic() - signalled
    assert code == 0, worker.output()
    assert took < shutdown_timeout + 2, f"the worker took {took:.1f}s to stop"

    # Outcomes of jobs that finished during the shutdown window were written...
    for job in await e2e.jobs(medium):
        assert job.state == QueuedJob.State.SUCCEEDED, job
        assert job.attempts == 1
    # ... and the unfinished ones are waiting again, with no attempt used.
    for job in await e2e.jobs(long):
        assert job.state == QueuedJob.State.PENDING, job
        assert job.attempts == 0 and job.errors == []
        assert job.started_at is None and job.claim_id is None
    labels = sorted(r["label"] for r in await e2e.runs())
    assert labels == ["medium1", "medium2", "short1", "short2"]
    assert await chancy.get_all_workers() == []


async def test_process_job_that_exits_fails_only_itself(e2e: E2E) -> None:
    chancy = e2e.chancy
    await chancy.declare(Queue("proc", executor=Process, concurrency=1))
    worker = e2e.start_worker()

    dies = await chancy.push(
        Job(func=f"{JOBS}.exit_hard", queue="proc", kwargs={"code": 1}, priority=1)
    )
    dies_twice = await chancy.push(
        Job(func=f"{JOBS}.exit_hard", queue="proc", kwargs={"code": 3}, max_attempts=2)
    )
    after = await chancy.push(rec("proc", "after", priority=-1))

    died, died_twice, ran = await e2e.wait_for([dies, dies_twice, after], timeout=60)
    assert died.state == QueuedJob.State.FAILED
    assert died.attempts == 1
    [error] = died.errors
    assert error["attempt"] == 0
    assert "exit code 1" in error["traceback"]

    assert died_twice.state == QueuedJob.State.FAILED
    assert [e["attempt"] for e in died_twice.errors] == [0, 1]
    assert all("exit code 3" in e["traceback"] for e in died_twice.errors)

    assert ran.state == QueuedJob.State.SUCCEEDED
    [run] = await e2e.runs()
    assert run["label"] == "after" and run["pid"] != worker.pid
    assert worker.alive()

    # The worker keeps going afterwards.
    [again] = await e2e.wait_for([await chancy.push(rec("proc", "again"))])
    assert again.state == QueuedJob.State.SUCCEEDED
