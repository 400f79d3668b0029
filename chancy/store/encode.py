"""Encoding jobs for the database: each job's column values once, and COPY's text format."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from chancy.errors import InvalidJobError
from chancy.job import DefaultNow, Job, QueuedJob
from chancy.utils import chancy_uuid, chancy_uuids, gc_paused, json_dumps, jsonb_dumps

log = logging.getLogger("chancy.store")

#: Batches at least this large, without unique keys, are written with COPY.
COPY_THRESHOLD = 2000
#: Batches at least this large with unique keys are written with COPY on their first try, on
#: the bet that their keys are new (``job_push_encoded(..., fresh_keys=True)``): pushing
#: 100,000 jobs with unique keys in batches of 1,000 went from about 72,000 to 80,000-85,000
#: jobs/s here. Below it the COPY's extra statements (job_copy_prepare, the NOTIFY) cost what
#: it saves (batches of 200 were slower, of 500 no faster).
COPY_BET_MIN = 1000

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
    deadline: datetime | None = None


def _where(job: Job, index: int | None) -> str:
    return f"job {index} ({job.func})" if index is not None else f"job {job.func}"


def encode_jobs(jobs: Sequence[Job], start: int = 0) -> list[EncodedJob]:
    """``encode_job`` of each job (the first numbered ``start`` in errors), their ids made
    together (``chancy_uuids``)."""
    return [
        encode_job(job, i, ident)
        for i, job, ident in zip(
            range(start, start + len(jobs)), jobs, chancy_uuids(len(jobs)), strict=True
        )
    ]


def encode_job(job: Job, index: int | None = None, ident: uuid.UUID | None = None) -> EncodedJob:
    """Encode a job's columns (its new id ``ident``, or one made now), raising
    InvalidJobError before anything is written."""
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
    if job.deadline is not None:
        _check_deadline(job, index, scheduled)
    return EncodedJob(
        chancy_uuid() if ident is None else ident,
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
        job.deadline,
    )


def _check_deadline(job: Job, index: int | None, scheduled: datetime | None) -> None:
    """Refuse a deadline that has passed (by this process's clock) or that comes no later
    than the job's scheduled time: such a job could never start."""
    deadline = job.deadline
    assert deadline is not None
    if deadline <= datetime.now(UTC):
        raise InvalidJobError(
            f"{_where(job, index)}: its deadline {deadline.isoformat()} has already passed, so"
            " it could never start; give a later deadline or none"
        )
    if scheduled is not None and deadline <= scheduled:
        raise InvalidJobError(
            f"{_where(job, index)}: its deadline {deadline.isoformat()} is not after its"
            f" scheduled_at {scheduled.isoformat()}, so it could never start; give a later"
            " deadline"
        )


def _array_literal(values: Sequence[Any]) -> str:
    """A PostgreSQL array literal of values whose text needs no quoting (ids, numbers, words)."""
    return "{" + ",".join(["NULL" if v is None else str(v) for v in values]) + "}"


def _uuid_array_literal(values: Sequence[Any], *, repeated: bool = False) -> str:
    """A PostgreSQL uuid[] literal: each id as its 32 hex digits (uuid's input takes them
    without hyphens), formatted from the integer rather than by ``UUID.__str__`` (Python).

    With ``repeated`` (ids that recur, as the claim ids of a batch of outcomes: one per
    claim), each distinct id is formatted once: 0.15 instead of 0.6 us per element here.
    """
    if not repeated:
        return "{" + ",".join(["NULL" if v is None else f"{v.int:032x}" for v in values]) + "}"
    texts: dict[int, str] = {}
    parts = []
    for v in values:
        if v is None:
            parts.append("NULL")
            continue
        text = texts.get(n := v.int)
        if text is None:
            text = texts[n] = f"{n:032x}"
        parts.append(text)
    return "{" + ",".join(parts) + "}"


def _word_array_literal(values: Sequence[str]) -> str:
    """A PostgreSQL array literal of words that need no quoting and are never NULL (job
    states). The strings are joined as they are: a ``QueuedJob.State`` is a str, and its
    ``__str__`` (a Python method) would cost 1.2 us per element. A value that is not a str
    (a plugin's odd state) is written as its ``str()``, as before."""
    try:
        return "{" + ",".join(values) + "}"
    except TypeError:
        return _array_literal(values)


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
#: Jobs encoded at a time by ``copy_streamed`` (about 1 ms of the event loop each).
_STREAM_SLICE = 500
_COPY_NULL = "\\N"
#: Distinct texts kept escaped while a batch is written (queues, functions, meta, limits).
_ESCAPED_MAX = 10_000


def _copy_escape(value: str) -> str:
    """A string as a field of COPY's text format (backslash, tab, newline and CR escaped)."""
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if "\t" in value or "\n" in value or "\r" in value:
        value = value.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


def insert_is_lean(rows: list[EncodedJob]) -> bool:
    """Whether every job of a batch is due now, with no deadline of its own, no limits, meta
    or partition key: the batch is written without those columns (``job_insert_many_lean``,
    ``job_copy_lean``), which then take their defaults."""
    for r in rows:
        if (
            r.scheduled_at is not None
            or r.deadline is not None
            or r.partition_key is not None
            or r.limits != _EMPTY_LIST
            or r.meta != _EMPTY_OBJ
        ):
            return False
    return True


def jobs_are_lean(jobs: Sequence[Job]) -> bool:
    """``insert_is_lean`` of these jobs once encoded, read from the jobs themselves."""
    for j in jobs:
        if (
            type(j.scheduled_at) is not DefaultNow
            or j.deadline is not None
            or j.partition_key is not None
            or j.limits
            or j.meta
        ):
            return False
    return True


def copy_streamed(
    jobs: Sequence[Job],
    ids: list[uuid.UUID],
    now: datetime,
    keyed: set[str],
    defaults: dict[str, float],
    *,
    lean: bool,
) -> Iterator[str]:
    """``_copy_text`` of ``jobs``, each slice of ``_STREAM_SLICE`` encoded only when COPY
    asks for it (the server stores the rows sent while the next are encoded); their ids are
    appended to ``ids``. A job that cannot be encoded raises InvalidJobError here, which
    fails the COPY (its transaction rolls back)."""
    for start in range(0, len(jobs), _STREAM_SLICE):
        with gc_paused():
            rows = encode_jobs(jobs[start : start + _STREAM_SLICE], start)
        ids.extend([r.id for r in rows])
        yield from _copy_text(rows, now, keyed, defaults, lean=lean)


def _copy_text(
    rows: list[EncodedJob],
    now: datetime,
    keyed: set[str],
    defaults: dict[str, float],
    *,
    lean: bool = False,
    unique: bool = False,
) -> Iterator[str]:
    """The rows of job_copy in COPY's text format, in chunks of ``_COPY_CHUNK`` rows; with
    ``lean`` (``JobSpecs._copy``), the rows of job_copy_lean; with ``unique``, each row ends
    with its unique key (job_copy_unique, job_copy_lean_unique).

    Built here rather than adapted value by value by ``write_row``: that costs several
    microseconds per row in Python, more than encoding the job. JSON texts from json_dumps
    hold no raw control characters (JSON escapes them), so only their backslashes need
    escaping; a UUID is written as 32 hex digits, which PostgreSQL's uuid input accepts.
    """
    esc = _copy_escape
    now_text = now.isoformat()
    # Queue, function and the JSON texts repeat across a batch: each is escaped once.
    escaped: dict[str, str] = {}
    lean_parts: dict[tuple[str, str, int, int], tuple[str, str]] = {}
    lines: list[str] = []
    for r in rows:
        queue, func, kwargs = r.queue, r.func, r.kwargs
        if "\\" in kwargs:  # JSON text: only backslashes need escaping
            kwargs = kwargs.replace("\\", "\\\\")
        end = "\n"
        if unique:
            key = r.unique_key
            end = f"\t{_COPY_NULL if key is None else esc(key)}\n"
        if lean:
            # The text around kwargs, by queue, function, priority and attempts: the same
            # for most of a batch (0.72 instead of 0.85 us per row).
            around = (queue, func, r.priority, r.max_attempts)
            parts = lean_parts.get(around)
            if parts is None:
                parts = lean_parts[around] = (
                    f"\t{esc(queue)}\t{esc(func)}\t",
                    f"\t{r.priority}\t{r.max_attempts}",
                )
            lines.append(f"{r.id.int:032x}{parts[0]}{kwargs}{parts[1]}{end}")
        else:
            due = now if r.scheduled_at is None else r.scheduled_at
            deadline = r.deadline
            if deadline is None and queue in defaults:
                deadline = due + timedelta(seconds=defaults[queue])
            if r.partition_key is not None:
                pk = esc(r.partition_key)
            elif queue in keyed:
                pk = ""  # keyless jobs of queues with per-key limits (see job_insert_many)
            else:
                pk = _COPY_NULL
            limits, meta = r.limits, r.meta
            lines.append(
                f"{r.id.int:032x}\t{escaped.get(queue) or escaped.setdefault(queue, esc(queue))}"
                f"\t{escaped.get(func) or escaped.setdefault(func, esc(func))}\t{kwargs}"
                f"\t{escaped.get(limits) or escaped.setdefault(limits, esc(limits))}"
                f"\t{escaped.get(meta) or escaped.setdefault(meta, esc(meta))}"
                f"\t{r.priority}\t{r.max_attempts}"
                f"\t{now_text if r.scheduled_at is None else r.scheduled_at.isoformat()}\t{pk}"
                f"\t{_COPY_NULL if deadline is None else deadline.isoformat()}{end}"
            )
        if len(lines) >= _COPY_CHUNK:
            yield "".join(lines)
            lines = []
            if len(escaped) > _ESCAPED_MAX or len(lean_parts) > _ESCAPED_MAX:
                escaped.clear()
                lean_parts.clear()
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
