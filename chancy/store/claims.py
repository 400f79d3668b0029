"""Claim specs: the plain claim, the claim within a queue's limits, and limit usage."""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from chancy.job import Limit, QueuedJob, unpack_claimed
from chancy.progress import Progress
from chancy.queue import Queue
from chancy.store.loader import Queries
from chancy.store.runner import Plan, Spec
from chancy.utils import slot_setter

T = TypeVar("T")

#: Seconds added to every rate-limit window at claim time: a job starts a few ms after its
#: claim commits, and this keeps the starts themselves, not only the claims, within the limit.
LIMIT_START_MARGIN = 0.05
#: A limited claim lists at most this many running jobs whose end would free room; beyond
#: that, the producer wakes on the end of any job.
LIMIT_MAX_WAKE_IDS = 1000
#: How far from the front of a queue with per-key limits a keyless job stored without the
#: key '' is looked for (see job_fetch_keyed).
LIMIT_FRONT = 50


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
    #: (id, func) of the picked jobs whose deadline had passed: failed by the claim, not run.
    expired: tuple[tuple[uuid.UUID, str], ...] = ()


#: How each stored column becomes a QueuedJob field in ``QueuedJob.unpack``, as an
#: expression of the column's value ``{x}`` (columns not listed are taken as they are).
_COLUMN_FIELDS = {
    "kwargs": "{{}} if {x} is None else {x}",
    "limits": "[_limit(i) for i in {x}] if {x} else []",
    "meta": "{{}} if {x} is None else {x}",
    "recoveries": "{x} or 0",
    "errors": "{x} or []",
    "progress": "_progress({x}) if {x} else None",
    "partition_key": "{x} or None",
}
_OPTIONAL_COLUMNS = frozenset(
    {"claim_id", "recoveries", "result", "taken_by", "progress", "partition_key", "deadline"}
)


@functools.cache
def claimed_row_maker(names: tuple[str, ...]) -> Callable[[Any], Any]:
    """A psycopg row maker for claimed rows whose columns are ``names``: a row in state
    'running' becomes its ``QueuedJob`` as ``QueuedJob.unpack`` would make it, straight from
    the row's values (no dict per row); any other row, or one ``unpack`` would refuse, a dict
    of column name to value (``unpack_claimed`` then makes its failed outcome).

    Generated once per column list, as straight-line stores into the new job's slots (see
    ``chancy.utils.slot_builder``): a claim builds thousands of jobs.
    """
    fields = {f.name: f for f in dataclasses.fields(QueuedJob)}
    required = (set(fields) - _OPTIONAL_COLUMNS) - {"dependencies", "_time_limit_deadline"}
    namespace: dict[str, Any] = {
        "_names": names,
        "_dict": dict,
        "_zip": zip,
        "_new": object.__new__,
        "_cls": QueuedJob,
        "_running": QueuedJob.State.RUNNING,
        "_limit": Limit.deserialize,
        "_progress": Progress.from_stored,
    }
    if "state" not in names or not required <= set(names):
        exec("def make(v):\n    return _dict(_zip(_names, v))\n", namespace)
        maker: Callable[[Any], Any] = namespace["make"]
        return maker
    column = {name: i for i, name in enumerate(names)}
    stores = []
    for name, field in fields.items():
        namespace[f"_s_{name}"] = slot_setter(QueuedJob, name)
        if name == "state":
            expr = "_running"
        elif name in column:
            expr = _COLUMN_FIELDS.get(name, "{x}").format(x=f"v[{column[name]}]")
        elif field.default_factory is not dataclasses.MISSING:
            namespace[f"_f_{name}"] = field.default_factory
            expr = f"_f_{name}()"
        else:
            namespace[f"_d_{name}"] = field.default
            expr = f"_d_{name}"
        stores.append(f"            _s_{name}(new, {expr})\n")
    source = (
        "def make(v):\n"
        f"    if v[{column['state']}] == 'running':\n"
        "        try:\n"
        "            new = _new(_cls)\n"
        f"{''.join(stores)}"
        "            return new\n"
        "        except Exception:\n"
        "            pass\n"
        "    return _dict(_zip(_names, v))\n"
    )
    exec(source, namespace)
    maker = namespace["make"]
    return maker


def claim_rows(cursor: Any) -> Callable[[Sequence[Any]], Any]:
    """psycopg row factory of a plain claim: a row claimed to run becomes its ``QueuedJob``
    straight from the row's values (``claimed_row_maker``), any other row a dict."""
    names = tuple(column.name for column in cursor.description or ())
    return claimed_row_maker(names)


def _split(rows: list[Any]) -> tuple[list[QueuedJob], tuple[Any, ...]]:
    """The claimed jobs to run, highest priority first, and the expired ones (id, func).

    ``rows`` are dicts, or (``claim_rows``) already the jobs of the rows claimed to run."""
    jobs = [
        row if type(row) is QueuedJob else unpack_claimed(row)
        for row in rows
        if type(row) is QueuedJob or row["state"] == "running"
    ]
    # By the id's integer: UUID's own comparison is a Python method, 4x the cost per claim.
    jobs.sort(key=lambda j: (-j.priority, j.id.int))
    expired = tuple(
        (row["id"], row["func"])
        for row in rows
        if type(row) is not QueuedJob and row["state"] == "failed"
    )
    return jobs, expired


