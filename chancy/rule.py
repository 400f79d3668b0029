"""Rules: predicates over the jobs table, compiled to SQL fragments whose values are parameters.

Plugins (Pruner, Reprioritize) and the dashboard's filters select jobs with rules, so this module is
the one place besides the ``.sql`` files that composes SQL. Column names and operators come from a
fixed whitelist through :mod:`psycopg.sql`; every value becomes a placeholder, never SQL text.

::

    rule = (JobRules.Age() > 86400) & JobRules.State().is_in(["succeeded", "failed"])
    where, params = compile_rule(rule, alias="j")
    query = sql.SQL("DELETE FROM {jobs} AS j WHERE {where}").format(
        jobs=sql.Identifier(f"{prefix}jobs"), where=where
    )
    await cursor.execute(query, params)
"""

from __future__ import annotations

import enum
import math
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar

from psycopg import sql

from chancy.errors import ConfigurationError
from chancy.job import Job as JobSpec
from chancy.job import QueuedJob, Reference
from chancy.utils import importable_name

__all__ = [
    "MAX_FILTER_CONDITIONS",
    "MAX_FILTER_DEPTH",
    "AndCondition",
    "Condition",
    "InvalidRuleError",
    "JobRules",
    "NotCondition",
    "Op",
    "OrCondition",
    "Params",
    "Rule",
    "SQLAble",
    "compile_rule",
    "compile_rule_named",
    "parse_filter",
]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: Limits on a filter built from untrusted input, so one request cannot build a huge query.
MAX_FILTER_DEPTH = 16
MAX_FILTER_CONDITIONS = 64


class InvalidRuleError(ConfigurationError):
    """A rule or filter is malformed; the message lists the valid choices."""


class Op(enum.StrEnum):
    """The operators a condition may use; the only operators that ever reach SQL."""

    EQ = "eq"
    NE = "ne"
    LT = "lt"
    LE = "le"
    GT = "gt"
    GE = "ge"
    IN = "in"
    CONTAINS = "contains"
    ILIKE = "ilike"


COMPARISONS = frozenset({Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE})
_SQL_OPERATORS: dict[Op, sql.SQL] = {
    Op.EQ: sql.SQL("="),
    Op.NE: sql.SQL("<>"),
    Op.LT: sql.SQL("<"),
    Op.LE: sql.SQL("<="),
    Op.GT: sql.SQL(">"),
    Op.GE: sql.SQL(">="),
}
_SYMBOLS: dict[Op, str] = {
    Op.EQ: "==",
    Op.NE: "!=",
    Op.LT: "<",
    Op.LE: "<=",
    Op.GT: ">",
    Op.GE: ">=",
}
_OP_ALIASES: dict[str, Op] = {
    **{op.value: op for op in Op},
    **{symbol: op for op, symbol in _SYMBOLS.items()},
    "=": Op.EQ,
    "<>": Op.NE,
}
# Age is compared as "the reference timestamp against now() - age", which reverses the order.
_REVERSED: dict[Op, Op] = {
    Op.EQ: Op.EQ,
    Op.NE: Op.NE,
    Op.LT: Op.GT,
    Op.LE: Op.GE,
    Op.GT: Op.LT,
    Op.GE: Op.LE,
}


def _parse_op(op: Op | str) -> Op:
    if isinstance(op, Op):
        return op
    found = _OP_ALIASES.get(op.strip().lower()) if isinstance(op, str) else None
    if found is None:
        raise InvalidRuleError(
            f"unknown operator {op!r}; valid operators are {', '.join(sorted(_OP_ALIASES))}"
        )
    return found


