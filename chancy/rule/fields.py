"""The fields of the jobs table that rules may use (``JobRules``) and filters from untrusted
input (``parse_filter``, ``JobRules.from_dict``)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar

from psycopg import sql

from chancy.job import Job as JobSpec
from chancy.job import QueuedJob, Reference
from chancy.rule.core import (
    AndCondition,
    Condition,
    NotCondition,
    OrCondition,
    Params,
    Rule,
    SQLAble,
    text_value,
)
from chancy.rule.ops import (
    COMPARISONS,
    INT64_MAX,
    INT64_MIN,
    MAX_FILTER_CONDITIONS,
    MAX_FILTER_DEPTH,
    REVERSED,
    SQL_OPERATORS,
    InvalidRuleError,
    Op,
)
from chancy.utils import importable_name


def integer_value(rule: Rule, value: Any) -> int:
    if isinstance(value, str):
        try:
            value = int(value.strip(), 10)
        except ValueError:
            raise InvalidRuleError(f"{rule!r} takes an integer, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRuleError(f"{rule!r} takes an integer, got {type(value).__name__} {value!r}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidRuleError(f"{rule!r}: {value} is out of range for a 64-bit integer")
    return value


def aware_datetime(rule: Rule, value: Any) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidRuleError(
                f"{rule!r} takes an ISO 8601 timestamp with a UTC offset, such as"
                f" '2024-05-01T12:00:00+00:00', got {value!r}"
            ) from None
    if not isinstance(value, datetime):
        raise InvalidRuleError(f"{rule!r} takes a datetime, got {type(value).__name__} {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidRuleError(
            f"{rule!r} takes a timezone-aware datetime (e.g. datetime.now(UTC)),"
            f" got the naive {value!r}"
        )
    return value


class _TextRule(Rule):
    ops: ClassVar[frozenset[Op]] = frozenset(Op)
    array_type: ClassVar[str | None] = "text[]"
    nullable: ClassVar[bool] = False

    def coerce(self, value: Any) -> Any:
        return text_value(self, value)


class _IntegerRule(Rule):
    ops: ClassVar[frozenset[Op]] = COMPARISONS | {Op.IN}
    array_type: ClassVar[str | None] = "bigint[]"
    nullable: ClassVar[bool] = False

    def coerce(self, value: Any) -> Any:
        return integer_value(self, value)


class _TimestampRule(Rule):
    ops: ClassVar[frozenset[Op]] = COMPARISONS
    nullable: ClassVar[bool] = False

    def coerce(self, value: Any) -> Any:
        return aware_datetime(self, value)


class JobRules:
    """The fields of the jobs table that rules may use, named as in Chancy."""

    class All(SQLAble):
        """Matches every job; why: a rule for "no restriction" that still composes."""

        def compose(self, params: Params, alias: str | None = None) -> sql.Composable:
            return sql.SQL("TRUE")

        def to_dict(self) -> dict[str, Any]:
            """Return the JSON-friendly form that ``JobRules.from_dict`` accepts."""
            return {"all": True}

        def __repr__(self) -> str:
            return "JobRules.All()"

    class Age(Rule):
        """Seconds since the job finished (or was created, while unfinished), by database time.

        Why ``completed_at``: retention counts from when a job finished, so a job that waited a
        week and just completed is not pruned at once. The comparison is written as
        ``coalesce(completed_at, created_at) <op> now() - interval``, which an index can serve.
        """

        name = "age"
        ops: ClassVar[frozenset[Op]] = COMPARISONS
        nullable: ClassVar[bool] = False

        def __init__(self) -> None:
            super().__init__("age")

        def column(self, alias: str | None = None) -> sql.Composable:
            def col(name: str) -> sql.Identifier:
                return sql.Identifier(alias, name) if alias else sql.Identifier(name)

            return sql.SQL("coalesce({}, {})").format(col("completed_at"), col("created_at"))

        def coerce(self, value: Any) -> Any:
            if isinstance(value, str):
                try:
                    value = float(value.strip())
                except ValueError:
                    raise InvalidRuleError(
                        f"{self!r} takes seconds (a number) or a timedelta, got {value!r}"
                    ) from None
            if isinstance(value, timedelta):
                return value
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidRuleError(
                    f"{self!r} takes seconds (a number) or a timedelta,"
                    f" got {type(value).__name__} {value!r}"
                )
            if not math.isfinite(value):
                raise InvalidRuleError(f"{self!r} takes a finite number of seconds, got {value!r}")
            try:
                return timedelta(seconds=value)
            except OverflowError:
                raise InvalidRuleError(f"{self!r}: {value!r} seconds is out of range") from None

        def compose_condition(
            self, op: Op, value: Any, params: Params, alias: str | None
        ) -> sql.Composable:
            return sql.SQL("{} {} now() - CAST({} AS interval)").format(
                self.column(alias), SQL_OPERATORS[REVERSED[op]], params.add(value)
            )

    class Queue(_TextRule):
        """The job's queue name."""

        name = "queue"

        def __init__(self) -> None:
            super().__init__("queue")

    class Job(_TextRule):
        """The job's function, as its import path (``module.func``)."""

        name = "job"

        def __init__(self) -> None:
            super().__init__("func")

        def coerce(self, value: Any) -> Any:
            # Comparing with the function (or its Job) is what users mean by "this job".
            if isinstance(value, JobSpec):
                value = value.func
            elif callable(value) and not isinstance(value, str):
                try:
                    value = importable_name(value)
                except ValueError as exc:
                    raise InvalidRuleError(f"{self!r}: {exc}") from None
            return text_value(self, value)

    class State(Rule):
        """The job's state: one of pending, running, retrying, succeeded, failed."""

        name = "state"
        ops: ClassVar[frozenset[Op]] = frozenset({Op.EQ, Op.NE, Op.IN})
        array_type: ClassVar[str | None] = "text[]"
        nullable: ClassVar[bool] = False

        def __init__(self) -> None:
            super().__init__("state")

        def coerce(self, value: Any) -> Any:
            text = text_value(self, value)
            try:
                return QueuedJob.State(text).value
            except ValueError:
                raise InvalidRuleError(
                    f"{self!r}: {text!r} is not a job state; valid states are"
                    f" {', '.join(s.value for s in QueuedJob.State)}"
                ) from None

    class CreatedAt(_TimestampRule):
        """When the job was pushed."""

        name = "created_at"

        def __init__(self) -> None:
            super().__init__("created_at")

    class ScheduledAt(_TimestampRule):
        """When the job becomes runnable."""

        name = "scheduled_at"

        def __init__(self) -> None:
            super().__init__("scheduled_at")

    class ID(Rule):
        """The job's id (a UUID, its string, or a Reference)."""

        name = "id"
        ops: ClassVar[frozenset[Op]] = frozenset({Op.EQ, Op.NE, Op.IN})
        array_type: ClassVar[str | None] = "uuid[]"
        nullable: ClassVar[bool] = False

        def __init__(self) -> None:
            super().__init__("id")

        def coerce(self, value: Any) -> Any:
            if isinstance(value, Reference):
                return value.identifier
            if isinstance(value, uuid.UUID):
                return value
            if isinstance(value, str):
                try:
                    return uuid.UUID(value.strip())
                except ValueError:
                    pass
            raise InvalidRuleError(f"{self!r} takes a job id (a UUID), got {value!r}")

    class Priority(_IntegerRule):
        """The job's priority (higher runs first)."""

        name = "priority"

        def __init__(self) -> None:
            super().__init__("priority")

    class Attempts(_IntegerRule):
        """How many runs of the job finished with an outcome."""

        name = "attempts"

        def __init__(self) -> None:
            super().__init__("attempts")

    class Deadline(_TimestampRule):
        """The job's start deadline (jobs without one never match a comparison)."""

        name = "deadline"

        def __init__(self) -> None:
            super().__init__("deadline")

    class Expired(Rule):
        """Whether a claim failed the job, unstarted, because its deadline had passed."""

        name = "expired"
        ops: ClassVar[frozenset[Op]] = frozenset({Op.EQ, Op.NE})
        nullable: ClassVar[bool] = False

        def __init__(self) -> None:
            super().__init__("expired")

        def column(self, alias: str | None = None) -> sql.Composable:
            meta = sql.Identifier(alias, "meta") if alias else sql.Identifier("meta")
            return sql.SQL("coalesce(({} ->> 'expired')::boolean, false)").format(meta)

        def coerce(self, value: Any) -> Any:
            if isinstance(value, str) and value.strip().lower() in ("true", "false"):
                return value.strip().lower() == "true"
            if not isinstance(value, bool):
                raise InvalidRuleError(f"{self!r} takes true or false, got {value!r}")
            return value

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> SQLAble:
        """Build a rule from untrusted JSON-like data, validating every name and value.

        Accepted forms: ``{"field": ..., "op": ..., "value": ...}``, ``{"and": [rule, ...]}``,
        ``{"or": [rule, ...]}``, ``{"not": rule}`` and ``{"all": true}``.
        """
        counter = [0]
        return _from_dict(data, depth=0, counter=counter)


