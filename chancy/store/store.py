"""Typed store methods over the named queries of ``chancy/store/sql``.

Each method returns a ``Spec`` or a ``Plan`` that either runner executes, on a pool
connection or inside the caller's transaction. Encoding happens here, once per job.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, LiteralString

from chancy.errors import InvalidJobError
from chancy.executors.base import Outcome
from chancy.job import DefaultNow, Job, QueuedJob, Reference, unpack_claimed
from chancy.queue import Queue
from chancy.store.loader import Queries
from chancy.store.runner import Plan, Spec
from chancy.utils import chancy_uuid, json_dumps, jsonb_dumps

log = logging.getLogger("chancy.store")

#: Batches at least this large, without unique keys, are written with COPY.
COPY_THRESHOLD = 2000

#: Seconds added to every rate-limit window at claim time: a job starts a few ms after its
#: claim commits, and this keeps the starts themselves, not only the claims, within the limit.
LIMIT_START_MARGIN = 0.05
#: A limited claim lists at most this many running jobs whose end would free room; beyond
#: that, the producer wakes on the end of any job.
LIMIT_MAX_WAKE_IDS = 1000
#: How far from the front of a queue with per-key limits a keyless job stored without the
#: key '' is looked for (see job_fetch_keyed).
LIMIT_FRONT = 50

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
    partition_key: str | None = None


def _where(job: Job, index: int | None) -> str:
    return f"job {index} ({job.func})" if index is not None else f"job {job.func}"


def encode_job(job: Job, index: int | None = None) -> EncodedJob:
    """Encode a job's columns, raising InvalidJobError before anything is written."""
    try:
        kwargs = jsonb_dumps(job.kwargs) if job.kwargs else _EMPTY_OBJ
    except (TypeError, ValueError) as exc:
        raise InvalidJobError(
            f"{_where(job, index)}: kwargs are not JSON-serialisable ({exc}); pass plain data"
            " (str, int, float, bool, None, lists and dicts, datetimes, UUIDs) and load objects"
            " inside the job"
        ) from None
    try:
        meta = jsonb_dumps(job.meta) if job.meta else _EMPTY_OBJ
    except (TypeError, ValueError) as exc:
        raise InvalidJobError(
            f"{_where(job, index)}: meta is not JSON-serialisable ({exc})"
        ) from None
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
        job.partition_key,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Claim:
    """The jobs one claim took and, for a queue with limits, what held the rest back."""

    jobs: list[QueuedJob]
    #: Waiting work was held back by the queue's limits, not by the worker's free slots.
    held: bool = False
    #: The queue's own limits are used up: a new push cannot start sooner.
    full: bool = False
    #: Seconds until a rate limit that holds work back has room again (database time).
    retry_in: float | None = None
    #: Room is left, and a partition key offered only its fair share of this claim: claim
    #: again at once.
    more: bool = False
    #: Ids (as strings) of running jobs whose end frees room under a concurrency limit; None
    #: when there were too many to list (any job's end may free room).
    wake_ids: frozenset[str] | None = frozenset()


def _decode_limited_claim(rows: list[dict[str, Any]]) -> Claim:
    if not rows:
        return Claim([])  # the queue no longer exists
    jobs = [unpack_claimed(row) for row in rows if row["id"] is not None]
    jobs.sort(key=lambda j: (-j.priority, j.id))
    status = rows[0]
    retry_ms = status["limit_retry_ms"]
    # The id list comes on one row only (limits.sql).
    wake = next((r["limit_wake_ids"] for r in rows if r["limit_wake_ids"] is not None), None)
    return Claim(
        jobs,
        held=bool(status["limit_held"]),
        full=bool(status["limit_full"]),
        more=bool(status["limit_more"]),
        retry_in=None if retry_ms is None else max(0.0, retry_ms / 1000),
        wake_ids=(None if status["limit_wake_any"] else frozenset(str(i) for i in wake or ())),
    )


