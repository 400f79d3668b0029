"""Fixtures for the workflow tests: an app with the workflow plugin, and an in-process worker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from chancy import Chancy, Job, Queue, Worker
from chancy.plugins.leadership import ImmediateLeadership
from chancy.plugins.workflow import WorkflowPlugin
from tests.conftest import eventually, migrated_app

ASYNC = Chancy.Executor.Async


def J(func: str, queue: str = "wf", **fields: Any) -> Job:
    return Job(func=f"tests.workflow.jobs.{func}", queue=queue, **fields)


@pytest.fixture
def plugin() -> WorkflowPlugin:
    # A long poll interval: the tests show that notifications, not polling, drive workflows.
    return WorkflowPlugin(poll_interval=30)


@pytest.fixture
async def app(dsn: str, prefix: str, plugin: WorkflowPlugin) -> AsyncIterator[Chancy]:
    """A migrated app with ImmediateLeadership and the workflow plugin; removed at the end."""
    async with migrated_app(dsn, prefix, [ImmediateLeadership(), plugin], pool=4) as chancy:
        yield chancy


@pytest.fixture
async def start_worker(app: Chancy) -> AsyncIterator[Callable[..., Any]]:
    """Start an in-process worker serving queue "wf" (async, 100 slots); stopped at the end."""
    workers: list[Worker] = []

    async def start(**kwargs: Any) -> Worker:
        # A short polling interval: a retried attempt is picked up at the next poll.
        queue = Queue("wf", executor=ASYNC, concurrency=100, polling_interval=0.2)
        await app.declare(queue, upsert=True)
        worker = Worker(app, register_signal_handlers=False, shutdown_timeout=5, **kwargs)
        await worker.start()
        workers.append(worker)
        await eventually(lambda: "wf" in worker.executors, message="worker serves queue wf")
        await eventually(lambda: worker.is_leader.is_set(), message="worker leads")
        return worker

    try:
        yield start
    finally:
        for worker in workers:
            await worker.stop()
