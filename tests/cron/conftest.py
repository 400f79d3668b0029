"""Fixtures for the cron tests: an app with the Cron plugin, and a controllable clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from chancy import Chancy, Job
from chancy.plugins.cron import Cron
from chancy.plugins.leadership import ImmediateLeadership
from chancy.store import Spec
from tests.conftest import migrated_app


def J(key: str | None, func: str = "noop", queue: str = "cron", **fields: Any) -> Job:
    return Job(func=f"tests.workflow.jobs.{func}", queue=queue, unique_key=key, **fields)


@pytest.fixture
def cron() -> Cron:
    return Cron(poll_interval=30)


@pytest.fixture
async def app(dsn: str, prefix: str, cron: Cron) -> AsyncIterator[Chancy]:
    """A migrated app with ImmediateLeadership and Cron; every table removed at the end."""
    async with migrated_app(dsn, prefix, [ImmediateLeadership(), cron], pool=4) as chancy:
        yield chancy


async def sql(app: Chancy, query: str, params: Any = None, fetch: str = "none") -> Any:
    return await app.db.run(Spec(query, params, fetch))  # type: ignore[arg-type]


async def due_in(app: Chancy, key: str, seconds: float = 0) -> Any:
    """The test's clock: make a schedule due ``seconds`` from now (database time).

    Returns the next_run set. The leader is told (cron.scheduled), as a reschedule would.
    """
    row = await sql(
        app,
        f"UPDATE {app.prefix}cron SET next_run = now() + make_interval(secs => %(s)s)"
        " WHERE unique_key = %(key)s RETURNING next_run",
        {"s": seconds, "key": key},
        "one",
    )
    await sql(
        app,
        "SELECT pg_notify(%(c)s, %(p)s)",
        {"c": f"{app.prefix}events", "p": '{"t": "cron.scheduled"}'},
    )
    return row["next_run"]


async def jobs_of(app: Chancy, key: str) -> list[dict[str, Any]]:
    return await sql(
        app,
        f"SELECT id, state, created_at, kwargs FROM {app.prefix}jobs"
        " WHERE unique_key = %(key)s ORDER BY created_at",
        {"key": key},
        "all",
    )
