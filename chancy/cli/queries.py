"""The command line's own named queries (``chancy/cli/sql/cli.sql``), run on the app's pool."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from psycopg import sql

    from chancy.app import Chancy


async def fetch_all(
    chancy: Chancy, name: str, params: Mapping[str, Any], *, where: sql.Composable | None = None
) -> list[dict[str, Any]]:
    """Run query ``name``; ``where`` (a rule compiled by chancy.rule) fills its ``{where}``."""
    from psycopg import sql
    from psycopg.rows import dict_row

    from chancy.store.loader import queries

    text = queries("chancy.cli.sql", chancy.prefix)[name]
    query: Any = sql.SQL(text).format(where=where) if where is not None else text
    pool = await chancy.open()
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, dict(params))
        return await cur.fetchall()


async def db_now(chancy: Chancy) -> datetime:
    """The database's ``now()``: the clock relative times and liveness are measured by."""
    [row] = await fetch_all(chancy, "cli_now", {})
    now: datetime = row["now"]
    return now
