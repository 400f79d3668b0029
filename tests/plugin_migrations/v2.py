"""A Python migration, as plugins written against Chancy's API ship them."""

from typing import Any

from psycopg import sql

from chancy.migrate import Migration, Migrator


class AddColour(Migration):
    async def up(self, migrator: Migrator, cursor: Any) -> None:
        await cursor.execute(
            sql.SQL("ALTER TABLE {} ADD COLUMN colour text").format(
                sql.Identifier(f"{migrator.prefix}plugin_things")
            )
        )

    async def down(self, migrator: Migrator, cursor: Any) -> None:
        await cursor.execute(
            sql.SQL("ALTER TABLE {} DROP COLUMN colour").format(
                sql.Identifier(f"{migrator.prefix}plugin_things")
            )
        )
