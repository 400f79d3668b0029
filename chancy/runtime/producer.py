"""One producer per served queue: claims jobs when there is room and hands them to the executor.

A producer claims when woken by NOTIFY (a push to its queue), by its polling interval, or by a
freed slot while work is waiting (its last claim came back full, or a push arrived while it
had no room). With a backlog it claims again once a quarter of its slots are free (one slot
with ``eager_polling``), so a backlog drains at full speed with default settings instead of
one batch per polling interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from chancy.executors.base import Executor
from chancy.queue import Queue

if TYPE_CHECKING:
    from chancy.worker import Worker

log = logging.getLogger("chancy.producer")


class Producer:
    """Feeds one queue's executor from the database."""

    def __init__(self, worker: Worker, queue: Queue, executor: Executor) -> None:
        self.worker = worker
        self.queue = queue
        self.executor = executor
        self._wake = asyncio.Event()
        self._backlog = True  # assume work is waiting until a claim says otherwise
        self._draining = False
        self.claimed = 0

    @property
    def threshold(self) -> int:
        if self.queue.eager_polling:
            return 1
        return max(1, self.executor.concurrency // 4)

    def wake(self) -> None:
        """Something was pushed (or changed): claim at the next chance."""
        self._backlog = True
        self._wake.set()

    def slot_freed(self) -> None:
        if self._backlog and self.executor.free_slots >= self.threshold:
            self._wake.set()

    def drain(self) -> None:
        """Stop claiming for good (queue removed, changed or worker stopping)."""
        self._draining = True
        self._wake.set()

    async def run(self) -> None:
        worker = self.worker
        while not self._draining:
            free = self.executor.free_slots
            claimable = (
                self.queue.state == Queue.State.ACTIVE
                and worker.can_claim()
                and free > 0
                and (free >= self.threshold or not self._backlog or self._wake.is_set())
            )
            self._wake.clear()
            if claimable:
                jobs = await worker.claim(self.queue, free)
                self.claimed += len(jobs)
                self._backlog = len(jobs) >= free
                for job in jobs:
                    await self.executor.push(job)
                if self._backlog:
                    worker.hub.emit("worker.queue.full", {"queue": self.queue.name})
                    if self.executor.free_slots >= self.threshold:
                        continue  # room again already (fast jobs): claim at once
            if self._draining:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.queue.polling_interval)
