"""A chaos-test worker process: ``python -m tests.reliability.chaos_worker WORKER_ID``.

Short heartbeats and a fast Recovery, so a killed worker's jobs come back within seconds,
and no cap on recoveries (a job may see many of its workers killed). The DSN and prefix come
from the environment (``tests.reliability.chaos_jobs``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from chancy import Chancy, Worker
from chancy.plugin import Plugin
from chancy.plugins.leadership import Leadership
from chancy.plugins.pruner import Pruner
from chancy.plugins.recovery import Recovery
from chancy.rule import JobRules
from tests.reliability.chaos_jobs import DSN_ENV, PREFIX_ENV

HEARTBEAT = 0.5
HEARTBEAT_TIMEOUT = 2.0
#: Overrides HEARTBEAT_TIMEOUT for one worker process (the partition test).
TIMEOUT_ENV = "CHANCY_CHAOS_HEARTBEAT_TIMEOUT"
#: When set (seconds), the worker also runs the Pruner, deleting finished jobs that old
#: (the soak test).
PRUNE_ENV = "CHANCY_CHAOS_PRUNE_AFTER"


async def serve(worker_id: str) -> None:
    app = Chancy(
        os.environ[DSN_ENV],
        prefix=os.environ[PREFIX_ENV],
        plugins=[
            Leadership(poll_interval=0.5, timeout=2.0),
            Recovery(poll_interval=0.5, max_recoveries=10_000),
            *_pruner(),
        ],
        no_default_plugins=True,
        min_connection_pool_size=1,
        max_connection_pool_size=3,
    )
    async with app:
        worker = Worker(
            app,
            worker_id=worker_id,
            heartbeat_poll_interval=HEARTBEAT,
            heartbeat_timeout=float(os.environ.get(TIMEOUT_ENV, HEARTBEAT_TIMEOUT)),
            shutdown_timeout=5,
        )
        async with worker:
            print(f"ready {worker_id} {os.getpid()}", flush=True)
            await worker.wait_for_shutdown()


def _pruner() -> list[Plugin]:
    after = os.environ.get(PRUNE_ENV)
    if not after:
        return []
    return [Pruner(JobRules.Age() > float(after), poll_interval=1, maximum_to_prune=100_000)]


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format=f"{sys.argv[1]} %(levelname)s %(message)s")
    # Fenced (ignored) late writes are logged at INFO: the partition test looks for them.
    logging.getLogger("chancy.completer").setLevel(logging.INFO)
    asyncio.run(serve(sys.argv[1]))


if __name__ == "__main__":
    main()
