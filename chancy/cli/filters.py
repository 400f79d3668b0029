"""Job filters of the command line: options, parsing, and the rule they compile to.

The filters are the dashboard's (state, queue, function, creation time, and free conditions),
built with :mod:`chancy.rule`, so a filter means the same thing here, in the dashboard and in a
Pruner rule. ``chancy job`` uses them; relative times are measured from the database's clock.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from chancy.cli.output import F
from chancy.cli.queries import db_now
from chancy.job import QueuedJob

if TYPE_CHECKING:
    from psycopg import sql

    from chancy.app import Chancy
    from chancy.rule import SQLAble

STATES = tuple(s.value for s in QueuedJob.State)
#: How many jobs one retry/cancel/purge by filter touches unless --limit says otherwise.
DEFAULT_BULK_LIMIT = 1000
MAX_LIMIT = 100_000

# -- reading the options -----------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*(?:ago)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SYMBOL_CONDITION = re.compile(r"^\s*([A-Za-z_]+)\s*(==|!=|<>|<=|>=|=|<|>)\s*(.*?)\s*$", re.DOTALL)
_WORD_CONDITION = re.compile(
    r"^\s*([A-Za-z_]+)\s+(in|contains|ilike|eq|ne|lt|le|gt|ge)\s+(.*?)\s*$",
    re.IGNORECASE | re.DOTALL,
)
FIELDS_HELP = "age, attempts, created_at, func, id, priority, queue, scheduled_at, state"


def parse_job_id(value: str) -> uuid.UUID:
    """A job id from the command line, or a usage error saying what one looks like."""
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a job id; a job id is a UUID such as"
            " 0190b6c4-7d2e-7c3a-9f0e-2b1c3d4e5f60 (see `chancy job list`)",
            param_hint="'ID'",
        ) from None


def job_ids_callback(
    ctx: click.Context, param: click.Parameter, values: Iterable[str]
) -> list[uuid.UUID]:
    ids: list[uuid.UUID] = []
    for value in values:
        job_id = parse_job_id(value)
        if job_id not in ids:
            ids.append(job_id)
    return ids


def _split(values: Iterable[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def parse_time(text: str, option: str) -> datetime | timedelta:
    """An ISO 8601 time (UTC when it has no offset) or a duration back from now (``2h``)."""
    match = _DURATION.match(text)
    if match:
        return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()])
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither an ISO 8601 time (2024-05-01T12:00:00Z; UTC without an offset)"
            " nor a duration back from now (90s, 30m, 2h, 7d, 1w)",
            param_hint=f"'{option}'",
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def parse_condition(text: str) -> SQLAble:
    """``FIELD OP VALUE`` (``priority >= 5``, ``func contains mail``, ``state in a,b``)."""
    from chancy.rule import InvalidRuleError, parse_filter

    match = _SYMBOL_CONDITION.match(text) or _WORD_CONDITION.match(text)
    if not match:
        raise click.BadParameter(
            f"{text!r} is not 'FIELD OP VALUE' (such as 'priority >= 5', 'func contains mail',"
            f" 'state in failed,retrying'); fields: {FIELDS_HELP}; operators: == != < <= > >="
            " in contains ilike",
            param_hint="'--where'",
        )
    field, op, raw = match.group(1), match.group(2).lower(), match.group(3)
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        raw = raw[1:-1]
    value: Any = _split([raw]) if op == "in" else raw
    try:
        return parse_filter(field, op, value)
    except InvalidRuleError as exc:
        raise click.BadParameter(f"{text!r}: {exc}", param_hint="'--where'") from None


def parse_filter_json(text: str) -> SQLAble:
    """A dashboard-style JSON filter (``{"field": ..., "op": ..., "value": ...}``, and/or/not)."""
    from chancy.rule import InvalidRuleError, JobRules

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"not valid JSON ({exc}); a filter looks like"
            ' \'{"field": "queue", "op": "==", "value": "mail"}\'',
            param_hint="'--filter'",
        ) from None
    try:
        return JobRules.from_dict(data)
    except InvalidRuleError as exc:
        raise click.BadParameter(str(exc), param_hint="'--filter'") from None


@dataclasses.dataclass
class JobFilter:
    """The filter options of one command, checked; ``rule()`` turns them into a rule."""

    states: list[str]
    queues: list[str]
    funcs: list[str]
    func_contains: str | None
    since: datetime | timedelta | None
    until: datetime | timedelta | None
    conditions: list[SQLAble]

    @property
    def given(self) -> bool:
        return bool(
            self.states
            or self.queues
            or self.funcs
            or self.func_contains
            or self.since is not None
            or self.until is not None
            or self.conditions
        )

    @property
    def relative(self) -> bool:
        return isinstance(self.since, timedelta) or isinstance(self.until, timedelta)

    def rule(self, now: datetime | None) -> SQLAble:
        """The rule selecting the jobs; ``now`` (database time) anchors relative times."""
        from chancy.rule import AndCondition, JobRules

        def absolute(value: datetime | timedelta) -> datetime:
            if isinstance(value, datetime):
                return value
            assert now is not None, "relative times need the database's now()"
            return now - value

        parts: list[SQLAble] = []
        if self.states:
            parts.append(JobRules.State().is_in(self.states))
        if self.queues:
            parts.append(JobRules.Queue().is_in(self.queues))
        if self.funcs:
            parts.append(JobRules.Job().is_in(self.funcs))
        if self.func_contains:
            parts.append(JobRules.Job().contains(self.func_contains))
        if self.since is not None:
            parts.append(JobRules.CreatedAt() >= absolute(self.since))
        if self.until is not None:
            parts.append(JobRules.CreatedAt() <= absolute(self.until))
        parts.extend(self.conditions)
        if not parts:
            return JobRules.All()
        return functools.reduce(AndCondition, parts)


def filter_options(f: F) -> F:
    """The job filters shared by list, retry, cancel and purge (all of them are ANDed)."""
    options = [
        click.option(
            "--state",
            "-s",
            "states",
            multiple=True,
            metavar="STATE[,STATE...]",
            help=f"Jobs in one of these states ({', '.join(STATES)}).",
        ),
        click.option(
            "--queue",
            "-q",
            "queues",
            multiple=True,
            metavar="NAME[,NAME...]",
            help="Jobs of one of these queues.",
        ),
        click.option(
            "--func",
            "-f",
            "funcs",
            multiple=True,
            metavar="PATH[,PATH...]",
            help="Jobs running one of these functions (exact import path).",
        ),
        click.option(
            "--func-contains",
            default=None,
            metavar="TEXT",
            help="Jobs whose function's path contains TEXT (any case).",
        ),
        click.option(
            "--since",
            default=None,
            metavar="TIME",
            help="Jobs created at or after TIME: ISO 8601 (UTC without an offset) or a duration"
            " back from now (30m, 2h, 7d).",
        ),
        click.option(
            "--until", default=None, metavar="TIME", help="Jobs created at or before TIME."
        ),
        click.option(
            "--where",
            "wheres",
            multiple=True,
            metavar="'FIELD OP VALUE'",
            help=f"A condition such as 'priority >= 5' or 'attempts > 1' (fields: {FIELDS_HELP};"
            " operators: == != < <= > >= in contains ilike); repeat to AND several.",
        ),
        click.option(
            "--filter",
            "filter_json",
            default=None,
            metavar="JSON",
            help='A dashboard filter: {"field": ..., "op": ..., "value": ...}, or {"and": [...]},'
            ' {"or": [...]}, {"not": ...}.',
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def job_filter(
    states: Iterable[str],
    queues: Iterable[str],
    funcs: Iterable[str],
    func_contains: str | None,
    since: str | None,
    until: str | None,
    wheres: Iterable[str],
    filter_json: str | None,
) -> JobFilter:
    """Check the filter options and gather them (every mistake is a usage error)."""
    state_list = _split(states)
    bad = [s for s in state_list if s not in STATES]
    if bad:
        raise click.BadParameter(
            f"{bad[0]!r} is not a job state; valid states are {', '.join(STATES)}",
            param_hint="'--state'",
        )
    conditions = [parse_condition(w) for w in wheres]
    if filter_json is not None:
        conditions.append(parse_filter_json(filter_json))
    return JobFilter(
        states=state_list,
        queues=_split(queues),
        funcs=_split(funcs),
        func_contains=func_contains or None,
        since=None if since is None else parse_time(since, "--since"),
        until=None if until is None else parse_time(until, "--until"),
        conditions=conditions,
    )


# -- the database ------------------------------------------------------------------------


async def compile_filter(chancy: Chancy, filt: JobFilter) -> tuple[sql.Composable, dict[str, Any]]:
    from chancy.rule import compile_rule_named

    now = await db_now(chancy) if filt.relative else None
    return compile_rule_named(filt.rule(now), alias="j", prefix="f_")


# -- output ------------------------------------------------------------------------------
