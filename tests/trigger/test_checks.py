"""The checks made before a trigger reaches the database (no database needed)."""

from __future__ import annotations

import pytest

from chancy.plugins.trigger.checks import (
    TriggerError,
    check_condition,
    check_operations,
    template_fields,
)


@pytest.mark.parametrize(
    "condition",
    [
        "NEW.active",
        "  NEW.email IS DISTINCT FROM OLD.email  ",
        "NEW.note = 'a;b) c'",  # ; and ) inside a string
        "NEW.note = 'it''s'",
        "NEW.note = E'\\';)'",  # an escaped quote in an E'' string
        "NEW.a = E'\\'; DROP TABLE x; --'",  # all of it one string
        'NEW."odd;name)" > 0',
        "NEW.note = $$;)$$ OR NEW.note = $t$ ) $t$",
        "NEW.a > 1 -- a comment with ; and )\n AND (NEW.b < 2)",
        "NEW.a /* a /* nested */ comment; ) */ > 1",
        "(NEW.a > 1) AND (NEW.b IN (1, 2, 3))",
    ],
)
def test_conditions_that_stay_one_expression_are_accepted(condition: str) -> None:
    assert check_condition(condition) == condition.strip()


@pytest.mark.parametrize(
    ("condition", "problem"),
    [
        ("", "non-empty"),
        ("   ", "non-empty"),
        ("true; DROP TABLE users", "contains ';'"),
        ("true) EXECUTE FUNCTION other(", "closes a parenthesis"),
        ("(true", "leaves a parenthesis open"),
        ("NEW.a = 'open", "unterminated string"),
        ('NEW."open', "unterminated quoted identifier"),
        ("NEW.a = $x$ open", "unterminated dollar-quoted"),
        ("NEW.a /* open", "unterminated comment"),
        ("NEW.a = '\\'; DROP TABLE x; --'", "contains ';'"),  # no escapes outside E''
    ],
)
def test_conditions_that_could_leave_the_when_clause_are_refused(
    condition: str, problem: str
) -> None:
    with pytest.raises(TriggerError, match=problem):
        check_condition(condition)


def test_operations_are_upper_cased_and_deduplicated() -> None:
    assert check_operations(["insert", "UPDATE", "Insert"]) == ["INSERT", "UPDATE"]
    for bad in ("INSERT", [], ["TRUNCATE"], [1], None):
        with pytest.raises(TriggerError):
            check_operations(bad)


def test_unique_key_templates() -> None:
    assert template_fields("user-sync:{id}") == ["id"]
    assert template_fields("{a}:{b}:{a}") == ["a", "b"]
    assert template_fields("fixed") == []
    for bad in ("", "{}", "{id:>5}", "{id!r}", "{{id}}", "u:{id", "u:}", None):
        with pytest.raises(TriggerError):
            template_fields(bad)
