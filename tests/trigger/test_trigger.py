"""The Trigger plugin against the real server: row and statement triggers, WHEN conditions,
unique key templates, enable/disable/unregister, Chancy 0.26-style use, and bad input."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import psycopg
import pytest

from chancy import Chancy, Job, QueuedJob, Worker
from chancy.plugins.trigger import Trigger, TriggerConfig, TriggerError
from tests.conftest import eventually
from tests.trigger import jobs as job_functions
from tests.trigger.conftest import installed, jobs, sql

ECHO = "tests.trigger.jobs.echo"

META_KEYS = {"operation", "timestamp", "table_name", "schema_name", "trigger_name", "trigger_id"}


def echo(**fields: Any) -> Job:
    return Job(func=ECHO, queue="q", **fields)


async def register(app: Chancy, **options: Any) -> uuid.UUID:
    options.setdefault("table_name", f"{app.prefix}users")
    options.setdefault("job_template", echo())
    return await Trigger.register_trigger(app, **options)


async def test_row_triggers_fire_on_insert_update_and_delete_by_their_when(
    app: Chancy,
) -> None:
    users = f"{app.prefix}users"
    # WHEN conditions differ per operation (INSERT has no OLD, DELETE no NEW), so each
    # operation gets its own trigger.
    on_insert = await register(
        app, operations=["INSERT"], level="row", when="NEW.active", kwargs_columns=["id", "email"]
    )
    on_update = await register(
        app,
        operations=["update"],
        level="row",
        when="NEW.email IS DISTINCT FROM OLD.email",
        kwargs_columns=["id", "email"],
    )
    on_delete = await register(app, operations=["DELETE"], level="row", when="OLD.active")

    await sql(app, f"INSERT INTO {users} (email) VALUES ('a@x'), ('b@x')")
    await sql(app, f"INSERT INTO {users} (email, active) VALUES ('off@x', false)")  # no job
    await sql(app, f"UPDATE {users} SET email = 'a2@x' WHERE id = 1")
    await sql(app, f"UPDATE {users} SET visits = visits + 1")  # email unchanged: no job
    await sql(app, f"DELETE FROM {users} WHERE id IN (2, 3)")  # 3 is inactive: one job

    got = [(j["kwargs"], j["meta"]["trigger"]) for j in await jobs(app, ECHO)]
    assert [kwargs for kwargs, _ in got] == [
        {"id": 1, "email": "a@x"},
        {"id": 2, "email": "b@x"},
        {"id": 1, "email": "a2@x"},
        {"id": 2},  # kwargs_columns defaults to the primary key; DELETE reads OLD
    ]
    ops = [(meta["operation"], meta["trigger_id"]) for _, meta in got]
    assert ops == [
        ("INSERT", str(on_insert)),
        ("INSERT", str(on_insert)),
        ("UPDATE", str(on_update)),
        ("DELETE", str(on_delete)),
    ]
    for _, meta in got:
        assert set(meta) == META_KEYS
        assert (meta["table_name"], meta["schema_name"]) == (users, "public")
        assert meta["trigger_name"].endswith("_" + meta["operation"].lower())
        assert meta["trigger_name"] in await installed(app, users)


async def test_a_job_runs_with_the_rows_columns_and_its_trigger_meta(app: Chancy) -> None:
    await register(app, operations=["INSERT"], level="row", kwargs_columns=["id", "email"])
    await sql(app, f"INSERT INTO {app.prefix}users (email) VALUES ('run@x')")
    (row,) = await jobs(app, ECHO)
    async with Worker(app, register_signal_handlers=False, shutdown_timeout=5):
        done = await app.wait_for_job(row["id"], timeout=20)
    assert done is not None and done.state == QueuedJob.State.SUCCEEDED, done
    assert done.result == {"id": 1, "email": "run@x"}
    assert done.meta["trigger"]["operation"] == "INSERT"


async def test_a_unique_key_template_collapses_a_burst_of_updates_into_one_job(
    app: Chancy,
) -> None:
    users = f"{app.prefix}users"
    await sql(app, f"INSERT INTO {users} (email) VALUES ('a@x'), ('b@x')")
    await register(
        app,
        operations=["UPDATE"],
        level="row",
        kwargs_columns=["id"],
        unique_key="user-sync:{id}",
    )
    for n in range(20):
        await sql(app, f"UPDATE {users} SET visits = %(n)s WHERE id = 1", {"n": n})
    # Several changes to both rows in one transaction, too.
    await sql(app, f"UPDATE {users} SET visits = visits + 1")
    await sql(app, f"UPDATE {users} SET visits = visits + 1")

    waiting = await jobs(app, ECHO)
    assert sorted((j["unique_key"], j["kwargs"]["id"]) for j in waiting) == [
        ("user-sync:1", 1),
        ("user-sync:2", 2),
    ]
    # Once row 1's job has run, the next change to row 1 makes a new job.
    first = next(j for j in waiting if j["unique_key"] == "user-sync:1")
    async with Worker(app, register_signal_handlers=False, shutdown_timeout=5):
        await app.wait_for_jobs([j["id"] for j in waiting], timeout=20)
    await sql(app, f"UPDATE {users} SET visits = 0 WHERE id = 1")
    after = [j for j in await jobs(app, ECHO) if j["id"] not in {w["id"] for w in waiting}]
    assert [(j["unique_key"], j["state"]) for j in after] == [("user-sync:1", "pending")]
    assert after[0]["id"] != first["id"]


async def test_a_key_column_that_is_null_gives_jobs_without_a_key(app: Chancy) -> None:
    await register(
        app, operations=["INSERT"], level="row", kwargs_columns=[], unique_key="mail:{email}"
    )
    await sql(app, f"INSERT INTO {app.prefix}users (email) VALUES (NULL), (NULL), ('x')")
    got = [(j["unique_key"], j["kwargs"]) for j in await jobs(app, ECHO)]
    assert got == [(None, {}), (None, {}), ("mail:x", {})]


async def test_disabled_triggers_make_no_jobs_until_enabled(app: Chancy) -> None:
    users = f"{app.prefix}users"
    tid = await register(app, operations=["INSERT", "DELETE"], level="row")
    assert len(await installed(app, users)) == 2

    assert await Trigger.disable_trigger(app, tid) is True
    assert await Trigger.disable_trigger(app, str(tid)) is False
    assert await installed(app, users) == []
    assert (await Trigger.get_triggers(app))[tid].enabled is False
    await sql(app, f"INSERT INTO {users} (email) VALUES ('while-disabled')")
    assert await jobs(app) == []

    assert await Trigger.enable_trigger(app, tid) is True
    assert await Trigger.enable_trigger(app, tid) is False
    assert len(await installed(app, users)) == 2
    await sql(app, f"INSERT INTO {users} (email) VALUES ('enabled')")
    assert [j["kwargs"] for j in await jobs(app)] == [{"id": 2}]


async def test_registered_disabled_it_is_checked_but_not_installed(app: Chancy) -> None:
    tid = await register(app, operations=["INSERT"], enabled=False)
    assert await installed(app, f"{app.prefix}users") == []
    assert (await Trigger.get_triggers(app))[tid].enabled is False
    with pytest.raises(TriggerError, match="WHEN condition"):
        await register(app, operations=["INSERT"], level="row", when="NEW.nope", enabled=False)
    assert list(await Trigger.get_triggers(app)) == [tid]


async def test_unregister_removes_the_trigger_for_good(app: Chancy) -> None:
    users = f"{app.prefix}users"
    keep = await register(app, operations=["INSERT"])
    gone = await register(app, operations=["INSERT", "UPDATE"], level="row")
    await Trigger.unregister_trigger(app, gone)
    assert list(await Trigger.get_triggers(app)) == [keep]
    assert len(await installed(app, users)) == 1
    await sql(app, f"INSERT INTO {users} (email) VALUES ('x')")
    (only,) = await jobs(app)
    assert only["meta"]["trigger"]["trigger_id"] == str(keep)
    with pytest.raises(ValueError, match="not found"):
        await Trigger.unregister_trigger(app, gone)
    with pytest.raises(ValueError, match="not found"):
        await Trigger.enable_trigger(app, gone)
    with pytest.raises(TriggerError, match="is not a trigger id"):
        await Trigger.disable_trigger(app, "nope")


async def test_chancy_026_usage_as_its_docstring_shows(app: Chancy) -> None:
    users = f"{app.prefix}users"
    # Trigger.register_trigger's docstring in Chancy 0.26, with the test's own table name.
    trigger_id = await Trigger.register_trigger(
        app,
        table_name=users,
        operations=["INSERT", "UPDATE"],
        job_template=job_functions.process_user_change,
    )
    assert isinstance(trigger_id, uuid.UUID)

    # Statement level: one job per statement, however many rows it touched.
    await sql(app, f"INSERT INTO {users} (email) VALUES ('a'), ('b'), ('c')")
    await sql(app, f"UPDATE {users} SET visits = 1")
    await sql(app, f"DELETE FROM {users}")  # not watched
    made = await jobs(app)
    assert [j["meta"]["trigger"]["operation"] for j in made] == ["INSERT", "UPDATE"]
    assert all(j["kwargs"] == {} and j["queue"] == "events" for j in made)

    async with Worker(app, register_signal_handlers=False, shutdown_timeout=5):
        done = await app.wait_for_jobs([j["id"] for j in made], timeout=20)
    first = done[0].result
    assert set(first) == META_KEYS
    assert first["operation"] == "INSERT" and first["table_name"] == users
    assert (
        first["trigger_name"] == f"{app.prefix}trigger_{str(trigger_id).replace('-', '_')}_insert"
    )

    # get_triggers and its TriggerConfig, as in 0.26.
    configs = await Trigger.get_triggers(app, trigger_ids=[str(trigger_id)])
    config = configs[trigger_id]
    assert isinstance(config, TriggerConfig)
    assert [f.name for f in dataclasses.fields(TriggerConfig)][:8] == [
        "id",
        "table_name",
        "schema_name",
        "trigger_name",
        "operations",
        "job_template",
        "enabled",
        "created_at",
    ]
    assert config.operations == ["INSERT", "UPDATE"] and config.schema_name == "public"
    assert config.job_template.func == "tests.trigger.jobs.process_user_change"
    assert config.trigger_name == f"{app.prefix}trigger_{str(trigger_id).replace('-', '_')}"
    assert Trigger().get_identifier() == "chancy.trigger"
    assert Trigger().migrate_key() == "trigger"


async def test_register_ex_takes_part_in_the_callers_transaction(dsn: str, app: Chancy) -> None:
    users = f"{app.prefix}users"
    pool = await app.open()
    async with pool.connection() as conn:
        async with conn.transaction(force_rollback=True), conn.cursor() as cur:
            # The argument order of 0.26: cursor, chancy, table, operations, template.
            tid = await Trigger.register_trigger_ex(cur, app, users, ["INSERT"], echo())
            assert tid in await Trigger.get_triggers_ex(cur, app)
            # A failed registration rolls back to a savepoint: the transaction goes on.
            with pytest.raises(TriggerError):
                await Trigger.register_trigger_ex(cur, app, "missing", ["INSERT"], echo())
            assert await Trigger.disable_trigger_ex(cur, app, tid) is True
            assert await Trigger.enable_trigger_ex(cur, app, tid) is True
            await cur.execute(f"INSERT INTO {users} (email) VALUES ('in-tx')")  # type: ignore[arg-type]
            await cur.execute(f"SELECT count(*) FROM {app.prefix}jobs")  # type: ignore[arg-type]
            assert (await cur.fetchone())[0] == 1  # type: ignore[index]
    # Rolled back: no registration, no database trigger, no job.
    assert await Trigger.get_triggers(app) == {}
    assert await installed(app, users) == []
    assert await jobs(app) == []


async def test_a_deleted_queue_never_fails_the_users_writes(app: Chancy) -> None:
    await register(app, operations=["INSERT"], level="row")
    await app.delete_queue("q")
    await sql(app, f"INSERT INTO {app.prefix}users (email) VALUES ('x')")
    (job,) = await jobs(app)
    # It waits, as a Python push to an undeclared queue would, until "q" is declared again.
    assert job["queue"] == "q" and job["state"] == "pending"


async def test_a_renamed_table_keeps_its_triggers_and_they_can_be_removed(app: Chancy) -> None:
    tid = await register(app, operations=["INSERT"], level="row")
    await sql(app, f"ALTER TABLE {app.prefix}users RENAME TO {app.prefix}members")
    await sql(app, f"INSERT INTO {app.prefix}members (email) VALUES ('x')")
    assert len(await jobs(app)) == 1
    await Trigger.unregister_trigger(app, tid)
    assert await installed(app, f"{app.prefix}members") == []


async def test_a_long_prefix_gets_trigger_names_postgresql_does_not_truncate(
    dsn: str, prefix: str
) -> None:
    from tests.conftest import migrated_app

    long_prefix = (prefix + "x" * 40)[:39] + "_"
    async with migrated_app(dsn, long_prefix, [Trigger()], pool=2) as app:
        from chancy import Queue

        await app.declare(Queue("q"))
        table = f"{long_prefix}t"
        await sql(app, f"CREATE TABLE {table} (id int PRIMARY KEY)")
        tid = await Trigger.register_trigger(
            app,
            table_name=table,
            operations=["INSERT", "UPDATE", "DELETE"],
            job_template=echo(),
            level="row",
        )
        names = await installed(app, table)
        assert names == sorted(f"trigger_{tid.hex}_{op}" for op in ("delete", "insert", "update"))
        await sql(app, f"INSERT INTO {table} VALUES (1)")
        await sql(app, f"DELETE FROM {table}")
        assert [j["meta"]["trigger"]["operation"] for j in await jobs(app)] == [
            "INSERT",
            "DELETE",
        ]


# -- bad input: a clear error, and nothing half-created ----------------------------------


async def _nothing_created(app: Chancy) -> None:
    assert await Trigger.get_triggers(app) == {}
    assert await installed(app, f"{app.prefix}users") == []


def _unchecked_job(func: str) -> Job:
    """A Job whose func was changed after its checks ran (as a hand-edited object could be)."""
    job = echo()
    object.__setattr__(job, "func", func)
    return job


BAD_INPUT: list[tuple[str, dict[str, Any], str]] = [
    ("missing table", {"table_name": "no_such_table"}, "there is no table public.no_such_table"),
    ("wrong schema", {"schema_name": "nope"}, "there is no table nope."),
    ("unknown operation", {"operations": ["INSERT", "TRUNCATE"]}, "Invalid operation"),
    ("no operations", {"operations": []}, "cannot be empty"),
    ("operations as a string", {"operations": "INSERT"}, "must be a list"),
    (
        "bad WHEN",
        {"level": "row", "when": "NEW.no_such_column > 1"},
        "column new.no_such_column does not exist",
    ),
    (
        "WHEN valid for INSERT only",
        {"operations": ["INSERT", "DELETE"], "level": "row", "when": "NEW.active"},
        "cannot be used for DELETE",
    ),
    ("WHEN not boolean", {"level": "row", "when": "NEW.email"}, "must be type boolean"),
    ("WHEN breaking out", {"level": "row", "when": "true) OR (true"}, "closes a parenthesis"),
    ("WHEN with a statement", {"level": "row", "when": "true; DROP TABLE x"}, "contains ';'"),
    ("WHEN at statement level", {"when": "true"}, "needs level='row'"),
    ("func not a dotted path", {"job_template": _unchecked_job("send_email")}, "import path"),
    ("not a job", {"job_template": "tests.trigger.jobs.echo"}, "invalid job_template"),
    ("unknown queue", {"job_template": Job(func=ECHO, queue="nowhere")}, "'nowhere' is not"),
    ("unknown column", {"level": "row", "kwargs_columns": ["id", "nope"]}, "no such column"),
    ("key column unknown", {"level": "row", "unique_key": "u:{nope}"}, "no such column"),
    ("key template bad", {"level": "row", "unique_key": "u:{id"}, "not a valid template"),
    ("key template at statement level", {"unique_key": "u:{id}"}, "need level='row'"),
    ("unknown level", {"level": "each"}, "level must be"),
]


@pytest.mark.parametrize(("case", "options", "message"), BAD_INPUT, ids=[b[0] for b in BAD_INPUT])
async def test_bad_input_is_a_clear_error_and_nothing_is_created(
    app: Chancy, case: str, options: dict[str, Any], message: str
) -> None:
    options = {"operations": ["INSERT"], **options}
    with pytest.raises(TriggerError) as caught:
        await register(app, **options)
    assert message in str(caught.value), caught.value
    assert isinstance(caught.value, ValueError)  # as 0.26 raises for bad operations
    await _nothing_created(app)


async def test_a_job_template_with_a_bad_func_cannot_even_be_made() -> None:
    from chancy.errors import InvalidJobError

    with pytest.raises(InvalidJobError, match="not an import path"):
        Job(func="send_email", queue="q")


async def test_a_table_without_a_primary_key_needs_kwargs_columns(app: Chancy) -> None:
    table = f"{app.prefix}events_log"
    await sql(app, f"CREATE TABLE {table} (body text)")
    with pytest.raises(TriggerError, match="no primary key"):
        await register(app, table_name=table, operations=["INSERT"], level="row")
    await register(app, table_name=table, operations=["INSERT"], level="row", kwargs_columns=[])
    await sql(app, f"INSERT INTO {table} VALUES ('x')")
    assert [j["kwargs"] for j in await jobs(app)] == [{}]


async def test_enabling_a_trigger_whose_table_is_gone_is_a_clear_error(app: Chancy) -> None:
    tid = await register(app, operations=["INSERT"])
    await Trigger.disable_trigger(app, tid)
    await sql(app, f"DROP TABLE {app.prefix}users")
    with pytest.raises(TriggerError, match="there is no table"):
        await Trigger.enable_trigger(app, tid)
    assert (await Trigger.get_triggers(app))[tid].enabled is False
    await Trigger.unregister_trigger(app, tid)  # removing it still works
    assert await Trigger.get_triggers(app) == {}


async def test_without_the_plugins_tables_the_error_says_to_migrate(chancy: Chancy) -> None:
    with pytest.raises(TriggerError, match="add Trigger"):
        await Trigger.get_triggers(chancy)


async def test_workers_wake_for_trigger_jobs_on_commit(app: Chancy) -> None:
    await register(app, operations=["INSERT"], level="row")
    async with Worker(app, register_signal_handlers=False, shutdown_timeout=5) as worker:
        await eventually(lambda: "q" in worker.executors)
        first = await app.push(echo())
        await app.wait_for_job(first, timeout=20)
        # The queue polls every 60 s: only the trigger's NOTIFY, sent on commit, wakes it.
        await sql(app, f"INSERT INTO {app.prefix}users (email) VALUES ('x')")
        row = next(j for j in await jobs(app) if j["id"] != first.identifier)
        done = await app.wait_for_job(row["id"], timeout=5)
    assert done is not None and done.state == QueuedJob.State.SUCCEEDED


async def test_the_writing_session_needs_no_search_path(dsn: str, app: Chancy) -> None:
    await register(app, operations=["INSERT"], level="row")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET search_path = pg_catalog")
        conn.execute(f"INSERT INTO public.{app.prefix}users (email) VALUES ('x')")  # type: ignore[call-overload]
    assert len(await jobs(app)) == 1


async def test_conditions_with_quoted_semicolons_and_parentheses_work(app: Chancy) -> None:
    users = f"{app.prefix}users"
    await register(
        app,
        operations=["INSERT"],
        level="row",
        when="NEW.email <> 'skip;me)' AND NEW.email <> E'\\'also;)' /* ; ) */",
    )
    assert len(await installed(app, users)) == 1
    await sql(app, f"INSERT INTO {users} (email) VALUES ('skip;me)'), (E'\\'also;)'), ('keep;me)')")
    assert [j["kwargs"] for j in await jobs(app)] == [{"id": 3}]


async def test_quoted_schema_table_and_column_names(dsn: str, app: Chancy) -> None:
    schema, table = f"{app.prefix}CRM", "People Table"
    await sql(app, f'CREATE SCHEMA "{schema}"')
    try:
        await sql(app, f'CREATE TABLE "{schema}"."{table}" ("Person Id" int PRIMARY KEY, "E" text)')
        tid = await Trigger.register_trigger(
            app,
            table_name=table,
            schema_name=schema,
            operations=["INSERT"],
            job_template=echo(),
            level="row",
            when='NEW."E" IS NOT NULL',
            kwargs_columns=["Person Id", "E"],
            unique_key="person:{Person Id}",
        )
        await sql(app, f'INSERT INTO "{schema}"."{table}" VALUES (7, \'x\'), (8, NULL)')
        (made,) = await jobs(app)
        assert made["kwargs"] == {"Person Id": 7, "E": "x"}
        assert made["unique_key"] == "person:7"
        assert made["meta"]["trigger"]["schema_name"] == schema
        assert made["meta"]["trigger"]["table_name"] == table
        assert (await Trigger.get_triggers(app))[tid].schema_name == schema
        await Trigger.unregister_trigger(app, tid)
        await sql(app, f'INSERT INTO "{schema}"."{table}" VALUES (9, \'y\')')
        assert len(await jobs(app)) == 1
    finally:
        await sql(app, f'DROP SCHEMA "{schema}" CASCADE')


async def test_a_partitioned_table(app: Chancy) -> None:
    table = f"{app.prefix}events_by_day"
    await sql(
        app,
        f"CREATE TABLE {table} (id int, day date, PRIMARY KEY (id, day)) PARTITION BY RANGE (day)",
    )
    await sql(
        app,
        f"CREATE TABLE {table}_2026 PARTITION OF {table}"
        " FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
    )
    tid = await register(app, table_name=table, operations=["INSERT"], level="row")
    await sql(app, f"INSERT INTO {table} VALUES (1, '2026-05-01')")
    (made,) = await jobs(app)
    assert made["kwargs"] == {"id": 1, "day": "2026-05-01"}
    assert await Trigger.disable_trigger(app, tid)
    assert await installed(app, table) == [] and await installed(app, f"{table}_2026") == []
    assert await Trigger.enable_trigger(app, tid)
    await Trigger.unregister_trigger(app, tid)
    await sql(app, f"INSERT INTO {table} VALUES (2, '2026-05-01')")
    assert len(await jobs(app)) == 1
