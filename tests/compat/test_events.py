"""The hub events Chancy 0.26 emitted and plugins listen for, on a running worker.

``leadership.renewed`` (each renewal), ``recovery.recovered`` and ``pruner.removed`` (each
pass, with its figures) and ``workflow.step_completed`` (a workflow whose step jobs finished)
reach every worker's hub through NOTIFY, with 0.26's bodies; so do ``worker.queue.updated``,
``worker.stopped`` and ``worker.announced`` (each heartbeat). A handler may be a coroutine and
``emit`` may be awaited.
"""

from __future__ import annotations

import asyncio

from chancy import Chancy, Job, Queue, Worker
from chancy.hub import Event
from chancy.plugins.leadership import Leadership
from chancy.plugins.pruner import Pruner
from chancy.plugins.recovery import Recovery
from chancy.plugins.workflow import Workflow, WorkflowPlugin
from tests.conftest import drop_prefix, eventually

ASYNC = Chancy.Executor.Async


EVENTS = (
    "leadership.renewed",
    "recovery.recovered",
    "pruner.removed",
    "workflow.step_completed",
    "worker.queue.updated",
    "worker.announced",
)


async def test_leader_plugins_announce_their_passes(dsn: str, prefix: str) -> None:
    plugins = [
        Leadership(poll_interval=0.2, timeout=3),
        Recovery(poll_interval=0.2),
        Pruner(poll_interval=0.2),
        WorkflowPlugin(poll_interval=0.2),
    ]
    app = Chancy(
        dsn, prefix=prefix, plugins=plugins, no_default_plugins=True, max_connection_pool_size=4
    )
    seen: dict[str, list[Event]] = {}

    async def record(event: Event) -> None:  # a coroutine handler, as 0.26 allowed
        seen.setdefault(event.name, []).append(event)

    async with app:
        await app.migrate()
        try:
            await app.declare(Queue("a", executor=ASYNC, polling_interval=0.2))
            worker = Worker(app, register_signal_handlers=False, shutdown_timeout=5)
            for name in EVENTS:
                worker.hub.on(name, record)
            async with worker:
                await eventually(lambda: worker.is_leader.is_set(), timeout=15)
                step = Job(func="tests.runtime.jobs.noop", queue="a")
                workflow_id = await WorkflowPlugin.push(app, Workflow("w").add("one", step))
                await app.declare(Queue("a", executor=ASYNC, polling_interval=0.3), upsert=True)
                await eventually(
                    lambda: all(seen.get(name) for name in EVENTS),
                    timeout=20,
                    message="every event arrives",
                )
                stopped = asyncio.create_task(worker.hub.wait_for("worker.stopped", timeout=10))
                await asyncio.sleep(0)  # let the waiter register
                await worker.hub.emit("custom.event", {"x": 1})  # emit can be awaited
            assert await stopped != []
        finally:
            drop_prefix(dsn, prefix)
    assert seen["leadership.renewed"][0].body["worker_id"] == worker.worker_id
    assert seen["worker.announced"][0].body["worker_id"] == worker.worker_id
    assert set(seen["recovery.recovered"][0].body) >= {"elapsed", "rows_recovered"}
    assert set(seen["pruner.removed"][0].body) >= {"elapsed", "rows_removed"}
    assert seen["workflow.step_completed"][0].body["workflow_id"] == workflow_id
    assert seen["worker.queue.updated"][0].body["queue"].polling_interval == 0.3


async def test_no_announcement_without_notifications(dsn: str, prefix: str) -> None:
    """With notifications=False (a transaction-pooling proxy) heartbeats send nothing."""
    import psycopg

    app = Chancy(
        dsn, prefix=prefix, notifications=False, no_default_plugins=True, max_connection_pool_size=3
    )
    async with app, await psycopg.AsyncConnection.connect(dsn, autocommit=True) as listener:
        await app.migrate()
        try:
            channel = f"{prefix}events"
            await listener.execute(f'LISTEN "{channel}"')  # type: ignore[arg-type]
            async with Worker(app, register_signal_handlers=False, shutdown_timeout=5) as worker:
                await worker.announce_worker()
            # NOTIFYs arrive in commit order: anything the worker sent comes before this.
            await listener.execute("SELECT pg_notify(%s, 'marker')", [channel])
            payloads = []
            async for note in listener.notifies(timeout=10):
                if note.payload == "marker":
                    break
                payloads.append(note.payload)
            assert not [p for p in payloads if "worker.announced" in p], payloads
        finally:
            drop_prefix(dsn, prefix)
