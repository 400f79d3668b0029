"""A worker behind PgBouncer, for the kill test.

``python -m tests.fleet.bouncer_worker DSN LISTEN_DSN|- PREFIX ID TAG``.

Its pool goes through the pooler (``pooled=True``); ``-`` for LISTEN_DSN means no direct
session (polling and heartbeat liveness). Heartbeats are short so that a killed worker is
recovered within seconds even without a session.
"""

from __future__ import annotations

import asyncio
import os
import sys

from chancy import Chancy, Worker
from chancy.plugins.leadership import Leadership
from chancy.plugins.recovery import Recovery


async def serve(dsn: str, listen_dsn: str, prefix: str, worker_id: str, tag: str) -> None:
    app = Chancy(
        dsn,
        listen_dsn=None if listen_dsn == "-" else listen_dsn,
        pooled=True,
        prefix=prefix,
        plugins=[Leadership(poll_interval=1, timeout=4), Recovery(poll_interval=1)],
        min_connection_pool_size=1,
        max_connection_pool_size=3,
    )
    async with app:
        worker = Worker(
            app, worker_id=worker_id, tags={tag}, heartbeat_poll_interval=1, heartbeat_timeout=4
        )
        async with worker:
            print(f"ready {worker_id} {os.getpid()}", flush=True)
            await worker.wait_for_shutdown()


if __name__ == "__main__":
    asyncio.run(serve(*sys.argv[1:6]))