class Params:
    """Collects a rule's values in placeholder order, so values travel as query parameters."""

    def __init__(self, *, prefix: str | None = None) -> None:
        self.prefix = prefix
        self.values: list[Any] = []

    def add(self, value: Any) -> sql.Placeholder:
        """Record ``value`` and return the placeholder that stands for it in the SQL."""
        self.values.append(value)
        if self.prefix is None:
            return sql.Placeholder()
        return sql.Placeholder(f"{self.prefix}{len(self.values) - 1}")

    def as_dict(self) -> dict[str, Any]:
        """The values keyed by placeholder name, for queries that use named parameters."""
        if self.prefix is None:
            raise ValueError("positional parameters have no names; create Params(prefix=...)")
        return {f"{self.prefix}{i}": value for i, value in enumerate(self.values)}


class SQLAble:
    """A predicate over the jobs table; why: plugins and filters embed it in a WHERE clause."""

    def compose(self, params: Params, alias: str | None = None) -> sql.Composable:
        """Return this predicate as SQL, adding its values to ``params``."""
        raise NotImplementedError

    def to_sql(self, alias: str | None = None) -> tuple[sql.Composable, list[Any]]:
        """Return the predicate with ``%s`` placeholders and its values in placeholder order."""
        params = Params()
        return self.compose(params, alias), params.values

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-friendly form that ``JobRules.from_dict`` accepts, for display."""
        raise TypeError(f"{self!r} has no dict form")

    def __and__(self, other: SQLAble) -> AndCondition:
        if not isinstance(other, SQLAble):
            return NotImplemented
        return AndCondition(self, other)

    def __or__(self, other: SQLAble) -> OrCondition:
        if not isinstance(other, SQLAble):
            return NotImplemented
        return OrCondition(self, other)

    def __invert__(self) -> NotCondition:
        return NotCondition(self)

    def __bool__(self) -> bool:
        # `a and b`, `a or b` and `lo < x < hi` would silently drop half of the rule.
        raise TypeError(
            "a rule has no truth value: combine rules with & and | (not `and`/`or`), negate with ~,"
            " and compare one bound at a time ((x > lo) & (x < hi), not lo < x < hi)"
        )


def compile_rule(rule: SQLAble, *, alias: str | None = None) -> tuple[sql.Composable, list[Any]]:
    """Compile ``rule`` to a fragment with ``%s`` placeholders and its positional parameters."""
    _check_rule(rule)
    return rule.to_sql(alias)


def compile_rule_named(
    rule: SQLAble, *, alias: str | None = None, prefix: str = "rule_"
) -> tuple[sql.Composable, dict[str, Any]]:
    """Compile ``rule`` with named placeholders, for queries that pass a dict of parameters."""
    _check_rule(rule)
    params = Params(prefix=prefix)
    return rule.compose(params, alias), params.as_dict()


def _check_rule(rule: Any) -> None:
    if isinstance(rule, Rule):
        raise InvalidRuleError(
            f"{rule!r} is a field, not a condition; compare it, e.g. {rule!r} == value"
        )
    if not isinstance(rule, SQLAble):
        raise InvalidRuleError(f"expected a rule such as JobRules.Age() > 86400, got {rule!r}")


class Condition(SQLAble):
    """One comparison of a field with a value, validated when it is built."""

    def __init__(self, rule: Rule, op: Op | str, value: Any) -> None:
        op = _parse_op(op)
        if op not in rule.ops:
            raise InvalidRuleError(
                f"{rule!r} does not support {op.value!r}; it supports"
                f" {', '.join(sorted(o.value for o in rule.ops))}"
            )
        self.rule = rule
        self.op = op
        self.value = rule.coerce_for(op, value)

    def compose(self, params: Params, alias: str | None = None) -> sql.Composable:
        return self.rule.compose_condition(self.op, self.value, params, alias)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-friendly form that :func:`parse_filter` and ``from_dict`` accept."""
        value = self.value
        if isinstance(value, list):
            value = [_jsonable(v) for v in value]
        return {"field": self.rule.name, "op": self.op.value, "value": _jsonable(value)}

    def __repr__(self) -> str:
        if self.op in _SYMBOLS:
            return f"({self.rule!r} {_SYMBOLS[self.op]} {self.value!r})"
        method = "is_in" if self.op is Op.IN else self.op.value
        return f"{self.rule!r}.{method}({self.value!r})"


