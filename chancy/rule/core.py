"""Predicates and their composition: ``SQLAble``, the conditions, and ``Rule``, a column.

Every value becomes a placeholder (or, for Chancy 0.26's ``to_sql()``, a quoted literal);
columns and operators come from fixed whitelists through :mod:`psycopg.sql`.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar, LiteralString

from psycopg import sql

from chancy.rule.ops import SQL_OPERATORS, SYMBOLS, InvalidRuleError, Op, parse_op


class Params:
    """Collects a rule's values in placeholder order, so values travel as query parameters."""

    def __init__(self, *, prefix: str | None = None, literal: bool = False) -> None:
        self.prefix = prefix
        #: Quote values into the SQL (sql.Literal) instead of placeholders: Chancy 0.26's
        #: ``to_sql()`` form, for SQL composed by hand.
        self.literal = literal
        self.values: list[Any] = []

    def add(self, value: Any) -> sql.Composable:
        """Record ``value`` and return what stands for it in the SQL (a placeholder)."""
        self.values.append(value)
        if self.literal:
            return sql.Literal(value)
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

    def to_sql(self, alias: str | None = None) -> sql.Composable:
        """The predicate as SQL with its values quoted in (Chancy 0.26's ``to_sql``).

        chancy's own queries use ``to_sql_params`` (values as parameters) instead.
        """
        return self.compose(Params(literal=True), alias)

    def to_sql_params(self, alias: str | None = None) -> tuple[sql.Composable, list[Any]]:
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
    return rule.to_sql_params(alias)


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
        op = parse_op(op)
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
        if self.op in SYMBOLS:
            return f"({self.rule!r} {SYMBOLS[self.op]} {self.value!r})"
        method = "is_in" if self.op is Op.IN else self.op.value
        return f"{self.rule!r}.{method}({self.value!r})"


class _BinaryCondition(SQLAble):
    """Two rules joined by ``keyword``; each side is parenthesised, so nesting keeps its
    meaning."""

    keyword: LiteralString  # AND, OR
    key: str  # its name in to_dict's form
    symbol: str  # its Python operator in repr

    def __init__(self, left: SQLAble, right: SQLAble) -> None:
        _check_rule(left)
        _check_rule(right)
        self.left = left
        self.right = right

    def compose(self, params: Params, alias: str | None = None) -> sql.Composable:
        return sql.SQL("({}) " + self.keyword + " ({})").format(
            self.left.compose(params, alias), self.right.compose(params, alias)
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-friendly form that ``JobRules.from_dict`` accepts."""
        return {self.key: [self.left.to_dict(), self.right.to_dict()]}

    def __repr__(self) -> str:
        return f"({self.left!r} {self.symbol} {self.right!r})"


class AndCondition(_BinaryCondition):
    """Both sides hold."""

    keyword, key, symbol = "AND", "and", "&"


class OrCondition(_BinaryCondition):
    """Either side holds."""

    keyword, key, symbol = "OR", "or", "|"


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

    def to_sql(self, alias: str | None = None) -> sql.Composable:
        """The field's SQL expression (Chancy 0.26's ``Rule.to_sql``)."""
        return self.column(alias)

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
            return text_value(self, value)
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
        return sql.SQL("{} {} {}").format(column, SQL_OPERATORS[op], params.add(value))

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


def text_value(rule: Rule, value: Any) -> str:
    if isinstance(value, enum.Enum) and isinstance(value.value, str):
        value = value.value
    if not isinstance(value, str):
        raise InvalidRuleError(f"{rule!r} takes a string, got {type(value).__name__} {value!r}")
    if "\x00" in value:
        raise InvalidRuleError(f"{rule!r}: a string must not contain NUL characters")
    return value
