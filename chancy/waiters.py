"""Waiting for jobs to finish: woken by ``job.finished`` notifications, polling as a fallback.

One LISTEN connection per app (the process's ``Notifier``) is shared by every waiter and by
the workers of that app; it opens on first use and closes with the app. A waiter reads only
the jobs a notification named, or all it still waits for when its polling interval passes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from chancy import events
from chancy.job import QueuedJob, Reference
from chancy.runtime.notifier import Notifier

if TYPE_CHECKING:
    from chancy.db import Db
    from chancy.store.store import Store

__all__ = ["TERMINAL", "Waiters"]

TERMINAL = frozenset({QueuedJob.State.SUCCEEDED, QueuedJob.State.FAILED})

Ref = Reference | uuid.UUID | str


class Waiters:
    """The app's listener and the futures of everyone waiting for a job."""

    def __init__(self, db: Db, store: Store, *, notifications: bool) -> None:
        self.db = db
        self.store = store
        self.notifications = notifications
        self._notifier: Notifier | None = None
        self._waiters: dict[uuid.UUID, set[asyncio.Future[None]]] = {}
        self._unsubscribe: Any = None

    async def notifier(self) -> Notifier:
        """The process's shared LISTEN connection, started on first use."""
        await self.db.open()
        if self._notifier is None:
            q = self.store.q
            self._notifier = Notifier(
                self.db.session_conninfo(),
                self.store.channel,
                listen_query=q["events_listen"],
                ping_query=q["events_ping"],
                lock_query=q["liveness_lock"],
                unlock_query=q["liveness_unlock"],
                connect_timeout=self.db.connect_timeout,
            )
            self._unsubscribe = None
        if not self._notifier.running:
            await self._notifier.start()
        return self._notifier

    def forget(self) -> None:
        """The event loop that ran the listener is gone: start afresh on the next use."""
        self._notifier = None
        self._unsubscribe = None

    async def close(self) -> None:
        if self._notifier is not None:
            await self._notifier.stop()
            self._notifier = None

    async def _listen(self) -> None:
        if not self.notifications:
            return
        notifier = await self.notifier()
        if self._unsubscribe is None:
            self._unsubscribe = notifier.subscribe(self._on_event)

    def _on_event(self, payload: dict[str, Any]) -> None:
        if payload.get("t") != events.JOB_FINISHED or not self._waiters:
            return
        for raw in payload.get("ids") or ():
            try:
                job_id = uuid.UUID(str(raw))
            except ValueError:
                continue
            for future in self._waiters.get(job_id, ()):
                if not future.done():
                    future.set_result(None)

    async def wait_for_jobs(
        self,
        refs: Sequence[Ref],
        *,
        interval: float = 1,
        timeout: float | None = None,
        states: Iterable[str] | None = None,
    ) -> list[QueuedJob]:
        """Wait for every job in ``refs``; return those that still exist, in order."""
        wanted = {str(s) for s in states} if states is not None else {str(s) for s in TERMINAL}
        ids = [Reference(r).identifier for r in refs]
        deadline = None if timeout is None else time.monotonic() + timeout
        await self._listen()
        loop = asyncio.get_running_loop()
        futures: dict[uuid.UUID, asyncio.Future[None]] = {}

        def arm(job_id: uuid.UUID) -> asyncio.Future[None]:
            old = futures.get(job_id)
            if old is not None:
                self._waiters.get(job_id, set()).discard(old)
            future = futures[job_id] = loop.create_future()
            self._waiters.setdefault(job_id, set()).add(future)
            return future

        for job_id in ids:
            arm(job_id)
        found: dict[uuid.UUID, QueuedJob] = {}
        pending = set(ids)
        to_read = list(ids)
        try:
            while True:
                # Read only what may have changed: the jobs a notification named, or all
                # pending ones when polling.
                jobs = await self.db.run(self.store.job_get_many(to_read)) if to_read else []
                seen = set()
                for job in jobs:
                    seen.add(job.id)
                    if str(job.state) in wanted:
                        found[job.id] = job
                        pending.discard(job.id)
                for job_id in to_read:
                    if job_id not in seen:
                        pending.discard(job_id)  # the job no longer exists
                if not pending:
                    return [found[i] for i in ids if i in found]
                for job_id in to_read:
                    if job_id in pending and futures[job_id].done():
                        arm(job_id)
                budget = interval
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError(
                            f"{len(pending)} job(s) did not reach {sorted(wanted)} within"
                            f" {timeout}s"
                        )
                    budget = min(budget, remaining)
                await asyncio.wait(
                    [futures[i] for i in pending],
                    timeout=budget,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                woken = [i for i in pending if futures[i].done()]
                to_read = woken or list(pending)
        finally:
            for job_id, future in futures.items():
                waiting = self._waiters.get(job_id)
                if waiting is not None:
                    waiting.discard(future)
                    if not waiting:
                        del self._waiters[job_id]

    def sync_wait_for_jobs(
        self,
        refs: Sequence[Ref],
        *,
        interval: float = 1,
        timeout: float | None = None,
        states: Iterable[str] | None = None,
    ) -> list[QueuedJob]:
        """``wait_for_jobs`` for sync code: polls every ``interval`` seconds."""
        wanted = {str(s) for s in states} if states is not None else {str(s) for s in TERMINAL}
        ids = [Reference(r).identifier for r in refs]
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            current = self.db.run_sync(self.store.job_states(ids))
            if all(current.get(i) in wanted for i in ids if i in current):
                return self.db.run_sync(self.store.job_get_many(ids)) if ids else []
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"jobs not finished within {timeout}s")
            time.sleep(max(0.0, min(interval, (deadline or float("inf")) - time.monotonic())))
