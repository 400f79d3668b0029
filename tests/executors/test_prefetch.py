"""Prefetching executors (process, thread, async): short jobs are claimed ahead of free slots.

Claimed ahead, a job waits in the executor for a free slot, so a backlog of short jobs is
claimed in batches instead of one database round trip per freed slot. Long jobs are not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chancy.job import QueuedJob, Reference
from tests.executors.conftest import assert_cancelled_unrun, held, make_job

pytestmark = pytest.mark.asyncio(loop_scope="module")

State = QueuedJob.State
KINDS = ["process", "thread", "async"]


@pytest.mark.parametrize("kind", KINDS)
async def test_short_jobs_are_claimed_ahead_once_their_run_time_is_known(
    make_harness: Any, kind: str
) -> None:
    harness = make_harness(kind, concurrency=2)
    assert harness.executor.free_slots == 2  # nothing measured yet: no more than the slots
    for i in range(6):
        await harness.run(make_job(harness.func("add"), a=i, b=1))
    assert harness.executor._runtime is not None
    assert harness.executor._runtime < 0.05
    assert harness.executor.free_slots > 2  # room for jobs claimed ahead


@pytest.mark.parametrize("kind", KINDS)
async def test_prefetch_zero_claims_only_free_slots(make_harness: Any, kind: str) -> None:
    harness = make_harness(kind, concurrency=2, prefetch=0)
    for i in range(6):
        await harness.run(make_job(harness.func("add"), a=i, b=1))
    assert harness.executor.free_slots == 2


@pytest.mark.parametrize(("kind", "per_slot"), [("process", 256), ("thread", 64), ("async", 64)])
async def test_jobs_claimed_ahead_per_slot_by_default(
    make_harness: Any, kind: str, per_slot: int
) -> None:
    # A process queue has one slot per core: 64 per slot covered a few ms of no-op jobs.
    harness = make_harness(kind, concurrency=2)
    harness.executor._runtime = 0.0001  # 50 ms of work is 500 jobs per slot
    assert harness.executor.free_slots == 2 + 2 * per_slot


@pytest.mark.parametrize("kind", KINDS)
async def test_long_jobs_are_not_claimed_ahead(make_harness: Any, kind: str) -> None:
    harness = make_harness(kind, concurrency=2)
    harness.executor._runtime = 0.2
    assert harness.executor.free_slots == 2


@pytest.mark.parametrize("kind", KINDS)
async def test_jobs_claimed_ahead_run_in_order_and_a_cancelled_one_never_runs(
    make_harness: Any, kind: str, tmp_path: Path
) -> None:
    harness = make_harness(kind, concurrency=1)
    first, release = await held(harness, tmp_path)
    harness.executor._runtime = 0.0001  # short jobs: the next ones are claimed ahead
    ran = tmp_path / "ran"
    cancelled = make_job(harness.func("mark"), path=str(ran))
    behind = [make_job(harness.func("add"), a=i, b=10) for i in range(2)]
    for job in (behind[0], cancelled, behind[1]):
        await harness.push(job)
    assert len(harness.executor) == 4
    await harness.executor.cancel(Reference(cancelled.id))
    release.touch()
    await assert_cancelled_unrun(harness, cancelled)
    assert (await harness.worker.outcome(first)).job.state == State.SUCCEEDED
    assert [(await harness.worker.outcome(job)).result_json for job in behind] == ["10", "11"]
    assert not ran.exists()
    assert len(harness.executor) == 0


async def test_a_thread_timed_out_with_jobs_waiting_hands_them_to_a_new_thread(
    make_harness: Any, tmp_path: Path
) -> None:
    harness = make_harness("thread", concurrency=1)
    stuck, release = await held(harness, tmp_path, time_limit=0.3)
    harness.executor._runtime = 0.0001
    behind = [make_job("add", a=i, b=1) for i in range(3)]
    for job in behind:
        await harness.push(job)
    outcome = await harness.worker.outcome(stuck)
    assert "exceeded its time limit of 0.3s" in outcome.job.errors[0]["traceback"]
    # The interrupted thread retires; the jobs waiting behind it start on a new thread.
    assert [(await harness.worker.outcome(job)).result_json for job in behind] == ["1", "2", "3"]
    release.touch()


async def test_async_jobs_claimed_ahead_wait_for_a_free_task(
    make_harness: Any, tmp_path: Path
) -> None:
    harness = make_harness("async", concurrency=1)
    first, release = await held(harness, tmp_path)
    harness.executor._runtime = 0.0001
    behind = [make_job("async_add", a=i, b=1) for i in range(3)]
    for job in behind:
        await harness.push(job)
    # One task runs (concurrency 1); the others wait, unrun, until it ends.
    assert len(harness.executor._tasks) == 1 and len(harness.executor._waiting) == 3
    assert all(harness.worker.outcomes_for(job) == [] for job in behind)
    release.touch()
    assert [(await harness.worker.outcome(job)).result_json for job in behind] == ["1", "2", "3"]
    assert (await harness.worker.outcome(first)).job.state == State.SUCCEEDED


@pytest.mark.parametrize(("kind", "concurrency"), [("async", 500), ("thread", 16)])
async def test_jobs_claimed_ahead_are_capped(
    make_harness: Any, kind: str, concurrency: int
) -> None:
    from chancy.executors.base import MAX_AHEAD

    harness = make_harness(kind, concurrency=concurrency)
    harness.executor._runtime = 0.00001  # 64 per slot would be 32,000 (async) or 1,024
    assert harness.executor.free_slots == concurrency + MAX_AHEAD


@pytest.mark.parametrize("kind", KINDS)
async def test_keyed_queues_never_claim_ahead(make_harness: Any, kind: str) -> None:
    # A fair, ordered or per-key limited queue's claim decides whose turn it is: a job claimed
    # ahead would run after a key that became due meanwhile (tests/limits/test_fairness.py).
    import dataclasses

    harness = make_harness(kind, concurrency=4)
    harness.executor._runtime = 0.0001
    plain = harness.executor.queue
    assert harness.executor.free_slots > 4
    for keyed in ({"fairness": True}, {"partition_ordered": True}, {"partition_concurrency": 2}):
        harness.executor.queue = dataclasses.replace(plain, **keyed)
        assert harness.executor.free_slots == 4, keyed
