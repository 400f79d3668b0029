"""``chancy job``: find, inspect, retry, cancel and purge jobs from a terminal.

Filters (``chancy.cli.filters``) are the dashboard's, built with :mod:`chancy.rule`. The
changes go through the app's own methods (``retry_jobs``, ``cancel_job``, ``purge_jobs``),
which notify the workers as they would from code.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click

from chancy.cli.context import CliContext, pass_cli
from chancy.cli.output import (
    confirm,
    echo_json,
    format_table,
    json_option,
    plural,
    when,
    yes_option,
)
from chancy.cli.queries import fetch_all
from chancy.job import QueuedJob

if TYPE_CHECKING:
    from chancy.app import Chancy

from chancy.cli.filters import (
    DEFAULT_BULK_LIMIT,
    MAX_LIMIT,
    JobFilter,
    compile_filter,
    filter_options,
    job_filter,
    job_ids_callback,
    parse_job_id,
)

JOB_HEADERS = ("ID", "STATE", "QUEUE", "FUNC", "ATTEMPTS", "CREATED", "FINISHED")


def job_summary(row: Mapping[str, Any]) -> dict[str, Any]:
    """One job as ``job list --json`` prints it (keys documented in docs/cli.md)."""
    return {
        "id": str(row["id"]),
        "queue": row["queue"],
        "func": row["func"],
        "state": row["state"],
        "cancelled": bool(row["cancelled"]),
        "priority": row["priority"],
        "attempts": row["attempts"],
        "max_attempts": row["max_attempts"],
        "recoveries": row["recoveries"],
        "error_count": row["error_count"],
        "unique_key": row["unique_key"],
        "taken_by": row["taken_by"],
        "created_at": row["created_at"],
        "scheduled_at": row["scheduled_at"],
        "started_at": row["started_at"],
        "completed_at": row["completed_at"],
    }


def _state_cell(state: str, cancelled: bool) -> str:
    return f"{state}(cancelled)" if cancelled else state


def job_detail(job: QueuedJob) -> dict[str, Any]:
    """One job as ``job show --json`` prints it (keys documented in docs/cli.md)."""
    return {
        "id": str(job.id),
        "func": job.func,
        "queue": job.queue,
        "state": str(job.state),
        "cancelled": bool(job.meta.get("cancelled")),
        "cancel_reason": job.cancel_reason,
        "cancelled_by": job.cancelled_by,
        "priority": job.priority,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "recoveries": job.recoveries,
        "unique_key": job.unique_key,
        "partition_key": job.partition_key,
        "taken_by": job.taken_by,
        "created_at": job.created_at,
        "scheduled_at": job.scheduled_at,
        "started_at": job.started_at,
        "completed_at": job.completed_at,
        "kwargs": job.kwargs,
        "meta": job.meta,
        "limits": [{"type": limit.type_.value, "value": limit.value} for limit in job.limits],
        "errors": job.errors,
        "result": job.result,
    }


def _compact(value: Any) -> str:
    from chancy.cli.output import to_json

    return to_json(value, indent=None) if value not in (None, {}, []) else "-"


def _show_text(data: dict[str, Any]) -> str:
    lines: list[str] = []
    attempts = f"{data['attempts']} of {data['max_attempts']}"
    fields: list[tuple[str, str]] = [
        ("id", data["id"]),
        ("func", data["func"]),
        ("queue", data["queue"]),
        ("state", data["state"] + (" (cancelled)" if data["cancelled"] else "")),
        *(
            [("cancelled", f"by {data['cancelled_by'] or '-'}: {data['cancel_reason'] or '-'}")]
            if data["cancelled"]
            else []
        ),
        ("priority", str(data["priority"])),
        ("attempts", attempts),
        ("recoveries", str(data["recoveries"])),
        ("unique_key", data["unique_key"] or "-"),
        ("partition_key", data["partition_key"] or "-"),
        ("taken_by", data["taken_by"] or "-"),
        ("created_at", when(data["created_at"])),
        ("scheduled_at", when(data["scheduled_at"])),
        ("started_at", when(data["started_at"])),
        ("completed_at", when(data["completed_at"])),
        ("kwargs", _compact(data["kwargs"])),
        ("meta", _compact(data["meta"])),
        ("limits", ", ".join(f"{x['type']}={x['value']}" for x in data["limits"]) or "-"),
        ("result", _compact(data["result"])),
    ]
    width = max(len(name) for name, _ in fields)
    lines.extend(f"{name.ljust(width)}  {value}" for name, value in fields)
    errors = data["errors"] or []
    lines.append(f"{'errors'.ljust(width)}  {len(errors) or '-'}")
    for error in errors:
        attempt = error.get("attempt", "?") if isinstance(error, Mapping) else "?"
        text = error.get("traceback", "") if isinstance(error, Mapping) else str(error)
        lines.append(f"--- error of attempt {attempt} ---")
        lines.append(str(text).rstrip())
    return "\n".join(lines)


# -- commands ----------------------------------------------------------------------------


@click.group()
def job() -> None:
    """Find, inspect, retry, cancel and purge jobs."""


@job.command("list")
@filter_options
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(1, MAX_LIMIT),
    default=50,
    show_default=True,
    help="Show at most this many jobs (newest first).",
)
@click.option(
    "--before",
    default=None,
    metavar="ID",
    help="Only jobs older than this job id: the next page after a listing's last id.",
)
@json_option
@pass_cli
def list_jobs(
    cli: CliContext,
    states: tuple[str, ...],
    queues: tuple[str, ...],
    funcs: tuple[str, ...],
    func_contains: str | None,
    since: str | None,
    until: str | None,
    wheres: tuple[str, ...],
    filter_json: str | None,
    limit: int,
    before: str | None,
    as_json: bool,
) -> None:
    """List jobs matching the filters, newest first."""
    filt = job_filter(states, queues, funcs, func_contains, since, until, wheres, filter_json)
    before_id = None if before is None else parse_job_id(before)

    async def body(chancy: Chancy) -> list[dict[str, Any]]:
        where, params = await compile_filter(chancy, filt)
        return await fetch_all(
            chancy,
            "cli_jobs_list",
            {**params, "before": before_id, "limit": limit + 1},
            where=where,
        )

    rows = cli.run(body)
    more = len(rows) > limit
    jobs = [job_summary(r) for r in rows[:limit]]
    next_before = jobs[-1]["id"] if more and jobs else None
    if as_json:
        echo_json({"jobs": jobs, "next_before": next_before})
        return
    if not jobs:
        click.echo("no jobs match" if filt.given or before_id else "no jobs")
        return
    table = [
        [
            j["id"],
            _state_cell(j["state"], j["cancelled"]),
            j["queue"],
            j["func"],
            f"{j['attempts']}/{j['max_attempts']}",
            when(j["created_at"]),
            when(j["completed_at"]),
        ]
        for j in jobs
    ]
    click.echo(format_table(JOB_HEADERS, table))
    if next_before:
        click.echo(f"(more jobs match: add --before {next_before} for the next page)", err=True)


@job.command()
@click.argument("job_id", metavar="ID")
@json_option
@pass_cli
def show(cli: CliContext, job_id: str, as_json: bool) -> None:
    """Show one job: its arguments, state, times, result and every error's traceback."""
    wanted = parse_job_id(job_id)

    async def body(chancy: Chancy) -> QueuedJob | None:
        return await chancy.get_job(wanted)

    found = cli.run(body)
    if found is None:
        raise click.ClickException(f"no job {wanted} (of prefix {cli.chancy().prefix!r})")
    data = job_detail(found)
    if as_json:
        echo_json(data)
    else:
        click.echo(_show_text(data))


