"""The operators a rule may use and the limits on filters built from untrusted input."""

from __future__ import annotations

import enum

from psycopg import sql

from chancy.errors import ConfigurationError

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
SQL_OPERATORS: dict[Op, sql.SQL] = {
    Op.EQ: sql.SQL("="),
    Op.NE: sql.SQL("<>"),
    Op.LT: sql.SQL("<"),
    Op.LE: sql.SQL("<="),
    Op.GT: sql.SQL(">"),
    Op.GE: sql.SQL(">="),
}
SYMBOLS: dict[Op, str] = {
    Op.EQ: "==",
    Op.NE: "!=",
    Op.LT: "<",
    Op.LE: "<=",
    Op.GT: ">",
    Op.GE: ">=",
}
OP_ALIASES: dict[str, Op] = {
    **{op.value: op for op in Op},
    **{symbol: op for op, symbol in SYMBOLS.items()},
    "=": Op.EQ,
    "<>": Op.NE,
}
# Age is compared as "the reference timestamp against now() - age", which reverses the order.
REVERSED: dict[Op, Op] = {
    Op.EQ: Op.EQ,
    Op.NE: Op.NE,
    Op.LT: Op.GT,
    Op.LE: Op.GE,
    Op.GT: Op.LT,
    Op.GE: Op.LE,
}


def parse_op(op: Op | str) -> Op:
    if isinstance(op, Op):
        return op
    found = OP_ALIASES.get(op.strip().lower()) if isinstance(op, str) else None
    if found is None:
        raise InvalidRuleError(
            f"unknown operator {op!r}; valid operators are {', '.join(sorted(OP_ALIASES))}"
        )
    return found