_FIELDS: dict[str, Callable[[], Rule]] = {
    "age": JobRules.Age,
    "queue": JobRules.Queue,
    "job": JobRules.Job,
    "func": JobRules.Job,
    "state": JobRules.State,
    "created_at": JobRules.CreatedAt,
    "scheduled_at": JobRules.ScheduledAt,
    "id": JobRules.ID,
    "priority": JobRules.Priority,
    "attempts": JobRules.Attempts,
    "deadline": JobRules.Deadline,
    "expired": JobRules.Expired,
}
# "created_at", "CreatedAt" and "createdAt" all name the same field.
_FIELD_LOOKUP = {name.replace("_", ""): cls for name, cls in _FIELDS.items()}


def parse_filter(field: str, op: str, value: Any) -> Condition:
    """Build one condition from untrusted names and a value; raise InvalidRuleError when invalid."""
    cls = _FIELD_LOOKUP.get(field.replace("_", "").lower()) if isinstance(field, str) else None
    if cls is None:
        raise InvalidRuleError(
            f"unknown field {field!r}; valid fields are {', '.join(sorted(_FIELDS))}"
        )
    if not isinstance(op, str):
        raise InvalidRuleError(f"operator must be a string, got {op!r}")
    return Condition(cls(), op, value)


def _from_dict(data: Any, *, depth: int, counter: list[int]) -> SQLAble:
    if depth > MAX_FILTER_DEPTH:
        raise InvalidRuleError(f"filter is nested more than {MAX_FILTER_DEPTH} levels deep")
    if not isinstance(data, Mapping):
        raise InvalidRuleError(f"a filter must be an object, got {type(data).__name__}")
    keys = set(data)
    if keys == {"field", "op", "value"}:
        counter[0] += 1
        if counter[0] > MAX_FILTER_CONDITIONS:
            raise InvalidRuleError(f"a filter may hold at most {MAX_FILTER_CONDITIONS} conditions")
        return parse_filter(data["field"], data["op"], data["value"])
    if keys in ({"and"}, {"or"}):
        (key,) = keys
        items = data[key]
        if not isinstance(items, list) or not items:
            raise InvalidRuleError(f"{key!r} takes a non-empty list of filters")
        rules = [_from_dict(item, depth=depth + 1, counter=counter) for item in items]
        combined = rules[0]
        for rule in rules[1:]:
            combined = AndCondition(combined, rule) if key == "and" else OrCondition(combined, rule)
        return combined
    if keys == {"not"}:
        return NotCondition(_from_dict(data["not"], depth=depth + 1, counter=counter))
    if keys == {"all"}:
        if data["all"] is not True:
            raise InvalidRuleError("'all' takes the value true")
        return JobRules.All()
    raise InvalidRuleError(
        f"unrecognised filter keys {sorted(map(str, keys))}; a filter is"
        ' {"field": ..., "op": ..., "value": ...}, {"and": [...]}, {"or": [...]}, {"not": ...}'
        ' or {"all": true}'
    )
