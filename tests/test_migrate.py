"""Migrations: concurrent calls, round trips, plugin lines and the out-of-date check."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from chancy import Chancy, Worker
from chancy.errors import MigrationError, MigrationsNeededError
from chancy.migrate import Migrator
from chancy.plugin import Plugin
from tests.conftest import eventually

CATALOG = """
SELECT 'column' AS kind, c.relname || '.' || a.attname AS name,
       format_type(a.atttypid, a.atttypmod) || ' null=' || (NOT a.attnotnull)::text
       || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '') AS detail
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relname LIKE %(p)s AND c.relkind IN ('r', 'u') AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'index', indexname::text, regexp_replace(indexdef, 'INDEX \\S+ ON', 'INDEX ON')
FROM pg_indexes WHERE tablename LIKE %(p)s
UNION ALL
SELECT 'constraint', conrelid::regclass::text || '.' || contype::text, pg_get_constraintdef(oid)
FROM pg_constraint WHERE conrelid::regclass::text LIKE %(p)s
UNION ALL
SELECT 'table', relname::text,
       relpersistence::text || ' ' || coalesce(array_to_string(reloptions, ','), '')
FROM pg_class WHERE relname LIKE %(p)s AND relkind IN ('r', 'u')
UNION ALL
SELECT 'function', p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       md5(pg_get_functiondef(p.oid))
FROM pg_proc p WHERE p.proname LIKE %(p)s
UNION ALL
SELECT 'trigger', t.tgrelid::regclass::text || '.' || t.tgname, pg_get_triggerdef(t.oid)
FROM pg_trigger t WHERE NOT t.tgisinternal AND t.tgrelid::regclass::text LIKE %(p)s
ORDER BY 1, 2, 3
"""


_LINES = {
    "chancy": "chancy.migrations.core",
    "cron": "chancy.plugins.cron.migrations",
    "workflow": "chancy.plugins.workflow.migrations",
}


def head(line: str) -> int:
    """The newest version of a migration line (tests follow the code, not a number)."""
    return Migrator(line, _LINES[line], prefix="t_").head


async def catalog(dsn: str, prefix: str) -> list[tuple[Any, ...]]:
    pattern = prefix.replace("_", "\\_") + "%"
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        rows = await (await conn.execute(CATALOG, {"p": pattern})).fetchall()  # type: ignore[arg-type]
    return [tuple(r) for r in rows]


async def versions(dsn: str, prefix: str) -> dict[str, int]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        exists = await (
            await conn.execute("SELECT to_regclass(%s)", (f"{prefix}schema_version",))
        ).fetchone()
        if exists is None or exists[0] is None:
            return {}
        rows = await (
            await conn.execute(f"SELECT version_of, version FROM {prefix}schema_version")  # type: ignore[arg-type]
        ).fetchall()
    return dict(rows)  # type: ignore[arg-type]


class ThingsPlugin(Plugin):
    def migrate_key(self) -> str:
        return "things"

    def migrate_package(self) -> str:
        return "tests.plugin_migrations"


async def test_three_concurrent_migrations_apply_once(dsn: str, prefix: str) -> None:
    apps = [
        Chancy(
            dsn,
            prefix=prefix,
            plugins=[ThingsPlugin()],
            no_default_plugins=True,
            max_connection_pool_size=1,
        )
        for _ in range(3)
    ]
    try:
        # Each version's CREATE TABLE would fail if it ran twice.
        await asyncio.gather(*(app.migrate() for app in apps))
        assert await versions(dsn, prefix) == {"chancy": head("chancy"), "things": 2}
        assert all([await app.is_up_to_date() for app in apps])
    finally:
        await apps[0].migrate(to_version=0)
        for app in apps:
            await app.close()
    assert await catalog(dsn, prefix) == []


async def test_up_down_up_leaves_the_same_schema(dsn: str, prefix: str) -> None:
    async with Chancy(dsn, prefix=prefix, plugins=[ThingsPlugin()], no_default_plugins=True) as app:
        try:
            await app.migrate()
            first = await catalog(dsn, prefix)
            assert any(name == f"{prefix}plugin_things.colour" for _, name, _ in first)
            assert any("jobs_claim" in detail or "jobs_claim" in name for _, name, detail in first)
            assert any(
                kind == "function" and name.startswith(f"{prefix}push(") for kind, name, _ in first
            )
            await app.migrate(to_version=0)
            assert await catalog(dsn, prefix) == []
            assert await versions(dsn, prefix) == {}
            await app.migrate()
            assert await catalog(dsn, prefix) == first
            # Down one version and up again round-trips too.
            await app.migrate(to_version=8)
            assert (await versions(dsn, prefix))["chancy"] == 8
            await app.migrate()
            assert await catalog(dsn, prefix) == first
        finally:
            await app.migrate(to_version=0)


async def test_out_of_date_schema_is_refused(dsn: str, prefix: str) -> None:
    async with Chancy(dsn, prefix=prefix, no_default_plugins=True) as app:
        with pytest.raises(MigrationsNeededError, match="migrate"):
            await app.check_migrations()
        assert not await app.is_up_to_date()
        with pytest.raises(MigrationsNeededError):
            await Worker(app, register_signal_handlers=False).start()
        try:
            await app.migrate(to_version=8)
            with pytest.raises(MigrationsNeededError, match="chancy at 8"):
                await app.check_migrations()
            with pytest.raises(MigrationError, match="no version 5"):
                await app.migrate(to_version=5)
            await app.migrate()
            await app.check_migrations()
        finally:
            await app.migrate(to_version=0)


@pytest.mark.parametrize(("start", "target"), [(20, 21), (21, 20), (10, 11), (8, 9), (9, 8)])
async def test_an_index_rebuild_waits_for_a_live_claim_instead_of_deadlocking(
    dsn: str, prefix: str, start: int, target: int
) -> None:
    """A migration that builds and drops indexes of the jobs table (v0009, v0011, v0021)
    takes the strongest lock on the table first (an explicit LOCK TABLE, or a DROP INDEX as
    its first statement, as v0009 and v0011 up do). A live worker's claim locks the table in
    two steps (its pick: ROW SHARE; its update: ROW EXCLUSIVE): a migration that took its index
    build's SHARE lock in between and then asked for the ACCESS EXCLUSIVE of DROP INDEX
    waited for the claim while the claim waited for it, and PostgreSQL ended one of them
    (seen at a test's teardown). Here a transaction holds the pick's lock while the migration
    runs, then updates: it must go through, and the migration complete after it."""
    app = Chancy(dsn, prefix=prefix, no_default_plugins=True, max_connection_pool_size=2)
    try:
        await app.migrate(to_version=start)
        jobs = f"{prefix}jobs"
        async with await psycopg.AsyncConnection.connect(dsn) as claim:
            await claim.execute(f"SELECT id FROM {jobs} FOR UPDATE SKIP LOCKED")  # type: ignore[arg-type]
            migrating = asyncio.create_task(app.migrate(to_version=target))

            async def waits() -> bool:
                async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as c:
                    cur = await c.execute(
                        "SELECT count(*) FROM pg_locks l JOIN pg_class r ON r.oid = l.relation"
                        " WHERE r.relname = %s AND NOT l.granted"
                        " AND l.mode = 'AccessExclusiveLock'",
                        (jobs,),
                    )
                    row = await cur.fetchone()
                return bool(row and row[0])

            await eventually(waits, message="the migration waits for the claim's lock")
            await claim.execute(f"UPDATE {jobs} SET priority = priority")  # type: ignore[arg-type]
            await claim.commit()
        await asyncio.wait_for(migrating, timeout=60)
        assert (await versions(dsn, prefix))["chancy"] == target
    finally:
        await app.migrate(to_version=0)
        await app.close()