def _array_literal(values: Sequence[Any]) -> str:
    """A PostgreSQL array literal of values whose text needs no quoting (ids, numbers, words)."""
    return "{" + ",".join(["NULL" if v is None else str(v) for v in values]) + "}"


def _text_array_literal(values: Sequence[str | None]) -> str:
    """A PostgreSQL array literal of arbitrary strings (JSON texts), each quoted."""
    return (
        "{"
        + ",".join(
            [
                "NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
                for v in values
            ]
        )
        + "}"
    )


#: Rows per chunk written to COPY.
_COPY_CHUNK = 2000
_COPY_NULL = "\\N"


def _copy_escape(value: str) -> str:
    """A string as a field of COPY's text format (backslash, tab, newline and CR escaped)."""
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if "\t" in value or "\n" in value or "\r" in value:
        value = value.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


def _copy_text(rows: list[EncodedJob], now: datetime, keyed: set[str]) -> Iterator[str]:
    """The rows of job_copy in COPY's text format, in chunks of ``_COPY_CHUNK`` rows.

    Built here rather than adapted value by value by ``write_row``: that costs several
    microseconds per row in Python, more than encoding the job. JSON texts from json_dumps
    hold no raw control characters (JSON escapes them), so only their backslashes need
    escaping; a UUID is written as 32 hex digits, which PostgreSQL's uuid input accepts.
    """
    esc = _copy_escape
    now_text = now.isoformat()
    lines: list[str] = []
    for r in rows:
        if r.partition_key is not None:
            pk = esc(r.partition_key)
        elif r.queue in keyed:
            pk = ""  # keyless jobs of queues with per-key limits (see job_insert_many)
        else:
            pk = _COPY_NULL
        lines.append(
            f"{r.id.int:032x}\t{esc(r.queue)}\t{esc(r.func)}\t{esc(r.kwargs)}\t{esc(r.limits)}"
            f"\t{esc(r.meta)}\t{r.priority}\t{r.max_attempts}"
            f"\t{now_text if r.scheduled_at is None else r.scheduled_at.isoformat()}\t{pk}\n"
        )
        if len(lines) >= _COPY_CHUNK:
            yield "".join(lines)
            lines = []
    if lines:
        yield "".join(lines)


