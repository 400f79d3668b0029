"""Test harness: one database server per session, one table prefix per test.

The DSN comes from CHANCY_TEST_DSN; without it the embedded PostgreSQL is started (so the
suite runs on a machine with no server). Each test gets its own prefix, which isolates its
tables, its NOTIFY channel and its migration lock, so tests run in parallel under xdist. A
session-end check fails when a test left tables behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import psycopg
import pytest

from chancy import Chancy

T = TypeVar("T")

_counter = itertools.count()


def _worker_id() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "gw0").replace("gw", "")


@pytest.fixture(scope="session")
def dsn() -> Iterator[str]:
    env = os.environ.get("CHANCY_TEST_DSN")
    if env:
        yield env
        return
    from chancy import embedded

    server = embedded.start()
    try:
        yield server.dsn
    finally:
        server.stop()


@pytest.fixture(scope="session", autouse=True)
def _no_leaked_tables(dsn: str) -> Iterator[None]:
    yield
    pattern = f"t{_worker_id()}\\_{os.getpid() % 10000}\\_%"
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT relname FROM pg_class WHERE relkind IN ('r', 'u', 'p') AND relname LIKE %s",
            (pattern,),
        ).fetchall()
        functions = conn.execute(
            "SELECT oid::regprocedure::text FROM pg_proc WHERE proname LIKE %s", (pattern,)
        ).fetchall()
    leaked = sorted(r[0] for r in rows)
    leaked_functions = sorted(r[0] for r in functions)
    # Drop them so the next run starts clean, then fail loudly.
    if leaked or leaked_functions:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for name in leaked:
                conn.execute(f'DROP TABLE IF EXISTS "{name}" CASCADE')  # type: ignore[arg-type]
            for signature in leaked_functions:
                conn.execute(f"DROP FUNCTION IF EXISTS {signature} CASCADE")  # type: ignore[arg-type]
        pytest.fail(f"tests leaked tables: {leaked}, functions: {leaked_functions}")


def new_prefix() -> str:
    return f"t{_worker_id()}_{os.getpid() % 10000}_{next(_counter)}_"


@pytest.fixture
def prefix() -> str:
    return new_prefix()


def drop_prefix(dsn: str, prefix: str) -> None:
    """Drop every table and function of ``prefix`` (when a test's own teardown could not)."""
    pattern = prefix.replace("_", "\\_") + "%"
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT relname FROM pg_class WHERE relkind IN ('r', 'u', 'p') AND relname LIKE %s",
            (pattern,),
        ).fetchall()
        for (name,) in rows:
            conn.execute(f'DROP TABLE IF EXISTS "{name}" CASCADE')  # type: ignore[arg-type]
        functions = conn.execute(
            "SELECT oid::regprocedure::text FROM pg_proc WHERE proname LIKE %s", (pattern,)
        ).fetchall()
        for (signature,) in functions:
            conn.execute(f"DROP FUNCTION IF EXISTS {signature} CASCADE")  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def migrated_app(
    dsn: str, prefix: str, plugins: list[Any] | None = None, *, pool: int = 4
) -> AsyncIterator[Chancy]:
    """A migrated Chancy with exactly ``plugins``; every table of ``prefix`` removed at the end."""
    app = Chancy(
        dsn,
        prefix=prefix,
        plugins=plugins,
        no_default_plugins=True,
        min_connection_pool_size=1,
        max_connection_pool_size=pool,
    )
    async with app:
        await app.migrate()
        try:
            yield app
        finally:
            try:
                await app.migrate(to_version=0)
            finally:
                drop_prefix(dsn, prefix)


@pytest.fixture
async def chancy(dsn: str, prefix: str) -> AsyncIterator[Chancy]:
    """A migrated Chancy on a fresh prefix with no default plugins and a small pool."""
    async with migrated_app(dsn, prefix) as app:
        yield app


async def eventually(
    check: Callable[[], Awaitable[T] | T],
    *,
    timeout: float = 10,
    interval: float = 0.02,
    message: str = "condition not met",
) -> T:
    """Poll ``check`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        value = check()
        if asyncio.iscoroutine(value) or isinstance(value, Awaitable):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        last = value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} within {timeout}s (last value: {last!r})")
        await asyncio.sleep(interval)


def eventually_sync(
    check: Callable[[], T], *, timeout: float = 10, message: str = "condition not met"
) -> T:
    """``eventually`` for code without an event loop: poll with a growing interval."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} within {timeout}s (last value: {value!r})")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    return value
