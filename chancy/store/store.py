"""Typed store methods over the named queries of ``chancy/store/sql``.

Each method returns a ``Spec`` or a ``Plan`` that either runner executes, on a pool
connection or inside the caller's transaction. Encoding happens here, once per job.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, LiteralString

from chancy.errors import InvalidJobError
from chancy.executors.base import Outcome
from chancy.job import DefaultNow, Job, QueuedJob, Reference
from chancy.queue import Queue
from chancy.store.loader import Queries
from chancy.store.runner import Plan, Spec
from chancy.utils import chancy_uuid, json_dumps

#: Batches at least this large, without unique keys, are written with COPY.
COPY_THRESHOLD = 2000

_EMPTY_OBJ = "{}"
_EMPTY_LIST = "[]"


@dataclasses.dataclass(slots=True)
class EncodedJob:
    """One job's column values, encoded once."""

    id: uuid.UUID
    queue: str
    func: str
    kwargs: str
    limits: str
    meta: str
    priority: int
    max_attempts: int
    scheduled_at: datetime | None
    unique_key: str | None


def encode_job(job: Job, index: int | None = None) -> EncodedJob:
    """Encode a job's columns, raising InvalidJobError before anything is written."""
    where = f"job {index} ({job.func})" if index is not None else f"job {job.func}"
    try:
        kwargs = json_dumps(job.kwargs) if job.kwargs else _EMPTY_OBJ
    except (TypeError, ValueError) as exc:
        raise InvalidJobError(
            f"{where}: kwargs are not JSON-serialisable ({exc}); pass plain data (str, int,"
            " float, bool, None, lists and dicts, datetimes, UUIDs) and load objects inside"
            " the job"
        ) from None
    try:
        meta = json_dumps(job.meta) if job.meta else _EMPTY_OBJ
    except (TypeError, ValueError) as exc:
        raise InvalidJobError(f"{where}: meta is not JSON-serialisable ({exc})") from None
    limits = json_dumps([lim.serialize() for lim in job.limits]) if job.limits else _EMPTY_LIST
    scheduled = None if type(job.scheduled_at) is DefaultNow else job.scheduled_at
    return EncodedJob(
        chancy_uuid(),
        job.queue,
        job.func,
        kwargs,
        limits,
        meta,
        job.priority,
        job.max_attempts,
        scheduled,
        job.unique_key,
    )


def _one(decode: Any) -> Any:
    return lambda row: None if row is None else decode(row)


