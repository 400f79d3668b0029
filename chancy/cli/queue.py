"""``chancy queue``: declare, list, pause, resume and delete queues; push jobs."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import click

from chancy.cli.context import CliContext, pass_cli
from chancy.cli.output import confirm, format_table, yes_option
from chancy.cli.queue_table import QUEUE_HEADERS, parse_weights, queue_row
from chancy.errors import ConfigurationError
from chancy.queue import (
    EXECUTORS,
    MAX_LIMIT,
    MAX_POLLING_INTERVAL,
    MAX_WINDOW,
    MIN_POLLING_INTERVAL,
)

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.queue import Queue


def _json_object(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise click.BadParameter("must be a JSON object, such as '{\"a\": 1}'")
    return data


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    # click's FloatRange lets NaN through (every comparison with NaN is false).
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"must be a finite number, got {value}")
    return value


def _split_commas(values: Iterable[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


@click.group()
def queue() -> None:
    """Declare, list and delete queues; push jobs."""


@queue.command()
@click.argument("func")
@click.option(
    "--kwargs",
    "-k",
    callback=_json_object,
    metavar="JSON",
    help="Keyword arguments for the function, as a JSON object.",
)
@click.option(
    "--queue", "-q", "queue_name", default="default", show_default=True, help="Queue name."
)
@click.option(
    "--priority",
    "-p",
    type=click.IntRange(-(2**31), 2**31 - 1),
    default=0,
    show_default=True,
    help="Higher runs first.",
)
@click.option(
    "--max-attempts",
    "-m",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Total tries before the job fails.",
)
@click.option(
    "--unique-key", "-u", default=None, help="Skip the push while a job with this key lives."
)
@click.option(
    "--partition-key",
    default=None,
    help="Group the job for its queue's per-key limits (for example a customer id).",
)
@pass_cli
def push(
    cli: CliContext,
    func: str,
    kwargs: dict[str, Any] | None,
    queue_name: str,
    priority: int,
    max_attempts: int,
    unique_key: str | None,
    partition_key: str | None,
) -> None:
    """Push a job running FUNC (an import path such as 'myapp.jobs.send_email'); print its id."""
    from chancy.job import Job

    async def body(chancy: Chancy) -> None:
        job = Job(
            func=func,
            queue=queue_name,
            kwargs=kwargs or {},
            priority=priority,
            max_attempts=max_attempts,
            unique_key=unique_key,
            partition_key=partition_key,
        )
        ref = await chancy.push(job)
        click.echo(str(ref))

    cli.run(body)


@queue.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@pass_cli
def list_queues(cli: CliContext, as_json: bool) -> None:
    """List every queue and its settings."""

    async def body(chancy: Chancy) -> None:
        queues = sorted(await chancy.get_all_queues(), key=lambda q: q.name)
        if as_json:
            click.echo(json.dumps([q.pack() for q in queues], indent=2))
            return
        if not queues:
            click.echo(f"no queues (prefix {chancy.prefix!r})")
            return
        click.echo(format_table(QUEUE_HEADERS, [queue_row(q) for q in queues]))

    cli.run(body)


class ConcurrencyType(click.ParamType):
    """A positive number of slots, or ``default`` for the executor's own choice (None)."""

    name = "concurrency"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or isinstance(value, int):
            return value
        text = str(value).strip().lower()
        if text in ("default", "none"):
            return None
        try:
            number = int(text)
        except ValueError:
            self.fail(f"{value!r} is neither a whole number nor 'default'", param, ctx)
        if number < 1:
            self.fail(f"{number} is not at least 1 (use 'default' for the executor's)", param, ctx)
        return number


def split_regexes(values: Iterable[str]) -> list[str]:
    """Split tag regexes on commas, except commas inside ``{}``, ``[]`` or ``()``.

    So ``-t 'gpu{1,2}'`` stays one regex (Chancy 0.26 took each ``-t`` whole) while
    ``--tags a,b`` still gives two.
    """
    out: list[str] = []
    for value in values:
        depth, current = 0, list[str]()
        for char in value:
            if char in "{[(":
                depth += 1
            elif char in "}])" and depth:
                depth -= 1
            if char == "," and depth == 0:
                out.append("".join(current))
                current = []
            else:
                current.append(char)
        out.append("".join(current))
    return [part.strip() for part in out if part.strip()]


