"""A worker process for the workflow and cron tests: ``python -m tests.workflow.runner``.

Configured by the JSON in ``CHANCY_WORKFLOW_RUNNER``::

    {"dsn": ..., "prefix": ..., "worker_id": ..., "tags": ["role=x"],
     "leadership": {"poll_interval": 0.2, "timeout": 2}, "recovery": {"poll_interval": 0.2},
     "workflow": {"poll_interval": 1} | null, "cron": {"poll_interval": 1} | null,
     "heartbeat": [poll_interval, timeout]}

It runs one Worker with exactly these plugins until SIGTERM (graceful) or SIGKILL, and logs
"worker <id> started" once running.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys

from chancy import Chancy, Worker
from chancy.plugin import Plugin
from chancy.plugins.cron import Cron
from chancy.plugins.leadership import Leadership
from chancy.plugins.recovery import Recovery
from chancy.plugins.workflow import WorkflowPlugin

ENV = "CHANCY_WORKFLOW_RUNNER"


def plugins_for(config: dict[str, object]) -> list[Plugin]:
    found: list[Plugin] = [Leadership(**config["leadership"])]  # type: ignore[arg-type]
    found.append(Recovery(**config["recovery"]))  # type: ignore[arg-type]
    if config.get("workflow") is not None:
        found.append(WorkflowPlugin(**config["workflow"]))  # type: ignore[arg-type]
    if config.get("cron") is not None:
        found.append(Cron(**config["cron"]))  # type: ignore[arg-type]
    return found


async def main() -> None:
    config = json.loads(os.environ[ENV])
    chancy = Chancy(
        config["dsn"],
        prefix=config["prefix"],
        plugins=plugins_for(config),
        no_default_plugins=True,
        min_connection_pool_size=1,
        max_connection_pool_size=3,
    )
    hb_poll, hb_timeout = config.get("heartbeat", [0.25, 2.0])
    async with chancy:
        worker = Worker(
            chancy,
            worker_id=config["worker_id"],
            tags=set(config.get("tags", [])),
            heartbeat_poll_interval=hb_poll,
            heartbeat_timeout=hb_timeout,
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
