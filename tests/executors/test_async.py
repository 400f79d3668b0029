"""AsyncExecutor: async jobs only, cached function lookup, stopping."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from chancy.executors.asyncex import AsyncExecutor
from chancy.executors.base import Executor
from chancy.job import QueuedJob
from tests.executors.conftest import build, make_job, wait_for_file

pytestmark = pytest.mark.asyncio(loop_scope="module")

State = QueuedJob.State


async def test_sync_function_fails_with_a_pointer_to_other_executors(make_harness: Any) -> None:
    harness = make_harness("async")
    outcome = await harness.run(make_job("noop"))
    assert outcome.job.state == State.FAILED
    traceback = outcome.job.errors[0]["traceback"]
    assert "is not an async function" in traceback
    assert "ThreadedExecutor or ProcessExecutor" in traceback


async def test_cached_lookup_still_checks_kwargs(make_harness: Any) -> None:
    harness = make_harness("async")
    for _ in range(2):
        assert (await harness.run(make_job("async_add", a=1, b=2))).result_json == "3"
    outcome = await harness.run(make_job("async_add", a=1))
    assert "do not match" in outcome.job.errors[0]["traceback"]
    # Each job still gets its own QueuedJob, even when the lookup came from the cache.
    first = await harness.run(make_job("async_add", a=0, b=0, meta={"seen": 5}))
    assert first.job.meta["seen"] == 6


async def test_the_jobs_own_timeout_is_not_a_time_limit(make_harness: Any) -> None:
    harness = make_harness("async")
    outcome = await harness.run(make_job("async_raise_timeout", time_limit=30))
    traceback = outcome.job.errors[0]["traceback"]
    assert "TimeoutError: the job's own timeout" in traceback
    assert "time limit" not in traceback


async def test_stop_cancels_stuck_tasks_promptly(make_harness: Any, tmp_path: Path) -> None:
    harness = make_harness("async")
    marker = tmp_path / "running"
    job = make_job("async_sleep_forever", marker=str(marker))
    await harness.push(job)
    await wait_for_file(marker)
    started = time.monotonic()
    await harness.executor.stop()
    assert time.monotonic() - started < 1
    assert len(harness.executor) == 0
    assert harness.worker.outcomes_for(job) == []  # abandoned: the worker gives it back


async def test_capabilities_and_default_concurrency() -> None:
    assert AsyncExecutor.supports() == (
        Executor.Capability.ASYNC_JOBS
        | Executor.Capability.TIME_LIMIT
        | Executor.Capability.COOPERATIVE_TIME_LIMITS
        | Executor.Capability.CANCELLATION
    )
    assert build("async", concurrency=None).executor.concurrency == 100  # type: ignore[arg-type]
