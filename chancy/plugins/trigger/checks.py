"""Checks of what a trigger is registered with, made before anything reaches the database.

A WHEN condition is SQL text placed inside ``WHEN ( ... )`` of a ``CREATE TRIGGER``; PostgreSQL
validates its meaning when the trigger is created, but the text must first be shown to stay
inside those parentheses (no ``;`` ending the statement, no unbalanced ``)``), or it could
smuggle another statement into the DDL. A unique key template names the row's columns as
``{column}`` placeholders, filled in by the trigger function in the database.
"""

from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Sequence
from typing import Any

from chancy.errors import ChancyError, InvalidJobError
from chancy.job import Job, as_job
from chancy.utils import jsonb_dumps

__all__ = [
    "OPERATIONS",
    "TriggerError",
    "check_condition",
    "check_operations",
    "template_fields",
]

#: The operations a trigger can fire on, in the order their triggers are created.
OPERATIONS = ("INSERT", "UPDATE", "DELETE")

#: Longest WHEN condition accepted (PostgreSQL has no limit; a condition this long is a bug).
MAX_CONDITION = 10_000

_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_IDENT_CHAR = re.compile(r"[A-Za-z0-9_$]")


class TriggerError(ChancyError, ValueError):
    """A trigger cannot be registered or changed as asked; the message says how to fix it.

    A ``ValueError``, as Chancy 0.26 raises for bad operations and unknown trigger ids.
    """


def check_operations(operations: object) -> list[str]:
    """The operations upper-cased and without repeats, or a TriggerError naming the fix."""
    if isinstance(operations, str) or not isinstance(operations, list | tuple | set | frozenset):
        raise TriggerError(
            f"operations must be a list such as ['INSERT', 'UPDATE'], got {operations!r}"
        )
    if not operations:
        raise TriggerError(
            "operations list cannot be empty: give one or more of 'INSERT', 'UPDATE', 'DELETE'"
        )
    found: list[str] = []
    for op in operations:
        name = op.upper() if isinstance(op, str) else op
        if name not in OPERATIONS:
            raise TriggerError(
                f"Invalid operation: {op!r}. Must be one of 'INSERT', 'UPDATE', 'DELETE'"
                " (case-insensitive); TRUNCATE is not supported"
            )
        if name not in found:
            found.append(name)
    return found


def check_condition(condition: object) -> str:
    """Return the condition stripped, or raise TriggerError if it cannot stay one expression.

    Quotes, quoted identifiers, dollar quotes and comments are skipped as PostgreSQL's lexer
    would, so a ``;`` or ``)`` inside a string is fine; only ones that would end the WHEN
    clause or the statement are refused.
    """
    if not isinstance(condition, str) or not condition.strip():
        raise TriggerError(
            f"the WHEN condition must be non-empty SQL text such as 'NEW.active', got {condition!r}"
        )
    text = condition.strip()
    if len(text) > MAX_CONDITION:
        raise TriggerError(f"the WHEN condition is longer than {MAX_CONDITION} characters")
    if "\x00" in text:
        raise TriggerError("the WHEN condition contains the NUL character")
    depth = 0
    i, n = 0, len(text)

    def fail(problem: str) -> TriggerError:
        return TriggerError(
            f"the WHEN condition {text[:200]!r} {problem}; it must be one SQL boolean"
            " expression over NEW and OLD, such as \"NEW.status = 'active'\""
        )

    while i < n:
        ch = text[i]
        if ch == "'":
            # E'...' strings take backslash escapes; others only double their quotes.
            escapes = (
                i > 0 and text[i - 1] in "eE" and (i == 1 or not _IDENT_CHAR.match(text[i - 2]))
            )
            i += 1
            while True:
                if i >= n:
                    raise fail("has an unterminated string")
                if escapes and text[i] == "\\":
                    i += 2
                    continue
                if text[i] == "'":
                    if i + 1 < n and text[i + 1] == "'":
                        i += 2
                        continue
                    break
                i += 1
        elif ch == '"':
            i += 1
            while True:
                if i >= n:
                    raise fail("has an unterminated quoted identifier")
                if text[i] == '"':
                    if i + 1 < n and text[i + 1] == '"':
                        i += 2
                        continue
                    break
                i += 1
        elif ch == "$" and (i == 0 or not _IDENT_CHAR.match(text[i - 1])):
            tag = _DOLLAR_TAG.match(text, i)
            if tag is not None:
                end = text.find(tag.group(0), tag.end())
                if end < 0:
                    raise fail("has an unterminated dollar-quoted string")
                i = end + len(tag.group(0)) - 1
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = n - 1 if end < 0 else end
        elif text.startswith("/*", i):
            # Block comments nest in PostgreSQL.
            level, i = 1, i + 2
            while level:
                if i >= n:
                    raise fail("has an unterminated comment")
                if text.startswith("/*", i):
                    level, i = level + 1, i + 2
                elif text.startswith("*/", i):
                    level, i = level - 1, i + 2
                else:
                    i += 1
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise fail("closes a parenthesis it did not open")
        elif ch == ";":
            raise fail("contains ';'")
        i += 1
    if depth:
        raise fail("leaves a parenthesis open")
    return text