def _executor_path(value: str) -> str:
    if value in EXECUTORS:
        return EXECUTORS[value]
    if "." not in value:
        choices = ", ".join(EXECUTORS)
        raise click.BadParameter(f"{value!r} is neither one of {choices} nor an import path")
    return value


@queue.command()
@click.argument("name")
@click.option(
    "--concurrency",
    "-c",
    type=ConcurrencyType(),
    default="1",
    show_default=True,
    metavar="N|default",
    help="Jobs run at once per worker ('default': the executor's own choice).",
)
@click.option(
    "--executor",
    "-e",
    default="process",
    show_default=True,
    help=f"One of {', '.join(EXECUTORS)}, or the import path of an Executor subclass.",
)
@click.option(
    "--executor-options",
    callback=_json_object,
    metavar="JSON",
    help="Options for the executor, as a JSON object (e.g. '{\"time_limit\": 60}').",
)
@click.option(
    "--polling-interval",
    "-p",
    type=click.FloatRange(MIN_POLLING_INTERVAL, MAX_POLLING_INTERVAL),
    callback=_finite,
    default=5,
    show_default=True,
    help="Seconds between polls when no notification arrives.",
)
@click.option(
    "--tags",
    "-t",
    multiple=True,
    metavar="REGEX[,REGEX...]",
    help="Only workers with a tag matching one of these regexes serve the queue. [default: .*]",
)
@click.option(
    "--rate-limit",
    "-r",
    type=click.IntRange(1, MAX_LIMIT),
    default=None,
    help="At most this many jobs per window, across all workers (needs --rate-limit-window).",
)
@click.option(
    "--rate-limit-window",
    "-w",
    type=click.IntRange(1, MAX_WINDOW),
    default=None,
    help="The rate limit's window, in seconds.",
)
@click.option(
    "--global-concurrency",
    type=click.IntRange(1, MAX_LIMIT),
    default=None,
    help="At most this many of the queue's jobs running at once, across all workers.",
)
@click.option(
    "--partition-concurrency",
    type=click.IntRange(1, MAX_LIMIT),
    default=None,
    help="At most this many jobs of one partition key running at once, across all workers.",
)
@click.option(
    "--partition-rate-limit",
    type=click.IntRange(1, MAX_LIMIT),
    default=None,
    help="At most this many jobs of one partition key per window (needs"
    " --partition-rate-limit-window).",
)
@click.option(
    "--partition-rate-limit-window",
    type=click.IntRange(1, MAX_WINDOW),
    default=None,
    help="The per-key rate limit's window, in seconds.",
)
@click.option(
    "--fairness",
    is_flag=True,
    help="Serve the partition keys with waiting work in turn, in proportion to their weights.",
)
@click.option(
    "--weight",
    "weights",
    multiple=True,
    metavar="KEY=N",
    help="A partition key's weight on a fair queue (repeatable; '*=N' for unlisted keys).",
)
@click.option(
    "--ordered",
    is_flag=True,
    help="Run the jobs of one partition key one at a time, in push order.",
)
@click.option(
    "--on-failure",
    type=click.Choice(["continue", "hold"]),
    default="continue",
    show_default=True,
    help="On an ordered queue, what a job's final failure does to the rest of its key.",
)
@click.option(
    "--default-deadline",
    type=float,
    default=None,
    help="Jobs pushed without a deadline must start within this many seconds of being due.",
)
@click.option("--eager-polling", is_flag=True, help="Claim again as soon as one slot frees.")
@click.option(
    "--upsert", is_flag=True, help="Overwrite the settings of an existing queue of that name."
)
@pass_cli
def declare(
    cli: CliContext,
    name: str,
    concurrency: int | None,
    executor: str,
    executor_options: dict[str, Any] | None,
    polling_interval: float,
    tags: tuple[str, ...],
    rate_limit: int | None,
    rate_limit_window: int | None,
    global_concurrency: int | None,
    partition_concurrency: int | None,
    partition_rate_limit: int | None,
    partition_rate_limit_window: int | None,
    fairness: bool,
    weights: tuple[str, ...],
    ordered: bool,
    on_failure: str,
    default_deadline: float | None,
    eager_polling: bool,
    upsert: bool,
) -> None:
    """Create queue NAME (or, with --upsert, change its settings)."""
    from chancy.queue import Queue

    executor = _executor_path(executor)
    if (rate_limit is None) != (rate_limit_window is None):
        raise click.UsageError("--rate-limit and --rate-limit-window go together; give both")
    if (partition_rate_limit is None) != (partition_rate_limit_window is None):
        raise click.UsageError(
            "--partition-rate-limit and --partition-rate-limit-window go together; give both"
        )

    try:
        wanted = Queue(
            name,
            concurrency=concurrency,
            tags=set(split_regexes(tags)) or {".*"},
            executor=executor,
            executor_options=executor_options or {},
            polling_interval=int(polling_interval)
            if float(polling_interval).is_integer()
            else polling_interval,
            rate_limit=rate_limit,
            rate_limit_window=rate_limit_window,
            global_concurrency=global_concurrency,
            partition_concurrency=partition_concurrency,
            partition_rate_limit=partition_rate_limit,
            partition_rate_limit_window=partition_rate_limit_window,
            fairness=fairness,
            partition_weights=parse_weights(weights),
            partition_ordered=ordered,
            partition_on_failure=on_failure,
            default_deadline=(
                int(default_deadline)
                if default_deadline is not None and default_deadline.is_integer()
                else default_deadline
            ),
            eager_polling=eager_polling,
        )
    except ConfigurationError as exc:
        # Checked before connecting: nothing is stored.
        raise click.UsageError(str(exc)) from None

    async def body(chancy: Chancy) -> None:
        stored = await chancy.declare(wanted, upsert=upsert)
        if not upsert and _settings(stored) != _settings(wanted):
            click.echo(
                f"queue {name!r} already exists with other settings; they were kept"
                " (use --upsert to overwrite them)",
                err=True,
            )
        click.echo(format_table(QUEUE_HEADERS, [queue_row(stored)]))

    cli.run(body)


