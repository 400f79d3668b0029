"""Jobs: what to run (``Job``), a stored job (``QueuedJob``), limits and references."""

from __future__ import annotations

import dataclasses
import enum
import functools
import re
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar, overload

from chancy.errors import InvalidJobError
from chancy.job_refs import Limit, Reference
from chancy.progress import Progress, deliver, make_report
from chancy.utils import (
    check_text,
    importable_name,
    is_import_path,
    register_function,
    slot_builder,
)

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,200}$")
PARTITION_KEY_MAX = 500

F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "COMPLETED_STATES",
    "DefaultNow",
    "Job",
    "Limit",
    "QueuedJob",
    "Reference",
    "as_job",
    "job",
    "unpack_claimed",
]


class DefaultNow(datetime):
    """The default ``scheduled_at``: "as soon as it is stored", resolved with database time.

    A job whose ``scheduled_at`` was never set is stored with the database's ``now()``, so a
    pusher whose clock runs ahead cannot delay its own jobs.
    """

    __slots__ = ()


def _utcnow() -> datetime:
    return DefaultNow.now(tz=UTC)


@functools.lru_cache(maxsize=4096)
def _check_func(func: str) -> None:
    if not isinstance(func, str) or not is_import_path(func):
        raise InvalidJobError(
            f"func {func!r} is not an import path; give 'package.module.function' or pass the"
            " function itself to Job.from_func()"
        )


