"""How ``chancy`` commands print: aligned tables for people, JSON for scripts, and confirmation.

Every listing command takes ``--json``; its keys are documented in ``docs/cli.md`` and kept
stable, so scripts can rely on them. Times are ISO 8601 strings with their UTC offset, ids are
strings. Commands that change or delete what already exists ask first (``--yes`` skips the
question) and refuse to run unattended without ``--yes``, so a script never acts on a guess.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain text table, columns padded to their widest cell."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [headers, ["-" * w for w in widths], *rows]
    ]
    return "\n".join(lines)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    # Whatever else a job stored (its kwargs or result came through JSON, so this is rare).
    return repr(value)


def to_json(data: Any, *, indent: int | None = 2) -> str:
    """``data`` as JSON (indented unless ``indent=None``); datetimes, UUIDs, enums and sets
    become plain values."""
    return json.dumps(data, indent=indent, default=_json_default, ensure_ascii=False)


def echo_json(data: Any) -> None:
    click.echo(to_json(data))


def when(value: datetime | None) -> str:
    """A time for a table cell: UTC to the second (``2024-05-01T12:00:00Z``), or ``-``."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (keys as in docs/cli.md) instead of text."
)

yes_option = click.option(
    "--yes",
    "-y",
    is_flag=True,
    help="Do not ask for confirmation (required when stdin is not a terminal).",
)


def confirm(action: str, *, yes: bool) -> None:
    """Ask before ``action`` (e.g. "purge 3 jobs"); ``--yes`` answers for the user.

    Without a terminal nobody can answer, and reading an answer from a pipe would let a stray
    ``yes |`` approve anything, so the command stops and says to pass ``--yes``.
    """
    if yes:
        return
    if sys.stdin is None or not sys.stdin.isatty():
        raise click.ClickException(
            f"refusing to {action} without confirmation: stdin is not a terminal;"
            " pass --yes to confirm"
        )
    try:
        answer = click.confirm(f"{action[:1].upper()}{action[1:]}?", default=False)
    except click.Abort:
        answer = False
    if not answer:
        raise click.ClickException("not confirmed; nothing was changed")
