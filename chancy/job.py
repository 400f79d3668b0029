"""Jobs: what to run (``Job``), a stored job (``QueuedJob``), limits and references."""

from __future__ import annotations

import dataclasses
import enum
import functools
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar, overload

from chancy.errors import InvalidJobError
from chancy.utils import check_text, importable_name, is_import_path

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,200}$")
PARTITION_KEY_MAX = 500

F = TypeVar("F", bound=Callable[..., Any])


class Reference:
    """Refers to a stored job by id; equal to another Reference, the UUID, or its string."""

    __slots__ = ("identifier",)

    def __init__(self, identifier: Reference | uuid.UUID | str) -> None:
        if isinstance(identifier, Reference):
            identifier = identifier.identifier
        if not isinstance(identifier, uuid.UUID):
            try:
                identifier = uuid.UUID(str(identifier))
            except ValueError:
                raise ValueError(
                    f"{identifier!r} is not a job id; a job id is a UUID such as"
                    " '0192f0c4-7a1e-7c3e-8a4b-1f2e3d4c5b6a'"
                ) from None
        self.identifier: uuid.UUID = identifier

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Reference):
            return self.identifier == other.identifier
        if isinstance(other, uuid.UUID):
            return self.identifier == other
        if isinstance(other, str):
            return str(self.identifier) == other.lower()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.identifier)

    def __str__(self) -> str:
        return str(self.identifier)

    def __repr__(self) -> str:
        return f"Reference({str(self.identifier)!r})"


@dataclasses.dataclass(frozen=True, slots=True)
class Limit:
    """A resource limit applied to one run of a job: memory in bytes or time in seconds."""

    class Type(enum.Enum):
        MEMORY = "memory"
        TIME = "time"

    type_: Limit.Type
    value: int

    def __post_init__(self) -> None:
        if not isinstance(self.type_, Limit.Type):
            try:
                object.__setattr__(self, "type_", Limit.Type(self.type_))
            except ValueError:
                raise InvalidJobError(
                    f"unknown limit type {self.type_!r}; use Limit.Type.MEMORY (bytes) or"
                    " Limit.Type.TIME (seconds)"
                ) from None
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            raise InvalidJobError(f"a limit's value must be a number, got {self.value!r}")
        if self.value <= 0:
            raise InvalidJobError(f"a limit's value must be positive, got {self.value!r}")

    @classmethod
    def deserialize(cls, data: Mapping[str, Any]) -> Limit:
        try:
            return cls(cls.Type(data["t"]), data["v"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"invalid limit {data!r:.200}: a limit is stored as"
                f' {{"t": "memory" or "time", "v": <int>}} ({type(exc).__name__}: {exc})'
            ) from None

    def serialize(self) -> dict[str, Any]:
        return {"t": self.type_.value, "v": self.value}


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

    def pack(self) -> dict[str, Any]:
        """A compact dict form, for storing a job inside another record (cron, workflows)."""
        packed: dict[str, Any] = {
            "f": self.func,
            "k": self.kwargs,
            "p": self.priority,
            "a": self.max_attempts,
            "s": None if type(self.scheduled_at) is DefaultNow else self.scheduled_at.timestamp(),
            "l": [limit.serialize() for limit in self.limits],
            "u": self.unique_key,
            "q": self.queue,
            "m": self.meta,
        }
        if self.partition_key is not None:
            packed["pk"] = self.partition_key
        return packed

    @classmethod
    def unpack(cls, data: Mapping[str, Any]) -> Job:
        scheduled = data.get("s")
        return Job(
            func=data["f"],
            kwargs=data.get("k") or {},
            priority=data.get("p", 0),
            max_attempts=data.get("a", 1),
            scheduled_at=(
                datetime.fromtimestamp(scheduled, tz=UTC) if scheduled is not None else _utcnow()
            ),
            limits=[Limit.deserialize(x) for x in data.get("l") or []],
            unique_key=data.get("u"),
            queue=data.get("q", "default"),
            meta=data.get("m") or {},
            partition_key=data.get("pk"),
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
    #: Results of the workflow steps this job depends on (step id -> stored result), filled
    #: in by the runtime when the job starts; not stored on the job's row.
    dependencies: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        # Stored jobs are not re-validated: a row edited by hand must still load, so the
        # worker can fail it with a clear error instead of crashing.
        pass

    @property
    def is_finished(self) -> bool:
        return self.state in _TERMINAL

    @classmethod
    def unpack(cls, data: Mapping[str, Any]) -> QueuedJob:
        """Build from a row of ``{prefix}jobs`` (a mapping of column name to value)."""
        # A dict look-up rather than the enum's constructor: this runs for every claimed job.
        # An unknown state edited in by hand stays a plain string.
        state = _STATES.get(data["state"], data["state"])
        limits = data["limits"]
        return cls(
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
            # '' is how a keyless job on a queue with per-key limits is stored (job_insert_many).
            partition_key=data.get("partition_key") or None,
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
        f.job = Job(func=importable_name(f), **fields)  # type: ignore[attr-defined]
        return f

    if func is not None:
        return decorate(func)
    return decorate
