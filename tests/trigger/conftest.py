"""Fixtures: an app with the Trigger plugin on a fresh prefix, a table of the test's own, and
small SQL helpers for looking at jobs and installed database triggers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from chancy import Chancy, Queue
from chancy.plugins.trigger import Trigger
from chancy.store import Spec
from tests.conftest import migrated_app

ASYNC = Chancy.Executor.Async


@pytest.fixture
async def app(dsn: str, prefix: str) -> AsyncIterator[Chancy]:
    """A migrated app with Trigger(), queues 'q' and 'events', and a table ``{prefix}users``.

    The table carries the prefix, so the harness drops it with the prefix's other tables.
    """
    async with migrated_app(dsn, prefix, [Trigger()], pool=3) as chancy:
        await chancy.declare(Queue("q", executor=ASYNC, polling_interval=60))
        await chancy.declare(Queue("events", executor=ASYNC, polling_interval=60))
        await sql(
            chancy,
            f"CREATE TABLE {prefix}users (id serial PRIMARY KEY, email text,"
            " active boolean NOT NULL DEFAULT true, visits integer NOT NULL DEFAULT 0)",
        )
        yield chancy


async def sql(app: Chancy, query: str, params: Any = None, fetch: str = "none") -> Any:
    """Run one statement in its own transaction (autocommit) and return what ``fetch`` asks."""
    return await app.db.run(Spec(query, params, fetch))  # type: ignore[arg-type]


async def jobs(app: Chancy, func: str | None = None) -> list[dict[str, Any]]:
    """The jobs of the prefix (of one function when given), oldest first."""
    return await sql(
        app,
        f"SELECT * FROM {app.prefix}jobs WHERE %(f)s::text IS NULL OR func = %(f)s ORDER BY id",
        {"f": func},
        "all",
    )


async def installed(app: Chancy, table: str) -> list[str]:
    """Names of the user-defined database triggers on ``table``."""
    rows = await sql(
        app,
        "SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass(%(t)s) AND NOT tgisinternal"
        " ORDER BY tgname",
        {"t": table},
        "all",
    )
    return [r["tgname"] for r in rows]


async def functions(app: Chancy) -> list[str]:
    """Functions whose names start with the prefix."""
    rows = await sql(
        app,
        "SELECT proname FROM pg_proc WHERE proname LIKE %(p)s ORDER BY proname",
        {"p": app.prefix.replace("_", "\\_") + "%"},
        "all",
    )
    return [r["proname"] for r in rows]


def connect(dsn: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=True)