def _outcome_json(value: Any, job: QueuedJob, field: str) -> str | None:
    """A finished job's ``errors`` or ``meta`` as jsonb text; None (keep the stored value)
    when it cannot be stored, so one job's bad data never fails a whole batch of outcomes."""
    try:
        return jsonb_dumps(value)
    except (TypeError, ValueError) as exc:
        log.error(
            "job %s (%s): its %s cannot be stored (%s); kept as before",
            job.id,
            job.func,
            field,
            exc,
        )
        return None


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
            prepared = yield Spec(
                self.q["job_copy_prepare"],
                {"queues": sorted({r.queue for r in rows})},
                fetch="one",
            )
            now = prepared["now"]
            # Keyless jobs of queues with per-key limits get the key '' (see job_insert_many).
            keyed = set(prepared["keyed_queues"])
            yield Spec(self.q["job_copy"], fetch="copy", data=_copy_text(rows, now, keyed))
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
                # Array literals, not lists: see job_complete_many.
                "ids": _array_literal([r.id for r in rows]),
                "queues": _text_array_literal([r.queue for r in rows]),
                "funcs": _text_array_literal([r.func for r in rows]),
                "kwargs": _text_array_literal([r.kwargs for r in rows]),
                "limits": _text_array_literal([r.limits for r in rows]),
                "metas": _text_array_literal([r.meta for r in rows]),
                "priorities": _array_literal([r.priority for r in rows]),
                "max_attempts": _array_literal([r.max_attempts for r in rows]),
                "scheduled_ats": _text_array_literal(
                    [None if r.scheduled_at is None else r.scheduled_at.isoformat() for r in rows]
                ),
                "unique_keys": _text_array_literal([r.unique_key for r in rows]),
                "partition_keys": _text_array_literal([r.partition_key for r in rows]),
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

    def job_active_count(self, queues: Sequence[str] | None) -> Spec[int]:
        """Due or running jobs of ``queues`` (all when None)."""
        params = {"queues": None if queues is None else list(queues)}
        return Spec(self.q["job_active_count"], params, "one", lambda row: int(row["n"]))

    def job_find_by_func(self, func: str, queue: str | None, limit: int) -> Spec[list[QueuedJob]]:
        """The newest ``limit`` jobs of ``func`` (and ``queue``), newest first."""
        params = {"func": func, "queue": queue, "limit": limit}
        return Spec(
            self.q["job_find_by_func"],
            params,
            "all",
            lambda rows: [QueuedJob.unpack(row) for row in rows],
        )

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
            jobs = [unpack_claimed(row) for row in rows]
            jobs.sort(key=lambda j: (-j.priority, j.id))
            return jobs

        return Spec(
            self.q["job_fetch"],
            {"queue": queue, "limit": limit, "worker_id": worker_id},
            "all",
            decode,
        )

    def job_fetch_limited(self, queue: Queue, limit: int, worker_id: str) -> Plan[Claim]:
        """Claim up to ``limit`` jobs within the queue's limits; run it in a transaction.

        Two statements: the queue's claim lock, then the claim (see limits.sql). Only queues
        with a limit (``Queue.has_limits``) claim this way.
        """
        yield Spec(self.q["limit_lock"], {"queue": queue.name})
        name = "job_fetch_keyed" if queue.has_partition_limits else "job_fetch_limited"
        params: dict[str, Any] = {
            "queue": queue.name,
            "limit": limit,
            "worker_id": worker_id,
            "margin": LIMIT_START_MARGIN,
            "max_wake": LIMIT_MAX_WAKE_IDS,
        }
        if queue.has_partition_limits:
            params["front"] = LIMIT_FRONT
        rows = yield Spec(self.q[name], params, "all")
        return _decode_limited_claim(rows)

    def limit_usage(self, queue: str) -> Spec[dict[str, Any] | None]:
        """Running jobs and starts in the current window, for the queue and each key."""

        def decode(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
            whole = next((r for r in rows if r["whole_queue"]), None)
            if whole is None:
                return None
            return {
                "running": whole["running"],
                "started_in_window": whole["started"],
                "partitions": {
                    r["partition_key"]: {
                        "running": r["running"],
                        "started_in_window": r["started"],
                    }
                    for r in rows
                    if not r["whole_queue"]
                },
            }

        return Spec(self.q["limit_usage"], {"queue": queue}, "all", decode)

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
            errors.append(_outcome_json(job.errors, job, "errors") if job.errors else None)
            metas.append(_outcome_json(job.meta, job, "meta") if job.meta else None)
            results.append(o.result_json)
            delays.append(o.delay)
        # Each array goes as one array literal: psycopg would otherwise dump every element
        # in Python, which costs more than the rest of the write for a large batch.
        return Spec(
            self.q["job_complete_many"],
            {
                "ids": _array_literal(ids),
                "claim_ids": _array_literal(claims),
                "states": _array_literal(states),
                "attempts": _array_literal(attempts),
                "errors": _text_array_literal(errors),
                "metas": _text_array_literal(metas),
                "results": _text_array_literal(results),
                "delays": _array_literal(delays),
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
            "global_concurrency": queue.global_concurrency,
            "partition_concurrency": queue.partition_concurrency,
            "partition_rate_limit": queue.partition_rate_limit,
            "partition_rate_limit_window": queue.partition_rate_limit_window,
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
        global_concurrency=row.get("global_concurrency"),
        partition_concurrency=row.get("partition_concurrency"),
        partition_rate_limit=row.get("partition_rate_limit"),
        partition_rate_limit_window=row.get("partition_rate_limit_window"),
    )
