"""``chancy worker``: run a worker in the foreground."""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from chancy.cli.context import CliContext, one_line, pass_cli
from chancy.cli.output import echo_json, format_table, json_option
from chancy.cli.queries import db_now

if TYPE_CHECKING:
    from chancy.app import Chancy

log = logging.getLogger("chancy.cli")

#: Exit status of ``worker start`` when the worker stopped on a fatal error.
EXIT_FATAL = 1


@click.group()
def worker() -> None:
    """Run workers."""


@worker.command()
@click.option(
    "--worker-id",
    "-w",
    default=None,
    help="A stable identifier for this worker. [default: a random UUID]",
)
@click.option(
    "--tags",
    "-t",
    multiple=True,
    metavar="TAG[,TAG...]",
    help="Extra tags, matched against each queue's tag regexes to choose the queues served.",
)
@click.option(
    "--shutdown-timeout",
    type=click.FloatRange(min=0),
    default=30,
    show_default=True,
    envvar="CHANCY_SHUTDOWN_TIMEOUT",
    help="Seconds to let running jobs finish after SIGTERM/SIGINT before giving them back to"
    " their queues. [env: CHANCY_SHUTDOWN_TIMEOUT]",
)
@pass_cli
def start(
    cli: CliContext, worker_id: str | None, tags: tuple[str, ...], shutdown_timeout: float
) -> None:
    """Run a worker until SIGTERM or SIGINT (a second signal stops it at once).

    Exits 0 after a graceful stop and 1 when the worker stopped on a fatal error.
    """
    from chancy.worker import Worker

    tag_set = {part.strip() for value in tags for part in value.split(",") if part.strip()}

    async def body(chancy: Chancy) -> BaseException | None:
        instance = Worker(
            chancy, worker_id=worker_id, tags=tag_set, shutdown_timeout=shutdown_timeout
        )
        async with instance:
            await instance.wait_for_shutdown()
        return instance.fatal_error

    fatal = cli.run(body)
    if fatal is not None:
        click.echo(
            one_line(
                f"Error: the worker stopped on a fatal error: {type(fatal).__name__}: {fatal}"
            ),
            err=True,
        )
        sys.exit(EXIT_FATAL)


WORKER_HEADERS = ("WORKER_ID", "HOST", "PID", "LEADER", "HEARTBEAT", "STATUS", "QUEUES")


def worker_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    """One worker as ``worker list --json`` prints it (keys documented in docs/cli.md)."""
    return {
        "worker_id": row["worker_id"],
        "hostname": row.get("hostname"),
        "pid": row.get("pid"),
        "version": row.get("version"),
        "is_leader": bool(row.get("is_leader")),
        "queues": sorted(row.get("queues") or []),
        "tags": sorted(row.get("tags") or []),
        "started_at": row.get("started_at"),
        "last_seen": row.get("last_seen"),
        "expires_at": row.get("expires_at"),
    }