def _decode_claim(rows: list[dict[str, Any]]) -> Claim:
    jobs, expired = _split(rows)
    return Claim(jobs, expired=expired)


def _decode_limited_claim(rows: list[dict[str, Any]]) -> Claim:
    if not rows:
        return Claim([])  # the queue no longer exists
    jobs, expired = _split([row for row in rows if row["id"] is not None])
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
        expired=expired,
    )


class ClaimSpecs:
    """Claims of waiting jobs (mixed into ``Store``)."""

    q: Queries

    def claim_settings(self) -> Spec[None]:
        """The planner settings a claim runs under, in its transaction (see jobs.sql)."""
        return Spec(self.q["claim_settings"])

    def job_fetch(self, queue: str, limit: int, worker_id: str) -> Spec[list[QueuedJob]]:
        """Claim up to ``limit`` jobs; return those to run (expired ones are failed)."""
        return self._plain_claim(queue, limit, worker_id, lambda rows: _split(rows)[0])

    def job_claim(self, queue: str, limit: int, worker_id: str) -> Spec[Claim]:
        """``job_fetch`` as a ``Claim``, which also lists the jobs it failed as expired."""
        return self._plain_claim(queue, limit, worker_id, _decode_claim)

    def _plain_claim(
        self, queue: str, limit: int, worker_id: str, decode: Callable[[list[Any]], T]
    ) -> Spec[T]:
        # Rows in binary, the running ones built into jobs as they are read (claim_rows).
        return Spec(
            self.q["job_fetch"],
            {"queue": queue, "limit": limit, "worker_id": worker_id},
            "all",
            decode,
            row_factory=claim_rows,
            binary=True,
        )

    def session_utc(self) -> Spec[None]:
        """Name a UTC server's zone 'UTC' for this session, for cheaper datetimes (jobs.sql)."""
        return Spec(self.q["session_utc"])

    def claim_warmup(self) -> Spec[None]:
        """Load and plan the claim function in a new server session (see jobs.sql)."""
        return Spec(self.q["claim_warmup"])

    def job_claim_session_busy(self, pid: int) -> Spec[bool]:
        """Whether server session ``pid`` still runs a statement (a lost claim's)."""
        return Spec(self.q["job_claim_session_busy"], {"pid": pid}, "one", lambda r: r["busy"])

    def job_give_back_unseen(
        self, queue: str, worker_id: str, known: Iterable[uuid.UUID]
    ) -> Spec[list[uuid.UUID]]:
        """Give back jobs of ``queue`` running under ``worker_id`` but not in ``known``."""
        params = {"queue": queue, "worker_id": worker_id, "known": list(known)}
        return Spec(
            self.q["job_give_back_unseen"], params, "all", lambda rows: [r["id"] for r in rows]
        )

    def tx_begin(self) -> Spec[None]:
        return Spec(self.q["tx_begin"])

    def tx_commit(self) -> Spec[None]:
        return Spec(self.q["tx_commit"])

    def claim_parts(
        self, queue: Queue, limit: int, worker_id: str
    ) -> tuple[list[Spec[None]], Spec[Claim]]:
        """A claim of up to ``limit`` jobs of ``queue`` as the statements that prepare it and
        the claim itself. A queue without limits claims with one statement in autocommit (no
        statements before it: ``job_fetch``, whose function holds its planner setting); a
        limited claim runs after the planner settings and the queue's claim lock, in one
        transaction (``run_pipelined_transaction``)."""
        if not queue.has_limits:
            return [], self.job_claim(queue.name, limit, worker_id)
        return [
            self.claim_settings(),
            Spec(self.q["limit_lock"], {"queue": queue.name}),
        ], self._limited_claim(queue, limit, worker_id)

    def job_fetch_limited(self, queue: Queue, limit: int, worker_id: str) -> Plan[Claim]:
        """Claim up to ``limit`` jobs within the queue's limits; run it in a transaction.

        Two statements: the queue's claim lock, then the claim (see limits.sql). Only queues
        with a limit (``Queue.has_limits``) claim this way.
        """
        before, claim = self.claim_parts(queue, limit, worker_id)
        yield from before
        return (yield claim)

    def _limited_claim(self, queue: Queue, limit: int, worker_id: str) -> Spec[Claim]:
        if queue.partition_ordered:
            name = "job_fetch_ordered"
        elif queue.fairness:
            name = "job_fetch_fair"
        elif queue.has_partition_limits:
            name = "job_fetch_keyed"
        else:
            name = "job_fetch_limited"
        params: dict[str, Any] = {
            "queue": queue.name,
            "limit": limit,
            "worker_id": worker_id,
            "margin": LIMIT_START_MARGIN,
            "max_wake": LIMIT_MAX_WAKE_IDS,
        }
        if queue.is_keyed:
            params["front"] = LIMIT_FRONT
        return Spec(self.q[name], params, "all", _decode_limited_claim, binary=True)

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
