"""``chancy worker``: run a worker in the foreground."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from chancy.cli.context import CliContext, one_line, pass_cli

if TYPE_CHECKING:
    from chancy.app import Chancy

#: Exit status of ``worker start`` when the worker stopped on a fatal error.
EXIT_FATAL = 1


@click.group()
def worker() -> None:
    """Run workers."""


@worker.command()
@click.option(
    "--worker-id",
    default=None,
    help="A stable identifier for this worker. [default: a random UUID]",
)
@click.option(
    "--tags",
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


@worker.command()
@click.option(
    "--host", default=None, help="Address to listen on. [default: the app's Api, or 127.0.0.1]"
)
@click.option(
    "--port", type=int, default=None, help="Port to listen on. [default: the app's Api, or 8000]"
)
@click.option(
    "--metrics-token",
    envvar="CHANCY_METRICS_TOKEN",
    default=None,
    help="A fixed bearer token (16+ characters) that opens /metrics to Prometheus."
    " [env: CHANCY_METRICS_TOKEN]",
)
@pass_cli
def web(cli: CliContext, host: str | None, port: int | None, metrics_token: str | None) -> None:
    """Serve the dashboard only (no jobs run) until SIGTERM or SIGINT.

    Uses the app's Api plugin settings when it has one; otherwise creates an 'admin' user
    with a random password and prints it.
    """
    from chancy.plugins.api.plugin import serve_dashboard

    cli.run(
        lambda chancy: serve_dashboard(
            chancy, host=host, port=port, echo=click.echo, metrics_token=metrics_token
        )
    )
