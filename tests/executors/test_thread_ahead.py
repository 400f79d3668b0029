"""ThreadedExecutor: short jobs handed to a busy thread ahead of time, and what happens to them.

While jobs are short, a busy thread is handed a few more to run after its current one, so a
backlog does not cost a round trip through the event loop per job. These tests hold the
first job in the only thread, so the ones behind it are certainly waiting there, and check
that they run in order on that thread, that a cancelled one is skipped without disturbing
the thread, that ``prefetch=0`` turns it off and that stopping ends the thread.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from chancy.executors.thread import _PER_THREAD
from chancy.job import QueuedJob, Reference
from tests.conftest import eventually
from tests.executors.conftest import (
    Harness,
    assert_cancelled_unrun,
    held,
    make_job,
    short_jobs,
)
from tests.executors.test_thread import chancy_threads

pytestmark = pytest.mark.asyncio(loop_scope="module")

State = QueuedJob.State


def waiting_in_threads(harness: Harness) -> int:
    """Jobs handed to a thread that has not started them (all but one per busy thread)."""
    return sum(thread.assigned - 1 for thread in harness.executor._busy)


async def test_short_jobs_wait_in_the_busy_thread_and_run_there_in_order(
    make_harness: Any, tmp_path: Path
) -> None:
    harness = make_harness("thread", concurrency=1)
    before = chancy_threads()
    first, release = await held(harness, tmp_path)
    short_jobs(harness)
    behind = [make_job("add", a=i, b=100) for i in range(_PER_THREAD + 1)]
    for job in behind:
        await harness.push(job)
    # The thread holds as many as it may; the rest wait in the executor.
    assert waiting_in_threads(harness) == _PER_THREAD - 1
    assert len(harness.executor._waiting) == 2
    release.touch()
    assert (await harness.worker.outcome(first)).job.state == State.SUCCEEDED
    outcomes = [await harness.worker.outcome(job) for job in behind]
    assert [o.result_json for o in outcomes] == [str(100 + i) for i in range(_PER_THREAD + 1)]
    assert all(o.job.meta["seen"] == 1 for o in outcomes)
    assert len(chancy_threads() - before) == 1  # one thread ran them all
    assert len(harness.executor) == 0


async def test_a_cancelled_job_waiting_in_a_thread_is_skipped_and_the_thread_goes_on(
    make_harness: Any, tmp_path: Path
) -> None:
    harness = make_harness("thread", concurrency=1)
    before = chancy_threads()
    first, release = await held(harness, tmp_path)
    short_jobs(harness)
    ran = tmp_path / "ran"
    cancelled = make_job("mark", path=str(ran))
    after = make_job("add", a=2, b=3)
    await harness.push(cancelled)
    await harness.push(after)
    assert waiting_in_threads(harness) == 2
    await harness.executor.cancel(Reference(cancelled.id))
    await assert_cancelled_unrun(harness, cancelled)  # reported at once, before the thread
    release.touch()
    assert (await harness.worker.outcome(first)).job.state == State.SUCCEEDED
    assert (await harness.worker.outcome(after)).result_json == "5"
    assert not ran.exists()  # the thread skipped it
    # Nothing was raised in the thread: it was not retired, and serves the next job.
    assert (await harness.run(make_job("add", a=1, b=1))).result_json == "2"
    assert len(chancy_threads() - before) == 1


async def test_jobs_waiting_behind_a_cancelled_running_job_run_on_a_new_thread(
    make_harness: Any, tmp_path: Path
) -> None:
    harness = make_harness("thread", concurrency=1)
    first, release = await held(harness, tmp_path)
    short_jobs(harness)
    behind = [make_job("add", a=i, b=1) for i in range(3)]
    for job in behind:
        await harness.push(job)
    assert waiting_in_threads(harness) == 3
    await harness.executor.cancel(Reference(first.id))
    outcome = await harness.worker.outcome(first)
    assert "cancelled while running" in outcome.job.errors[0]["traceback"]
    # The interrupted thread retires; the jobs it held go back and run, in order, elsewhere.
    assert [(await harness.worker.outcome(job)).result_json for job in behind] == ["1", "2", "3"]
    assert all(len(harness.worker.outcomes_for(job)) == 1 for job in behind)
    release.touch()


async def test_prefetch_zero_keeps_waiting_jobs_in_the_executor(
    make_harness: Any, tmp_path: Path
) -> None:
    harness = make_harness("thread", concurrency=1, prefetch=0)
    first, release = await held(harness, tmp_path)
    short_jobs(harness)
    job = make_job("add", a=1, b=2)
    await harness.executor.push(job)  # no free slot: it waits in the executor
    assert waiting_in_threads(harness) == 0
    assert len(harness.executor._waiting) == 1
    release.touch()
    assert (await harness.worker.outcome(first)).job.state == State.SUCCEEDED
    assert (await harness.worker.outcome(job)).result_json == "3"


async def test_a_job_with_a_time_limit_never_waits_in_a_thread(
    make_harness: Any, tmp_path: Path
) -> None:
    """Its clock starts when a thread is handed it: it waits in the executor instead."""
    harness = make_harness("thread", concurrency=1)
    first, release = await held(harness, tmp_path)
    short_jobs(harness)
    limited = make_job("add", a=1, b=1, time_limit=5)
    after = make_job("add", a=2, b=2)
    await harness.push(limited)
    await harness.push(after)  # behind the limited one, in order: it waits too
    assert waiting_in_threads(harness) == 0
    assert len(harness.executor._waiting) == 2
    release.touch()
    assert (await harness.worker.outcome(first)).job.state == State.SUCCEEDED
    assert (await harness.worker.outcome(limited)).result_json == "2"
    assert (await harness.worker.outcome(after)).result_json == "4"


async def test_stop_ends_a_thread_that_held_jobs_waiting(make_harness: Any, tmp_path: Path) -> None:
    harness = make_harness("thread", concurrency=1)
    before = chancy_threads()
    first, _ = await held(harness, tmp_path)
    short_jobs(harness)
    ran = tmp_path / "ran"
    waiting = [make_job("mark", path=str(ran)) for _ in range(2)]
    for job in waiting:
        await harness.push(job)
    assert waiting_in_threads(harness) == 2
    (thread,) = chancy_threads() - before
    await harness.executor.stop()
    # The held job is interrupted (its loop polls a file); the thread skips what waited
    # behind it and ends, rather than waiting forever on its inbox.
    await eventually(lambda: not thread.is_alive(), message="the thread ended")
    assert not ran.exists()
    assert all(harness.worker.outcomes_for(job) == [] for job in (first, *waiting))


def _wait_blocking(path: Path, timeout: float = 20) -> None:
    """Poll for ``path`` with a deadline while holding the event loop, so that nothing the
    threads post is taken in meanwhile."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout}s"
        time.sleep(0.001)