def _check_int(name: str, value: Any, lo: int, hi: int, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJobError(f"{name} must be an integer, got {value!r}; {hint}")
    if not lo <= value <= hi:
        raise InvalidJobError(f"{name} must be between {lo} and {hi}, got {value}; {hint}")


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Job:
    """An immutable description of work: a function path, its kwargs and how to run it.

    Fields are checked when the job is made, so a bad job fails where it is written, before
    anything reaches the database.
    """

    func: str
    queue: str = "default"
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    priority: int = 0
    max_attempts: int = 1
    scheduled_at: datetime = dataclasses.field(default_factory=_utcnow)
    limits: list[Limit] = dataclasses.field(default_factory=list)
    unique_key: str | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Groups jobs for the per-key limits of their queue (``Queue.partition_concurrency``,
    #: ``Queue.partition_rate_limit``), for example a customer id. None: not limited per key.
    partition_key: str | None = None
    #: The job must have started by then (timezone-aware); a job still waiting at its
    #: deadline is never started and ends ``failed``. None: no deadline.
    deadline: datetime | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``InvalidJobError`` naming the fix when a field cannot be stored."""
        _check_func(self.func)
        if not isinstance(self.queue, str) or not QUEUE_NAME.match(self.queue):
            raise InvalidJobError(
                f"queue {self.queue!r} is not a valid queue name; use 1-200 letters, digits,"
                " '_', '-', '.' or ':'"
            )
        if self.kwargs is None:
            object.__setattr__(self, "kwargs", {})
        elif not isinstance(self.kwargs, dict):
            raise InvalidJobError(f"kwargs must be a dict, got {type(self.kwargs).__name__}")
        _check_int(
            "priority", self.priority, INT32_MIN, INT32_MAX, "higher numbers run first, 0 is normal"
        )
        _check_int(
            "max_attempts",
            self.max_attempts,
            1,
            INT32_MAX,
            "it counts tries, 1 is one try",
        )
        if not isinstance(self.scheduled_at, datetime):
            raise InvalidJobError(f"scheduled_at must be a datetime, got {self.scheduled_at!r}")
        if self.scheduled_at.tzinfo is None or self.scheduled_at.utcoffset() is None:
            raise InvalidJobError(
                "scheduled_at must be timezone-aware; use datetime.now(timezone.utc) or"
                " dt.replace(tzinfo=...)"
            )
        if self.deadline is not None:
            if not isinstance(self.deadline, datetime):
                raise InvalidJobError(f"deadline must be a datetime or None, got {self.deadline!r}")
            if self.deadline.tzinfo is None or self.deadline.utcoffset() is None:
                raise InvalidJobError(
                    "deadline must be timezone-aware; use datetime.now(timezone.utc) +"
                    " timedelta(...) or dt.replace(tzinfo=...)"
                )
        limits = self.limits
        if limits is None:
            object.__setattr__(self, "limits", [])
        elif not all(isinstance(lim, Limit) for lim in limits):
            raise InvalidJobError(f"limits must be a list of Limit objects, got {limits!r}")
        if self.unique_key is not None and (
            not isinstance(self.unique_key, str) or not self.unique_key
        ):
            raise InvalidJobError(
                f"unique_key must be a non-empty string or None, got {self.unique_key!r}"
            )
        for name in ("unique_key", "partition_key"):
            value = getattr(self, name)
            if isinstance(value, str):
                try:
                    check_text(value, name)
                except ValueError as exc:
                    raise InvalidJobError(str(exc)) from None
        if self.meta is None:
            object.__setattr__(self, "meta", {})
        elif not isinstance(self.meta, dict):
            raise InvalidJobError(f"meta must be a dict, got {type(self.meta).__name__}")
        if self.partition_key is not None and (
            not isinstance(self.partition_key, str)
            or not 0 < len(self.partition_key) <= PARTITION_KEY_MAX
        ):
            raise InvalidJobError(
                f"partition_key must be a non-empty string of at most {PARTITION_KEY_MAX}"
                f" characters or None, got {self.partition_key!r}; use a short id such as a"
                " customer id"
            )

    @classmethod
    def from_func(cls, func: Callable[..., Any], **fields: Any) -> Job:
        """Make a job for a module-level function, with any other field given by keyword."""
        return cls(func=importable_name(func), **fields)

    def with_priority(self, priority: int) -> Job:
        return dataclasses.replace(self, priority=priority)

    def with_max_attempts(self, max_attempts: int) -> Job:
        return dataclasses.replace(self, max_attempts=max_attempts)

    def with_scheduled_at(self, scheduled_at: datetime) -> Job:
        return dataclasses.replace(self, scheduled_at=scheduled_at)

    def with_limits(self, limits: list[Limit]) -> Job:
        return dataclasses.replace(self, limits=list(limits))

    def with_kwargs(self, **kwargs: Any) -> Job:
        return dataclasses.replace(self, kwargs=kwargs)

    def with_unique_key(self, unique_key: str | None) -> Job:
        return dataclasses.replace(self, unique_key=unique_key)

    def with_queue(self, queue: str) -> Job:
        return dataclasses.replace(self, queue=queue)

    def with_meta(self, meta: dict[str, Any]) -> Job:
        return dataclasses.replace(self, meta=meta)

    def with_partition_key(self, partition_key: str | None) -> Job:
        return dataclasses.replace(self, partition_key=partition_key)

    def with_deadline(self, deadline: datetime | None) -> Job:
        """This job with a start deadline (timezone-aware; None removes it)."""
        return dataclasses.replace(self, deadline=deadline)

    def pack(self) -> dict[str, Any]:
        """A compact dict form, for storing a job inside another record (cron, workflows).

        ``s`` is always a number, as in Chancy 0.26 (whose ``unpack`` and workers read it as
        one); a job that was never given a ``scheduled_at`` also carries ``"sn": True``, so
        ``unpack`` gives it back its "when stored" default and ``unpack(pack(job)) == job``.
        """
        default_now = type(self.scheduled_at) is DefaultNow
        packed: dict[str, Any] = {
            "f": self.func,
            "k": self.kwargs,
            "p": self.priority,
            "a": self.max_attempts,
            "s": self.scheduled_at.timestamp(),
            "l": [limit.serialize() for limit in self.limits],
            "u": self.unique_key,
            "q": self.queue,
            "m": self.meta,
        }
        if self.partition_key is not None:
            packed["pk"] = self.partition_key
        if self.deadline is not None:
            packed["dl"] = self.deadline.timestamp()
        if default_now:
            packed["sn"] = True
        return packed

    @classmethod
    def unpack(cls, data: Mapping[str, Any]) -> Job:
        scheduled = data.get("s")
        deadline = data.get("dl")
        if scheduled is None:
            # Packed by an earlier chancy (or a cron row): "when stored".
            scheduled_at: datetime = _utcnow()
        elif data.get("sn"):
            scheduled_at = DefaultNow.fromtimestamp(scheduled, tz=UTC)
        else:
            scheduled_at = datetime.fromtimestamp(scheduled, tz=UTC)
        return Job(
            func=data["f"],
            kwargs=data.get("k") or {},
            priority=data.get("p", 0),
            max_attempts=data.get("a", 1),
            scheduled_at=scheduled_at,
            limits=[Limit.deserialize(x) for x in data.get("l") or []],
            unique_key=data.get("u"),
            queue=data.get("q", "default"),
            meta=data.get("m") or {},
            partition_key=data.get("pk"),
            deadline=None if deadline is None else datetime.fromtimestamp(deadline, tz=UTC),
        )


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class QueuedJob(Job):
    """A job as stored: its id, state, attempts, errors and result."""

    class State(enum.StrEnum):
        PENDING = "pending"
        RUNNING = "running"
        FAILED = "failed"
        RETRYING = "retrying"
        SUCCEEDED = "succeeded"

        def __str__(self) -> str:
            return self.value

    id: uuid.UUID
    claim_id: uuid.UUID | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    attempts: int = 0
    recoveries: int = 0
    state: QueuedJob.State = State.PENDING
    errors: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    result: Any = None
    taken_by: str | None = None
    #: The latest progress report (``report_progress``), kept across retries and recoveries:
    #: a new attempt reads the last ``data`` of the one before to resume from there.
    progress: Progress | None = None
    #: Results of the workflow steps this job depends on (step id -> stored result), filled
    #: in by the runtime when the job starts; not stored on the job's row.
    dependencies: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: When this run must end, on the running process's monotonic clock (set by the
    #: executor from the job's TIME limit); not stored. (Chancy 0.26's name; ``deadline``
    #: is the job's start deadline.)
    _time_limit_deadline: float | None = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Stored jobs are not re-validated: a row edited by hand must still load, so the
        # worker can fail it with a clear error instead of crashing.
        pass

    @property
    def is_finished(self) -> bool:
        return self.state in _TERMINAL

    @property
    def cancel_reason(self) -> str | None:
        """Why the job was cancelled (``cancel_job(ref, reason)``); None otherwise."""
        return self.meta.get("cancel_reason") if self.meta.get("cancelled") else None

    @property
    def cancelled_by(self) -> str | None:
        """Who cancelled the job (``cancel_job(..., by=)``, else ``user@host``); None otherwise."""
        return self.meta.get("cancelled_by") if self.meta.get("cancelled") else None

    def time_remaining(self) -> float | None:
        """Seconds left before this run's time limit, or None when it has none."""
        if self._time_limit_deadline is None:
            return None
        return max(0.0, self._time_limit_deadline - time.monotonic())

    def checkpoint(self) -> None:
        """Raise ``TimeoutError`` once this run's time limit has passed.

        Long jobs call it between steps: on executors that cannot interrupt a job (threads
        without the interruption, sub-interpreters) it is how a time limit is honoured.
        """
        limit = self._time_limit_deadline
        if limit is not None and time.monotonic() >= limit:
            raise TimeoutError(f"job {self.id} ran past its time limit")

    def with_time_limit(self, seconds: float) -> QueuedJob:
        """This job, with a run deadline ``seconds`` from now (set by executors)."""
        return dataclasses.replace(self, _time_limit_deadline=time.monotonic() + float(seconds))

    _with_time_limit = with_time_limit  # Chancy 0.26's name

    def report_progress(
        self, fraction: float, message: str | None = None, data: Any = None
    ) -> None:
        """Report how far this run got: ``fraction`` done (0 to 1), a short ``message``, and
        JSON ``data`` a later attempt can resume from (``job.progress.data``).

        Call it from the job function (it takes the job as a keyword-only parameter annotated
        ``QueuedJob``) as often as is convenient: the worker keeps only the latest report and
        writes it a few times a second, fenced by this run's claim. Raises
        ``InvalidProgressError`` for a fraction outside [0, 1], a message that is not a string
        or data that is not JSON-serialisable. ``self.progress`` shows the report at once.
        """
        report = make_report(fraction, message, data)
        # The job object is this run's own copy: let the job read back what it reported.
        object.__setattr__(self, "progress", report.as_progress())
        deliver(self.id, self.claim_id, report)

    @classmethod
    def unpack(cls, data: Mapping[str, Any]) -> QueuedJob:
        """Build from a row of ``{prefix}jobs`` (a mapping of column name to value).

        A claim builds its jobs with ``chancy.store.claims.claimed_row_maker``, which must
        read each column as this does (tests/test_slots.py holds them to it).
        """
        # A dict look-up rather than the enum's constructor: this runs for every claimed job.
        # An unknown state edited in by hand stays a plain string.
        state = _STATES.get(data["state"], data["state"])
        limits = data["limits"]
        # A subclass may check its fields in __post_init__: only QueuedJob skips __init__.
        make = _build_queued_job if cls is QueuedJob else cls
        return make(
            id=data["id"],
            func=data["func"],
            queue=data["queue"],
            kwargs=data["kwargs"] if data["kwargs"] is not None else {},
            priority=data["priority"],
            max_attempts=data["max_attempts"],
            scheduled_at=data["scheduled_at"],
            limits=[Limit.deserialize(x) for x in limits] if limits else [],
            unique_key=data["unique_key"],
            meta=data["meta"] if data["meta"] is not None else {},
            claim_id=data.get("claim_id"),
            created_at=data["created_at"],
            started_at=data["started_at"],
            completed_at=data["completed_at"],
            attempts=data["attempts"],
            recoveries=data.get("recoveries", 0) or 0,
            state=state,
            errors=data["errors"] or [],
            result=data.get("result"),
            taken_by=data.get("taken_by"),
            progress=Progress.from_stored(progress) if (progress := data.get("progress")) else None,
            # '' is how a keyless job on a queue with per-key limits is stored (job_insert_many).
            partition_key=data.get("partition_key") or None,
            deadline=data.get("deadline"),
        )


def unpack_claimed(data: Mapping[str, Any]) -> QueuedJob:
    """``QueuedJob.unpack`` for a row a worker just claimed, which never raises.

    A row edited by hand into something a job cannot be (meta or limits of the wrong type, a
    func that is not an import path, ...) becomes the job's failed outcome, with an error that
    says what is wrong, so the worker writes it (fenced by the claim) and serves on.
    """
    try:
        return QueuedJob.unpack(data)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
    func = data.get("func")
    attempts = data.get("attempts")
    attempts = attempts if isinstance(attempts, int) else 0
    max_attempts = data.get("max_attempts")
    return QueuedJob(
        id=data["id"],
        func=func if isinstance(func, str) and is_import_path(func) else "chancy.invalid_job",
        queue=data["queue"],
        claim_id=data.get("claim_id"),
        attempts=attempts + 1,
        max_attempts=max_attempts if isinstance(max_attempts, int) and max_attempts > 0 else 1,
        state=QueuedJob.State.FAILED,
        errors=[
            {
                "attempt": attempts,
                "traceback": (
                    f"The stored job is invalid and was not run: {reason[:2000]}. Fix the row"
                    " (or push the job again) and retry it."
                ),
            }
        ],
        taken_by=data.get("taken_by"),
    )


_TERMINAL = frozenset({"succeeded", "failed"})
_STATES: dict[Any, QueuedJob.State] = {s.value: s for s in QueuedJob.State}
#: QueuedJob(...) without __init__'s per-field object.__setattr__ (a claim builds thousands).
_build_queued_job = slot_builder(QueuedJob)
COMPLETED_STATES = frozenset({QueuedJob.State.SUCCEEDED, QueuedJob.State.FAILED})


def as_job(item: Any, *, action: str = "push") -> Job:
    """Accept a ``Job`` or a function decorated with ``@job``; anything else is a TypeError."""
    if isinstance(item, Job):
        return item
    attached = getattr(item, "job", None)
    if isinstance(attached, Job):
        return attached
    raise TypeError(
        f"cannot {action} {item!r}: pass a Job (Job.from_func(f, ...)) or a function"
        " decorated with @job"
    )


@overload
def job(func: F, /) -> F: ...
@overload
def job(**fields: Any) -> Callable[[F], F]: ...
def job(func: Any = None, /, **fields: Any) -> Any:
    """Mark a function as a job; ``f.job`` holds its ``Job``, and ``f`` stays callable.

    ``@job`` and ``@job(queue="emails", max_attempts=3)`` both work. Push with
    ``await chancy.push(f)`` or customise first: ``f.job.with_kwargs(to="a@b.c")``.
    """

    def decorate(f: F) -> F:
        path = importable_name(f)
        register_function(path, f)
        f.job = Job(func=path, **fields)  # type: ignore[attr-defined]
        return f

    if func is not None:
        return decorate(func)
    return decorate