async def _select(
    chancy: Chancy, ids: list[uuid.UUID], filt: JobFilter, limit: int
) -> tuple[list[uuid.UUID], bool]:
    """The jobs a bulk command acts on: the given ids (all must exist), or the filter's."""
    if ids:
        found = {j.id for j in await chancy.get_jobs(ids)}
        missing = [str(i) for i in ids if i not in found]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise click.ClickException(f"no job {missing[0]}{more}; nothing was changed")
        return ids, False
    where, params = await compile_filter(chancy, filt)
    rows = await fetch_all(chancy, "cli_jobs_ids", {**params, "limit": limit + 1}, where=where)
    return [r["id"] for r in rows[:limit]], len(rows) > limit


def _bulk_command(
    verb: str, explain: str, options: Sequence[Callable[[Any], Any]] = ()
) -> Callable[[Callable[..., Awaitable[dict[str, Any]]]], click.Command]:
    """A ``job <verb>`` command over ids or a filter: select, confirm, act, report.

    ``options`` are click options of this verb only; their values reach ``act`` by keyword.
    """

    def decorate(
        act: Callable[..., Awaitable[dict[str, Any]]],
    ) -> click.Command:
        @click.argument("ids", nargs=-1, metavar="[ID]...", callback=job_ids_callback)
        @filter_options
        @click.option(
            "--limit",
            "-n",
            type=click.IntRange(1, MAX_LIMIT),
            default=DEFAULT_BULK_LIMIT,
            show_default=True,
            help="With a filter: act on at most this many matching jobs (the newest).",
        )
        @yes_option
        @json_option
        @pass_cli
        def command(
            cli: CliContext,
            ids: list[uuid.UUID],
            states: tuple[str, ...],
            queues: tuple[str, ...],
            funcs: tuple[str, ...],
            func_contains: str | None,
            since: str | None,
            until: str | None,
            wheres: tuple[str, ...],
            filter_json: str | None,
            limit: int,
            yes: bool,
            as_json: bool,
            **extra: Any,
        ) -> None:
            filt = job_filter(
                states, queues, funcs, func_contains, since, until, wheres, filter_json
            )
            if bool(ids) == filt.given:
                raise click.UsageError(
                    "give job ids or a filter (--state, --queue, --func, --func-contains,"
                    " --since, --until, --where, --filter), "
                    + ("not both" if ids else "to choose the jobs")
                )

            async def body(chancy: Chancy) -> dict[str, Any]:
                selected, more = await _select(chancy, ids, filt, limit)
                if not selected:
                    return {"matched": 0, "more": False}
                what = plural(len(selected), "job")
                if ids and len(ids) <= 3:
                    what += " " + ", ".join(map(str, ids))
                if more:
                    what += f" (the newest {limit} that match; more match beyond --limit)"
                confirm(f"{verb} {what}", yes=yes)
                acted = await act(chancy, selected, **extra)
                return {"matched": len(selected), **acted, "more": more}

            report = cli.run(body)
            if as_json:
                echo_json(report)
            elif not report["matched"]:
                click.echo("no jobs match; nothing was changed")
            else:
                click.echo(_describe(report))

        command.__doc__ = explain
        for option in reversed(options):
            command = option(command)
        return job.command(verb)(command)

    return decorate


