"""Fixtures for the batch tests: an app with the batch plugin, and in-process workers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from chancy import Chancy, Job, Queue, Worker
from chancy.plugins.batch import BatchPlugin
from chancy.plugins.leadership import ImmediateLeadership
from chancy.store import Spec
from tests.conftest import eventually, migrated_app

ASYNC = Chancy.Executor.Async


def J(func: str, queue: str = "b", **fields: Any) -> Job:
    return Job(func=f"tests.batch.jobs.{func}", queue=queue, **fields)


async def sql(app: Chancy, query: str, params: Any = None, fetch: str = "all") -> Any:
    return await app.db.run(Spec(query, params, fetch))  # type: ignore[arg-type]


async def callback_jobs(app: Chancy) -> list[dict[str, Any]]:
    """Every callback job pushed (func tests.batch.jobs.callback), oldest first."""
    return await sql(
        app,
        f"SELECT id, kwargs, state FROM {app.prefix}jobs"
        " WHERE func = 'tests.batch.jobs.callback' ORDER BY id",
    )


@pytest.fixture
def plugin() -> BatchPlugin:
    # A long poll interval: the tests show that notifications, not polling, close batches.
    return BatchPlugin(poll_interval=30)


@pytest.fixture
async def app(dsn: str, prefix: str, plugin: BatchPlugin) -> AsyncIterator[Chancy]:
    """A migrated app with ImmediateLeadership and the batch plugin; removed at the end."""
    async with migrated_app(dsn, prefix, [ImmediateLeadership(), plugin], pool=6) as chancy:
        await chancy.declare(Queue("b", executor=ASYNC, concurrency=50, polling_interval=0.2))
        await chancy.declare(Queue("cb", executor=ASYNC, concurrency=5, polling_interval=0.2))
        yield chancy


@pytest.fixture
async def start_worker(app: Chancy) -> AsyncIterator[Callable[..., Any]]:
    """Start an in-process worker serving queues "b" and "cb"; stopped at the end."""
    workers: list[Worker] = []

    async def start(**kwargs: Any) -> Worker:
        worker = Worker(app, register_signal_handlers=False, shutdown_timeout=5, **kwargs)
        await worker.start()
        workers.append(worker)
        await eventually(lambda: "b" in worker.executors, message="worker serves queue b")
        await eventually(lambda: worker.is_leader.is_set(), message="worker leads")
        return worker

    try:
        yield start
    finally:
        for worker in workers:
            await worker.stop()
