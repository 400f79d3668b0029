"""``chancy queue``: declare, list, pause, resume and delete queues; push jobs."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import click

from chancy.cli.context import CliContext, pass_cli
from chancy.queue import EXECUTORS

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


def _split_commas(values: Iterable[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _short_executor(path: str) -> str:
    for name, full in EXECUTORS.items():
        if full == path:
            return name
    return path


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


@click.group()
def queue() -> None:
    """Declare, list and delete queues; push jobs."""


@queue.command()
@click.argument("func")
@click.option(
    "--kwargs",
    callback=_json_object,
    metavar="JSON",
    help="Keyword arguments for the function, as a JSON object.",
)
@click.option("--queue", "queue_name", default="default", show_default=True, help="Queue name.")
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
    help="Total tries before the job fails.",
)
@click.option("--unique-key", default=None, help="Skip the push while a job with this key lives.")
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


QUEUE_HEADERS = ("NAME", "STATE", "EXECUTOR", "CONCURRENCY", "POLLING", "TAGS", "LIMITS")


def _limits(q: Queue) -> str:
    """The queue's flow-control limits in one cell without spaces ("-" when it has none).

    ``rate=10/60s,running=4,key-running=1,key-rate=2/10s``: jobs started per window, jobs
    running at once across all workers, and the same two per partition key.
    """
    parts = []
    if q.rate_limit is not None:
        parts.append(f"rate={q.rate_limit}/{q.rate_limit_window}s")
    if q.global_concurrency is not None:
        parts.append(f"running={q.global_concurrency}")
    if q.partition_concurrency is not None:
        parts.append(f"key-running={q.partition_concurrency}")
    if q.partition_rate_limit is not None:
        parts.append(f"key-rate={q.partition_rate_limit}/{q.partition_rate_limit_window}s")
    return ",".join(parts) or "-"


def _queue_row(q: Queue) -> list[str]:
    state = str(q.state)
    if q.resume_at is not None:
        state += f" (until {q.resume_at.isoformat(timespec='seconds')})"
    return [
        q.name,
        state,
        _short_executor(q.executor),
        "default" if q.concurrency is None else str(q.concurrency),
        f"{q.polling_interval:g}s",
        ",".join(sorted(q.tags)),
        _limits(q),
    ]


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
        click.echo(format_table(QUEUE_HEADERS, [_queue_row(q) for q in queues]))

    cli.run(body)


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
    type=click.IntRange(min=1),
    default=None,
    help="Jobs run at once per worker. [default: the executor's]",
)
@click.option(
    "--executor",
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
    type=click.FloatRange(min=0, min_open=True),
    default=5,
    show_default=True,
    help="Seconds between polls when no notification arrives.",
)
@click.option(
    "--tags",
    multiple=True,
    metavar="REGEX[,REGEX...]",
    help="Only workers with a tag matching one of these regexes serve the queue. [default: .*]",
)
@click.option(
    "--rate-limit",
    type=click.IntRange(min=1),
    default=None,
    help="At most this many jobs per window, across all workers (needs --rate-limit-window).",
)
@click.option(
    "--rate-limit-window",
    type=click.IntRange(min=1),
    default=None,
    help="The rate limit's window, in seconds.",
)
@click.option(
    "--global-concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="At most this many of the queue's jobs running at once, across all workers.",
)
@click.option(
    "--partition-concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="At most this many jobs of one partition key running at once, across all workers.",
)
@click.option(
    "--partition-rate-limit",
    type=click.IntRange(min=1),
    default=None,
    help="At most this many jobs of one partition key per window (needs"
    " --partition-rate-limit-window).",
)
@click.option(
    "--partition-rate-limit-window",
    type=click.IntRange(min=1),
    default=None,
    help="The per-key rate limit's window, in seconds.",
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

    async def body(chancy: Chancy) -> None:
        wanted = Queue(
            name,
            concurrency=concurrency,
            tags=set(_split_commas(tags)) or {".*"},
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
            eager_polling=eager_polling,
        )
        stored = await chancy.declare(wanted, upsert=upsert)
        if not upsert and _settings(stored) != _settings(wanted):
            click.echo(
                f"queue {name!r} already exists with other settings; they were kept"
                " (use --upsert to overwrite them)",
                err=True,
            )
        click.echo(format_table(QUEUE_HEADERS, [_queue_row(stored)]))

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
@pass_cli
def delete(cli: CliContext, name: str, keep_jobs: bool) -> None:
    """Delete queue NAME and, unless --keep-jobs, its jobs."""

    async def body(chancy: Chancy) -> bool:
        return await chancy.delete_queue(name, purge_jobs=not keep_jobs)

    if not cli.run(body):
        raise click.ClickException(f"no queue named {name!r}")
    click.echo(f"deleted queue {name!r}" + (" (its jobs were kept)" if keep_jobs else ""))


@queue.command()
@click.argument("name")
@click.option(
    "--resume-in",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Resume the queue by itself after this many seconds.",
)
@pass_cli
def pause(cli: CliContext, name: str, resume_in: float | None) -> None:
    """Stop workers from starting jobs of queue NAME (running jobs finish)."""

    async def body(chancy: Chancy) -> Queue:
        when = None if resume_in is None else timedelta(seconds=resume_in)
        return await _existing(chancy.pause_queue(name, resume_at=when), name)

    stored = cli.run(body)
    until = f" until {stored.resume_at.isoformat()}" if stored.resume_at else ""
    click.echo(f"paused queue {name!r}{until}")


@queue.command()
@click.argument("name")
@pass_cli
def resume(cli: CliContext, name: str) -> None:
    """Let workers start jobs of queue NAME again."""

    async def body(chancy: Chancy) -> Queue:
        return await _existing(chancy.resume_queue(name), name)

    cli.run(body)
    click.echo(f"resumed queue {name!r}")


async def _existing(awaitable: Any, name: str) -> Any:
    try:
        return await awaitable
    except KeyError:
        raise click.ClickException(f"no queue named {name!r}") from None
