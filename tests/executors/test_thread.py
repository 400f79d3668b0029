"""ThreadedExecutor: async jobs in threads, interrupting threads, and stuck threads."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from chancy.executors.base import Executor
from chancy.executors.thread import ThreadedExecutor
from chancy.job import QueuedJob
from tests.conftest import eventually
from tests.executors.conftest import build, make_job, wait_for_file

pytestmark = pytest.mark.asyncio(loop_scope="module")

State = QueuedJob.State


def chancy_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("chancy-")}


async def test_async_job_runs_in_a_thread(make_harness: Any) -> None:
    harness = make_harness("thread")
    outcome = await harness.run(make_job("async_add", a=1, b=2))
    assert outcome.job.state == State.SUCCEEDED
    assert outcome.result_json == "3"
    assert outcome.job.meta["seen"] == 1


async def test_threads_are_daemons_and_reused(make_harness: Any) -> None:
    harness = make_harness("thread", concurrency=1)
    before = chancy_threads()
    for i in range(3):
        assert (await harness.run(make_job("add", a=i, b=0))).result_json == str(i)
    mine = chancy_threads() - before
    assert len(mine) == 1
    assert all(t.daemon for t in mine)


async def test_time_limit_interrupts_the_thread_which_retires(
    make_harness: Any, tmp_path: Path
) -> None:
    harness = make_harness("thread", concurrency=1)
    before = chancy_threads()
    marker = tmp_path / "running"
    job = make_job("sleep_forever", marker=str(marker), time_limit=0.3)
    await harness.push(job)
    await wait_for_file(marker)
    [thread] = chancy_threads() - before
    outcome = await harness.worker.outcome(job)
    assert "exceeded its time limit of 0.3s" in outcome.job.errors[0]["traceback"]
    # JobInterrupted landed in the sleeping loop, and the thread was not reused.
    await eventually(lambda: not thread.is_alive(), message="the interrupted thread ended")
    assert (await harness.run(make_job("add", a=1, b=1))).result_json == "2"
    assert len(harness.worker.outcomes_for(job)) == 1


async def test_time_limit_cancels_an_async_job_in_its_thread(
    make_harness: Any, tmp_path: Path
) -> None:
    harness = make_harness("thread", concurrency=1)
    marker = tmp_path / "running"
    job = make_job("async_sleep_forever", marker=str(marker), time_limit=0.3)
    outcome = await harness.run(job)
    assert "exceeded its time limit of 0.3s" in outcome.job.errors[0]["traceback"]
    assert (await harness.run(make_job("async_add", a=2, b=2))).result_json == "4"


@pytest.mark.usefixtures("release_threads")
async def test_a_stuck_thread_does_not_block_the_queue(make_harness: Any, tmp_path: Path) -> None:
    harness = make_harness("thread", concurrency=1)
    marker = tmp_path / "running"
    stuck = make_job("block_until_released", marker=str(marker), time_limit=0.3)
    outcome = await harness.run(stuck)
    assert "exceeded its time limit" in outcome.job.errors[0]["traceback"]
    assert len(harness.executor) == 0
    # The stuck thread still blocks in a C call, yet the slot runs the next job at once.
    assert (await harness.run(make_job("add", a=4, b=4))).result_json == "8"
    assert all(t.daemon for t in chancy_threads())


@pytest.mark.usefixtures("release_threads")
async def test_stop_returns_promptly_with_a_stuck_job(make_harness: Any, tmp_path: Path) -> None:
    harness = make_harness("thread", concurrency=2)
    marker = tmp_path / "running"
    job = make_job("block_until_released", marker=str(marker))
    await harness.push(job)
    await wait_for_file(marker)
    started = time.monotonic()
    await harness.executor.stop()
    assert time.monotonic() - started < 1
    assert len(harness.executor) == 0
    assert harness.worker.outcomes_for(job) == []  # abandoned: the worker gives it back


async def test_memory_limit_is_not_enforced_and_says_so(
    make_harness: Any, caplog: pytest.LogCaptureFixture
) -> None:
    harness = make_harness("thread")
    outcome = await harness.run(make_job("allocate", size=1024, memory_limit=10))
    assert outcome.job.state == State.SUCCEEDED
    assert "cannot enforce memory limits" in caplog.text


async def test_capabilities_and_default_concurrency() -> None:
    caps = ThreadedExecutor.supports()
    assert Executor.Capability.SYNC_JOBS in caps
    assert Executor.Capability.ASYNC_JOBS in caps
    assert Executor.Capability.TIME_LIMIT in caps  # CPython can interrupt a thread
    assert Executor.Capability.CANCELLATION in caps
    assert Executor.Capability.MEMORY_LIMIT not in caps
    harness = build("thread", concurrency=None)  # type: ignore[arg-type]
    assert harness.executor.concurrency == min(32, (os.cpu_count() or 1) + 4)