def _describe(report: dict[str, Any]) -> str:
    parts = []
    for key, label in (
        ("retried", "retried"),
        ("cancelled", "cancelled"),
        ("purged", "purged"),
        ("skipped", "skipped (their unique key is live in another job)"),
        ("unchanged", "unchanged (not finished)" if "retried" in report else "unchanged"),
    ):
        if key not in report:
            continue
        value = report[key]
        count = value if isinstance(value, int) else len(value)
        if key in ("skipped", "unchanged") and not count:
            continue
        listed = "" if isinstance(value, int) or not value or count > 5 else ": " + ", ".join(value)
        parts.append(f"{plural(count, 'job')} {label}{listed}")
    if report.get("more"):
        parts.append("more jobs match: run the command again for the next batch")
    return "; ".join(parts)


@_bulk_command(
    "retry",
    """Run finished jobs again (attempts reset, errors kept): the IDs given, or every job the
    filter matches (up to --limit). Asks first unless --yes.

    A job whose unique key is live again in another job is skipped; a job that has not
    finished is left unchanged.
    """,
)
async def _retry(chancy: Chancy, ids: list[uuid.UUID]) -> dict[str, Any]:
    result = await chancy.retry_jobs(ids)
    retried = [str(r.identifier) for r in result]
    skipped = [str(r.identifier) for r in result.skipped]
    done = set(retried) | set(skipped)
    return {
        "retried": retried,
        "skipped": skipped,
        "unchanged": [str(i) for i in ids if str(i) not in done],
    }


@_bulk_command(
    "cancel",
    """Cancel jobs that have not finished: the IDs given, or every job the filter matches (up
    to --limit). Asks first unless --yes.

    A cancelled job ends failed with meta.cancelled = true; a running one is interrupted on its
    worker. Finished jobs are left unchanged. --reason is stored with the job (with who
    cancelled it: user@host) and shown by `job show`.
    """,
    options=[
        click.option(
            "--reason",
            default=None,
            metavar="TEXT",
            help="Why the jobs are cancelled; stored with each job (meta.cancel_reason).",
        )
    ],
)
async def _cancel(chancy: Chancy, ids: list[uuid.UUID], reason: str | None) -> dict[str, Any]:
    cancelled: list[str] = []
    unchanged: list[str] = []
    for job_id in ids:
        done = await chancy.cancel_job(job_id, reason)
        (cancelled if done else unchanged).append(str(job_id))
    return {"cancelled": cancelled, "unchanged": unchanged}


@_bulk_command(
    "purge",
    """Delete jobs, whatever their state: the IDs given, or every job the filter matches (up to
    --limit). Asks first unless --yes. This cannot be undone.
    """,
)
async def _purge(chancy: Chancy, ids: list[uuid.UUID]) -> dict[str, Any]:
    return {"purged": await chancy.purge_jobs(ids)}