def _ago(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "-"
    seconds = max(0, int((now - value).total_seconds()))
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


@worker.command("list")
@json_option
@pass_cli
def list_workers(cli: CliContext, as_json: bool) -> None:
    """List the workers that have sent a heartbeat: host, pid, queues, leader, last heartbeat.

    STATUS is 'alive' while the worker's heartbeat lease runs by the database's clock, and
    'expired' after it: the leader then recovers the jobs it was running.
    """

    async def body(chancy: Chancy) -> tuple[list[dict[str, Any]], datetime]:
        workers = [worker_dict(row) for row in await chancy.get_all_workers()]
        return workers, await db_now(chancy)

    workers, now = cli.run(body)
    if as_json:
        echo_json(workers)
        return
    if not workers:
        click.echo("no workers")
        return
    rows = [
        [
            w["worker_id"],
            w["hostname"] or "-",
            "-" if w["pid"] is None else str(w["pid"]),
            "yes" if w["is_leader"] else "no",
            _ago(w["last_seen"], now),
            "alive" if w["expires_at"] is not None and w["expires_at"] > now else "expired",
            ",".join(w["queues"]) or "-",
        ]
        for w in workers
    ]
    click.echo(format_table(WORKER_HEADERS, rows))


@worker.command(context_settings={"help_option_names": ["--help"]})
@click.option(
    "--host",
    "-h",
    default=None,
    help="Address to listen on. [default: the app's Api, or 127.0.0.1]",
)
@click.option(
    "--port",
    "-p",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port to listen on. [default: the app's Api, or 8000]",
)
@click.option(
    "--debug",
    "-d",
    is_flag=True,
    help="Debug mode: DEBUG logging for chancy in this process, and the Api's own debug mode"
    " when it has one. Failed requests are logged with their tracebacks either way.",
)
@click.option(
    "--allow-origin",
    "-o",
    "allow_origins",
    multiple=True,
    metavar="ORIGIN",
    help="An origin (e.g. https://ops.example.com, or * for any) whose pages may call the API"
    " from a browser (CORS); repeat for several. [default: the app's Api, or none]",
)
@click.option(
    "--metrics-token",
    envvar="CHANCY_METRICS_TOKEN",
    default=None,
    help="A fixed bearer token (16+ characters) that opens /metrics to Prometheus."
    " [env: CHANCY_METRICS_TOKEN]",
)
@pass_cli
def web(
    cli: CliContext,
    host: str | None,
    port: int | None,
    debug: bool,
    allow_origins: tuple[str, ...],
    metrics_token: str | None,
) -> None:
    """Serve the dashboard only (no jobs run) until SIGTERM or SIGINT.

    Uses the app's Api plugin settings when it has one (options given here override them);
    otherwise creates an 'admin' user with a random password and prints it. `-h` is --host,
    as in Chancy 0.26: use --help for this text.
    """
    from chancy.plugins.api.plugin import serve_dashboard

    if debug:
        logging.getLogger("chancy").setLevel(logging.DEBUG)

    def body(chancy: Chancy) -> Any:
        _configure_api(chancy, debug=debug, allow_origins=allow_origins)
        return serve_dashboard(
            chancy, host=host, port=port, echo=click.echo, metrics_token=metrics_token
        )

    cli.run(body)


def _accepts(func: Any, name: str) -> bool:
    try:
        return name in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


def _configure_api(chancy: Chancy, *, debug: bool, allow_origins: tuple[str, ...]) -> None:
    """Apply --allow-origin and --debug to the Api plugin the dashboard will serve.

    The app's own Api keeps its settings unless an option is given; without one an Api is
    added to this process's app (only for this command) so the options have somewhere to go.
    ``debug`` reaches the Api only where it takes that option (as Chancy 0.26's did: Starlette's
    debug mode); otherwise --debug is the DEBUG logging set up by the caller.
    """
    try:
        from chancy.plugins.api import Api
        from chancy.plugins.api.app import Dashboard, build_starlette_app
    except ImportError as exc:
        raise click.ClickException(
            f"the dashboard needs the web extra: pip install 'chancy[web]' ({exc})"
        ) from exc

    api = chancy.plugins.get(Api.get_identifier())
    if not isinstance(api, Api):
        if not debug and not allow_origins:
            return  # serve_dashboard makes its default Api
        api = Api()
        chancy.plugins[Api.get_identifier()] = api
    if allow_origins:
        api.allow_origins = list(allow_origins)
    if debug:
        if hasattr(api, "debug") or _accepts(Api, "debug"):
            api.debug = True  # type: ignore[attr-defined]
        elif _accepts(build_starlette_app, "debug") or _accepts(Dashboard, "debug"):
            api.options = {**api.options, "debug": True}
        else:
            log.info(
                "--debug: this dashboard has no debug mode of its own; chancy logs at DEBUG and"
                " every failed request is logged here with its traceback (never sent to the"
                " browser)"
            )