async def test_a_retired_thread_is_not_handed_jobs_when_its_earlier_run_is_taken_in(
    make_harness: Any, tmp_path: Path
) -> None:
    """A thread ends a short job (its outcome posted, not yet taken in by the loop), starts
    the next and is interrupted in it: when the loop takes in the first outcome, the retired
    thread must not be handed the jobs that wait, which would never run."""
    harness = make_harness("thread", concurrency=1)
    await harness.run(make_job("add", a=0, b=0))  # the thread exists and is idle
    short_jobs(harness)
    first = make_job("add", a=1, b=1)
    marker, release = tmp_path / "running", tmp_path / "release"
    holding = make_job("hold", marker=str(marker), release=str(release))
    await harness.push(first)
    await harness.push(holding)  # waits in the same thread, behind the first
    assert waiting_in_threads(harness) == 1
    _wait_blocking(marker)  # the first ended, the hold started; the loop has seen neither
    await harness.executor.cancel(Reference(holding.id))  # runs without yielding
    later = [make_job("add", a=i, b=10) for i in range(_PER_THREAD + 2)]
    for job in later:
        await harness.executor.push(job)
    assert harness.executor._waiting  # some wait in the executor, not only in threads
    assert (await harness.worker.outcome(first)).result_json == "2"
    outcome = await harness.worker.outcome(holding)
    assert "cancelled while running" in outcome.job.errors[0]["traceback"]
    results = [(await harness.worker.outcome(job)).result_json for job in later]
    assert results == [str(10 + i) for i in range(_PER_THREAD + 2)]
    release.touch()
