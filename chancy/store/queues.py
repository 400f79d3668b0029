"""Queue and worker specs, and the plans that change a queue and tell the workers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from chancy import events
from chancy.errors import ConfigurationError
from chancy.queue import Queue
from chancy.store.loader import Queries
from chancy.store.runner import Plan, Spec
from chancy.utils import json_dumps


class QueueSpecs:
    """Specs over ``{prefix}queues`` and ``{prefix}workers`` (mixed into ``Store``)."""

    q: Queries

    def notify(self, event: str, payload: dict[str, Any] | None = None) -> Spec[None]:
        raise NotImplementedError  # JobSpecs.notify, through Store

    # -- queues -------------------------------------------------------------------------

    @staticmethod
    def _queue_params(queue: Queue) -> dict[str, Any]:
        return {
            "name": queue.name,
            "state": queue.state.value,
            "concurrency": queue.concurrency,
            "tags": sorted(queue.tags),
            "executor": queue.executor,
            "executor_options": json_dumps(queue.executor_options),
            "polling_interval": queue.polling_interval,
            "rate_limit": queue.rate_limit,
            "rate_limit_window": queue.rate_limit_window,
            "resume_at": queue.resume_at,
            "eager_polling": queue.eager_polling,
            "global_concurrency": queue.global_concurrency,
            "partition_concurrency": queue.partition_concurrency,
            "partition_rate_limit": queue.partition_rate_limit,
            "partition_rate_limit_window": queue.partition_rate_limit_window,
            "fairness": queue.fairness,
            "partition_weights": (
                json_dumps(queue.partition_weights) if queue.partition_weights else None
            ),
            "partition_ordered": queue.partition_ordered,
            "partition_on_failure": queue.partition_on_failure,
            "default_deadline": queue.default_deadline,
        }

    def queue_declare(self, queue: Queue, *, upsert: bool) -> Plan[Queue]:
        """Store a queue (or overwrite it with ``upsert``); return the stored queue.

        When another transaction declares the same name at the same moment, the insert waits
        for it and skips, but the same statement's snapshot cannot see its row: read it in a
        new statement.
        """
        name = "queue_upsert" if upsert else "queue_declare"
        for _ in range(5):
            row = yield Spec(self.q[name], self._queue_params(queue), "one")
            if row is not None:
                return queue_from_row(row)
            stored = yield self.queue_get(queue.name)
            if stored is not None:
                return stored
        raise RuntimeError(f"queue {queue.name!r} kept vanishing while it was declared")

    def queue_get(self, name: str) -> Spec[Queue | None]:
        return Spec(self.q["queue_get"], {"name": name}, "one", _one(queue_from_row))

    def queue_rows(self) -> Spec[list[dict[str, Any]]]:
        """Every queue's stored row, undecoded (a worker checks each one)."""
        return Spec(self.q["queue_get_all"], None, "all")

    def queue_get_all(self) -> Spec[list[Queue]]:
        return Spec(
            self.q["queue_get_all"], None, "all", lambda rows: [queue_from_row(r) for r in rows]
        )

    def queue_delete(self, name: str, *, purge_jobs: bool) -> Plan[bool]:
        if purge_jobs:
            yield Spec(self.q["queue_purge_jobs"], {"name": name})
        row = yield Spec(self.q["queue_delete"], {"name": name}, "one")
        return row is not None

    def queue_set_state(
        self,
        name: str,
        state: Queue.State,
        *,
        resume_at: datetime | None = None,
        resume_in: float | None = None,
    ) -> Spec[Queue | None]:
        return Spec(
            self.q["queue_set_state"],
            {"name": name, "state": state.value, "resume_at": resume_at, "resume_in": resume_in},
            "one",
            _one(queue_from_row),
        )

    def queue_declare_notify(self, queue: Queue, *, upsert: bool, notify: bool) -> Plan[Queue]:
        """Declare ``queue`` and tell the workers (queue.declared)."""
        stored = yield from self.queue_declare(queue, upsert=upsert)
        if notify:
            yield self.notify(events.QUEUE_DECLARED, {"q": queue.name})
        return stored

    def queue_delete_notify(self, name: str, *, purge_jobs: bool, notify: bool) -> Plan[bool]:
        deleted = yield from self.queue_delete(name, purge_jobs=purge_jobs)
        if notify:
            yield self.notify(events.QUEUE_DECLARED, {"q": name, "deleted": True})
        return deleted

    def queue_pause(
        self, name: str, resume_at: datetime | timedelta | None, *, notify: bool
    ) -> Plan[Queue]:
        """Pause ``name`` (until ``resume_at``, a datetime or a timedelta from the database's
        now) and tell the workers; KeyError for an unknown queue."""
        if isinstance(resume_at, timedelta):
            spec = self.queue_set_state(
                name, Queue.State.PAUSED, resume_in=resume_at.total_seconds()
            )
        else:
            if resume_at is not None and (
                not isinstance(resume_at, datetime) or resume_at.tzinfo is None
            ):
                raise ConfigurationError(
                    "resume_at must be a timezone-aware datetime or a timedelta"
                )
            spec = self.queue_set_state(name, Queue.State.PAUSED, resume_at=resume_at)
        queue = yield spec
        if queue is None:
            raise KeyError(f"no queue named {name!r}")
        if notify:
            yield self.notify(events.QUEUE_PAUSED, {"q": name})
        return queue

    def queue_resume(self, name: str, *, notify: bool) -> Plan[Queue]:
        queue = yield self.queue_set_state(name, Queue.State.ACTIVE)
        if queue is None:
            raise KeyError(f"no queue named {name!r}")
        if notify:
            yield self.notify(events.QUEUE_RESUMED, {"q": name})
        return queue

    def queue_resume_due(self) -> Spec[list[str]]:
        return Spec(self.q["queue_resume_due"], None, "all", lambda rows: [r["name"] for r in rows])

    # -- workers ------------------------------------------------------------------------

    def worker_heartbeat(
        self,
        worker_id: str,
        *,
        tags: Sequence[str],
        queues: Sequence[str],
        timeout: float,
        hostname: str,
        pid: int,
        version: str,
        first: bool = False,
        liveness_key: int | None = None,
        notify: bool = False,
    ) -> Spec[dict[str, Any]]:
        return Spec(
            self.q["worker_heartbeat"],
            {
                "notify": notify,
                "worker_id": worker_id,
                "tags": list(tags),
                "queues": list(queues),
                "timeout": timeout,
                "hostname": hostname,
                "pid": pid,
                "version": version,
                "first": first,
                "liveness_key": liveness_key,
            },
            "one",
        )

    def worker_liveness_restored(self, worker_id: str, key: int) -> Spec[dict[str, Any]]:
        return Spec(self.q["worker_liveness_restored"], {"worker_id": worker_id, "key": key}, "one")

    def worker_get_all(self) -> Spec[list[dict[str, Any]]]:
        return Spec(self.q["worker_get_all"], None, "all")

    def worker_delete(self, worker_id: str) -> Spec[None]:
        return Spec(self.q["worker_delete"], {"worker_id": worker_id})


