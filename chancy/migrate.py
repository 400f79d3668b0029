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
from importlib import resources
from typing import TYPE_CHECKING, Any, cast

from chancy.errors import MigrationError, MigrationsNeededError
from chancy.store.loader import Queries, fill

if TYPE_CHECKING:
    import psycopg

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

    def __init__(self, key: str, package: str, *, prefix: str) -> None:
        self.key = key
        self.package = package
        self.prefix = prefix
        self.queries = Queries("chancy.store.sql", prefix)
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

    async def migrate(self, cursor: psycopg.AsyncCursor[Any], to_version: int | None = None) -> int:
        """Move this line to ``to_version`` (head when None); return how many steps ran.

        The caller holds the migration lock and a transaction.
        """
        target = self.head if to_version is None else to_version
        if target < 0 or target > self.head or 0 < target < self.base:
            valid = f"0 or {self.base}..{self.head}" if self.steps else "0"
            raise MigrationError(
                f"migration line {self.key!r} has no version {target}; valid versions: {valid}"
            )
        current = await self.get_current_version(cursor)
        if current > self.head:
            raise MigrationError(
                f"the database has {self.key!r} at version {current}, newer than this code"
                f" knows ({self.head}); upgrade chancy instead of migrating down"
            )
        ran = 0
        by_version = {step.version: step for step in self.steps}
        if target > current:
            for version in range(max(current + 1, self.base), target + 1):
                await self._apply(cursor, by_version[version].up, True)
                ran += 1
        elif target < current:
            for version in range(current, max(target, self.base - 1), -1):
                await self._apply(cursor, by_version[version].down, False)
                ran += 1
        if ran:
            if target == 0:
                await cursor.execute(self.queries["schema_version_delete"], {"key": self.key})
            else:
                await cursor.execute(
                    self.queries["schema_version_set"], {"key": self.key, "version": target}
                )
        return ran


async def current_versions(cursor: psycopg.AsyncCursor[Any], prefix: str) -> dict[str, int]:
    """Every line's version, or {} when nothing is installed."""
    queries = Queries("chancy.store.sql", prefix)
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
