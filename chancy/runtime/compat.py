"""Chancy 0.26's members of the worker that chancy's own code does not need.

Plugins and executors written for Chancy 0.26 use them: iterating a worker over its queues,
``queue_wake_events``, ``manager``, ``announce_worker``, ``outgoing``, ``database_retry`` and
the custom-metrics methods. ``Worker`` takes them from ``WorkerCompat``; each is a thin
adapter over a runtime service.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from chancy import events
from chancy.backoff import full_jitter
from chancy.retry import DatabaseRetry
from chancy.runtime.service import supervise

if TYPE_CHECKING:
    from chancy.hub import Hub
    from chancy.job import QueuedJob
    from chancy.outcome import Outcome
    from chancy.queue import Queue
    from chancy.runtime.completer import Completer
    from chancy.runtime.heartbeat import Heartbeat
    from chancy.runtime.queues import QueueSet
    from chancy.worker import Worker

log = logging.getLogger("chancy.worker")


class WorkerCompat:
    """The 0.26 members, over the worker's services (declared here, built by ``Worker``)."""

    served: QueueSet
    heartbeat: Heartbeat
    completer: Completer
    hub: Hub
    backoff_initial: float
    backoff_max: float
    backoff_max_retries: int

    @property
    def queue_wake_events(self) -> Mapping[str, Any]:
        """Chancy 0.26's per-queue wake-ups: ``worker.queue_wake_events[name].set()``."""
        return _WakeEvents(self.served)

    # Chancy 0.26 iterated a worker over its queues.
    def __iter__(self) -> Iterator[Queue]:
        return iter(list(self.served.queues.values()))

    def __getitem__(self, name: str) -> Queue:
        return self.served.queues[name]

    def __contains__(self, name: object) -> bool:
        return name in self.served.queues

    def __len__(self) -> int:
        return len(self.served.queues)

    async def on_job_completed(self, *, queue: Queue, job: QueuedJob) -> None:
        """Chancy 0.26's per-completion call from executors; chancy frees the slot itself."""

    async def announce_worker(self, conn: Any = None) -> None:
        """Register (or refresh) this worker's row now (Chancy 0.26's name for a heartbeat)."""
        await self.heartbeat.beat()

    @property
    def outgoing(self) -> list[Outcome]:
        """Outcomes waiting to be written (Chancy 0.26 exposed its queue of updates)."""
        return self.completer.pending()

    def database_retry(self, name: str) -> DatabaseRetry:
        """Backoff for a plugin's database loop, with this worker's settings (Chancy 0.26)."""
        initial, maximum = self.backoff_initial, self.backoff_max

        def delay(failures: int) -> float:
            return full_jitter(initial, maximum, failures)

        return DatabaseRetry(
            name, calculate_delay=delay, max_retries=self.backoff_max_retries, log=log
        )

    async def increment_counter(self, key: str, value: int = 1, unit: str = "count") -> None:
        """Report a custom counter to the Metrics plugin (Chancy 0.26's worker method)."""
        await self.hub.emit(events.METRICS_COUNTER, {"key": key, "value": value, "unit": unit})

    async def record_gauge(self, key: str, value: float, unit: str = "value") -> None:
        """Report a custom gauge to the Metrics plugin (Chancy 0.26's worker method)."""
        await self.hub.emit(events.METRICS_GAUGE, {"key": key, "value": value, "unit": unit})

    async def record_histogram_value(self, key: str, value: float, unit: str = "value") -> None:
        """Report a histogram sample to the Metrics plugin (Chancy 0.26's worker method)."""
        await self.hub.emit(events.METRICS_HISTOGRAM, {"key": key, "value": value, "unit": unit})


class TaskManager:
    """Tasks a plugin starts on a worker (Chancy 0.26's ``worker.manager``)."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self.tasks: list[asyncio.Task[None]] = []

    def add(self, name: str, task: Coroutine[Any, Any, Any]) -> asyncio.Task[None]:
        """Run ``task`` (a coroutine); a crash is logged, and the worker stops it at exit."""

        async def body() -> None:
            await task

        created = asyncio.create_task(
            supervise(
                name, body, on_fatal=self._worker._on_fatal, max_crashes=0, backoff_initial=0.05
            ),
            name=f"chancy-{name}",
        )
        self.tasks.append(created)
        return created

    async def wait_for_shutdown(self) -> None:
        await self._worker.wait_for_shutdown()


class _WakeEvents(Mapping[str, Any]):
    """``worker.queue_wake_events``: setting a queue's event wakes its producer."""

    def __init__(self, served: QueueSet) -> None:
        self._served = served

    def __getitem__(self, name: str) -> Any:
        if name not in self._served.producers:
            raise KeyError(name)
        return _Wake(self._served, name)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._served.producers))

    def __len__(self) -> int:
        return len(self._served.producers)


class _Wake:
    __slots__ = ("_name", "_served")

    def __init__(self, served: QueueSet, name: str) -> None:
        self._served = served
        self._name = name

    def set(self) -> None:
        self._served.wake(self._name)