def _one(decode: Any) -> Any:
    return lambda row: None if row is None else decode(row)


def queue_from_row(row: dict[str, Any]) -> Queue:
    polling = row["polling_interval"]
    if isinstance(polling, float) and polling.is_integer():
        polling = int(polling)
    return Queue(
        name=row["name"],
        concurrency=row["concurrency"],
        tags=set(row["tags"] or [".*"]),
        state=Queue.State(row["state"]),
        executor=row["executor"],
        executor_options=row["executor_options"] or {},
        polling_interval=polling,
        rate_limit=row["rate_limit"],
        rate_limit_window=row["rate_limit_window"],
        resume_at=row["resume_at"],
        eager_polling=row["eager_polling"],
        global_concurrency=row.get("global_concurrency"),
        partition_concurrency=row.get("partition_concurrency"),
        partition_rate_limit=row.get("partition_rate_limit"),
        partition_rate_limit_window=row.get("partition_rate_limit_window"),
        fairness=bool(row.get("fairness", False)),
        partition_weights=row.get("partition_weights"),
        partition_ordered=bool(row.get("partition_ordered", False)),
        partition_on_failure=row.get("partition_on_failure") or "continue",
        default_deadline=_seconds(row.get("default_deadline")),
    )


def _seconds(value: float | None) -> int | float | None:
    return int(value) if isinstance(value, float) and value.is_integer() else value
