"""A worker process for the batch crash test: ``python -m tests.batch.runner``.

Configured by the JSON in ``CHANCY_BATCH_RUNNER``: ``{"dsn", "prefix", "worker_id", "tags"}``.
It runs one Worker (Leadership, Recovery with short intervals, BatchPlugin) until SIGTERM or
SIGKILL, and logs "worker <id> started" once running.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys

from chancy import Chancy, Worker
from chancy.plugins.batch import BatchPlugin
from chancy.plugins.leadership import Leadership
from chancy.plugins.recovery import Recovery

ENV = "CHANCY_BATCH_RUNNER"


async def main() -> None:
    config = json.loads(os.environ[ENV])
    chancy = Chancy(
        config["dsn"],
        prefix=config["prefix"],
        plugins=[
            Leadership(poll_interval=0.2, timeout=2.0),
            Recovery(poll_interval=0.2),
            # A long poll: the rerun job's notification, not polling, closes the batch.
            BatchPlugin(poll_interval=60),
        ],
        no_default_plugins=True,
        min_connection_pool_size=1,
        max_connection_pool_size=3,
    )
    async with chancy:
        worker = Worker(
            chancy,
            worker_id=config["worker_id"],
            tags=set(config.get("tags", [])),
            heartbeat_poll_interval=0.5,
            heartbeat_timeout=5.0,
            queue_change_poll_interval=1,
            shutdown_timeout=5,
        )
        async with worker:
            await worker.wait_for_shutdown()


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(asctime)s {os.getpid()} %(name)s %(levelname)s %(message)s",
    )
    asyncio.run(main())
