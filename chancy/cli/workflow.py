"""``chancy workflow``: list workflows and show one's steps and their states.

Reads go through the WorkflowPlugin's class methods (``fetch_workflow``, ``fetch_workflows``),
so they need only its tables, which a default app migrates.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import click

from chancy.cli.context import CliContext, pass_cli
from chancy.cli.output import echo_json, format_table, json_option, when

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.plugins.workflow import Workflow

WORKFLOW_STATES = ("pending", "running", "completed", "failed")
LIST_HEADERS = ("ID", "NAME", "STATE", "STEPS", "CREATED", "UPDATED")
STEP_HEADERS = ("STEP", "STATE", "FUNC", "QUEUE", "DEPENDS_ON", "JOB_ID")


def _plugin() -> Any:
    from chancy.plugins.workflow import WorkflowPlugin

    return WorkflowPlugin


def _ordered(wf: Workflow) -> list[str]:
    """Step ids with every step after the steps it depends on (ties keep the stored order)."""
    remaining = dict.fromkeys(wf.steps)
    done: list[str] = []
    while remaining:
        ready = [
            s
            for s in remaining
            if all(d in done or d not in wf.steps for d in wf.steps[s].dependencies)
        ]
        if not ready:  # a cycle cannot be pushed, but never loop on a hand-edited row
            ready = list(remaining)
        for step_id in ready:
            done.append(step_id)
            del remaining[step_id]
    return done


def _step_state(step: Any) -> str | None:
    return None if step.state is None else str(step.state)


def workflow_summary(wf: Workflow) -> dict[str, Any]:
    """One workflow as ``workflow list --json`` prints it (keys documented in docs/cli.md)."""
    counts: dict[str, int] = {}
    for step in wf.steps.values():
        key = _step_state(step) or "waiting"
        counts[key] = counts.get(key, 0) + 1
    return {
        "id": str(wf.id),
        "name": wf.name,
        "state": str(wf.state),
        "created_at": wf.created_at,
        "updated_at": wf.updated_at,
        "step_count": len(wf.steps),
        "steps_by_state": dict(sorted(counts.items())),
    }


def workflow_detail(wf: Workflow) -> dict[str, Any]:
    """One workflow as ``workflow show --json`` prints it (keys documented in docs/cli.md)."""
    data = workflow_summary(wf)
    data["steps"] = [
        {
            "step_id": step_id,
            "state": _step_state(wf.steps[step_id]),
            "func": wf.steps[step_id].job.func,
            "queue": wf.steps[step_id].job.queue,
            "dependencies": list(wf.steps[step_id].dependencies),
            "job_id": None if wf.steps[step_id].job_id is None else str(wf.steps[step_id].job_id),
        }
        for step_id in _ordered(wf)
    ]
    return data


@click.group()
def workflow() -> None:
    """List workflows and show their steps."""


@workflow.command("list")
@click.option(
    "--state",
    "-s",
    "states",
    multiple=True,
    type=click.Choice(WORKFLOW_STATES),
    help="Only workflows in this state (repeat for several).",
)
@click.option("--name", default=None, help="Only workflows with exactly this name.")
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(1, 10_000),
    default=50,
    show_default=True,
    help="Show at most this many workflows (newest first).",
)
@json_option
@pass_cli
def list_workflows(
    cli: CliContext, states: tuple[str, ...], name: str | None, limit: int, as_json: bool
) -> None:
    """List workflows, newest first, with how many of their steps are in each state."""

    async def body(chancy: Chancy) -> list[dict[str, Any]]:
        found = await _plugin().fetch_workflows(
            chancy, states=list(states) or None, name=name, limit=limit
        )
        return [workflow_summary(wf) for wf in found]

    workflows = cli.run(body)
    if as_json:
        echo_json(workflows)
        return
    if not workflows:
        click.echo("no workflows")
        return
    rows = [
        [
            w["id"],
            w["name"],
            w["state"],
            f"{w['steps_by_state'].get('succeeded', 0)}/{w['step_count']}",
            when(w["created_at"]),
            when(w["updated_at"]),
        ]
        for w in workflows
    ]
    click.echo(format_table(LIST_HEADERS, rows))


@workflow.command()
@click.argument("workflow_id", metavar="ID")
@json_option
@pass_cli
def show(cli: CliContext, workflow_id: str, as_json: bool) -> None:
    """Show one workflow: its state and each step's state, function and dependencies.

    A step's state is empty ('waiting' in the table) until the leader queues its job.
    """
    try:
        wanted = uuid.UUID(workflow_id.strip())
    except ValueError:
        raise click.BadParameter(
            f"{workflow_id!r} is not a workflow id (a UUID; see `chancy workflow list`)",
            param_hint="'ID'",
        ) from None

    async def body(chancy: Chancy) -> Workflow | None:
        found: Workflow | None = await _plugin().fetch_workflow(chancy, wanted)
        return found

    found = cli.run(body)
    if found is None:
        raise click.ClickException(f"no workflow {wanted} (of prefix {cli.chancy().prefix!r})")
    data = workflow_detail(found)
    if as_json:
        echo_json(data)
        return
    click.echo(f"workflow  {data['id']}")
    click.echo(f"name      {data['name']}")
    click.echo(f"state     {data['state']}")
    click.echo(f"created   {when(data['created_at'])}")
    click.echo(f"updated   {when(data['updated_at'])}")
    click.echo("")
    rows = [
        [
            s["step_id"],
            s["state"] or "waiting",
            s["func"],
            s["queue"],
            ",".join(s["dependencies"]) or "-",
            s["job_id"] or "-",
        ]
        for s in data["steps"]
    ]
    click.echo(format_table(STEP_HEADERS, rows))