class Store:
    """Query specs for one installation (table prefix)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.q = Queries("chancy.store.sql", prefix)
        self.channel = f"{prefix}events"

    def q_migrate(self, name: str) -> LiteralString:
        """A query of the migration machinery (migrate.sql)."""
        return self.q[name]

    # -- jobs: push ---------------------------------------------------------------------

    def job_push(
        self, jobs: Sequence[Job], *, notify: bool, copy_threshold: int = COPY_THRESHOLD
    ) -> Plan[list[Reference]]:
        """Insert a batch; return references in the caller's order.

        Validation and encoding happen now, before the returned plan writes anything. A unique
        key repeated inside the batch maps to the first job that has it; a key live in the
        database maps to that job, which is left untouched.
        """
        encoded = [encode_job(job, i) for i, job in enumerate(jobs)]
        return self._job_push_plan(encoded, notify=notify, copy_threshold=copy_threshold)

    def _job_push_plan(
        self, encoded: list[EncodedJob], *, notify: bool, copy_threshold: int
    ) -> Plan[list[Reference]]:
        if not encoded:
            return []
        first_by_key: dict[str, EncodedJob] = {}
        refs: list[uuid.UUID] = []
        rows: list[EncodedJob] = []
        for row in encoded:
            key = row.unique_key
            if key is not None:
                first = first_by_key.get(key)
                if first is not None:
                    refs.append(first.id)
                    continue
                first_by_key[key] = row
            refs.append(row.id)
            rows.append(row)

        if not first_by_key and len(rows) >= copy_threshold:
            now_row = yield Spec(self.q["job_now"], fetch="one")
            now = now_row["now"]
            yield Spec(
                self.q["job_copy"],
                fetch="copy",
                rows=(
                    (
                        r.id,
                        r.queue,
                        r.func,
                        r.kwargs,
                        r.limits,
                        r.meta,
                        r.priority,
                        r.max_attempts,
                        r.scheduled_at or now,
                    )
                    for r in rows
                ),
            )
            if notify:
                for queue in sorted({r.queue for r in rows}):
                    yield self.notify("queue.pushed", {"q": queue})
            return [Reference(i) for i in refs]

        # Rows with unique keys first, in key order: concurrent pushers lock keys in the
        # same order and cannot deadlock on each other.
        rows.sort(key=lambda r: (r.unique_key is None, r.unique_key or ""))
        pending = rows
        replaced: dict[uuid.UUID, uuid.UUID] = {}
        for _ in range(10):
            result = yield self._job_insert_spec(pending, notify)
            inserted = set(result["ids"] or ())
            conflicted = [r for r in pending if r.id not in inserted]
            if not conflicted:
                break
            keys = [r.unique_key for r in conflicted]
            live = yield Spec(self.q["job_live_by_unique_keys"], {"keys": keys}, fetch="all")
            live_ids = {row["unique_key"]: row["id"] for row in live}
            pending = []
            for r in conflicted:
                existing = live_ids.get(r.unique_key)
                if existing is None:
                    # The live job finished between our insert and our look-up: try again.
                    pending.append(r)
                else:
                    replaced[r.id] = existing
            if not pending:
                break
        else:
            raise InvalidJobError(
                "could not settle unique keys after 10 tries; another process keeps finishing"
                " and pushing the same keys"
            )
        return [Reference(replaced.get(i, i)) for i in refs]

    def _job_insert_spec(self, rows: list[EncodedJob], notify: bool) -> Spec[Any]:
        return Spec(
            self.q["job_insert_many"],
            {
                "ids": [r.id for r in rows],
                "queues": [r.queue for r in rows],
                "funcs": [r.func for r in rows],
                "kwargs": [r.kwargs for r in rows],
                "limits": [r.limits for r in rows],
                "metas": [r.meta for r in rows],
                "priorities": [r.priority for r in rows],
                "max_attempts": [r.max_attempts for r in rows],
                "scheduled_ats": [r.scheduled_at for r in rows],
                "unique_keys": [r.unique_key for r in rows],
                "notify": notify,
            },
            fetch="one",
        )

    # -- jobs: read ---------------------------------------------------------------------

    def job_get(self, ref: Reference | uuid.UUID | str) -> Spec[QueuedJob | None]:
        return Spec(
            self.q["job_get"], {"id": Reference(ref).identifier}, "one", _one(QueuedJob.unpack)
        )

    def job_get_many(self, refs: Sequence[Reference | uuid.UUID | str]) -> Spec[list[QueuedJob]]:
        ids = [Reference(r).identifier for r in refs]
        order = {i: n for n, i in enumerate(ids)}

        def decode(rows: list[dict[str, Any]]) -> list[QueuedJob]:
            jobs = [QueuedJob.unpack(row) for row in rows]
            jobs.sort(key=lambda j: order[j.id])
            return jobs

        return Spec(self.q["job_get_many"], {"ids": ids}, "all", decode)

    def job_states(self, ids: Sequence[uuid.UUID]) -> Spec[dict[uuid.UUID, str]]:
        return Spec(
            self.q["job_states"],
            {"ids": list(ids)},
            "all",
            lambda rows: {row["id"]: row["state"] for row in rows},
        )

    # -- jobs: the worker's writes ------------------------------------------------------

    def job_fetch(self, queue: str, limit: int, worker_id: str) -> Spec[list[QueuedJob]]:
        def decode(rows: list[dict[str, Any]]) -> list[QueuedJob]:
            jobs = [QueuedJob.unpack(row) for row in rows]
            jobs.sort(key=lambda j: (-j.priority, j.id))
            return jobs

        return Spec(
            self.q["job_fetch"],
            {"queue": queue, "limit": limit, "worker_id": worker_id},
            "all",
            decode,
        )

    def job_complete_many(
        self, outcomes: Sequence[Outcome], *, notify: bool
    ) -> Spec[list[uuid.UUID]]:
        """Write outcomes, fenced by claim id; return the ids that were written."""
        ordered = sorted(outcomes, key=lambda o: o.job.id)
        ids: list[uuid.UUID] = []
        claims: list[uuid.UUID | None] = []
        states: list[str] = []
        attempts: list[int] = []
        errors: list[str | None] = []
        metas: list[str | None] = []
        results: list[str | None] = []
        delays: list[float | None] = []
        for o in ordered:
            job = o.job
            ids.append(job.id)
            claims.append(job.claim_id)
            states.append(str(job.state))
            attempts.append(job.attempts)
            errors.append(json_dumps(job.errors) if job.errors else None)
            metas.append(json_dumps(job.meta) if job.meta else None)
            results.append(o.result_json)
            delays.append(o.delay)
        return Spec(
            self.q["job_complete_many"],
            {
                "ids": ids,
                "claim_ids": claims,
                "states": states,
                "attempts": attempts,
                "errors": errors,
                "metas": metas,
                "results": results,
                "delays": delays,
                "notify": notify,
            },
            "one",
            lambda row: list(row["ids"] or ()),
        )

    def job_release_many(
        self, claims: Sequence[tuple[uuid.UUID, uuid.UUID | None]]
    ) -> Spec[list[dict[str, Any]]]:
        pairs = sorted(claims)
        return Spec(
            self.q["job_release_many"],
            {"ids": [p[0] for p in pairs], "claim_ids": [p[1] for p in pairs]},
            "all",
        )

    # -- jobs: operator actions ---------------------------------------------------------

    def job_cancel(self, ref: Reference | uuid.UUID | str, *, notify: bool) -> Spec[bool]:
        return Spec(
            self.q["job_cancel"],
            {"id": Reference(ref).identifier, "notify": notify},
            "one",
            lambda row: row is not None,
        )

    def job_retry_many(
        self, refs: Sequence[Reference | uuid.UUID | str], *, notify: bool
    ) -> Spec[tuple[list[uuid.UUID], list[uuid.UUID]]]:
        ids = sorted({Reference(r).identifier for r in refs})
        return Spec(
            self.q["job_retry_many"],
            {"ids": ids, "notify": notify},
            "one",
            lambda row: (list(row["retried"]), list(row["blocked"])),
        )

    def job_purge_many(
        self, refs: Sequence[Reference | uuid.UUID | str], *, notify: bool
    ) -> Spec[list[uuid.UUID]]:
        ids = sorted({Reference(r).identifier for r in refs})
        return Spec(
            self.q["job_purge_many"],
            {"ids": ids, "notify": notify},
            "one",
            lambda row: list(row["ids"]),
        )

    def notify(self, event: str, payload: dict[str, Any] | None = None) -> Spec[None]:
        body = {"t": event, **(payload or {})}
        return Spec(self.q["notify"], {"payload": json_dumps(body)})

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
        }

    def queue_declare(self, queue: Queue, *, upsert: bool) -> Spec[Queue]:
        name = "queue_upsert" if upsert else "queue_declare"
        return Spec(self.q[name], self._queue_params(queue), "one", queue_from_row)

    def queue_get(self, name: str) -> Spec[Queue | None]:
        return Spec(self.q["queue_get"], {"name": name}, "one", _one(queue_from_row))

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
    ) -> Spec[dict[str, Any]]:
        return Spec(
            self.q["worker_heartbeat"],
            {
                "worker_id": worker_id,
                "tags": list(tags),
                "queues": list(queues),
                "timeout": timeout,
                "hostname": hostname,
                "pid": pid,
                "version": version,
                "first": first,
            },
            "one",
        )

    def worker_get_all(self) -> Spec[list[dict[str, Any]]]:
        return Spec(self.q["worker_get_all"], None, "all")

    def worker_delete(self, worker_id: str) -> Spec[None]:
        return Spec(self.q["worker_delete"], {"worker_id": worker_id})


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
    )
