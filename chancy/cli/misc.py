"""``chancy misc``: schema migrations and an interactive shell."""

from __future__ import annotations

import ast
import asyncio
import code
import concurrent.futures
import contextlib
import inspect
import sys
import threading
import types
from typing import TYPE_CHECKING, Any

import click

from chancy.cli.context import CliContext, pass_cli

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.plugin import Plugin


@click.group()
def misc() -> None:
    """Migrations and other maintenance."""


async def _versions(chancy: Chancy) -> dict[str, int]:
    from psycopg.rows import dict_row

    from chancy.migrate import current_versions

    pool = await chancy.open()
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        return await current_versions(cur, chancy.prefix)


def _describe(chancy: Chancy, versions: dict[str, int]) -> str:
    lines = [f"  {m.key}: version {versions.get(m.key, 0)} of {m.head}" for m in chancy.migrators()]
    return "\n".join(lines)


@misc.command()
@click.option(
    "--to-version",
    "-t",
    type=click.IntRange(min=0),
    default=None,
    help="Migrate the core schema (or, with --plugin, that plugin's line) up or down to this"
    " version (0 removes its tables). [default: the latest]",
)
@click.option(
    "--plugin",
    "-p",
    "plugin_name",
    default=None,
    metavar="NAME",
    help="Migrate only this plugin's migration line: its class name as Chancy 0.26 took it"
    " (e.g. Cron, any case), its identifier (chancy.cron) or its line's key (cron).",
)
@pass_cli
def migrate(cli: CliContext, to_version: int | None, plugin_name: str | None) -> None:
    """Bring the database schema up to date (or to --to-version)."""

    async def body(chancy: Chancy) -> None:
        if plugin_name is not None:
            await _migrate_plugin(chancy, _find_plugin(chancy, plugin_name, cli), to_version)
            return
        await chancy.migrate(to_version=to_version)
        versions = await _versions(chancy)
        if to_version == 0:
            click.echo(f"removed the chancy schema of prefix {chancy.prefix!r}")
            return
        click.echo(f"schema of prefix {chancy.prefix!r}:\n{_describe(chancy, versions)}")

    cli.run(body)


def _find_plugin(chancy: Chancy, name: str, cli: CliContext) -> Plugin:
    """The app's plugin called ``name``: by class name (as 0.26), identifier or line key."""
    wanted = name.strip().lower()
    found: list[Plugin] = []
    for plugin in chancy.plugins.values():
        names = {type(plugin).__name__, plugin.get_identifier(), plugin.migrate_key() or ""}
        if wanted in {n.lower() for n in names if n} and plugin not in found:
            found.append(plugin)
    if len(found) > 1:
        listed = ", ".join(type(p).__name__ for p in found)
        raise click.ClickException(
            f"{len(found)} plugins match {name!r} ({listed}); give the identifier of one"
        )
    if not found:
        known = ", ".join(sorted(type(p).__name__ for p in chancy.plugins.values())) or "none"
        hint = (
            ""
            if cli.app_path
            else " (without --app the app has only the default plugins: pass --app to use yours)"
        )
        raise click.ClickException(f"no plugin {name!r} in the app; its plugins: {known}{hint}")
    return found[0]


async def _migrate_plugin(chancy: Chancy, plugin: Plugin, to_version: int | None) -> None:
    """Move one plugin's migration line with the plugin's own ``migrate``, as 0.26 did.

    A plugin written for 0.26 may override ``migrator``/``migrate``; calling them keeps that.
    The line runs in its own transaction under the installation's migration lock.
    """
    label = type(plugin).__name__
    migrator = plugin.migrator(chancy)
    if migrator is None:
        click.echo(f"plugin {label} has no migrations; nothing to do")
        return
    await plugin.migrate(chancy, to_version=to_version)
    versions = await _versions(chancy)
    click.echo(
        f"plugin {label} (line {migrator.key!r}) of prefix {chancy.prefix!r}: version"
        f" {versions.get(migrator.key, 0)} of {migrator.head}"
    )


@misc.command("check-migrations")
@pass_cli
def check_migrations(cli: CliContext) -> None:
    """Exit with status 1 when the database schema needs migrating."""

    async def body(chancy: Chancy) -> bool:
        versions = await _versions(chancy)
        behind = [m for m in chancy.migrators() if versions.get(m.key, 0) < m.head]
        if behind:
            click.echo(
                f"the schema of prefix {chancy.prefix!r} needs migrating"
                f" (run `chancy misc migrate`):\n{_describe(chancy, versions)}",
                err=True,
            )
            return False
        click.echo(f"the schema of prefix {chancy.prefix!r} is up to date")
        return True

    if not cli.run(body):
        sys.exit(1)


# -- shell ------------------------------------------------------------------------------


class _AsyncConsole(code.InteractiveConsole):
    """A console that accepts top-level ``await``, run on an event loop in another thread.

    The loop lives for the whole session, so the app's async pool is opened once and reused.
    """

    def __init__(self, local: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(local)
        self.loop = loop
        self.compile.compiler.flags |= ast.PyCF_ALLOW_TOP_LEVEL_AWAIT

    def runcode(self, codeobj: types.CodeType) -> None:
        try:
            result = types.FunctionType(codeobj, self.locals)()
            if inspect.iscoroutine(result):
                future = asyncio.run_coroutine_threadsafe(result, self.loop)
                try:
                    future.result()
                except KeyboardInterrupt:
                    future.cancel()
                    raise
        except SystemExit:
            raise
        except (KeyboardInterrupt, concurrent.futures.CancelledError):
            self.write("\nKeyboardInterrupt\n")
        except BaseException:
            self.showtraceback()


@misc.command()
@pass_cli
def shell(cli: CliContext) -> None:
    """An interactive Python shell with the app in scope as `chancy` (top-level await works)."""
    import chancy as package
    from chancy.app import Chancy
    from chancy.worker import Worker

    with contextlib.suppress(ImportError):
        import readline  # noqa: F401 - line editing and history for input()

    app = cli.chancy()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="chancy-shell-loop", daemon=True)
    thread.start()
    namespace: dict[str, Any] = {
        "__name__": "__console__",
        "asyncio": asyncio,
        "chancy": app,
        "Chancy": Chancy,
        "Worker": Worker,
        "Job": package.Job,
        "QueuedJob": package.QueuedJob,
        "Queue": package.Queue,
        "Limit": package.Limit,
        "Reference": package.Reference,
        "job": package.job,
    }
    banner = (
        f"chancy shell on {app!r}\n"
        "In scope: chancy, Chancy, Worker, Queue, Job, QueuedJob, Limit, Reference, job, asyncio.\n"
        "Top-level await works: `await chancy.get_all_queues()`."
    )
    try:
        _AsyncConsole(namespace, loop).interact(banner=banner, exitmsg="")
    finally:
        close = asyncio.run_coroutine_threadsafe(app.close(), loop)
        with contextlib.suppress(Exception):
            close.result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()
