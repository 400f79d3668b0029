"""The app the end-to-end tests' worker processes load: ``chancy --app tests.e2e.app:app``.

Everything comes from the environment the test gives the worker process, so each test runs
its workers on its own table prefix. ``app`` is a factory (the CLI calls it), which also
exercises the CLI's support for callables.
"""

from __future__ import annotations

import os

from chancy import Chancy

DSN_ENV = "CHANCY_E2E_DSN"
PREFIX_ENV = "CHANCY_E2E_PREFIX"
POOL_ENV = "CHANCY_E2E_POOL"


def make_app(dsn: str | None = None, prefix: str | None = None) -> Chancy:
    """The same configuration for the test process and its workers (so migrations match)."""
    return Chancy(
        dsn or os.environ[DSN_ENV],
        prefix=prefix or os.environ[PREFIX_ENV],
        min_connection_pool_size=1,
        # The shared server allows 100 connections and other tests run in parallel.
        max_connection_pool_size=int(os.environ.get(POOL_ENV, "3")),
    )


def app() -> Chancy:
    return make_app()
