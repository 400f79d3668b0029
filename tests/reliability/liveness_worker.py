"""A worker with chancy's defaults: ``python -m tests.reliability.liveness_worker ID [TAG]``.

Default plugins and default Worker settings (heartbeat every 30 s, timeout 90 s; Recovery and
Leadership probing sessions every second with a 2 s grace), so the liveness tests measure
what users get out of the box. DSN and prefix come from the environment
(``tests.reliability.chaos_jobs``); the optional tag selects the queues it serves.
"""

from __future__ import annotations

import asyncio
import os
import sys

from chancy import Chancy, Worker
from tests.reliability.chaos_jobs import DSN_ENV, PREFIX_ENV


async def serve(worker_id: str, tags: set[str]) -> None:
    app = Chancy(
        os.environ[DSN_ENV],
        prefix=os.environ[PREFIX_ENV],
        min_connection_pool_size=1,
        max_connection_pool_size=3,
    )
    async with app:
        async with Worker(app, worker_id=worker_id, tags=tags) as worker:
            print(f"ready {worker_id} {os.getpid()}", flush=True)
            await worker.wait_for_shutdown()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], set(sys.argv[2:])))
