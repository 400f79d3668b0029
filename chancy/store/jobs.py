"""Job specs: push (one statement, or COPY), reads, completion writes, operator actions.

Mixed into ``Store``; ``self.q`` holds the named queries of ``chancy/store/sql``.
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from chancy import events
from chancy.errors import InvalidJobError
from chancy.job import Job, QueuedJob, Reference
from chancy.outcome import Outcome
from chancy.progress import Pending
from chancy.store.encode import (
    COPY_BET_MIN,
    COPY_THRESHOLD,
    EncodedJob,
    _array_literal,
    _copy_text,
    _outcome_json,
    _text_array_literal,
    _uuid_array_literal,
    _word_array_literal,
    copy_streamed,
    encode_jobs,
    insert_is_lean,
    jobs_are_lean,
)
from chancy.store.loader import Queries
from chancy.store.queues import _one
from chancy.store.runner import Plan, Spec
from chancy.utils import gc_paused, json_dumps

T = TypeVar("T")

#: The sort key of outcomes written together: their job's id as an integer.
_BY_JOB_ID = operator.attrgetter("job.id.int")

#: Writes that join a batch of at least this many rows (progress reports, given-back claims)
#: run under complete_settings (jobs.sql; outcomes always run under that setting, in the
#: function complete_jobs). A nested loop over a smaller batch re-reads at most 31 rows per
#: row (under a millisecond), less than the round trip the setting costs; a batch of 1,000 so
#: joined took 0.66 s.
LINEAR_JOIN_FROM = 32


def _unique_key(row: EncodedJob) -> str:
    return row.unique_key or ""


#: The COPY of a batch, by (lean rows, unique keys).
_COPY_STATEMENTS = {
    (False, False): "job_copy",
    (True, False): "job_copy_lean",
    (False, True): "job_copy_unique",
    (True, True): "job_copy_lean_unique",
}


class JobSpecs:
    """Specs over ``{prefix}jobs`` (mixed into ``Store``)."""

    q: Queries

    def notify(self, event: str, payload: dict[str, Any] | None = None) -> Spec[None]:
        body = {"t": event, **(payload or {})}
        return Spec(self.q["notify"], {"payload": json_dumps(body)})

    def notify_many(self, events: Iterable[tuple[str, dict[str, Any]]]) -> Spec[None]:
        """Send several events in one statement (at commit, in order)."""
        payloads = [json_dumps({"t": event, **payload}) for event, payload in events]
        return Spec(self.q["notify_many"], {"payloads": payloads})

    # -- jobs: push ---------------------------------------------------------------------

    def job_push(
        self, jobs: Sequence[Job], *, notify: bool, copy_threshold: int = COPY_THRESHOLD
    ) -> Plan[list[Reference]]:
        """Insert a batch; return references in the caller's order.

        Validation and encoding happen now, before the returned plan writes anything. A unique
        key repeated inside the batch maps to the first job that has it; a key live in the
        database maps to that job, which is left untouched.
        """
        with gc_paused():
            encoded = encode_jobs(jobs)
        return self.job_push_encoded(encoded, notify=notify, copy_threshold=copy_threshold)

    def job_push_encoded(
        self,
        encoded: list[EncodedJob],
        *,
        notify: bool,
        copy_threshold: int = COPY_THRESHOLD,
        fresh_keys: bool = False,
    ) -> Plan[list[Reference]]:
        """``job_push`` of jobs already encoded (``encode_job``, in the batch's order).

        With ``fresh_keys``, a batch with unique keys is written without ON CONFLICT, on the
        bet that its keys are new: by COPY (``job_copy_lean_unique``, ``job_copy_unique``)
        from ``COPY_BET_MIN`` jobs, else a lean one by ``job_insert_many_plain``. A key
        that is live fails the statement with a unique violation (``live_key_conflict``),
        and the caller rolls back and pushes the batch again without ``fresh_keys``. Only for
        a plan that is the first statement of a transaction of its own (``push_many``)."""
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

        # Rows with unique keys first, in key order: concurrent pushers lock keys in the
        # same order and cannot deadlock on each other. (No key tuples: with the collector
        # on, allocating one per row started collections that walked the caller's jobs.)
        if first_by_key:
            with_key = [r for r in rows if r.unique_key is not None]
            with_key.sort(key=_unique_key)
            rows = with_key + [r for r in rows if r.unique_key is None]

        # COPY, also for a batch with unique keys on the bet that they are new: a live key
        # fails it with the same unique violation as job_insert_many_plain.
        unique = bool(first_by_key)
        if (fresh_keys and len(rows) >= COPY_BET_MIN) if unique else len(rows) >= copy_threshold:

            def data(
                now: datetime, keyed: set[str], defaults: dict[str, float], lean: bool
            ) -> Iterable[str]:
                return _copy_text(rows, now, keyed, defaults, lean=lean, unique=unique)

            queues = sorted({r.queue for r in rows})
            yield from self._copy(queues, insert_is_lean(rows), data, notify, unique=unique)
            with gc_paused():
                return [Reference(i) for i in refs]
        pending = rows
        replaced: dict[uuid.UUID, uuid.UUID] = {}
        for _ in range(10):
            with gc_paused():
                spec = self._job_insert_spec(pending, notify, fresh_keys)
            result = yield spec
            if result["ids"] is None:
                break  # all inserted
            inserted = set(result["ids"])
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
        with gc_paused():
            return [Reference(replaced.get(i, i)) for i in refs]

    def job_copy_streamed(self, jobs: Sequence[Job], *, notify: bool) -> Plan[list[Reference]]:
        """``job_push`` of a batch for COPY (no unique keys, at least COPY_THRESHOLD jobs),
        encoded while COPY sends it, not first: the server stores the first rows while the
        next are encoded (push_many's first batch). A job that cannot be encoded fails the
        COPY (InvalidJobError); nothing of the batch is written once its transaction rolls
        back."""
        ids: list[uuid.UUID] = []

        def data(
            now: datetime, keyed: set[str], defaults: dict[str, float], lean: bool
        ) -> Iterable[str]:
            return copy_streamed(jobs, ids, now, keyed, defaults, lean=lean)

        queues = sorted({j.queue for j in jobs})
        yield from self._copy(queues, jobs_are_lean(jobs), data, notify)
        with gc_paused():
            return [Reference(i) for i in ids]

    def _copy(
        self,
        queues: list[str],
        lean_rows: bool,
        data: Callable[[datetime, set[str], dict[str, float], bool], Iterable[str]],
        notify: bool,
        *,
        unique: bool = False,
    ) -> Plan[None]:
        """The COPY of a batch of ``queues``: with job_copy_lean when its rows are
        (``lean_rows``, ``insert_is_lean``) and no queue fills a column in."""
        prepared = yield Spec(self.q["job_copy_prepare"], {"queues": queues}, fetch="one")
        # Keyless jobs of queues with per-key limits get the key '' (see job_insert_many).
        keyed = set(prepared["keyed_queues"])
        defaults = {k: float(v) for k, v in prepared["default_deadlines"].items()}
        lean = lean_rows and not any(q in keyed or q in defaults for q in queues)
        yield Spec(
            self.q[_COPY_STATEMENTS[lean, unique]],
            fetch="copy",
            data=data(prepared["now"], keyed, defaults, lean),
        )
        if notify:
            for queue in queues:
                yield self.notify(events.QUEUE_PUSHED, {"q": queue})

    def _job_insert_spec(
        self, rows: list[EncodedJob], notify: bool, fresh_keys: bool = False
    ) -> Spec[Any]:
        # Array literals, not lists: see job_complete_many.
        params: dict[str, Any] = {
            "ids": _uuid_array_literal([r.id for r in rows]),
            "queues": _text_array_literal([r.queue for r in rows]),
            "funcs": _text_array_literal([r.func for r in rows]),
            "kwargs": _text_array_literal([r.kwargs for r in rows]),
            "priorities": _array_literal([r.priority for r in rows]),
            "max_attempts": _array_literal([r.max_attempts for r in rows]),
            "notify": notify,
            "n": len(rows),
        }
        lean = insert_is_lean(rows)
        if any(r.unique_key is not None for r in rows):
            params["unique_keys"] = _text_array_literal([r.unique_key for r in rows])
            if lean and fresh_keys:
                return Spec(self.q["job_insert_many_plain"], params, fetch="one")
        elif lean:
            params["unique_keys"] = None  # no key can conflict: no ON CONFLICT
            return Spec(self.q["job_insert_many_plain"], params, fetch="one")
        else:
            params["unique_keys"] = _text_array_literal([None] * len(rows))
        if lean:
            return Spec(self.q["job_insert_many_lean"], params, fetch="one")
        params.update(
            limits=_text_array_literal([r.limits for r in rows]),
            metas=_text_array_literal([r.meta for r in rows]),
            scheduled_ats=_text_array_literal(
                [None if r.scheduled_at is None else r.scheduled_at.isoformat() for r in rows]
            ),
            partition_keys=_text_array_literal([r.partition_key for r in rows]),
            deadlines=_text_array_literal(
                [None if r.deadline is None else r.deadline.isoformat() for r in rows]
            ),
        )
        return Spec(self.q["job_insert_many"], params, fetch="one")

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

    def testing_clock(self) -> Spec[datetime]:
        """The server's clock now (chancy.testing)."""
        return Spec(self.q["testing_clock"], {}, "one", lambda row: row["ts"])

    def testing_finished_since(
        self, since: datetime, queues: Sequence[str] | None
    ) -> Spec[list[QueuedJob]]:
        """Jobs of ``queues`` (all when None) finished at or after ``since``, oldest first."""
        params = {"since": since, "queues": None if queues is None else list(queues)}
        return Spec(
            self.q["testing_finished_since"],
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

    def complete_settings(self) -> Spec[None]:
        """A batch write's planner settings, local to its transaction (see jobs.sql)."""
        return Spec(self.q["complete_settings"])

    def linear_join(self, spec: Spec[T], size: int) -> Plan[T]:
        """``spec``, a write joining a batch of ``size`` rows, after complete_settings when the
        batch is big enough for the join's shape to matter. Run it in a transaction (the
        setting is local to it) when ``size >= LINEAR_JOIN_FROM``."""
        if size >= LINEAR_JOIN_FROM:
            yield self.complete_settings()
        return (yield spec)

    def job_complete_many(
        self,
        outcomes: Sequence[Outcome],
        *,
        notify: bool,
        progress: Mapping[uuid.UUID, Pending] | None = None,
    ) -> Spec[list[uuid.UUID]]:
        """Write outcomes, fenced by claim id; return the ids that were written.

        ``progress``: reports of these runs not written yet, written in the same row update
        (a report is kept only when it was made under the outcome's claim).
        """
        # By the integer: UUID comparison is a Python method, called n log n times (and the
        # key by attrgetter, not a lambda: no Python call per outcome).
        ordered = sorted(outcomes, key=_BY_JOB_ID)
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
            states.append(job.state)
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
                "ids": _uuid_array_literal(ids),
                "claim_ids": _uuid_array_literal(claims, repeated=True),
                "states": _word_array_literal(states),
                "attempts": _array_literal(attempts),
                "errors": _text_array_literal(errors),
                "metas": _text_array_literal(metas),
                "results": _text_array_literal(results),
                "delays": _array_literal(delays),
                "progresses": _progress_literal(ordered, progress) if progress else None,
                "notify": notify,
            },
            "one",
            lambda row: list(row["ids"] or ()),
        )

    def job_progress_many(self, pending: Mapping[uuid.UUID, Pending]) -> Spec[list[uuid.UUID]]:
        """Write the latest progress report of running jobs, fenced by each run's claim;
        return the ids that were written."""
        ids = sorted(pending)
        entries = [pending[i] for i in ids]
        return Spec(
            self.q["job_progress_many"],
            {
                "ids": _array_literal(ids),
                "claim_ids": _array_literal([claim for claim, _ in entries]),
                "progresses": _text_array_literal([r.to_json() for _, r in entries]),
            },
            "all",
            lambda rows: [row["id"] for row in rows],
        )

    def job_complete_tx(
        self, job: QueuedJob, result_json: str | None, meta_json: str | None, *, notify: bool
    ) -> Spec[bool]:
        """Mark ``job`` succeeded in the caller's transaction, fenced by its claim."""
        return Spec(
            self.q["job_complete_tx"],
            {
                "id": job.id,
                "claim_id": job.claim_id,
                "result": result_json,
                "meta": meta_json,
                "notify": notify,
            },
            "one",
            lambda row: row is not None,
        )

    def job_settled_by_claim(
        self, claims: Sequence[tuple[uuid.UUID, uuid.UUID | None]]
    ) -> Spec[set[uuid.UUID]]:
        """Of these (id, claim id) pairs, the jobs that finished themselves under that claim."""
        return Spec(
            self.q["job_settled_by_claim"],
            {"ids": [c[0] for c in claims], "claim_ids": [c[1] for c in claims]},
            "all",
            lambda rows: {r["id"] for r in rows},
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

    def job_claims_lost(
        self, claims: Sequence[tuple[uuid.UUID, uuid.UUID | None]]
    ) -> Spec[list[uuid.UUID]]:
        """Of these (id, claim id) pairs, the jobs no longer running under that claim."""
        return Spec(
            self.q["job_claims_lost"],
            {"ids": [c[0] for c in claims], "claim_ids": [c[1] for c in claims]},
            "all",
            lambda rows: [r["id"] for r in rows],
        )

    def job_cancel(
        self,
        ref: Reference | uuid.UUID | str,
        *,
        notify: bool,
        reason: str | None = None,
        by: str | None = None,
    ) -> Spec[bool]:
        return Spec(
            self.q["job_cancel"],
            {"id": Reference(ref).identifier, "notify": notify, "reason": reason, "by": by},
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


def _progress_literal(ordered: Sequence[Outcome], progress: Mapping[uuid.UUID, Pending]) -> str:
    values: list[str | None] = []
    for o in ordered:
        entry = progress.get(o.job.id)
        values.append(entry[1].to_json() if entry and entry[0] == o.job.claim_id else None)
    return _text_array_literal(values)
