"""When a worker calls a plugin's lifecycle hooks, as in Chancy 0.26.

``on_worker_started`` runs before any queue is served or plugin runs, so handlers a plugin
registers there see every ``worker.queue.started`` (and, at stop, every
``worker.queue.removed``). ``on_worker_stopped`` runs after the
plugins' background tasks have stopped, so what a plugin saves there (the Metrics plugin's
last flush) is not raced by its own loop.
"""

from __future__ import annotations

from typing import Any

from chancy import Chancy, Queue, Worker
from chancy.hub import Event
from chancy.plugin import Plugin
from tests.conftest import eventually, migrated_app


class Lifecycle(Plugin):
    def __init__(self) -> None:
        super().__init__()
        self.queues: list[str] = []
        self.removed: list[str] = []
        self.loops = 0
        self.run_ended = False
        self.run_ended_before_stop: bool | None = None

    @staticmethod
    def get_identifier() -> str:
        return "test.lifecycle"

    async def on_worker_started(self, *, worker: Any) -> None:
        worker.hub.on("worker.queue.started", self._on_queue_started)
        worker.hub.on("worker.queue.removed", self._on_queue_removed)

    def _on_queue_started(self, event: Event) -> None:
        self.queues.append(event.body["queue"].name)

    def _on_queue_removed(self, event: Event) -> None:
        body = event.body
        assert body["executor"].queue is body["queue"] and body["worker"] is not None
        self.removed.append(body["queue"].name)

    async def run(self, worker: Any, chancy: Any) -> None:
        try:
            while await self.sleep(0.01):
                self.loops += 1
        finally:
            self.run_ended = True

    async def on_worker_stopped(self, *, worker: Any) -> None:
        self.run_ended_before_stop = self.run_ended


async def test_lifecycle_hooks_bracket_the_queues_and_the_plugin_tasks(
    dsn: str, prefix: str
) -> None:
    plugin = Lifecycle()
    async with migrated_app(dsn, prefix, [plugin]) as app:
        await app.declare(Queue("a", executor=Chancy.Executor.Async))
        await app.declare(Queue("b", executor=Chancy.Executor.Threaded))
        async with Worker(app, register_signal_handlers=False, shutdown_timeout=5):
            await eventually(lambda: plugin.loops >= 2, message="the plugin runs")
            assert sorted(plugin.queues) == ["a", "b", "default"]
            assert plugin.removed == []
        assert plugin.run_ended_before_stop is True
        # As in 0.26, a stopping worker says each queue was removed (0.26's body: queue,
        # executor, worker).
        assert sorted(plugin.removed) == ["a", "b", "default"]
