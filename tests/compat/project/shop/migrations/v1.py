"""The audit plugin's table, as a Chancy 0.26 plugin migration (a ``Migration`` class)."""

from psycopg import sql

from chancy.migrate import Migration


class CreateAuditTable(Migration):
    async def up(self, migrator, cursor):
        await cursor.execute(
            sql.SQL(
                "CREATE TABLE {table} ("
                " job_id uuid NOT NULL,"
                " func text NOT NULL,"
                " state text NOT NULL,"
                " recorded_at timestamptz NOT NULL DEFAULT now())"
            ).format(table=sql.Identifier(f"{migrator.prefix}shop_audit"))
        )

    async def down(self, migrator, cursor):
        await cursor.execute(
            sql.SQL("DROP TABLE {table}").format(
                table=sql.Identifier(f"{migrator.prefix}shop_audit")
            )
        )