class AndCondition(SQLAble):
    """Both sides hold; each side is parenthesised, so nesting keeps its meaning."""

    def __init__(self, left: SQLAble, right: SQLAble) -> None:
        _check_rule(left)
        _check_rule(right)
        self.left = left
        self.right = right

    def compose(self, params: Params, alias: str | None = None) -> sql.Composable:
        return sql.SQL("({}) AND ({})").format(
            self.left.compose(params, alias), self.right.compose(params, alias)
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-friendly form that ``JobRules.from_dict`` accepts."""
        return {"and": [self.left.to_dict(), self.right.to_dict()]}

    def __repr__(self) -> str:
        return f"({self.left!r} & {self.right!r})"


class OrCondition(SQLAble):
    """Either side holds; each side is parenthesised, so nesting keeps its meaning."""

    def __init__(self, left: SQLAble, right: SQLAble) -> None:
        _check_rule(left)
        _check_rule(right)
        self.left = left
        self.right = right

    def compose(self, params: Params, alias: str | None = None) -> sql.Composable:
        return sql.SQL("({}) OR ({})").format(
            self.left.compose(params, alias), self.right.compose(params, alias)
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-friendly form that ``JobRules.from_dict`` accepts."""
        return {"or": [self.left.to_dict(), self.right.to_dict()]}

    def __repr__(self) -> str:
        return f"({self.left!r} | {self.right!r})"


class NotCondition(SQLAble):
    """The inner rule does not hold (``~rule``)."""

    def __init__(self, inner: SQLAble) -> None:
        _check_rule(inner)
        self.inner = inner

    def compose(self, params: Params, alias: str | None = None) -> sql.Composable:
        return sql.SQL("NOT ({})").format(self.inner.compose(params, alias))

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-friendly form that ``JobRules.from_dict`` accepts."""
        return {"not": self.inner.to_dict()}

    def __repr__(self) -> str:
        return f"~{self.inner!r}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


class Rule:
    """A column of the jobs table; comparing it builds a :class:`Condition`.

    Why a class per field: each knows its column, the operators that make sense for it and how to
    validate a value, so a bad rule fails where it is written rather than in the database.
    """

    #: The name used by filters (``parse_filter``); JobRules fields set it.
    name: str = ""
    ops: ClassVar[frozenset[Op]] = frozenset(Op)
    #: The SQL array type used for ``in`` (a fixed string, never user input).
    array_type: ClassVar[str | None] = None
    nullable: ClassVar[bool] = True

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, field: str) -> None:
        self.field = field
        if not self.name:
            self.name = field

    def column(self, alias: str | None = None) -> sql.Composable:
        """The column, qualified with ``alias`` when the query names the table."""
        return sql.Identifier(alias, self.field) if alias else sql.Identifier(self.field)

    def coerce(self, value: Any) -> Any:
        """Validate one value for this field and return what is sent to the database."""
        return value

    def coerce_for(self, op: Op, value: Any) -> Any:
        """Validate the value of a condition with ``op``; raise InvalidRuleError when wrong."""
        if op is Op.IN:
            if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
                raise InvalidRuleError(
                    f"{self!r}.is_in() takes a list of values, got {type(value).__name__}"
                )
            return [self._coerce_one(v) for v in value]
        if op in (Op.CONTAINS, Op.ILIKE):
            return _text(self, value)
        if value is None:
            if self.nullable and op in (Op.EQ, Op.NE):
                return None
            raise InvalidRuleError(f"{self!r} cannot be compared with None")
        return self._coerce_one(value)

    def _coerce_one(self, value: Any) -> Any:
        if value is None:
            raise InvalidRuleError(f"{self!r} cannot be compared with None")
        return self.coerce(value)

    def compose_condition(
        self, op: Op, value: Any, params: Params, alias: str | None
    ) -> sql.Composable:
        """Return ``column op value`` as SQL with the value as a parameter."""
        column = self.column(alias)
        if op is Op.IN:
            if not value:
                return sql.SQL("FALSE")
            placeholder: sql.Composable = params.add(value)
            if self.array_type:
                placeholder = sql.SQL("CAST({} AS {})").format(
                    placeholder, sql.SQL(self.array_type)
                )
            return sql.SQL("{} = ANY({})").format(column, placeholder)
        if op is Op.CONTAINS:
            # Backslash is ILIKE's default escape character; escaping it first keeps the value
            # literal, so a '%' or '_' in it matches only itself.
            escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            return sql.SQL("{} ILIKE {}").format(column, params.add(f"%{escaped}%"))
        if op is Op.ILIKE:
            return sql.SQL("{} ILIKE {}").format(column, params.add(value))
        if value is None:
            return sql.SQL("{} IS NULL" if op is Op.EQ else "{} IS NOT NULL").format(column)
        return sql.SQL("{} {} {}").format(column, _SQL_OPERATORS[op], params.add(value))

    def __eq__(self, other: object) -> Condition:  # type: ignore[override]
        return Condition(self, Op.EQ, other)

    def __ne__(self, other: object) -> Condition:  # type: ignore[override]
        return Condition(self, Op.NE, other)

    def __lt__(self, other: Any) -> Condition:
        return Condition(self, Op.LT, other)

    def __le__(self, other: Any) -> Condition:
        return Condition(self, Op.LE, other)

    def __gt__(self, other: Any) -> Condition:
        return Condition(self, Op.GT, other)

    def __ge__(self, other: Any) -> Condition:
        return Condition(self, Op.GE, other)

    def contains(self, value: str) -> Condition:
        """Case-insensitive substring match (as in Chancy); ``%`` and ``_`` match literally."""
        return Condition(self, Op.CONTAINS, value)

    def ilike(self, pattern: str) -> Condition:
        """Case-insensitive SQL ``ILIKE`` with the caller's own ``%`` and ``_`` wildcards."""
        return Condition(self, Op.ILIKE, pattern)

    def is_in(self, values: Iterable[Any]) -> Condition:
        """The field equals one of ``values``; an empty list matches nothing."""
        return Condition(self, Op.IN, values)

    in_ = is_in

    def __repr__(self) -> str:
        if type(self).__qualname__.startswith("JobRules."):
            return f"{type(self).__qualname__}()"
        return f"{type(self).__qualname__}({self.field!r})"


def _text(rule: Rule, value: Any) -> str:
    if isinstance(value, enum.Enum) and isinstance(value.value, str):
        value = value.value
    if not isinstance(value, str):
        raise InvalidRuleError(f"{rule!r} takes a string, got {type(value).__name__} {value!r}")
    if "\x00" in value:
        raise InvalidRuleError(f"{rule!r}: a string must not contain NUL characters")
    return value


def _integer(rule: Rule, value: Any) -> int:
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


def _aware_datetime(rule: Rule, value: Any) -> datetime:
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
        return _text(self, value)


class _IntegerRule(Rule):
    ops: ClassVar[frozenset[Op]] = COMPARISONS | {Op.IN}
    array_type: ClassVar[str | None] = "bigint[]"
    nullable: ClassVar[bool] = False

    def coerce(self, value: Any) -> Any:
        return _integer(self, value)


class _TimestampRule(Rule):
    ops: ClassVar[frozenset[Op]] = COMPARISONS
    nullable: ClassVar[bool] = False

    def coerce(self, value: Any) -> Any:
        return _aware_datetime(self, value)


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
                self.column(alias), _SQL_OPERATORS[_REVERSED[op]], params.add(value)
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
            return _text(self, value)

    class State(Rule):
        """The job's state: one of pending, running, retrying, succeeded, failed."""

        name = "state"
        ops: ClassVar[frozenset[Op]] = frozenset({Op.EQ, Op.NE, Op.IN})
        array_type: ClassVar[str | None] = "text[]"
        nullable: ClassVar[bool] = False

        def __init__(self) -> None:
            super().__init__("state")

        def coerce(self, value: Any) -> Any:
            text = _text(self, value)
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
