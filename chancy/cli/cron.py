"""``chancy cron``: list, pause, resume and fire cron schedules.

These use the Cron plugin's class methods, which need only the ``{prefix}cron`` table (the
plugin migrated once), not ``Cron()`` among this command's plugins: ``--dsn`` and ``--prefix``
are enough. "Run" pushes the schedule's job now, as the dashboard's "run now" does; the
schedule itself is unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from chancy.cli.context import CliContext, pass_cli
from chancy.cli.output import confirm, echo_json, format_table, json_option, when, yes_option
from chancy.cli.queries import db_now

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.plugins.cron import CronSchedule

CRON_HEADERS = ("KEY", "CRON", "TIMEZONE", "NEXT_RUN", "LAST_RUN", "PAUSED", "FUNC", "QUEUE")


def _cron_class() -> Any:
    try:
        from chancy.plugins.cron import Cron
    except ImportError as exc:
        raise click.ClickException(
            f"the cron commands need the cron extra: pip install 'chancy[cron]' ({exc})"
        ) from exc
    return Cron


def cron_dict(schedule: CronSchedule) -> dict[str, Any]:
    """One schedule as ``cron list --json`` prints it (keys documented in docs/cli.md)."""
    job = schedule["job"]
    return {
        "unique_key": schedule["unique_key"],
        "cron": schedule["cron"],
        "timezone": schedule["timezone"],
        "next_run": schedule["next_run"],
        "last_run": schedule["last_run"],
        "paused": schedule.get("paused_at") is not None,
        "paused_at": schedule.get("paused_at"),
        "job": {
            "func": job.func,
            "queue": job.queue,
            "kwargs": job.kwargs,
            "priority": job.priority,
            "max_attempts": job.max_attempts,
        },
    }


def _unique(ctx: click.Context, param: click.Parameter, keys: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(keys))


async def _existing(chancy: Chancy, keys: tuple[str, ...]) -> dict[str, CronSchedule]:
    """The schedules of ``keys``; an unknown key is an error before anything changes."""
    schedules: dict[str, CronSchedule] = await _cron_class().get_schedules(chancy, list(keys))
    missing = [k for k in keys if k not in schedules]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise click.ClickException(
            f"no cron schedule with key {missing[0]!r}{more}; nothing was changed"
            " (see `chancy cron list`)"
        )
    return schedules


def _keys_text(keys: tuple[str, ...]) -> str:
    noun = "schedule" if len(keys) == 1 else f"{len(keys)} schedules"
    return f"cron {noun} " + ", ".join(repr(k) for k in keys)


@click.group()
def cron() -> None:
    """List, pause, resume and run cron schedules (the Cron plugin's)."""


@cron.command("list")
@json_option
@pass_cli
def list_crons(cli: CliContext, as_json: bool) -> None:
    """List every cron schedule: expression, time zone, next and last run, paused or not."""

    async def body(chancy: Chancy) -> list[dict[str, Any]]:
        schedules = await _cron_class().get_schedules(chancy)
        return [cron_dict(schedules[key]) for key in sorted(schedules)]

    schedules = cli.run(body)
    if as_json:
        echo_json(schedules)
        return
    if not schedules:
        click.echo("no cron schedules")
        return
    rows = [
        [
            s["unique_key"],
            s["cron"],
            s["timezone"],
            "-" if s["paused"] else when(s["next_run"]),
            when(s["last_run"]),
            when(s["paused_at"]) if s["paused"] else "no",
            s["job"]["func"],
            s["job"]["queue"],
        ]
        for s in schedules
    ]
    click.echo(format_table(CRON_HEADERS, rows))


@cron.command()
@click.argument("keys", nargs=-1, required=True, metavar="KEY...", callback=_unique)
@yes_option
@json_option
@pass_cli
def pause(cli: CliContext, keys: tuple[str, ...], yes: bool, as_json: bool) -> None:
    """Stop schedules from firing until resumed (asks first unless --yes).

    A pause survives re-deploying the schedules (Cron.schedule keeps it).
    """

    async def body(chancy: Chancy) -> list[str]:
        await _existing(chancy, keys)
        confirm(f"pause {_keys_text(keys)}", yes=yes)
        paused: list[str] = await _cron_class().pause(chancy, *keys)
        return paused

    paused = cli.run(body)
    if as_json:
        echo_json({"paused": paused})
    else:
        click.echo("paused " + ", ".join(repr(k) for k in paused))


@cron.command()
@click.argument("keys", nargs=-1, required=True, metavar="KEY...", callback=_unique)
@yes_option
@json_option
@pass_cli
def resume(cli: CliContext, keys: tuple[str, ...], yes: bool, as_json: bool) -> None:
    """Let paused schedules fire again from their next slot (asks first unless --yes).

    Slots missed while paused are not fired. Keys that were not paused are left as they are.
    """

    async def body(chancy: Chancy) -> dict[str, list[str]]:
        await _existing(chancy, keys)
        confirm(f"resume {_keys_text(keys)}", yes=yes)
        resumed: list[str] = await _cron_class().resume(chancy, *keys)
        return {"resumed": resumed, "unchanged": sorted(set(keys) - set(resumed))}

    report = cli.run(body)
    if as_json:
        echo_json(report)
        return
    parts = []
    if report["resumed"]:
        parts.append("resumed " + ", ".join(repr(k) for k in report["resumed"]))
    if report["unchanged"]:
        parts.append("not paused: " + ", ".join(repr(k) for k in report["unchanged"]))
    click.echo("; ".join(parts))


@cron.command()
@click.argument("keys", nargs=-1, required=True, metavar="KEY...", callback=_unique)
@yes_option
@json_option
@pass_cli
def run(cli: CliContext, keys: tuple[str, ...], yes: bool, as_json: bool) -> None:
    """Push each schedule's job now (asks first unless --yes); its schedule is unchanged.

    The job carries the schedule's unique key, so while an earlier run is still pending or
    running you get that job's id back instead of a second run (as when the schedule fires).
    """

    async def body(chancy: Chancy) -> list[dict[str, Any]]:
        schedules = await _existing(chancy, keys)
        confirm(f"run {_keys_text(keys)} now", yes=yes)
        pushed = []
        for key in keys:
            before = await db_now(chancy)
            ref = await chancy.push(schedules[key]["job"])
            job = await chancy.get_job(ref)
            # A push's created_at is its transaction's now(), later than `before` unless the
            # unique key returned a job that already existed.
            existing = job is not None and job.created_at is not None and job.created_at < before
            pushed.append({"unique_key": key, "job_id": str(ref.identifier), "existing": existing})
        return pushed

    pushed = cli.run(body)
    if as_json:
        echo_json(pushed)
        return
    for item in pushed:
        note = " (an earlier run is still pending or running: no second run)"
        click.echo(f"{item['unique_key']}: job {item['job_id']}{note if item['existing'] else ''}")
