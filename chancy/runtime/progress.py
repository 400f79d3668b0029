"""Buffered, fenced writes of running jobs' progress reports.

A job may report progress thousands of times a second; the worker keeps only the latest
report per job and writes what is pending in one statement, at most once per ``interval``
(0.5 s by default) for all of its jobs together, each row fenced by the claim of the run that
reported (a job recovered elsewhere, cancelled or finished meanwhile is left alone). A
report still pending when its job finishes is written by the completer, in the same row
update as the outcome (``take``), so the last report of an attempt is never lost to the
fence and costs no extra write.

Reports arrive from the job's own thread (thread executor), the event loop (async executor,
process executor's pipe), so the buffer is a dict behind a lock, and the flush loop is woken
once per batch, when the buffer stops being empty. A worker whose jobs never report never
wakes this loop and writes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from chancy.progress import Pending, Report
from chancy.runtime.service import Backoff, is_transient

if TYPE_CHECKING:
    from chancy.runtime.context import Runtime

log = logging.getLogger("chancy.progress")


class ProgressWriter:
    """The latest unwritten report per job, and the loop that writes them."""

    def __init__(self, runtime: Runtime, *, interval: float = 0.5) -> None:
        self.runtime = runtime
        self.interval = interval
        self._lock = threading.Lock()
        self._pending: dict[uuid.UUID, Pending] = {}
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._last = float("-inf")
        # One flush at a time (the loop's and a stopping worker's): an older report written
        # by one must never land after a newer one written by the other.
        self._flushing = asyncio.Lock()
        #: Reports received, statements run, rows written and rows fenced out (for tests
        #: and the benchmark).
        self.received = 0
        self.flushes = 0
        self.written = 0
        self.fenced = 0

    def __len__(self) -> int:
        return len(self._pending)

    # -- taking reports (any thread) ------------------------------------------------------

    def offer(self, job_id: uuid.UUID, claim_id: uuid.UUID | None, report: Report) -> bool:
        """Keep ``report`` if this worker runs the job under ``claim_id``; True if kept."""
        running = self.runtime.ledger.get(job_id)
        if running is None or running.claim_id != claim_id:
            return False
        with self._lock:
            was_empty = not self._pending
            self._pending[job_id] = (claim_id, report)
            self.received += 1
        if was_empty:
            self._signal()
        return True

    def _signal(self) -> None:
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._wake.set()
            return
        try:
            loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:
            pass  # the worker's loop is closed: nobody is left to write

    def take(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Pending]:
        """Remove and return the pending reports of these jobs (the completer writes them)."""
        if not self._pending:
            return {}
        taken = {}
        with self._lock:
            pending = self._pending
            for job_id in ids:
                entry = pending.pop(job_id, None)
                if entry is not None:
                    taken[job_id] = entry
        return taken

    async def take_settled(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Pending]:
        """``take``, after any flush in flight has written: a report such a flush holds for
        one of these jobs lands (while the job still runs) before the job's outcome, instead
        of missing its fence after the outcome is written."""
        if not self._pending and not self._flushing.locked():
            return {}
        async with self._flushing:
            return self.take(ids)

    # -- writing (the event loop) ---------------------------------------------------------

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        if self._pending:
            self._wake.set()
        while True:
            await self._wake.wait()
            wait = self._last + self.interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write every pending report now (transient errors are retried a few times)."""
        async with self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return
        self._last = time.monotonic()
        chancy = self.runtime.chancy
        backoff = Backoff()
        for attempt in range(5):
            try:
                written = await self.runtime.write_joined(
                    chancy.store.job_progress_many(batch), len(batch)
                )
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_transient(exc) or attempt == 4:
                    # Progress is advisory: never let it stop the worker.
                    log.warning("could not write progress of %d job(s): %s", len(batch), exc)
                    return
                await asyncio.sleep(backoff.next())
        self.record(len(batch), written)

    def record(self, sent: int, written: Any) -> None:
        """Count a statement that sent ``sent`` rows and wrote ``written`` (a list of ids)."""
        self.flushes += 1
        self.written += len(written)
        self.fenced += sent - len(written)
