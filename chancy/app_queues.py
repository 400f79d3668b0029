"""The queue and worker operations of ``Chancy`` (a mixin of the app facade).

Declaring, reading, pausing, resuming and deleting queues, each a store plan that also tells
the workers (NOTIFY), run on a pool connection, on the sync pool or in the caller's
transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg

from chancy.errors import ConfigurationError
from chancy.queue import EXECUTORS, Queue
from chancy.store import Plan
from chancy.utils import import_string

if TYPE_CHECKING:
    from chancy.db import Db
    from chancy.store import Store

T = TypeVar("T")


class QueueOperations:
    """Queues and workers, for ``Chancy``."""

    db: Db
    store: Store
    notifications: bool

    # -- queues ---------------------------------------------------------------------------

    @staticmethod
    def _check_executor(queue: Queue) -> None:
        from chancy.executors.base import Executor

        if queue.executor in EXECUTORS.values():
            return
        try:
            cls = import_string(queue.executor)
        except Exception:
            cls = None
        if not (isinstance(cls, type) and issubclass(cls, Executor)):
            choices = ", ".join(sorted(EXECUTORS.values()))
            raise ConfigurationError(
                f"queue {queue.name!r} names executor {queue.executor!r}, which is not an"
                f" importable Executor subclass; valid built-in choices: {choices}"
            )

    def _declare_plan(self, queue: Queue, upsert: bool) -> Plan[Queue]:
        self._check_executor(queue)
        return self.store.queue_declare_notify(queue, upsert=upsert, notify=self.notifications)

    async def declare(self, queue: Queue, *, upsert: bool = False) -> Queue:
        """Store a queue (or overwrite its settings with ``upsert``) and tell the workers."""
        return await self.db.run(self._declare_plan(queue, upsert), transaction=True)

    async def declare_ex(
        self, cursor: psycopg.AsyncCursor[Any], queue: Queue, *, upsert: bool = False
    ) -> Queue:
        return await self.db.run_ex(cursor, self._declare_plan(queue, upsert))

    def sync_declare(self, queue: Queue, *, upsert: bool = False) -> Queue:
        return self.db.run_sync(self._declare_plan(queue, upsert), transaction=True)

    def sync_declare_ex(
        self, cursor: psycopg.Cursor[Any], queue: Queue, *, upsert: bool = False
    ) -> Queue:
        return self.db.run_ex_sync(cursor, self._declare_plan(queue, upsert))

    async def get_queue(self, name: str) -> Queue:
        return _found(await self.db.run(self.store.queue_get(name)), name)

    def sync_get_queue(self, name: str) -> Queue:
        return _found(self.db.run_sync(self.store.queue_get(name)), name)

    async def get_all_queues(self) -> list[Queue]:
        return await self.db.run(self.store.queue_get_all())

    def sync_get_all_queues(self) -> list[Queue]:
        return self.db.run_sync(self.store.queue_get_all())

    async def get_limit_usage(self, name: str) -> dict[str, Any]:
        """What a queue's limits use now: running jobs and starts in the current window.

        Returns ``{"running", "started_in_window", "partitions": {key: {"running",
        "started_in_window"}}}`` for the queue and for each partition key with running jobs or
        starts in its window; ``started_in_window`` is None without a rate limit. Running jobs
        of a crashed worker count until they are recovered. Raises KeyError for an unknown
        queue.
        """
        return _found(await self.db.run(self.store.limit_usage(name)), name)

    def sync_get_limit_usage(self, name: str) -> dict[str, Any]:
        return _found(self.db.run_sync(self.store.limit_usage(name)), name)

    def _delete_plan(self, name: str, purge_jobs: bool) -> Plan[bool]:
        return self.store.queue_delete_notify(
            name, purge_jobs=purge_jobs, notify=self.notifications
        )

    async def delete_queue(self, name: str, *, purge_jobs: bool = True) -> bool:
        return await self.db.run(self._delete_plan(name, purge_jobs), transaction=True)

    async def delete_queue_ex(
        self, cursor: psycopg.AsyncCursor[Any], name: str, *, purge_jobs: bool = True
    ) -> bool:
        return await self.db.run_ex(cursor, self._delete_plan(name, purge_jobs))

    def sync_delete_queue(self, name: str, *, purge_jobs: bool = True) -> bool:
        return self.db.run_sync(self._delete_plan(name, purge_jobs), transaction=True)

    def sync_delete_queue_ex(
        self, cursor: psycopg.Cursor[Any], name: str, *, purge_jobs: bool = True
    ) -> bool:
        return self.db.run_ex_sync(cursor, self._delete_plan(name, purge_jobs))

    def _pause_plan(self, name: str, resume_at: datetime | timedelta | None) -> Plan[Queue]:
        return self.store.queue_pause(name, resume_at, notify=self.notifications)

    async def pause_queue(
        self, name: str, *, resume_at: datetime | timedelta | None = None
    ) -> Queue:
        """Stop workers claiming from ``name``; resume it at ``resume_at`` if given."""
        return await self.db.run(self._pause_plan(name, resume_at), transaction=True)

    async def pause_queue_ex(
        self,
        cursor: psycopg.AsyncCursor[Any],
        name: str,
        *,
        resume_at: datetime | timedelta | None = None,
    ) -> Queue:
        return await self.db.run_ex(cursor, self._pause_plan(name, resume_at))

    def sync_pause_queue(
        self, name: str, *, resume_at: datetime | timedelta | None = None
    ) -> Queue:
        return self.db.run_sync(self._pause_plan(name, resume_at), transaction=True)

    def sync_pause_queue_ex(
        self,
        cursor: psycopg.Cursor[Any],
        name: str,
        *,
        resume_at: datetime | timedelta | None = None,
    ) -> Queue:
        return self.db.run_ex_sync(cursor, self._pause_plan(name, resume_at))

    async def resume_queue(self, name: str) -> Queue:
        plan = self.store.queue_resume(name, notify=self.notifications)
        return await self.db.run(plan, transaction=True)

    async def resume_queue_ex(self, cursor: psycopg.AsyncCursor[Any], name: str) -> Queue:
        return await self.db.run_ex(
            cursor, self.store.queue_resume(name, notify=self.notifications)
        )

    def sync_resume_queue(self, name: str) -> Queue:
        plan = self.store.queue_resume(name, notify=self.notifications)
        return self.db.run_sync(plan, transaction=True)

    def sync_resume_queue_ex(self, cursor: psycopg.Cursor[Any], name: str) -> Queue:
        return self.db.run_ex_sync(cursor, self.store.queue_resume(name, notify=self.notifications))

    # -- workers --------------------------------------------------------------------------

    async def get_all_workers(self) -> list[dict[str, Any]]:
        return await self.db.run(self.store.worker_get_all())

    def sync_get_all_workers(self) -> list[dict[str, Any]]:
        return self.db.run_sync(self.store.worker_get_all())


def _found(value: T | None, name: str) -> T:
    if value is None:
        raise KeyError(f"no queue named {name!r}; declare it with chancy.declare(Queue(...))")
    return value
