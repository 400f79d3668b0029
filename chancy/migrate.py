"""Versioned schema migrations: the core line and one line per plugin.

Each line is a package holding ``vNNNN.up.sql`` / ``vNNNN.down.sql`` pairs (``{prefix}`` is
filled in) and, for plugins written against Chancy's API, optionally ``Migration`` classes in
``vN.py`` modules. The first file of a line may start above 1: it creates that version's end
state in one step (the core line starts at 8, continuing Chancy's numbering).
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import inspect
import re
from collections.abc import Iterable
from importlib import resources
from typing import TYPE_CHECKING, Any, cast

import psycopg
from psycopg.rows import dict_row

from chancy.errors import MigrationError, MigrationsNeededError
from chancy.store.loader import fill
from chancy.store.loader import queries as load_queries

if TYPE_CHECKING:
    pass

__all__ = ["Migration", "MigrationError", "MigrationsNeededError", "Migrator"]

_SQL_FILE = re.compile(r"^v(\d+)\.(up|down)\.sql$")
_PY_FILE = re.compile(r"^v(\d+)\.py$")


class Migration(abc.ABC):
    """A migration written in Python: ``up`` and ``down`` get the migrator and a cursor."""

    @abc.abstractmethod
    async def up(self, migrator: Migrator, cursor: psycopg.AsyncCursor[Any]) -> None: ...

    @abc.abstractmethod
    async def down(self, migrator: Migrator, cursor: psycopg.AsyncCursor[Any]) -> None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class _Step:
    version: int
    up: str | Migration
    down: str | Migration


class Migrator:
    """Applies one migration line (``key``) from ``package`` for one table prefix."""

    def __init__(
        self,
        key: str,
        package: str | None = None,
        *,
        prefix: str = "",
        migrations_package: str | None = None,
    ) -> None:
        package = package or migrations_package
        if not package:
            raise MigrationError("Migrator needs the package that holds the migrations")
        self.key = key
        self.package = package
        #: Chancy 0.26's name for ``package``.
        self.migrations_package = package
        self.prefix = prefix
        self.queries = load_queries("chancy.store.sql", prefix)
        self.steps = self._discover()

    @property
    def head(self) -> int:
        return self.steps[-1].version if self.steps else 0

    @property
    def base(self) -> int:
        """The version the first step creates (versions between 0 and this are not separate)."""
        return self.steps[0].version if self.steps else 0

    def _discover(self) -> list[_Step]:
        ups: dict[int, str | Migration] = {}
        downs: dict[int, str | Migration] = {}
        for entry in resources.files(self.package).iterdir():
            if m := _SQL_FILE.match(entry.name):
                target = ups if m.group(2) == "up" else downs
                target[int(m.group(1))] = entry.read_text(encoding="utf-8")
            elif m := _PY_FILE.match(entry.name):
                module = importlib.import_module(f"{self.package}.{entry.name[:-3]}")
                classes = [
                    obj
                    for obj in vars(module).values()
                    if inspect.isclass(obj)
                    and issubclass(obj, Migration)
                    and obj is not Migration
                    and obj.__module__ == module.__name__
                ]
                if len(classes) != 1:
                    raise MigrationError(
                        f"{module.__name__} must define exactly one Migration subclass"
                    )
                instance = classes[0]()
                ups[int(m.group(1))] = downs[int(m.group(1))] = instance
        if set(ups) != set(downs):
            raise MigrationError(
                f"migration line {self.key!r}: versions {sorted(set(ups) ^ set(downs))} lack"
                " an up or a down file"
            )
        versions = sorted(ups)
        if versions and versions != list(range(versions[0], versions[-1] + 1)):
            raise MigrationError(f"migration line {self.key!r} has gaps: {versions}")
        return [_Step(v, ups[v], downs[v]) for v in versions]

    async def _apply(
        self, cursor: psycopg.AsyncCursor[Any], script: str | Migration, up: bool
    ) -> None:
        if isinstance(script, Migration):
            await (script.up(self, cursor) if up else script.down(self, cursor))
        else:
            await cursor.execute(fill(script, self.prefix))

    async def get_current_version(self, cursor: psycopg.AsyncCursor[Any]) -> int:
        versions = await current_versions(cursor, self.prefix)
        return versions.get(self.key, 0)

    async def is_migration_required(self, cursor: psycopg.AsyncCursor[Any]) -> bool:
        return await self.get_current_version(cursor) != self.head

    async def migrate(
        self,
        conn: psycopg.AsyncConnection[Any] | psycopg.AsyncCursor[Any],
        to_version: int | None = None,
    ) -> int:
        """Move this line to ``to_version`` (head when None); return how many steps ran.

        Given a cursor, the caller holds the migration lock and a transaction. Given a
        connection (as Chancy 0.26's callers pass one), this opens the transaction and takes
        the lock itself.
        """
        if isinstance(conn, psycopg.AsyncConnection):
            async with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
                await cursor.execute(self.queries["migrate_lock"])
                await cursor.execute(self.queries["schema_version_create"])
                return await self.migrate(cursor, to_version)
        cursor = conn
        target, steps = self._plan(await self.get_current_version(cursor), to_version)
        for script, up in steps:
            await self._apply(cursor, script, up)
        if steps:
            await cursor.execute(*self._record(target))
        return len(steps)

    def migrate_sync(self, cursor: psycopg.Cursor[Any], to_version: int | None = None) -> int:
        """``migrate`` on a sync cursor (the caller holds the lock and a transaction).

        SQL steps run as they are; a Python step needs ``sync_up``/``sync_down`` methods
        (its ``up``/``down`` are coroutines), or this raises and the caller should use
        ``await chancy.migrate()``.
        """
        target, steps = self._plan(
            sync_current_versions(cursor, self.prefix).get(self.key, 0), to_version
        )
        for script, up in steps:
            if isinstance(script, Migration):
                method = getattr(script, "sync_up" if up else "sync_down", None)
                if method is None:
                    raise MigrationError(
                        f"migration line {self.key!r} has a Python step"
                        f" ({type(script).__name__}) with no sync form; run `await"
                        " chancy.migrate()` instead of sync_migrate()"
                    )
                method(self, cursor)
            else:
                cursor.execute(fill(script, self.prefix))
        if steps:
            cursor.execute(*self._record(target))
        return len(steps)

    def _plan(
        self, current: int, to_version: int | None
    ) -> tuple[int, list[tuple[str | Migration, bool]]]:
        """The target version and the steps (script, up?) that lead there from ``current``."""
        target = self.head if to_version is None else to_version
        if target < 0 or target > self.head or 0 < target < self.base:
            valid = f"0 or {self.base}..{self.head}" if self.steps else "0"
            raise MigrationError(
                f"migration line {self.key!r} has no version {target}; valid versions: {valid}"
            )
        if current > self.head:
            raise MigrationError(
                f"the database has {self.key!r} at version {current}, newer than this code"
                f" knows ({self.head}); upgrade chancy instead of migrating down"
            )
        by_version = {step.version: step for step in self.steps}
        if target > current:
            versions = range(max(current + 1, self.base), target + 1)
            return target, [(by_version[v].up, True) for v in versions]
        if target < current:
            versions = range(current, max(target, self.base - 1), -1)
            return target, [(by_version[v].down, False) for v in versions]
        return target, []

    def _record(self, target: int) -> tuple[Any, dict[str, Any]]:
        """The statement that records ``target`` as this line's version."""
        if target == 0:
            return self.queries["schema_version_delete"], {"key": self.key}
        return self.queries["schema_version_set"], {"key": self.key, "version": target}


#: The core migration line: its key and package.
CORE = ("chancy", "chancy.migrations.core")


def migrators(prefix: str, plugins: Iterable[Any]) -> list[Migrator]:
    """The core migration line, then each plugin's, in plugin order."""
    found = [Migrator(*CORE, prefix=prefix)]
    for plugin in plugins:
        key, package = plugin.migrate_key(), plugin.migrate_package()
        if key and package:
            found.append(Migrator(key, package, prefix=prefix))
    return found


async def migrate_all(
    conn: psycopg.AsyncConnection[Any],
    prefix: str,
    plugins: Iterable[Any],
    to_version: int | None = None,
) -> None:
    """Bring every line to head (or the core line to ``to_version``; 0 removes all), in one
    transaction under an advisory lock, so concurrent calls apply each version once."""
    lines = migrators(prefix, plugins)
    queries = lines[0].queries
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(queries["migrate_lock"])
        await cur.execute(queries["schema_version_create"])
        if to_version == 0:
            for migrator in reversed(lines):
                await migrator.migrate(cur, 0)
            await cur.execute(queries["schema_version_drop_if_empty"])
        else:
            for i, migrator in enumerate(lines):
                await migrator.migrate(cur, to_version if i == 0 else None)


def sync_migrate_all(
    conn: psycopg.Connection[Any],
    prefix: str,
    plugins: Iterable[Any],
    to_version: int | None = None,
) -> None:
    """``migrate_all`` on a sync connection (see ``Migrator.migrate_sync``)."""
    lines = migrators(prefix, plugins)
    queries = lines[0].queries
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(queries["migrate_lock"])
        cur.execute(queries["schema_version_create"])
        if to_version == 0:
            for migrator in reversed(lines):
                migrator.migrate_sync(cur, 0)
            cur.execute(queries["schema_version_drop_if_empty"])
        else:
            for i, migrator in enumerate(lines):
                migrator.migrate_sync(cur, to_version if i == 0 else None)


def out_of_date(versions: dict[str, int], prefix: str, plugins: Iterable[Any]) -> list[str]:
    """The lines behind their head, described (``key at 3 (needs 4)``); empty when current."""
    return [
        f"{m.key} at {versions.get(m.key, 0)} (needs {m.head})"
        for m in migrators(prefix, plugins)
        if versions.get(m.key, 0) < m.head
    ]


def migrations_needed(
    prefix: str, behind: list[str], *, sync: bool = False
) -> MigrationsNeededError:
    how = "chancy.sync_migrate()" if sync else "await chancy.migrate()"
    return MigrationsNeededError(
        f"the database schema for prefix {prefix!r} is out of date: "
        + ", ".join(behind)
        + f". Run `{how}` (or `chancy misc migrate`) first."
    )


async def current_versions(cursor: psycopg.AsyncCursor[Any], prefix: str) -> dict[str, int]:
    """Every line's version, or {} when nothing is installed."""
    queries = load_queries("chancy.store.sql", prefix)
    await cursor.execute(queries["schema_version_exists"], {"table": f"{prefix}schema_version"})
    row = await cursor.fetchone()
    exists = row["exists"] if isinstance(row, dict) else row[0]  # type: ignore[index]
    if not exists:
        return {}
    await cursor.execute(queries["schema_version_all"])
    rows = await cursor.fetchall()
    return {
        cast(str, r["version_of"] if isinstance(r, dict) else r[0]): cast(
            int, r["version"] if isinstance(r, dict) else r[1]
        )
        for r in rows
    }


def sync_current_versions(cursor: psycopg.Cursor[Any], prefix: str) -> dict[str, int]:
    """``current_versions`` on a sync cursor."""
    queries = load_queries("chancy.store.sql", prefix)
    cursor.execute(queries["schema_version_exists"], {"table": f"{prefix}schema_version"})
    row = cursor.fetchone()
    exists = row["exists"] if isinstance(row, dict) else row[0]  # type: ignore[index]
    if not exists:
        return {}
    cursor.execute(queries["schema_version_all"])
    return {
        cast(str, r["version_of"] if isinstance(r, dict) else r[0]): cast(
            int, r["version"] if isinstance(r, dict) else r[1]
        )
        for r in cursor.fetchall()
    }
