"""Behaviour every executor shares: outcomes, errors, job control, limits, cancellation."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from chancy.errors import JobFailedError, Retry, Snooze
from chancy.job import QueuedJob, Reference
from chancy.queue import Queue
from chancy.utils import chancy_uuid, import_string
from tests.executors.conftest import (
    JOBS,
    FakeWorker,
    Harness,
    build,
    make_job,
    wait_for_file,
)
from tests.executors.injecting import INJECTING

pytestmark = pytest.mark.asyncio(loop_scope="module")

State = QueuedJob.State


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["process", "thread", "async"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """One executor per kind, shared by this module's tests (spawning children is slow)."""
    harness = build(request.param, concurrency=2)
    yield harness
    await harness.executor.stop()
    assert harness.worker.slot_not_freed == [], "a slot was still taken when its outcome arrived"


async def test_success_reports_result_and_meta(harness: Harness) -> None:
    job = make_job(harness.func("add"), a=1, b=2, meta={"kept": True})
    outcome = await harness.run(job)
    assert outcome.job.state == State.SUCCEEDED
    assert outcome.job.attempts == 1
    assert outcome.result_json == "3"
    assert outcome.job.meta == {"kept": True, "seen": 1, "attempt": 0}
    assert outcome.job.errors == []
    assert harness.completed(job).result == 3
    assert harness.completed(job).exc is None
    assert len(harness.executor) == 0


async def test_exception_retries_then_fails_with_traceback(harness: Harness) -> None:
    job = make_job(harness.func("fail"), message="boom", max_attempts=2)
    first = await harness.run(job)
    assert first.job.state == State.RETRYING
    assert first.job.attempts == 1
    assert first.delay is None
    [error] = first.job.errors
    assert error["attempt"] == 0
    assert "ValueError: boom" in error["traceback"]
    assert f"in {harness.func('fail')}" in error["traceback"]  # the job's own frame survives
    assert isinstance(harness.completed(job).exc, ValueError)

    again = dataclasses.replace(
        first.job, id=chancy_uuid(), state=State.RUNNING, claim_id=uuid.uuid4()
    )
    second = await harness.run(again)
    assert second.job.state == State.FAILED
    assert second.job.attempts == 2
    assert [e["attempt"] for e in second.job.errors] == [0, 1]


async def test_retry_arrives_as_retry(harness: Harness) -> None:
    job = make_job(harness.func("retry"), delay=5, max_attempts=3)
    outcome = await harness.run(job)
    assert outcome.job.state == State.RETRYING
    assert outcome.delay == 5.0
    assert "Retry requested by the job" in outcome.job.errors[0]["traceback"]
    exc = harness.completed(job).exc
    assert type(exc) is Retry and exc.delay == 5.0


async def test_snooze_arrives_as_snooze(harness: Harness) -> None:
    job = make_job(harness.func("snooze"), delay=7)
    outcome = await harness.run(job)
    assert outcome.job.state == State.PENDING
    assert outcome.delay == 7.0
    assert outcome.job.attempts == 0
    assert outcome.job.errors == []
    assert outcome.job.meta["snoozed"] == 1
    exc = harness.completed(job).exc
    assert type(exc) is Snooze and exc.delay == 7.0


async def test_kwargs_that_do_not_fit_fail_clearly(harness: Harness) -> None:
    job = make_job(harness.func("add"), a=1, c=2)
    outcome = await harness.run(job)
    assert outcome.job.state == State.FAILED
    traceback = outcome.job.errors[0]["traceback"]
    assert "JobFailedError" in traceback
    assert "do not match" in traceback and harness.func("add") in traceback
    assert isinstance(harness.completed(job).exc, JobFailedError)


@pytest.mark.parametrize(
    "func",
    ["tests.executors.no_such_module.func", f"{JOBS}.no_such_function"],
    ids=["module", "attribute"],
)
async def test_import_failure_fails_clearly(harness: Harness, func: str) -> None:
    job = make_job(func)
    outcome = await harness.run(job)
    assert outcome.job.state == State.FAILED
    assert f"could not import job function {func!r}" in outcome.job.errors[0]["traceback"]


async def test_result_that_cannot_be_stored_still_succeeds(harness: Harness) -> None:
    job = make_job(harness.func("unserialisable_result"))
    outcome = await harness.run(job)
    assert outcome.job.state == State.SUCCEEDED
    assert outcome.result_json is None
    reason = outcome.job.meta["result_error"]
    assert "not JSON-serialisable" in reason and "lock" in reason


async def test_time_limit_fails_the_attempt_and_frees_the_slot(
    harness: Harness, tmp_path: Path
) -> None:
    marker = tmp_path / "running"
    job = make_job(harness.func("sleep_forever"), marker=str(marker), time_limit=0.5)
    await harness.push(job)
    await wait_for_file(marker)
    started = time.monotonic()
    outcome = await harness.worker.outcome(job)
    assert time.monotonic() - started < 5
    assert outcome.job.state == State.FAILED
    assert "exceeded its time limit of 0.5s" in outcome.job.errors[0]["traceback"]
    # Plugins get a TimeoutError, as from every executor of Chancy 0.26.
    assert isinstance(harness.completed(job).exc, TimeoutError)
    assert job.id not in harness.executor.running_ids()

    follow_up = make_job(harness.func("add"), a=2, b=2)
    assert (await harness.run(follow_up)).result_json == "4"
    assert len(harness.worker.outcomes_for(job)) == 1


async def test_cancel_interrupts_a_running_job(harness: Harness, tmp_path: Path) -> None:
    marker = tmp_path / "running"
    job = make_job(harness.func("sleep_forever"), marker=str(marker))
    await harness.push(job)
    await wait_for_file(marker)
    assert job.id in harness.executor.running_ids()

    await harness.executor.cancel(Reference(job.id))
    assert job.id not in harness.executor.running_ids()  # the slot is free at once
    outcome = await harness.worker.outcome(job)
    assert outcome.job.state == State.FAILED
    assert "cancelled" in outcome.job.errors[0]["traceback"]

    await harness.executor.cancel(Reference(uuid.uuid4()))  # not running here: nothing happens
    follow_up = make_job(harness.func("add"), a=3, b=3)
    assert (await harness.run(follow_up)).result_json == "6"
    assert len(harness.worker.outcomes_for(job)) == 1


@pytest.mark.parametrize("kind", ["process", "thread", "async"])
async def test_an_override_of_get_function_and_kwargs_may_add_kwargs(kind: str) -> None:
    """0.26's documented way to inject dependencies: call super(), then add kwargs. The
    kwargs are checked against the signature after the override, not before."""
    worker = FakeWorker()
    path = INJECTING[kind]
    queue = Queue("q", concurrency=1, executor=path)
    worker.executor = executor = import_string(path)(worker, queue)
    harness = Harness(kind, executor, worker)
    try:
        outcome = await harness.run(make_job(harness.func("add"), a=2))
        assert outcome.job.state == State.SUCCEEDED, outcome.job.errors
        assert outcome.result_json == "42"
        # What still does not fit after the override fails the job, naming the mismatch.
        wrong = await harness.run(make_job(harness.func("add"), a=2, c=3))
        assert wrong.job.state == State.FAILED
        assert "do not match" in wrong.job.errors[0]["traceback"]
    finally:
        await executor.stop()
