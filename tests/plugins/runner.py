"""A worker process for the plugin tests: ``python -m tests.plugins.runner``.

Configured by the JSON in ``CHANCY_RUNNER``::

    {"dsn": ..., "prefix": ..., "worker_id": ..., "tags": ["role=x"],
     "leadership": {"poll_interval": 0.2, "timeout": 2} | "immediate" | null,
     "recovery": {"poll_interval": 0.2, "max_recoveries": 3} | null,
     "heartbeat": [poll_interval, timeout], "events": "/path/of/a/jsonl/file" | null}

It runs one Worker until SIGTERM (graceful) or SIGKILL. Leadership transitions are appended
to the events file with the process-wide monotonic clock (CLOCK_MONOTONIC is shared by every
process on the machine, so the test can compare intervals across processes), and a last line
reports the completer's count of fenced (ignored) writes.
"""

from __future__ import annotations

import asyncio
import faulthandler
import json
import logging
import os
import signal
import sys
import time
from typing import Any

from chancy import Chancy, Worker
from chancy.hub import Event
from chancy.plugin import Plugin
from chancy.plugins.leadership import ImmediateLeadership, Leadership
from chancy.plugins.recovery import Recovery


class Recorder:
    def __init__(self, path: str | None, worker_id: str) -> None:
        self.path = path
        self.worker_id = worker_id

    def write(self, kind: str, **fields: Any) -> None:
        if not self.path:
            return
        line = {"e": kind, "w": self.worker_id, "pid": os.getpid(), **fields}
        line.setdefault("mono", time.monotonic())
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
            f.flush()


async def main() -> None:
    config = json.loads(os.environ["CHANCY_RUNNER"])
    plugins: list[Plugin] = []
    leadership = config.get("leadership")
    if leadership == "immediate":
        plugins.append(ImmediateLeadership())
    elif leadership:
        plugins.append(Leadership(**leadership))
    if config.get("recovery") is not None:
        plugins.append(Recovery(**config["recovery"]))
    chancy = Chancy(
        config["dsn"],
        prefix=config["prefix"],
        plugins=plugins,
        no_default_plugins=True,
        min_connection_pool_size=1,
        max_connection_pool_size=3,
    )
    hb_poll, hb_timeout = config.get("heartbeat", [0.25, 2.0])
    worker_id = config["worker_id"]
    recorder = Recorder(config.get("events"), worker_id)

    def on_gained(event: Event) -> None:
        recorder.write("gained", term=event.body.get("term"), mono=event.body.get("monotonic"))

    def on_lost(event: Event) -> None:
        recorder.write(
            "lost",
            term=event.body.get("term"),
            mono=event.body.get("monotonic"),
            reason=event.body.get("reason"),
        )

    async with chancy:
        worker = Worker(
            chancy,
            worker_id=worker_id,
            tags=set(config.get("tags", [])),
            heartbeat_poll_interval=hb_poll,
            heartbeat_timeout=hb_timeout,
            queue_change_poll_interval=1,
            shutdown_timeout=config.get("shutdown_timeout", 5),
        )
        worker.hub.on("leadership.gained", on_gained)
        worker.hub.on("leadership.lost", on_lost)
        async with worker:
            recorder.write("started")
            await worker.wait_for_shutdown()
        recorder.write("exit", fenced=worker.completer.fenced)


def dump_stacks() -> None:
    """SIGUSR1: every thread's stack, then every asyncio task's (the test asks for them when
    the process does not exit in time)."""
    faulthandler.dump_traceback(all_threads=True)
    for task in asyncio.all_tasks():
        print(f"task {task.get_name()}:", file=sys.stderr)
        # The whole chain of awaits (Task.print_stack shows only the outermost coroutine).
        coro: Any = task.get_coro()
        while coro is not None:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is not None:
                code = frame.f_code
                print(f"  {code.co_filename}:{frame.f_lineno} {code.co_name}", file=sys.stderr)
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    print("-- end of stacks --", file=sys.stderr, flush=True)


async def run() -> None:
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_stacks)
    await main()


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(asctime)s {os.getpid()} %(name)s %(levelname)s %(message)s",
    )
    asyncio.run(run())
