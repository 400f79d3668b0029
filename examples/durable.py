"""The job of docs/durable.md: a payment whose database writes must happen exactly once.

``charge`` bumps the order's row and completes its own job in one transaction, so the job
is ``succeeded`` exactly when the charge is committed, even if the worker dies in between.
"""

from __future__ import annotations

import os

import psycopg

from chancy import Chancy, QueuedJob

DSN = os.environ.get("CHANCY_DSN", "postgresql://localhost/postgres")
PREFIX = "docs_durable_"
#: The app the job uses for ``complete_job_ex`` (it runs on the job's own connection).
app = Chancy(DSN, prefix=PREFIX)


async def charge(order_id: int, *, job: QueuedJob) -> None:
    async with await psycopg.AsyncConnection.connect(DSN) as conn:
        async with conn.transaction(), conn.cursor() as cur:
            # First: it locks the job's row, and raises JobNoLongerOwned (rolling the
            # transaction back) if the job was recovered elsewhere meanwhile.
            await app.complete_job_ex(cur, job, result={"order": order_id, "charged": True})
            await cur.execute("UPDATE orders SET charges = charges + 1 WHERE id = %s", (order_id,))
