"""The ``chancy`` command line: migrations, queues, workers, triggers and a shell.

    chancy [--app/-a module.attr] [--dsn DSN] [--prefix P] [--log-level L] COMMAND ...

``--app`` names a ``Chancy`` instance (``module.attr`` or ``module:attr``, or a callable
returning one), so the command uses the app's own DSN, prefix and plugins. Without it the app
is built from ``--dsn``, else ``$CHANCY_DSN``, else the embedded PostgreSQL server.
"""

from __future__ import annotations

import click

from chancy.cli.context import CliContext, configure_logging
from chancy.cli.cron import cron
from chancy.cli.job import job
from chancy.cli.misc import misc
from chancy.cli.queue import queue
from chancy.cli.trigger import trigger
from chancy.cli.worker import worker
from chancy.cli.workflow import workflow

__all__ = ["main"]

LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--app",
    "-a",
    "app_path",
    envvar="CHANCY_APP",
    metavar="MODULE.ATTR",
    help="Import path of the Chancy instance to use (or of a callable returning one)."
    " [env: CHANCY_APP]",
)
@click.option(
    "--dsn",
    envvar="CHANCY_DSN",
    metavar="DSN",
    help="PostgreSQL connection string, used when --app is not given; without either, an"
    " embedded PostgreSQL server is started. [env: CHANCY_DSN]",
)
@click.option(
    "--prefix",
    envvar="CHANCY_PREFIX",
    metavar="PREFIX",
    help="Table prefix, used when --app is not given. [default: chancy_; env: CHANCY_PREFIX]",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Log records of this level and above go to stderr.",
)
@click.version_option(package_name="chancy", prog_name="chancy")
@click.pass_context
def main(
    ctx: click.Context,
    app_path: str | None,
    dsn: str | None,
    prefix: str | None,
    log_level: str,
) -> None:
    """chancy: a job queue for Python on PostgreSQL alone."""
    configure_logging(log_level)
    if app_path:
        source = ctx.get_parameter_source
        given = [
            f"--{name}"
            for name in ("dsn", "prefix")
            if source(name) is click.core.ParameterSource.COMMANDLINE
        ]
        if given:
            raise click.UsageError(
                f"{' and '.join(given)} cannot be combined with --app: the app carries its own"
                " DSN and prefix"
            )
        # From the environment they are only defaults; the app's own settings win.
        dsn = prefix = None
    state = CliContext(app_path=app_path, dsn=dsn, prefix=prefix)
    ctx.obj = state
    ctx.call_on_close(state.close)


main.add_command(cron)
main.add_command(job)
main.add_command(misc)
main.add_command(queue)
main.add_command(trigger)
main.add_command(worker)
main.add_command(workflow)
