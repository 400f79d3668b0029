"""Batched, fenced writes of job outcomes.

Outcomes are buffered and written in one statement per flush, each row fenced by the claim
that produced it. A flush starts when the buffer reaches ``batch_size`` or ``interval``
seconds after its first outcome; only one flush runs at a time, so under load batches grow
by themselves. Stopping always flushes what is left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from psycopg.rows import dict_row

from chancy.executors.base import Outcome
from chancy.plugin import plugins_with
from chancy.runtime.service import Backoff, is_transient
from chancy.store import run

if TYPE_CHECKING:
    from chancy.worker import Worker

log = logging.getLogger("chancy.completer")


class Completer:
    """Buffers outcomes and writes them in batches."""

    def __init__(
        self,
        worker: Worker,
        *,
        batch_size: int = 1000,
        interval: float = 0.005,
        on_written: Callable[[list[Outcome]], None] | None = None,
    ) -> None:
        self.worker = worker
        self.batch_size = batch_size
        self.interval = interval
        self.on_written = on_written
        self._buffer: list[Outcome] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.written = 0
        self.fenced = 0

    def add(self, outcome: Outcome) -> None:
        self._buffer.append(outcome)
        self._idle.clear()
        self._wake.set()

    def __len__(self) -> int:
        return len(self._buffer)

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            if len(self._buffer) < self.batch_size and self.interval > 0:
                # Let a few more outcomes join this batch.
                try:
                    await asyncio.wait_for(self._full(), self.interval)
                except TimeoutError:
                    pass
            self._wake.clear()
            await self.flush()

    async def _full(self) -> None:
        while len(self._buffer) < self.batch_size:
            self._wake.clear()
            await self._wake.wait()

    async def flush(self) -> None:
        """Write everything buffered now; transient errors are retried until it is written."""
        backoff = Backoff()
        while self._buffer:
            batch = self._buffer[: self.batch_size]
            try:
                await self._write(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_transient(exc):
                    raise
                delay = backoff.next()
                log.warning("writing %d outcomes failed (%s); retrying", len(batch), exc)
                await asyncio.sleep(delay)
                continue
            del self._buffer[: len(batch)]
            backoff.reset()
        self._idle.set()

    async def _write(self, batch: list[Outcome]) -> None:
        chancy = self.worker.chancy
        hooks = plugins_with(chancy.plugins.values(), "on_jobs_updated_in_transaction")
        pool = await chancy.open()
        async with pool.connection() as conn:
            async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                written = await run(
                    cur, chancy.store.job_complete_many(batch, notify=chancy.notifications)
                )
                if hooks and written:
                    done = set(written)
                    jobs = [o.job for o in batch if o.job.id in done]
                    for plugin in hooks:
                        try:
                            await plugin.on_jobs_updated_in_transaction(
                                worker=self.worker, cursor=cur, jobs=jobs
                            )
                        except NotImplementedError:
                            continue
        self.written += len(written)
        if len(written) < len(batch):
            done = set(written)
            lost = [o.job.id for o in batch if o.job.id not in done]
            self.fenced += len(lost)
            log.info(
                "%d outcome(s) were not written because the job is no longer running under"
                " this worker's claim (cancelled, recovered or given back): %s",
                len(lost),
                ", ".join(map(str, lost[:20])),
            )
        if self.on_written is not None:
            self.on_written(batch)

    async def wait_idle(self) -> None:
        await self._idle.wait()

    def pending(self) -> list[Any]:
        return list(self._buffer)
