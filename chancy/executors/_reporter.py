"""Hands finished runs to ``Executor.on_job_completed`` from plain (non-async) callbacks.

Thread and process executors learn that a job ended inside a loop callback, where they can
free the slot at once but cannot await. One drain task per executor awaits the outcomes in
order, instead of one task per job.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from chancy.job import QueuedJob

log = logging.getLogger("chancy.executor")

Complete = Callable[..., Awaitable[None]]


class Reporter:
    """A FIFO of finished runs, drained by one task in the worker's event loop."""

    __slots__ = ("_complete", "_pending", "_task")

    def __init__(self, complete: Complete) -> None:
        self._complete = complete
        self._pending: deque[tuple[QueuedJob, BaseException | None, Any]] = deque()
        self._task: asyncio.Task[None] | None = None

    def report(self, job: QueuedJob, exc: BaseException | None = None, result: Any = None) -> None:
        """Queue an outcome; call only from the event loop's thread."""
        self._pending.append((job, exc, result))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._pending:
                job, exc, result = self._pending.popleft()
                try:
                    await self._complete(job=job, exc=exc, result=result)
                except Exception:
                    log.exception("reporting the outcome of job %s (%s) failed", job.id, job.func)
        finally:
            self._task = None

    async def flush(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) until every queued outcome was handed over."""
        task = self._task
        if task is not None:
            await asyncio.wait({task}, timeout=timeout)