def template_fields(template: object) -> list[str]:
    """The column names a unique key template such as ``'user-sync:{id}'`` refers to.

    Raises TriggerError for a template that is not a non-empty string of literal text and
    ``{column}`` placeholders (no format specs, conversions or literal braces).
    """
    if not isinstance(template, str) or not template:
        raise TriggerError(
            f"unique_key must be a non-empty string such as 'user-sync:{{id}}', got {template!r}"
        )
    if "\x00" in template:
        raise TriggerError("unique_key contains the NUL character")
    if "{{" in template or "}}" in template:
        raise TriggerError(
            f"unique_key {template!r}: literal braces ('{{{{' or '}}}}') are not supported;"
            " use {column} placeholders and other characters only"
        )
    fields: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TriggerError(
            f"unique_key {template!r} is not a valid template ({exc}); write placeholders as"
            " {column}, e.g. 'user-sync:{id}'"
        ) from None
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if not field or spec or conversion or "{" in field:
            raise TriggerError(
                f"unique_key {template!r}: each placeholder must be a bare column name such"
                " as {id} (no format spec, conversion or empty {})"
            )
        if field not in fields:
            fields.append(field)
    return fields


#: The levels a trigger can have: once per statement (Chancy 0.26) or once per row.
LEVELS = ("statement", "row")


@dataclasses.dataclass(frozen=True, slots=True)
class Registration:
    """A registration's arguments, checked and normalised before anything is stored."""

    operations: list[str]
    job: Job
    #: The job template as stored (``s`` as a number, as Chancy 0.26 stores it).
    packed: Any
    condition: str | None
    #: Columns the unique key template names.
    fields: list[str]
    #: Columns copied into the kwargs (None: the primary key, decided with the table).
    columns: list[str] | None


def check_registration(
    table_name: str,
    operations: list[str],
    job_template: Any,
    *,
    schema_name: str,
    enabled: bool,
    level: str,
    when: str | None,
    kwargs_columns: Sequence[str] | None,
    unique_key: str | None,
) -> Registration:
    """Check everything about a registration that needs no database; raise TriggerError."""
    ops = check_operations(operations)
    for what, value in (("table_name", table_name), ("schema_name", schema_name)):
        if not isinstance(value, str) or not value:
            raise TriggerError(f"{what} must be a non-empty string, got {value!r}")
    if level not in LEVELS:
        raise TriggerError(f"level must be 'statement' or 'row', got {level!r}")
    try:
        job = as_job(job_template, action="use as a trigger's job template")
    except TypeError as exc:
        raise TriggerError(f"invalid job_template: {exc}") from None
    try:
        job.validate()
    except InvalidJobError as exc:
        raise TriggerError(f"invalid job_template: {exc}") from None
    try:
        # "s" is stored as a number, as 0.26 stores it (its Job.unpack needs one); the
        # trigger function ignores it: a trigger's job is due when it is pushed.
        packed = jsonb_dumps({**job.pack(), "s": job.scheduled_at.timestamp()})
    except (TypeError, ValueError) as exc:
        raise TriggerError(
            f"invalid job_template: its kwargs or meta cannot be stored as JSON ({exc})"
        ) from None
    if not isinstance(enabled, bool):
        raise TriggerError(f"enabled must be True or False, got {enabled!r}")
    condition = None
    fields: list[str] = []
    columns = None if kwargs_columns is None else list(kwargs_columns)
    if level == "statement":
        if when is not None:
            raise TriggerError(
                "a WHEN condition needs level='row': PostgreSQL runs WHEN for each row,"
                " and statement-level triggers cannot have one"
            )
        if columns:
            raise TriggerError(
                "kwargs_columns needs level='row': a statement-level trigger has no row"
                " to take columns from"
            )
        columns = None
        if unique_key is not None and template_fields(unique_key):
            raise TriggerError(
                f"unique_key {unique_key!r} has {{column}} placeholders, which need"
                " level='row'; a statement-level trigger can only use a fixed key"
            )
    else:
        if when is not None:
            condition = check_condition(when)
        if unique_key is not None:
            fields = template_fields(unique_key)
        if columns is not None and (
            isinstance(kwargs_columns, str) or not all(isinstance(c, str) and c for c in columns)
        ):
            raise TriggerError(
                f"kwargs_columns must be a list of column names such as ['id', 'email'],"
                f" got {kwargs_columns!r}"
            )
    if unique_key is not None and not fields:
        template_fields(unique_key)  # checks a fixed key's form too
    return Registration(ops, job, packed, condition, fields, columns)
