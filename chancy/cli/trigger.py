"""``chancy trigger``: list, add, enable, disable and remove the Trigger plugin's triggers.

The commands need the trigger tables (``Trigger()`` among the app's plugins, migrated), but
not the plugin itself in the app given here: ``--dsn`` and ``--prefix`` are enough.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from chancy.cli.context import CliContext, pass_cli
from chancy.cli.queue import _json_object, _split_commas, format_table

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.plugins.trigger import TriggerConfig

TRIGGER_HEADERS = ("ID", "TABLE", "OPERATIONS", "LEVEL", "JOB", "QUEUE", "ENABLED", "WHEN")


def _row(config: TriggerConfig) -> list[str]:
    return [
        str(config.id),
        f"{config.schema_name}.{config.table_name}",
        ",".join(config.operations),
        config.level,
        config.job_template.func,
        config.job_template.queue,
        "yes" if config.enabled else "no",
        " ".join(config.when.split()) if config.when else "-",
    ]


@click.group()
def trigger() -> None:
    """List, add, enable, disable and remove database triggers that push jobs."""


@trigger.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@pass_cli
def list_triggers(cli: CliContext, as_json: bool) -> None:
    """List every registered trigger, newest first."""
    from chancy.plugins.trigger import Trigger

    async def body(chancy: Chancy) -> None:
        triggers = list((await Trigger.get_triggers(chancy)).values())
        if as_json:
            click.echo(json.dumps([t.to_dict() for t in triggers], indent=2))
            return
        if not triggers:
            click.echo(f"no triggers (prefix {chancy.prefix!r})")
            return
        click.echo(format_table(TRIGGER_HEADERS, [_row(t) for t in triggers]))

    cli.run(body)


@trigger.command()
@click.argument("table")
@click.argument("func")
@click.option(
    "--on",
    "operations",
    multiple=True,
    required=True,
    metavar="OP[,OP...]",
    help="INSERT, UPDATE and/or DELETE (repeat the option or separate with commas).",
)
@click.option("--schema", default="public", show_default=True, help="The table's schema.")
@click.option("--queue", "queue_name", default="default", show_default=True, help="Queue name.")
@click.option(
    "--kwargs",
    callback=_json_object,
    metavar="JSON",
    help="Keyword arguments for the function, as a JSON object.",
)
@click.option(
    "--priority",
    type=click.IntRange(-(2**31), 2**31 - 1),
    default=0,
    show_default=True,
    help="Higher runs first.",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Total tries before a job fails.",
)
@click.option(
    "--level",
    type=click.Choice(["statement", "row"]),
    default="statement",
    show_default=True,
    help="One job per statement, or one per changed row.",
)
@click.option(
    "--when", "condition", default=None, metavar="SQL", help="Row level: the WHEN condition."
)
@click.option(
    "--columns",
    multiple=True,
    metavar="COL[,COL...]",
    help="Row level: the row's columns passed in the job's kwargs. [default: the primary key]",
)
@click.option(
    "--unique-key",
    default=None,
    metavar="TEMPLATE",
    help="The jobs' unique key; at row level {column} is filled from the row.",
)
@click.option("--disabled", is_flag=True, help="Register it without installing it yet.")
@pass_cli
def add(
    cli: CliContext,
    table: str,
    func: str,
    operations: tuple[str, ...],
    schema: str,
    queue_name: str,
    kwargs: dict[str, Any] | None,
    priority: int,
    max_attempts: int,
    level: str,
    condition: str | None,
    columns: tuple[str, ...],
    unique_key: str | None,
    disabled: bool,
) -> None:
    """Add a trigger on TABLE that pushes a job running FUNC; print its id."""
    from chancy.errors import InvalidJobError
    from chancy.job import Job
    from chancy.plugins.trigger import Trigger

    try:
        job = Job(
            func=func,
            queue=queue_name,
            kwargs=kwargs or {},
            priority=priority,
            max_attempts=max_attempts,
        )
    except InvalidJobError as exc:
        raise click.BadParameter(str(exc), param_hint="FUNC") from None

    async def body(chancy: Chancy) -> Any:
        return await Trigger.register_trigger(
            chancy,
            table_name=table,
            schema_name=schema,
            operations=_split_commas(operations),
            job_template=job,
            enabled=not disabled,
            level=level,  # type: ignore[arg-type]
            when=condition,
            kwargs_columns=_split_commas(columns) if columns else None,
            unique_key=unique_key,
        )

    click.echo(str(cli.run(body)))


@trigger.command()
@click.argument("trigger_id")
@pass_cli
def enable(cli: CliContext, trigger_id: str) -> None:
    """Install the database triggers of a disabled trigger again."""
    from chancy.plugins.trigger import Trigger

    async def body(chancy: Chancy) -> bool:
        return await Trigger.enable_trigger(chancy, trigger_id)

    changed = cli.run(body)
    click.echo(f"enabled trigger {trigger_id}" if changed else f"trigger {trigger_id} was enabled")


@trigger.command()
@click.argument("trigger_id")
@pass_cli
def disable(cli: CliContext, trigger_id: str) -> None:
    """Drop a trigger's database triggers, keeping it registered (enable it again later)."""
    from chancy.plugins.trigger import Trigger

    async def body(chancy: Chancy) -> bool:
        return await Trigger.disable_trigger(chancy, trigger_id)

    changed = cli.run(body)
    click.echo(
        f"disabled trigger {trigger_id}" if changed else f"trigger {trigger_id} was disabled"
    )


@trigger.command()
@click.argument("trigger_id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_cli
def remove(cli: CliContext, trigger_id: str, yes: bool) -> None:
    """Remove a trigger for good: its database triggers and its registration."""
    from chancy.plugins.trigger import Trigger

    async def describe(chancy: Chancy) -> TriggerConfig:
        found = await Trigger.get_triggers(chancy, trigger_ids=[trigger_id])
        if not found:
            await Trigger.unregister_trigger(chancy, trigger_id)  # raises "not found"
        return next(iter(found.values()))

    if not yes:
        config = cli.run(describe)
        click.confirm(
            f"Remove trigger {config.id} on {config.schema_name}.{config.table_name}"
            f" ({','.join(config.operations)} -> {config.job_template.func})?",
            abort=True,
        )

    async def body(chancy: Chancy) -> None:
        await Trigger.unregister_trigger(chancy, trigger_id)

    cli.run(body)
    click.echo(f"removed trigger {trigger_id}")
