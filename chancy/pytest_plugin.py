"""A pytest plugin for projects that use chancy: each test gets tables of its own.

Enable it in your ``conftest.py``::

    pytest_plugins = ["chancy.pytest_plugin"]

Fixtures:

- ``chancy_dsn``: the database, from ``CHANCY_TEST_DSN`` or ``CHANCY_DSN`` (tests that use it
  are skipped with a message when neither is set);
- ``chancy_prefix``: a table prefix no other test uses (``t<random>_``); every table made
  under it is dropped after the test, so tests can run in parallel on one database;
- ``chancy_app``: a migrated :class:`~chancy.Chancy` on that prefix (no default plugins, a
  pool of two), closed and dropped after the test. Needs an async test (pytest-asyncio or
  anyio).

Use :mod:`chancy.testing` inside the tests to run workers and assert what was pushed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import LiteralString, cast

import psycopg
import pytest
from psycopg import sql

from chancy.app import Chancy
from chancy.store.loader import queries

DSN_ENVS = ("CHANCY_TEST_DSN", "CHANCY_DSN")


@pytest.fixture
def chancy_dsn() -> str:
    for name in DSN_ENVS:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    pytest.skip(f"set {' or '.join(DSN_ENVS)} to a PostgreSQL DSN to run the chancy tests")


@pytest.fixture
def chancy_prefix(chancy_dsn: str) -> Iterator[str]:
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    try:
        yield prefix
    finally:
        drop_tables(chancy_dsn, prefix)


@pytest.fixture
async def chancy_app(chancy_dsn: str, chancy_prefix: str) -> AsyncIterator[Chancy]:
    app = Chancy(
        chancy_dsn,
        prefix=chancy_prefix,
        no_default_plugins=True,
        min_connection_pool_size=1,
        max_connection_pool_size=2,
    )
    async with app:
        await app.migrate()
        yield app


def drop_tables(dsn: str, prefix: str) -> list[str]:
    """Drop every table whose name starts with ``prefix``; return their names.

    The prefix's functions (``{prefix}push`` and the Trigger plugin's) go too, with any
    database trigger that runs them, so a later test's migration starts from nothing.
    """
    q = queries("chancy.store.sql", prefix)
    pattern = prefix.replace("_", "\\_") + "%"
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(q["testing_prefix_tables"], {"pattern": pattern}).fetchall()
        for (name,) in rows:
            conn.execute(sql.SQL(q["testing_drop_table"]).format(table=sql.Identifier(name)))
        functions = conn.execute(q["testing_prefix_functions"], {"pattern": pattern}).fetchall()
        for (signature,) in functions:
            # The server's own rendering of the signature, quoted by it.
            drop = sql.SQL(q["testing_drop_function"]).format(
                signature=sql.SQL(cast(LiteralString, signature))
            )
            conn.execute(drop)
    return [name for (name,) in rows]
