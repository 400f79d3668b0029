"""One producer per served queue: claims jobs when there is room and hands them to the executor.

A producer claims when woken by NOTIFY (a push to its queue), by its polling interval, or by a
freed slot while work is waiting (its last claim came back full, or a push arrived while it
had no room). With a backlog it claims again once a quarter of its slots are free (one slot
with ``eager_polling``), so a backlog drains at full speed with default settings instead of
one batch per polling interval.

A queue with limits (``Queue.has_limits``) claims under them (see limits.sql). When a claim
comes back held by the limits rather than by this worker's free slots, the producer does not
spin: it waits for what can make room, as the database reported it. A rate limit gives the
time until its oldest start leaves the window; a concurrency limit gives the running jobs
whose end frees a slot, and the producer wakes when one of them is written as finished, here
(the completer's write) or on another worker (``job.finished``). While the queue's own limits
are used up, pushes do not wake it. The polling interval still bounds every wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row

from chancy import events
from chancy.executors.base import Executor
from chancy.queue import Queue
from chancy.store import run
from chancy.store.runner import run_pipelined_transaction
from chancy.store.store import Claim

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.hub import Event
    from chancy.runtime.context import Runtime

log = logging.getLogger("chancy.producer")


async def fetch_claim(
    chancy: Chancy, worker_id: str, queue: Queue, conn: Any, *, up_to: int = 1
) -> Claim:
    """Claim up to ``up_to`` jobs of ``queue`` on ``conn`` for ``worker_id``.

    A queue without limits claims with one statement in autocommit (``job_fetch``). A limited
    claim takes two round trips: BEGIN, the claim's planner settings (``claim_settings``), the
    queue's claim lock (see limits.sql) and the claim go as one pipeline batch, COMMIT once
    the claimed rows have arrived (``run_pipelined_transaction``). Jobs the claim failed as
    expired are announced after it commits.
    """
    store = chancy.store
    before, last = store.claim_parts(queue, up_to, worker_id)
    if before:
        claim = await run_pipelined_transaction(
            conn, store.tx_begin(), before, last, store.tx_commit()
        )
    else:
        async with conn.cursor(row_factory=dict_row) as cur:
            claim = await run(cur, last)
    if claim.expired:
        async with conn.cursor(row_factory=dict_row) as cur:
            await _announce_expired(chancy, cur, claim)
    return claim


async def _announce_expired(chancy: Chancy, cur: Any, claim: Claim) -> None:
    """Jobs the claim failed as expired are finished: tell waiters (job.finished), right after
    the claim commits. Rare, so one statement only when it happens."""
    if claim.expired and chancy.notifications:
        ids = [str(job_id) for job_id, _ in claim.expired]
        await run(
            cur,
            chancy.store.notify_many(
                (events.JOB_FINISHED, {"ids": ids[i : i + 150]}) for i in range(0, len(ids), 150)
            ),
        )


class Producer:
    """Feeds one queue's executor from the database."""

    def __init__(self, runtime: Runtime, queue: Queue, executor: Executor) -> None:
        self.runtime = runtime
        self._queue = queue
        self.executor = executor
        self._wake = asyncio.Event()
        self._backlog = True  # assume work is waiting until a claim says otherwise
        self._draining = False
        self.claimed = 0
        #: The last claim, when the queue's limits held waiting work back.
        self._held: Claim | None = None
        #: Ids of jobs seen finishing while a claim was in flight (None: not collecting).
        self._finished_during_claim: set[str] | None = None
        #: The server session of a claim whose connection was lost (see _fetch).
        self._lost_claim: int | None = None

    @property
    def queue(self) -> Queue:
        return self._queue

    @queue.setter
    def queue(self, queue: Queue) -> None:
        # New settings (limits may have changed): whatever held the last claim back is stale.
        self._queue = queue
        self._held = None

    @property
    def held(self) -> bool:
        """True while the queue's limits hold waiting work back."""
        return self._held is not None

    @property
    def threshold(self) -> int:
        if self.queue.eager_polling:
            return 1
        return max(1, self.executor.concurrency // 4)

    def wake(self) -> None:
        """Something was pushed (or changed): claim at the next chance."""
        self._backlog = True
        held = self._held
        if held is not None and held.full:
            return  # the queue's own limits are used up: a new job cannot start sooner
        self._wake.set()

    def slot_freed(self) -> None:
        if self._held is not None:
            return  # the limits, not this worker's slots, decide; see jobs_finished
        # Called for every job that ends: free_slots is computed only while not yet woken.
        if self._backlog and not self._wake.is_set() and self.executor.free_slots >= self.threshold:
            self._wake.set()

    def jobs_finished(self, ids: Iterable[Any]) -> None:
        """Jobs were written as finished (here or elsewhere): claim if that frees room."""
        collecting = self._finished_during_claim
        if collecting is not None:
            collecting.update(str(i) for i in ids)
            return
        held = self._held
        if held is None:
            return
        wake_ids = held.wake_ids
        if wake_ids is None or any(str(i) in wake_ids for i in ids):
            self._wake.set()

    def drain(self) -> None:
        """Stop claiming for good (queue removed, changed or worker stopping)."""
        self._draining = True
        self._wake.set()

    def _on_job_finished(self, event: Event) -> None:
        ids = event.body.get("ids")
        if isinstance(ids, list):
            self.jobs_finished(ids)

    def _on_connected(self, event: Event) -> None:
        # Job ends may have been missed while the connection was down.
        self._held = None
        self._wake.set()

    async def run(self) -> None:
        hub = self.runtime.hub
        hub.on(events.JOB_FINISHED, self._on_job_finished)
        hub.on(events.NOTIFIER_CONNECTED, self._on_connected)
        try:
            await self._run()
        finally:
            hub.remove(events.JOB_FINISHED, self._on_job_finished)
            hub.remove(events.NOTIFIER_CONNECTED, self._on_connected)

    async def _run(self) -> None:
        runtime = self.runtime
        while not self._draining:
            free = self.executor.free_slots
            claimable = (
                self.queue.state == Queue.State.ACTIVE
                and runtime.can_claim()
                and free > 0
                and (
                    free >= self.threshold
                    or not self._backlog
                    or self._wake.is_set()
                    or self._held is not None
                )
            )
            self._wake.clear()
            timeout: float = self.queue.polling_interval
            if claimable:
                claim = await self._claim(free)
                jobs = claim.jobs
                self.claimed += len(jobs)
                # Expired jobs took places in the claim: more may wait behind them.
                self._backlog = len(jobs) + len(claim.expired) >= free or claim.held
                if claim.expired:
                    runtime.hub.emit(
                        events.JOBS_EXPIRED, {"queue": self.queue.name, "jobs": claim.expired}
                    )
                if jobs:
                    await runtime.start(self.executor, await runtime.claimed(jobs))
                if self._held is not None:
                    if claim.more and jobs:
                        continue  # room is left and a key had more to offer: claim again
                    if claim.retry_in is not None:
                        timeout = min(timeout, claim.retry_in)
                elif self._backlog:
                    runtime.hub.emit(
                        events.WORKER_QUEUE_FULL, {"queue": self.queue, "name": self.queue.name}
                    )
                    if self.executor.free_slots >= self.threshold:
                        continue  # room again already (fast jobs): claim at once
            if self._draining:
                break
            # asyncio.timeout, not wait_for: wait_for runs the wait as a task of its own, so
            # a wake-up took three turns of the loop to reach this task, and with short jobs
            # each turn ran every job task then ready (hundreds): the claim started only
            # once the executor had run dry, instead of while its jobs still ran.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    async def _claim(self, free: int) -> Claim:
        """Claim up to ``free`` jobs; remember what held the rest back, if the limits did."""
        if not self.queue.has_limits:
            self._held = None
            return await self._fetch(free)
        self._finished_during_claim = set()
        try:
            claim = await self._fetch(free)
        finally:
            seen, self._finished_during_claim = self._finished_during_claim, None
        held = claim.held and len(claim.jobs) < free
        self._held = claim if held else None
        if held and seen and (claim.wake_ids is None or not seen.isdisjoint(claim.wake_ids)):
            # One of the jobs the claim saw running finished while it was in flight.
            self._wake.set()
        return claim

    async def _fetch(self, up_to: int) -> Claim:
        runtime = self.runtime
        if self._lost_claim is not None:
            await self._give_back_unseen(self._lost_claim)
        pool = await runtime.chancy.open()
        async with pool.connection() as conn:
            session = conn.info.backend_pid
            try:
                return await fetch_claim(
                    runtime.chancy, runtime.worker_id, self.queue, conn, up_to=up_to
                )
            except psycopg.OperationalError:
                # A claim in autocommit may have committed with its rows lost on the way:
                # its jobs would stay running under this worker, unseen. (A limited claim
                # commits only once its rows are read.)
                if not self.queue.has_limits:
                    self._lost_claim = session
                raise

    async def _give_back_unseen(self, session: int) -> None:
        """Give back what a lost claim took, once its server session is no longer busy (until
        then it may still commit; the next claim looks again)."""
        chancy, store = self.runtime.chancy, self.runtime.chancy.store
        if await chancy.db.run(store.job_claim_session_busy(session)):
            return
        given = await chancy.db.run(
            store.job_give_back_unseen(
                self.queue.name, self.runtime.worker_id, self.runtime.held_ids()
            )
        )
        self._lost_claim = None
        if given:
            log.warning(
                "gave back %d job(s) of queue %r claimed by a statement whose connection was"
                " lost before its rows arrived: %s",
                len(given),
                self.queue.name,
                ", ".join(map(str, given[:20])),
            )


__all__ = ["Producer", "fetch_claim"]
