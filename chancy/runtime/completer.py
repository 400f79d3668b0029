"""Batched, fenced writes of job outcomes.

Outcomes are buffered and written in one statement per flush, each row fenced by the claim
that produced it. A write starts when the buffer reaches ``batch_size`` or ``interval``
seconds after its first outcome; only one runs at a time, and what arrives during a write
waits for the next (at once if it is a whole batch, else up to ``interval`` for more to
join it), so a steady trickle is written in batches too. Stopping always flushes what is
left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from psycopg.rows import dict_row

from chancy.outcome import Outcome
from chancy.runtime.service import Backoff, is_transient
from chancy.store import run

if TYPE_CHECKING:
    from chancy.runtime.context import Runtime

log = logging.getLogger("chancy.completer")


class Completer:
    """Buffers outcomes and writes them in batches."""

    def __init__(
        self, runtime: Runtime, *, batch_size: int = 1000, interval: float = 0.005
    ) -> None:
        self.runtime = runtime
        self.batch_size = batch_size
        self.interval = interval
        self._buffer: list[Outcome] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.written = 0
        self.fenced = 0
        #: Outcomes not written because the run had completed its job itself, in its own
        #: transaction (``Chancy.complete_job_ex``).
        self.settled = 0

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
                # asyncio.timeout rather than wait_for (a task of its own): a full batch is
                # written at the loop's next turn, not three turns later (see producer.py).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval):
                        await self._full()
            self._wake.clear()
            await self.flush(whole_batches=True)
            if self._buffer:
                self._wake.set()  # what is left waits ``interval`` for more to join it

    async def _full(self) -> None:
        while len(self._buffer) < self.batch_size:
            self._wake.clear()
            await self._wake.wait()

    async def flush(self, *, whole_batches: bool = False) -> None:
        """Write everything buffered now; transient errors are retried until it is written.

        With ``whole_batches`` (the running loop), stop after a write once less than a whole
        batch is left: what arrived during the write waits ``interval`` for more to join it,
        so a steady trickle of outcomes (a process queue) is written in batches of the
        interval's worth, not in back-to-back writes of whatever came in during the last one.
        """
        backoff = Backoff()
        progress = self.runtime.progress
        reports: dict[Any, Any] = {}
        while self._buffer:
            batch = self._buffer[: self.batch_size]
            # Reports these jobs made since the last progress flush: written with their
            # outcomes, which end the claims that fence them (kept across retries).
            reports.update(await progress.take_settled([o.job.id for o in batch]))
            try:
                await self._write(batch, reports)
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
            reports = {}
            backoff.reset()
            if whole_batches and len(self._buffer) < self.batch_size:
                break
        if not self._buffer:
            self._idle.set()

    async def _write(self, batch: list[Outcome], reports: dict[Any, Any]) -> None:
        runtime = self.runtime
        chancy, hooks, worker = runtime.chancy, runtime.hooks, runtime.worker
        in_transaction = hooks.any("on_jobs_updated_in_transaction")
        accepted: list[Any] = []
        complete = chancy.store.job_complete_many(
            batch, notify=chancy.notifications, progress=reports
        )
        if in_transaction:
            pool = await chancy.open()
            async with pool.connection() as conn:
                async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                    written = await run(cur, complete)
                    if written:
                        accepted = _accepted(batch, written)
                        await hooks.in_transaction(accepted, cur, worker)
        else:
            # One statement in autocommit: the write carries its planner settings (jobs.sql).
            written = await chancy.db.run(complete)
            if written and hooks.any("on_job_updated"):
                accepted = _accepted(batch, written)
        self.written += len(written)
        if reports:
            runtime.progress.record(len(reports), [i for i in written if i in reports])
        if len(written) < len(batch):
            done = set(written)
            missed = [(o.job.id, o.job.claim_id) for o in batch if o.job.id not in done]
            # A run that completed its job itself (complete_job_ex) left its claim on the
            # finished row: its outcome is already written, not lost.
            settled = await chancy.db.run(chancy.store.job_settled_by_claim(missed))
            self.settled += len(settled)
            lost = [job_id for job_id, _ in missed if job_id not in settled]
        else:
            lost = []
        if lost:
            self.fenced += len(lost)
            log.info(
                "%d outcome(s) were not written because the job is no longer running under"
                " this worker's claim (cancelled, recovered or given back): %s",
                len(lost),
                ", ".join(map(str, lost[:20])),
            )
        runtime.queues.outcomes_written(batch)
        if accepted:
            await hooks.updated(accepted, worker)

    async def wait_idle(self) -> None:
        await self._idle.wait()

    def pending(self) -> list[Any]:
        return list(self._buffer)


def _accepted(batch: list[Outcome], written: list[Any]) -> list[Any]:
    """The jobs of ``batch`` whose outcome was written."""
    done = set(written)
    return [o.job for o in batch if o.job.id in done]
