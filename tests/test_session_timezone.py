"""A server whose TimeZone is UTC under another name ('Etc/UTC', Debian's default) is told
'UTC' on the app's pool connections (session_utc in jobs.sql): psycopg then loads datetimes
with datetime.timezone.utc, about half the cost of a ZoneInfo. Other zones, and apps behind a
transaction pooler (no session state), are left as they are."""

from __future__ import annotations

import asyncio
from datetime import UTC
from zoneinfo import ZoneInfo

import pytest
from psycopg.conninfo import make_conninfo

from chancy import Chancy, Job
from tests.conftest import migrated_app


def _in_zone(dsn: str, zone: str) -> str:
    return make_conninfo(dsn, options=f"-c TimeZone={zone}")


async def _zone_and_created_at(app: Chancy) -> tuple[str, object]:
    ref = await app.push(Job(func="tests.jobs.noop"))
    job = await app.get_job(ref)
    assert job is not None and job.created_at is not None
    async with app.pool.connection() as conn:
        cur = await conn.execute("SHOW TimeZone")
        row = await cur.fetchone()
    assert row is not None
    return row[0], job.created_at.tzinfo


@pytest.mark.parametrize("alias", ["Etc/UTC", "Universal"])
async def test_a_utc_alias_becomes_utc(dsn: str, prefix: str, alias: str) -> None:
    async with migrated_app(_in_zone(dsn, alias), prefix) as app:
        zone, tzinfo = await _zone_and_created_at(app)
    assert zone == "UTC" and tzinfo is UTC


async def test_another_zone_is_left_as_it_is(dsn: str, prefix: str) -> None:
    async with migrated_app(_in_zone(dsn, "Europe/Berlin"), prefix) as app:
        zone, tzinfo = await _zone_and_created_at(app)
    assert zone == "Europe/Berlin" and tzinfo == ZoneInfo("Europe/Berlin")


async def test_a_pooled_app_keeps_no_session_setting(dsn: str, prefix: str) -> None:
    async with migrated_app(_in_zone(dsn, "Etc/UTC"), prefix) as migrated:
        app = Chancy(migrated.dsn, prefix=prefix, no_default_plugins=True, pooled=True)
        async with app:
            zone, tzinfo = await _zone_and_created_at(app)
    assert zone == "Etc/UTC" and tzinfo == ZoneInfo("Etc/UTC")


def test_the_sync_pool_too(dsn: str, prefix: str) -> None:
    async def migrate(to: int | None) -> None:
        async with Chancy(_in_zone(dsn, "Etc/UTC"), prefix=prefix) as app:
            await (app.migrate() if to is None else app.migrate(to_version=to))

    asyncio.run(migrate(None))
    try:
        with Chancy(_in_zone(dsn, "Etc/UTC"), prefix=prefix, no_default_plugins=True) as app:
            job = app.sync_get_job(app.sync_push(Job(func="tests.jobs.noop")))
            assert job is not None and job.created_at is not None
            assert job.created_at.tzinfo is UTC
            with app.db.sync_pool.connection() as conn:
                row = conn.execute("SHOW TimeZone").fetchone()
            assert row is not None and row[0] == "UTC"
    finally:
        asyncio.run(migrate(0))
