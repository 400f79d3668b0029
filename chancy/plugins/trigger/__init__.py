"""Trigger: database triggers on your own tables that push jobs when rows change.

::

    chancy = Chancy(dsn, plugins=[Trigger()])
    await chancy.migrate()
    trigger_id = await Trigger.register_trigger(
        chancy,
        table_name="users",
        operations=["INSERT", "UPDATE"],
        job_template=sync_user,          # an @job function or a Job
        level="row",                     # one job per changed row (default: per statement)
        when="NEW.email IS DISTINCT FROM OLD.email OR TG_OP = 'INSERT'",
        kwargs_columns=["id", "email"],  # copied from the row into the job's kwargs
        unique_key="user-sync:{id}",     # a burst of changes to one row makes one job
    )

The jobs are pushed by PostgreSQL itself, through the ``{prefix}push`` SQL function, inside
the transaction that changed the rows: a job exists exactly when the change commits, even if
no worker is running, and workers are woken by NOTIFY on commit.

Compatible with Chancy 0.26's ``chancy.plugins.trigger``: the same classmethods, arguments,
``TriggerConfig`` fields, ``meta["trigger"]`` of the jobs, identifier and migration line, so a
database made by 0.26 with triggers migrates forward and its triggers keep firing.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

import psycopg
import psycopg.errors
from psycopg.rows import dict_row

from chancy.plugin import Plugin
from chancy.plugins.trigger import store
from chancy.plugins.trigger.checks import (
    OPERATIONS,
    TriggerError,
    check_registration,
)
from chancy.plugins.trigger.config import (
    TriggerConfig,
    base_name,
    database_error,
    not_found,
    parse_trigger_id,
)
from chancy.store import run
from chancy.store.runner import dict_cursor
from chancy.utils import chancy_uuid, json_dumps

if TYPE_CHECKING:
    from chancy.app import Chancy

__all__ = ["OPERATIONS", "Trigger", "TriggerConfig", "TriggerError"]

Level = Literal["statement", "row"]
#: Table kinds a trigger can be put on: ordinary and partitioned tables.
_TABLE_KINDS = ("r", "p")


@contextlib.asynccontextmanager
async def _transaction(
    chancy: Chancy, cursor: psycopg.AsyncCursor[Any] | None
) -> AsyncIterator[psycopg.AsyncCursor[Any]]:
    """A dict cursor in a (sub)transaction: the caller's, under a savepoint, or a new one.

    The savepoint makes a failed registration leave nothing behind while the caller's own
    transaction stays usable.
    """
    if cursor is not None:
        async with cursor.connection.transaction(), dict_cursor(cursor) as cur:
            yield cur
        return
    pool = await chancy.open()
    async with (
        pool.connection() as conn,
        conn.transaction(),
        conn.cursor(row_factory=dict_row) as cur,
    ):
        yield cur


async def _install(cur: psycopg.AsyncCursor[Any], prefix: str, tid: uuid.UUID, doing: str) -> None:
    """Create a trigger's database triggers; a failure becomes a TriggerError saying why.

    The caller's transaction is then aborted, and its rollback leaves nothing behind.
    """
    try:
        await run(cur, store.install(prefix, tid))
    except psycopg.errors.UndefinedFunction as exc:
        if "trigger_install" not in str(exc):
            raise database_error(exc, doing) from exc
        raise TriggerError(
            f"cannot {doing}: the trigger tables are older than this code; run"
            " `await chancy.migrate()` with Trigger() among the app's plugins"
        ) from exc
    except (psycopg.OperationalError, psycopg.InterfaceError):
        raise
    except psycopg.Error as exc:
        raise database_error(exc, doing) from exc


@contextlib.contextmanager
def _explain_missing_table(chancy: Chancy) -> Any:
    try:
        yield
    except psycopg.errors.UndefinedTable as exc:
        if f"{chancy.prefix}triggers" not in str(exc):
            raise
        raise TriggerError(
            f"there is no {chancy.prefix}triggers table: add Trigger() to"
            " Chancy(plugins=[...]) and run `await chancy.migrate()` (or `chancy --app ..."
            " misc migrate`)"
        ) from exc


class Trigger(Plugin):
    """Install database triggers on your tables that push jobs when their rows change.

    **Statement level** (the default, as in Chancy 0.26): one job per INSERT, UPDATE or
    DELETE statement, however many rows it touched (even none), with the template's kwargs.

    **Row level** (``level="row"``): one push per changed row, optionally only for rows
    matching a ``when`` condition (SQL over ``NEW`` and ``OLD``, checked by PostgreSQL when the
    trigger is created). The job's kwargs get the row's ``kwargs_columns`` (its primary key
    by default), taken from ``OLD`` for DELETE and from ``NEW`` otherwise. A ``unique_key``
    template such as ``"user-sync:{id}"`` is filled from the row, so that while a job for a
    row is waiting (or running), more changes to that row return it instead of adding jobs;
    a row whose key column is NULL gets a job with no key.

    Every job is pushed by ``{prefix}push`` in the transaction that changed the rows, so it
    exists exactly when that transaction commits, and its ``meta["trigger"]`` holds
    ``operation``, ``timestamp``, ``table_name``, ``schema_name``, ``trigger_name`` and
    ``trigger_id``. A trigger's job is pushed even when its queue was deleted after
    registration (it waits until the queue is declared again), so deleting a queue never
    makes your own writes fail.

    Disabling a trigger drops its database triggers and keeps its registration; enabling
    creates them again. Migrating the ``trigger`` line down to 0 (``chancy.migrate(
    to_version=0)``) drops every database trigger it installed before its table.

    Registering, enabling and removing take a brief ``SHARE ROW EXCLUSIVE`` lock on the table
    (as any ``CREATE TRIGGER`` does), so writes to it wait for that transaction to end. The
    roles that write to the table need INSERT on ``{prefix}jobs`` and SELECT on
    ``{prefix}triggers`` and ``{prefix}queues``: the triggers run as the writing role.
    """

    @classmethod
    def get_identifier(cls) -> str:
        return "chancy.trigger"

    def migrate_key(self) -> str | None:
        return "trigger"

    def migrate_package(self) -> str | None:
        return "chancy.plugins.trigger.migrations"

    def api_plugin(self) -> str | None:
        """The dashboard's routes and page for this plugin (Chancy 0.26's hook)."""
        return "chancy.plugins.trigger.api.TriggerApiPlugin"

    def get_tables(self) -> list[str]:
        """The tables this plugin owns, without the prefix (as in Chancy 0.26)."""
        return ["triggers"]

    # -- registering ----------------------------------------------------------------------

    @classmethod
    async def register_trigger(
        cls,
        chancy: Chancy,
        *,
        table_name: str,
        operations: list[str],
        job_template: Any,
        schema_name: str = "public",
        enabled: bool = True,
        level: Level = "statement",
        when: str | None = None,
        kwargs_columns: Sequence[str] | None = None,
        unique_key: str | None = None,
    ) -> uuid.UUID:
        """Register a trigger that pushes ``job_template`` when rows of a table change.

        Example (as in Chancy 0.26)::

            @job(queue="events")
            def handle_user_change(): ...

            trigger_id = await Trigger.register_trigger(
                chancy,
                table_name="users",
                operations=["INSERT", "UPDATE"],
                job_template=handle_user_change,
            )

        :param table_name: the table to watch (it must exist).
        :param operations: one or more of ``'INSERT'``, ``'UPDATE'``, ``'DELETE'``
            (case-insensitive).
        :param job_template: a ``Job`` or an ``@job`` function; its queue must be declared.
        :param schema_name: the table's schema.
        :param enabled: False registers it without installing it (see
            :meth:`enable_trigger`); it is still checked by being created once.
        :param level: ``'statement'`` (one job per statement) or ``'row'`` (one per row).
        :param when: row level: the SQL condition of the triggers' WHEN clause.
        :param kwargs_columns: row level: the row's columns to pass in the job's kwargs
            (default: its primary key; ``[]`` for none).
        :param unique_key: the jobs' unique key; at row level ``{column}`` placeholders are
            filled from the row. None keeps the template's own ``unique_key``.
        :return: the trigger's id.
        :raises TriggerError: (a ``ValueError``) for bad input, with nothing stored.
        """
        return await cls._register(
            chancy,
            None,
            table_name,
            operations,
            job_template,
            schema_name=schema_name,
            enabled=enabled,
            level=level,
            when=when,
            kwargs_columns=kwargs_columns,
            unique_key=unique_key,
        )

    @classmethod
    async def register_trigger_ex(
        cls,
        cursor: psycopg.AsyncCursor[Any],
        chancy: Chancy,
        table_name: str,
        operations: list[str],
        job_template: Any,
        *,
        schema_name: str = "public",
        enabled: bool = True,
        level: Level = "statement",
        when: str | None = None,
        kwargs_columns: Sequence[str] | None = None,
        unique_key: str | None = None,
    ) -> uuid.UUID:
        """:meth:`register_trigger` inside the caller's transaction (argument order as 0.26).

        The trigger exists only if that transaction commits; a failed registration is rolled
        back to a savepoint, so the caller's transaction stays usable.
        """
        return await cls._register(
            chancy,
            cursor,
            table_name,
            operations,
            job_template,
            schema_name=schema_name,
            enabled=enabled,
            level=level,
            when=when,
            kwargs_columns=kwargs_columns,
            unique_key=unique_key,
        )

    @classmethod
    async def _register(
        cls,
        chancy: Chancy,
        cursor: psycopg.AsyncCursor[Any] | None,
        table_name: str,
        operations: list[str],
        job_template: Any,
        *,
        schema_name: str,
        enabled: bool,
        level: str,
        when: str | None,
        kwargs_columns: Sequence[str] | None,
        unique_key: str | None,
    ) -> uuid.UUID:
        # Everything that can be checked without the database is checked first.
        checked = check_registration(
            table_name,
            operations,
            job_template,
            schema_name=schema_name,
            enabled=enabled,
            level=level,
            when=when,
            kwargs_columns=kwargs_columns,
            unique_key=unique_key,
        )
        ops, job, packed = checked.operations, checked.job, checked.packed
        condition, fields, columns = checked.condition, checked.fields, checked.columns
        new_id = chancy_uuid()
        prefix = chancy.prefix
        async with _transaction(chancy, cursor) as cur:
            table: Any = await run(cur, store.table_info(prefix, schema_name, table_name))
            if table is None or table["kind"] not in _TABLE_KINDS:
                what = "no table" if table is None else "no ordinary or partitioned table"
                raise TriggerError(
                    f"there is {what} {schema_name}.{table_name}; check table_name and"
                    " schema_name (schema_name defaults to 'public', and names are"
                    " case-sensitive)"
                )
            if level == "row":
                if columns is None:
                    columns = list(table["primary_key"])
                    if not columns:
                        raise TriggerError(
                            f"table {table['name']} has no primary key to pass in the job's"
                            " kwargs; give kwargs_columns=[...] (or [] for none)"
                        )
                for what, names in (("kwargs_columns", columns), ("unique_key", fields)):
                    missing = [c for c in names if c not in table["columns"]]
                    if missing:
                        raise TriggerError(
                            f"{what} names {missing} but table {table['name']} has no such"
                            f" column; its columns are {list(table['columns'])}"
                        )
            declared: Any = await run(cur, store.queue_declared(prefix, job.queue))
            if not declared["declared"]:
                raise TriggerError(
                    f"the job template's queue {job.queue!r} is not declared; declare it first"
                    f" (await chancy.declare(Queue({job.queue!r})) or `chancy queue declare"
                    f" {job.queue}`)"
                )
            params = {
                "id": new_id,
                "table_name": table_name,
                "schema_name": schema_name,
                "trigger_name": base_name(chancy.prefix, new_id),
                "operations": json_dumps(ops),
                "job_template": packed,
                "enabled": enabled,
                "level": level,
                "condition": condition,
                "kwargs_columns": None if columns is None else json_dumps(columns),
                "unique_key": unique_key,
            }
            with _explain_missing_table(chancy):
                await run(cur, store.insert(prefix, params))
            # Created even when registered disabled: creating it is what checks the WHEN
            # condition against the table.
            await _install(cur, prefix, new_id, f"create the trigger on {table['name']}")
            if not enabled:
                await run(cur, store.uninstall(prefix, new_id))
        return new_id

    # -- removing, enabling, disabling ----------------------------------------------------

    @classmethod
    async def unregister_trigger(cls, chancy: Chancy, trigger_id: uuid.UUID | str) -> None:
        """Remove a trigger for good: its database triggers and its registration.

        :raises TriggerError: (a ``ValueError``) when there is no such trigger.
        """
        await cls._unregister(chancy, None, trigger_id)

    @classmethod
    async def unregister_trigger_ex(
        cls, cursor: psycopg.AsyncCursor[Any], chancy: Chancy, trigger_id: uuid.UUID | str
    ) -> None:
        """:meth:`unregister_trigger` inside the caller's transaction."""
        await cls._unregister(chancy, cursor, trigger_id)

    @classmethod
    async def _unregister(
        cls, chancy: Chancy, cursor: psycopg.AsyncCursor[Any] | None, trigger_id: Any
    ) -> None:
        tid = parse_trigger_id(trigger_id)
        prefix = chancy.prefix
        with _explain_missing_table(chancy):
            async with _transaction(chancy, cursor) as cur:
                row: Any = await run(cur, store.lock(prefix, tid))
                if row is None:
                    raise not_found(tid)
                await run(cur, store.uninstall(prefix, tid))
                await run(cur, store.delete(prefix, tid))

    @classmethod
    async def enable_trigger(cls, chancy: Chancy, trigger_id: uuid.UUID | str) -> bool:
        """Install a disabled trigger's database triggers again.

        :return: True if it was enabled, False if it already was.
        :raises TriggerError: when there is no such trigger, or its table is gone.
        """
        return await cls._toggle(chancy, None, trigger_id, True)

    @classmethod
    async def enable_trigger_ex(
        cls, cursor: psycopg.AsyncCursor[Any], chancy: Chancy, trigger_id: uuid.UUID | str
    ) -> bool:
        """:meth:`enable_trigger` inside the caller's transaction."""
        return await cls._toggle(chancy, cursor, trigger_id, True)

    @classmethod
    async def disable_trigger(cls, chancy: Chancy, trigger_id: uuid.UUID | str) -> bool:
        """Drop a trigger's database triggers but keep its registration, to enable it later.

        :return: True if it was disabled, False if it already was.
        :raises TriggerError: when there is no such trigger.
        """
        return await cls._toggle(chancy, None, trigger_id, False)

    @classmethod
    async def disable_trigger_ex(
        cls, cursor: psycopg.AsyncCursor[Any], chancy: Chancy, trigger_id: uuid.UUID | str
    ) -> bool:
        """:meth:`disable_trigger` inside the caller's transaction."""
        return await cls._toggle(chancy, cursor, trigger_id, False)

    @classmethod
    async def _toggle(
        cls,
        chancy: Chancy,
        cursor: psycopg.AsyncCursor[Any] | None,
        trigger_id: Any,
        enabled: bool,
    ) -> bool:
        tid = parse_trigger_id(trigger_id)
        prefix = chancy.prefix
        with _explain_missing_table(chancy):
            async with _transaction(chancy, cursor) as cur:
                row: Any = await run(cur, store.lock(prefix, tid))
                if row is None:
                    raise not_found(tid)
                if row["enabled"] == enabled:
                    return False
                if enabled:
                    await _install(cur, prefix, tid, f"enable trigger {tid}")
                else:
                    await run(cur, store.uninstall(prefix, tid))
                await run(cur, store.set_enabled(prefix, tid, enabled))
        return True

    # -- reading --------------------------------------------------------------------------

    @classmethod
    async def get_triggers(
        cls, chancy: Chancy, *, trigger_ids: list[uuid.UUID | str] | None = None
    ) -> dict[uuid.UUID, TriggerConfig]:
        """Registered triggers by id, newest first (all of them, or those in ``trigger_ids``)."""
        pool = await chancy.open()
        async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return await cls.get_triggers_ex(cur, chancy, trigger_ids=trigger_ids)

    @classmethod
    async def get_triggers_ex(
        cls,
        cursor: psycopg.AsyncCursor[Any],
        chancy: Chancy,
        *,
        trigger_ids: list[uuid.UUID | str] | None = None,
    ) -> dict[uuid.UUID, TriggerConfig]:
        """:meth:`get_triggers` on the caller's cursor."""
        ids = None if trigger_ids is None else [parse_trigger_id(t) for t in trigger_ids]
        with _explain_missing_table(chancy):
            async with dict_cursor(cursor) as cur:
                found = await run(cur, store.get(chancy.prefix, ids))
        return {config.id: config for config in found}
