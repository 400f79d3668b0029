"""A plugin hook or an executor that raises never leaves a claimed job running unseen.

Before, an exception from ``on_job_starting`` ended the whole claim's turn after its jobs
were recorded as running here, and one from ``on_job_completed`` dropped the run's outcome:
either way the jobs stayed ``running`` under a live worker, out of recovery's reach.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from chancy import Chancy, Job, Queue, QueuedJob, Worker
from chancy.plugin import Plugin
from tests.conftest import eventually, migrated_app
from tests.runtime import jobs

ASYNC = Chancy.Executor.Async


class BoomOnStart(Plugin):
    """Raises in ``on_job_starting`` for jobs whose meta says ``boom``."""

    async def on_job_starting(self, *, job: QueuedJob, worker: Any) -> QueuedJob:
        if job.meta.get("boom"):
            raise ValueError("on_job_starting blew up (on purpose)")
        return job


class BoomOnBatch(Plugin):
    """Raises in ``on_jobs_starting`` the first time it sees a batch with a ``boom`` job."""

    def __init__(self) -> None:
        super().__init__()
        self.raised = 0

    async def on_jobs_starting(self, *, jobs: list[QueuedJob], worker: Any) -> list[QueuedJob]:
        if not self.raised and any(j.meta.get("boom") for j in jobs):
            self.raised += 1
            raise ValueError("on_jobs_starting blew up (on purpose)")
        return jobs


class BoomOnComplete(Plugin):
    """Raises in ``on_job_completed`` for every job."""

    async def on_job_completed(self, *, job: QueuedJob, **kwargs: Any) -> QueuedJob:
        raise ValueError("on_job_completed blew up (on purpose)")


@contextlib.asynccontextmanager
async def _serve(app: Chancy, queue: Queue) -> AsyncIterator[Worker]:
    await app.declare(queue)
    worker = Worker(app, register_signal_handlers=False, shutdown_timeout=5)
    async with worker:
        await eventually(lambda: queue.name in worker.executors, message="serving")
        yield worker


@pytest.fixture
async def served(
    dsn: str, prefix: str, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Chancy, Worker]]:
    """An app with the plugin ``request.param`` and a worker serving queue ``p``."""
    async with migrated_app(dsn, prefix, [request.param()]) as app:
        async with _serve(app, Queue("p", executor=ASYNC, concurrency=10)) as worker:
            yield app, worker


def J(func: str, **kw: Any) -> Job:
    return Job(func=f"tests.runtime.jobs.{func}", queue="p", **kw)


@pytest.mark.parametrize("served", [BoomOnStart], indirect=True)
async def test_a_starting_hook_that_raises_fails_that_job_and_runs_the_others(
    served: tuple[Chancy, Worker],
) -> None:
    app, worker = served
    refs = [
        ref
        async for batch in app.push_many(
            [
                J("echo", kwargs={"value": 1}),
                J("echo", kwargs={"value": 2}, meta={"boom": True}, max_attempts=1),
                J("echo", kwargs={"value": 3}),
            ]
        )
        for ref in batch
    ]
    done = [await app.wait_for_job(ref, timeout=10) for ref in refs]
    assert [j.state for j in done if j] == ["succeeded", "failed", "succeeded"]
    failed = done[1]
    assert failed is not None and failed.attempts == 1
    assert "on_job_starting blew up" in failed.errors[-1]["traceback"]
    await eventually(lambda: len(worker.runtime.ledger) == 0, message="nothing left running")
    # The queue goes on.
    after = await app.push(J("echo", kwargs={"value": 4}))
    job = await app.wait_for_job(after, timeout=10)
    assert job is not None and job.state == "succeeded"


@pytest.mark.parametrize("served", [BoomOnBatch], indirect=True)
async def test_a_batch_starting_hook_that_raises_fails_the_attempt_of_its_batch(
    served: tuple[Chancy, Worker],
) -> None:
    app, worker = served
    ref = await app.push(J("echo", kwargs={"value": 1}, meta={"boom": True}, max_attempts=2))
    job = await app.wait_for_job(ref, timeout=10)
    # The first attempt failed with the plugin's error; the retry ran.
    assert job is not None and job.state == "succeeded" and job.attempts == 2
    assert "on_jobs_starting blew up" in job.errors[0]["traceback"]
    await eventually(lambda: len(worker.runtime.ledger) == 0, message="nothing left running")


@pytest.mark.parametrize("served", [BoomOnComplete], indirect=True)
async def test_a_completed_hook_that_raises_still_writes_the_outcome(
    served: tuple[Chancy, Worker],
) -> None:
    app, worker = served
    ref = await app.push(J("echo", kwargs={"value": 7}))
    job = await app.wait_for_job(ref, timeout=10)
    assert job is not None and job.state == "succeeded" and job.result == 7
    await eventually(lambda: len(worker.runtime.ledger) == 0, message="nothing left running")


async def test_a_job_the_executor_refuses_is_given_back(chancy: Chancy) -> None:
    executor = "tests.runtime.jobs.RefusingExecutor"
    async with _serve(chancy, Queue("p", executor=executor, polling_interval=0.1)) as worker:
        ref = await chancy.push(J("echo", kwargs={"value": 5}, meta={"refuse": True}))
        job = await chancy.wait_for_job(ref, timeout=10)
        # Given back without using an attempt, then claimed again and run.
        assert str(ref.identifier) in jobs.RefusingExecutor.refused
        assert job is not None and job.state == "succeeded" and job.attempts == 1
        assert job.errors == []
        await eventually(lambda: len(worker.runtime.ledger) == 0, message="nothing left running")


async def test_an_async_executor_subclass_keeps_its_push_and_report(chancy: Chancy) -> None:
    # The runtime starts and reports AsyncExecutor's jobs without push and on_job_completed
    # (start_now, the direct report); a subclass that overrides them still gets every call.
    executor = "tests.runtime.jobs.ReportingExecutor"
    async with _serve(chancy, Queue("r", executor=executor, polling_interval=0.1)) as worker:
        ref = await chancy.push(J("echo", kwargs={"value": 3}).with_queue("r"))
        job = await chancy.wait_for_job(ref, timeout=10)
        assert job is not None and job.state == "succeeded" and job.result == 3
        assert str(ref.identifier) in jobs.ReportingExecutor.pushed
        assert (str(ref.identifier), None) in jobs.ReportingExecutor.reported
        await eventually(lambda: len(worker.runtime.ledger) == 0, message="nothing left running")