def _settings(q: Queue) -> dict[str, Any]:
    packed = q.pack()
    # State is operational, not a setting `declare` is asked to change.
    for key in ("state", "resume_at"):
        packed.pop(key, None)
    return packed


@queue.command()
@click.argument("name")
@click.option("--keep-jobs", is_flag=True, help="Leave the queue's jobs in the database (not run).")
@yes_option
@pass_cli
def delete(cli: CliContext, name: str, keep_jobs: bool, yes: bool) -> None:
    """Delete queue NAME and, unless --keep-jobs, its jobs (asks first unless --yes)."""

    async def body(chancy: Chancy) -> bool:
        await _existing(chancy.get_queue(name), name)
        what = " (keeping its jobs)" if keep_jobs else " and all its jobs"
        confirm(f"delete queue {name!r}{what}", yes=yes)
        return await chancy.delete_queue(name, purge_jobs=not keep_jobs)

    if not cli.run(body):
        raise click.ClickException(f"no queue named {name!r}")
    click.echo(f"deleted queue {name!r}" + (" (its jobs were kept)" if keep_jobs else ""))


@queue.command()
@click.argument("name")
@click.option(
    "--resume-in",
    type=click.FloatRange(min=0, max=366 * 86400, min_open=True),
    callback=_finite,
    default=None,
    metavar="SECONDS",
    help="Resume the queue by itself after this many seconds.",
)
@yes_option
@pass_cli
def pause(cli: CliContext, name: str, resume_in: float | None, yes: bool) -> None:
    """Stop workers from starting jobs of queue NAME (running jobs finish; asks first)."""

    async def body(chancy: Chancy) -> Queue:
        await _existing(chancy.get_queue(name), name)
        confirm(f"pause queue {name!r}", yes=yes)
        when = None if resume_in is None else timedelta(seconds=resume_in)
        return await _existing(chancy.pause_queue(name, resume_at=when), name)

    stored = cli.run(body)
    until = f" until {stored.resume_at.isoformat()}" if stored.resume_at else ""
    click.echo(f"paused queue {name!r}{until}")


@queue.command()
@click.argument("name")
@yes_option
@pass_cli
def resume(cli: CliContext, name: str, yes: bool) -> None:
    """Let workers start jobs of queue NAME again (asks first unless --yes)."""

    async def body(chancy: Chancy) -> Queue:
        await _existing(chancy.get_queue(name), name)
        confirm(f"resume queue {name!r}", yes=yes)
        return await _existing(chancy.resume_queue(name), name)

    cli.run(body)
    click.echo(f"resumed queue {name!r}")


async def _existing(awaitable: Any, name: str) -> Any:
    try:
        return await awaitable
    except KeyError:
        raise click.ClickException(f"no queue named {name!r}") from None
