"""Backoff for a plugin's own database loop (Chancy 0.26's ``chancy.retry.DatabaseRetry``).

A plugin service written for Chancy 0.26 keeps one per loop::

    retry = worker.database_retry("my plugin")
    while True:
        try:
            ...  # database work
            retry.reset()
        except retry.errors as exc:
            await retry.wait(exc)

chancy's own services are supervised instead (chancy.runtime.service.supervise), which
retries the same transient errors with the same capped, jittered backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from chancy.runtime.service import TRANSIENT

__all__ = ["DatabaseRetry"]


class DatabaseRetry:
    """The backoff state of one loop: ``wait(error)`` after a failure, ``reset()`` after work."""

    #: The errors worth retrying: the database or the network is (briefly) unavailable.
    errors: tuple[type[BaseException], ...] = TRANSIENT

    def __init__(
        self,
        name: str,
        *,
        calculate_delay: Callable[[int], float],
        max_retries: int | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.name = name
        self.calculate_delay = calculate_delay
        self.max_retries = max_retries
        self.log = log or logging.getLogger("chancy.retry")
        self.failures = 0

    def reset(self) -> None:
        """The loop's database work succeeded."""
        self.failures = 0

    async def wait(self, error: BaseException) -> None:
        """Back off after ``error``; raise it when it is not transient or retries ran out."""
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # psycopg may turn a cancellation into a connection error: stop, do not retry.
            raise asyncio.CancelledError
        if not isinstance(error, self.errors):
            raise error
        self.failures += 1
        if self.max_retries is not None and self.failures > self.max_retries:
            raise error
        delay = self.calculate_delay(self.failures - 1)
        self.log.warning(
            "%s: database unavailable (%s); retrying in %.2fs (attempt %d)",
            self.name,
            error,
            delay,
            self.failures,
        )
        await asyncio.sleep(delay)
