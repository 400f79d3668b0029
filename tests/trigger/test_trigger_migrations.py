"""The trigger migration line: removing it never leaves a trigger that fails the user's writes,
a database in Chancy 0.26's state migrates forward with its triggers working, and the core
line refuses to drop ``{prefix}push`` from under installed triggers."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from psycopg.rows import dict_row

from chancy import Chancy, Job
from chancy.migrate import Migrator
from chancy.plugins.trigger import Trigger, TriggerError
from tests.test_migrate import catalog, head, versions
from tests.trigger.conftest import functions, installed, jobs, sql

ECHO = "tests.trigger.jobs.echo"
#: The core version whose migration creates {prefix}push (chancy/migrations/core/v0012).
PUSH_VERSION = 12


async def migrate_trigger_line(app: Chancy, to_version: int) -> None:
    """Move only the trigger line, as ``migrate`` would, under the migration lock."""
    pool = await app.open()
    async with (
        pool.connection() as conn,
        conn.transaction(),
        conn.cursor(row_factory=dict_row) as cur,
    ):
        await cur.execute(app.store.q_migrate("migrate_lock"))
        line = Migrator("trigger", "chancy.plugins.trigger.migrations", prefix=app.prefix)
        await line.migrate(cur, to_version)


async def register_both(app: Chancy) -> None:
    users = f"{app.prefix}users"
    job = Job(func=ECHO, queue="q")
    await Trigger.register_trigger(
        app, table_name=users, operations=["INSERT", "UPDATE", "DELETE"], job_template=job
    )
    await Trigger.register_trigger(
        app,
        table_name=users,
        operations=["INSERT", "UPDATE"],
        job_template=job,
        level="row",
        when="NEW.active",
        unique_key="u:{id}",
    )
    assert len(await installed(app, users)) == 5


async def test_migrating_everything_down_leaves_no_trigger_behind(dsn: str, app: Chancy) -> None:
    users = f"{app.prefix}users"
    await register_both(app)
    await app.migrate(to_version=0)
    assert await versions(dsn, app.prefix) == {}
    assert await installed(app, users) == []
    assert await functions(app) == []
    # The user's table takes writes as before.
    await sql(app, f"INSERT INTO {users} (email) VALUES ('after')")
    await sql(app, f"UPDATE {users} SET visits = 1")
    await sql(app, f"DELETE FROM {users}")


async def test_migrating_the_trigger_line_to_zero_leaves_no_trigger_behind(app: Chancy) -> None:
    users = f"{app.prefix}users"
    await register_both(app)
    await migrate_trigger_line(app, 0)
    assert await installed(app, users) == []
    # The core line's, still there.
    assert await functions(app) == [
        f"{app.prefix}claim_jobs",
        f"{app.prefix}complete_jobs",
        f"{app.prefix}push",
    ]
    await sql(app, f"INSERT INTO {users} (email) VALUES ('after')")
    assert await jobs(app) == []


async def test_the_core_line_refuses_to_drop_push_from_under_installed_triggers(
    dsn: str, app: Chancy
) -> None:
    await register_both(app)
    # An app without the Trigger plugin would take the core line below push's version alone.
    core_only = Chancy(dsn, prefix=app.prefix, no_default_plugins=True, max_connection_pool_size=2)
    async with core_only:
        with pytest.raises(psycopg.errors.DependentObjectsStillExist) as caught:
            await core_only.migrate(to_version=PUSH_VERSION - 1)
        assert f"below version {PUSH_VERSION}" in str(caught.value)
        assert "trigger line down first" in (caught.value.diag.message_hint or "")
        assert (await versions(dsn, app.prefix))["chancy"] == head("chancy")
        # Nothing changed: the triggers still push.
        await sql(app, f"INSERT INTO {app.prefix}users (email) VALUES ('x')")
        assert len(await jobs(app)) == 2
        # Without installed triggers it may.
        for tid in await Trigger.get_triggers(app):
            await Trigger.disable_trigger(app, tid)
        await core_only.migrate(to_version=PUSH_VERSION - 1)
        assert await functions(app) == [
            f"{app.prefix}trigger_fire",
            f"{app.prefix}trigger_install",
            f"{app.prefix}trigger_uninstall",
        ]
        with pytest.raises(TriggerError, match="migrate"):
            await Trigger.enable_trigger(app, next(iter(await Trigger.get_triggers(app))))
        await app.migrate()


async def test_up_down_up_round_trips_with_statement_triggers_kept(dsn: str, app: Chancy) -> None:
    users = f"{app.prefix}users"
    tid = await Trigger.register_trigger(
        app, table_name=users, operations=["INSERT"], job_template=Job(func=ECHO, queue="q")
    )
    first = await catalog(dsn, app.prefix)
    row_level = await Trigger.register_trigger(
        app,
        table_name=users,
        operations=["INSERT"],
        job_template=Job(func=ECHO, queue="q"),
        level="row",
    )

    # Version 1 (Chancy 0.26's): row-level triggers cannot exist there and are removed; the
    # statement-level one still fires, through 0.26's function and trigger names.
    await migrate_trigger_line(app, 1)
    # 0.26's Job.unpack reads the template's scheduled_at ("s") as a number.
    kinds = await sql(
        app, f"SELECT jsonb_typeof(job_template -> 's') AS s FROM {app.prefix}triggers", None, "all"
    )
    assert kinds == [{"s": "number"}]
    await sql(app, f"INSERT INTO {users} (email) VALUES ('at v1')")
    (fired,) = await jobs(app)
    assert fired["meta"]["trigger"]["trigger_name"] == (
        f"{app.prefix}trigger_{str(tid).replace('-', '_')}_insert"
    )
    assert await sql(
        app,
        f"SELECT count(*) AS n FROM {app.prefix}triggers WHERE id = %(id)s",
        {"id": row_level},
        "one",
    ) == {"n": 0}

    await app.migrate()
    assert await catalog(dsn, app.prefix) == first
    assert list(await Trigger.get_triggers(app)) == [tid]


async def test_a_chancy_026_database_with_triggers_migrates_forward(app: Chancy) -> None:
    users = f"{app.prefix}users"
    gone = f"{app.prefix}gone"
    await sql(app, f"CREATE TABLE {gone} (id int)")
    await migrate_trigger_line(app, 1)

    # What Chancy 0.26's register_trigger leaves: a row with its packed job (scheduled_at
    # stamped at registration) and one statement trigger per operation running
    # {prefix}trigger_handler(), named after the row's trigger_name.
    rows: list[tuple[uuid.UUID, str]] = []
    for table in (users, gone):
        tid = uuid.uuid4()
        base = f"{app.prefix}trigger_{str(tid).replace('-', '_')}"
        template = {**Job(func=ECHO, queue="q", kwargs={"n": 1}).pack(), "s": 1700000000.0}
        await sql(
            app,
            f"INSERT INTO {app.prefix}triggers (id, table_name, schema_name, trigger_name,"
            " operations, job_template, enabled) VALUES (%(id)s, %(t)s, 'public', %(name)s,"
            " %(ops)s, %(job)s, true)",
            {
                "id": tid,
                "t": table,
                "name": base,
                "ops": json.dumps(["INSERT", "UPDATE"]),
                "job": json.dumps(template),
            },
        )
        for op in ("insert", "update"):
            await sql(
                app,
                f"CREATE TRIGGER {base}_{op} AFTER {op.upper()} ON {table}"
                f" FOR EACH STATEMENT EXECUTE FUNCTION {app.prefix}trigger_handler()",
            )
        rows.append((tid, base))
    await sql(app, f"INSERT INTO {users} (email) VALUES ('before')")
    assert len(await jobs(app)) == 1
    await sql(app, f"DROP TABLE {gone}")  # a 0.26 trigger whose table was dropped since

    await app.migrate()

    (users_id, users_base), (gone_id, _) = rows
    configs = await Trigger.get_triggers(app)
    assert configs[users_id].enabled and configs[users_id].level == "statement"
    assert configs[users_id].operations == ["INSERT", "UPDATE"]
    assert configs[users_id].job_template.kwargs == {"n": 1}
    assert configs[gone_id].enabled is False  # disabled with a warning, migration went on
    # Upgraded in place: same names, now running {prefix}trigger_fire (through {prefix}push).
    assert await installed(app, users) == [f"{users_base}_insert", f"{users_base}_update"]
    fn = await sql(
        app,
        "SELECT DISTINCT tgfoid::regproc::text AS f FROM pg_trigger"
        " WHERE tgrelid = %(t)s::regclass",
        {"t": users},
        "all",
    )
    assert fn == [{"f": f"{app.prefix}trigger_fire"}]
    await sql(app, f"UPDATE {users} SET visits = 1")
    (after,) = [j for j in await jobs(app) if j["meta"]["trigger"]["operation"] == "UPDATE"]
    assert after["id"].version == 7
    assert after["kwargs"] == {"n": 1}
    assert after["meta"]["trigger"]["trigger_name"] == f"{users_base}_update"
    assert await Trigger.disable_trigger(app, users_id) is True
    assert await installed(app, users) == []


async def test_the_pytest_plugins_drop_tables_leaves_no_function_or_trigger(
    dsn: str, app: Chancy
) -> None:
    from chancy.pytest_plugin import drop_tables

    other = f"other_{uuid.uuid4().hex[:12]}"  # a table outside the prefix, as a user's may be
    await sql(app, f"CREATE TABLE {other} (id int PRIMARY KEY)")
    try:
        await Trigger.register_trigger(
            app,
            table_name=other,
            operations=["INSERT"],
            job_template=Job(func=ECHO, queue="q"),
            level="row",
        )
        await app.close()
        drop_tables(dsn, app.prefix)
        await app.open()
        assert await functions(app) == []
        assert await installed(app, other) == []
        await sql(app, f"INSERT INTO {other} VALUES (1)")  # no trigger left to fail it
        # And the prefix can be migrated again from nothing.
        await app.migrate()
        assert f"{app.prefix}push" in await functions(app)
    finally:
        await sql(app, f"DROP TABLE IF EXISTS {other}")
