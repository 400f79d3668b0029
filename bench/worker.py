"""A benchmark worker process: ``python -m bench.worker DSN``.

It imports chancy, prints ``up`` and then obeys lines on its standard input, one worker at a
time:

- ``start {json}``: open a ``Chancy`` app on the settings' ``prefix`` and start a ``Worker``
  (the default plugins, like a real deployment) serving the settings' ``queues``; print
  ``ready`` once it serves them all;
- ``stop``: stop that worker gracefully, close the app, print ``stopped`` (and with
  ``latency_out`` in the settings, first write the start latencies that
  ``bench.jobs.record_start`` collected to that file);
- ``ping N [PREFIX QUEUE]``: time N one-row queries on a new connection (and N claims of
  QUEUE, see :func:`ping`), print ``pong SECONDS [SECONDS]`` (the medians; W7 measures its
  link's round trip and what a claim costs over it so);
- ``exit`` (or the end of its input): leave.

``latency_out`` may hold ``{pid}``, replaced by the process id, so the processes of one fleet
started with the same settings write separate files (W7).

The process lives for the whole benchmark run, so a drain's figures include the worker's own
start-up (connecting, checking the schema, starting executors, the first claim) but not the
Python interpreter's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from typing import Any

from bench import jobs
from chancy import Chancy, Worker


async def serve(dsn: str, settings: dict[str, Any], stopping: asyncio.Event) -> None:
    """Run one worker with ``settings`` until ``stopping`` is set."""
    jobs.LATENCIES.clear()
    app = Chancy(
        dsn,
        prefix=settings["prefix"],
        min_connection_pool_size=settings.get("pool_min", 1),
        max_connection_pool_size=settings.get("pool_max", 10),
    )
    async with app:
        worker = Worker(
            app,
            shutdown_timeout=10,
            completer_batch_size=settings.get("completer_batch_size", 1000),
            completer_interval=settings.get("completer_interval", 0.005),
            # This process outlives the worker; the driver stops it through stdin.
            register_signal_handlers=False,
        )
        async with worker:
            queues = set(settings.get("queues", ()))
            while not queues <= set(worker.executors):
                with contextlib.suppress(TimeoutError):
                    await worker.hub.wait_for("worker.queue.started", timeout=0.5)
            print("ready", flush=True)
            await stopping.wait()
    out = settings.get("latency_out")
    if out:
        out = out.replace("{pid}", str(os.getpid()))
        await asyncio.to_thread(_write_json, out, list(jobs.LATENCIES))


async def ping(dsn: str, count: int, prefix: str = "", queue: str = "") -> list[float]:
    """Median seconds of ``count`` one-row queries (one round trip each) and, with ``prefix``
    and ``queue``, of ``count`` claims of that queue as a worker's producer makes them
    (``chancy.runtime.producer.fetch_claim``; on an empty queue they claim nothing, with the
    same statements and round trips as a claim that gets jobs)."""
    import time

    from bench.db import connect, queries
    from chancy.runtime.producer import fetch_claim

    query = queries("bench_")["w7_ping"]
    medians = []
    conn = await connect(dsn)
    async with conn:
        await conn.execute(query)
        times = []
        for _ in range(count):
            start = time.perf_counter()
            await conn.execute(query)
            times.append(time.perf_counter() - start)
        medians.append(sorted(times)[count // 2])
        if prefix and queue:
            app = Chancy(dsn, prefix=prefix, min_connection_pool_size=1, max_connection_pool_size=1)
            async with app:
                found = await app.get_queue(queue)
                times = []
                for _ in range(count):
                    start = time.perf_counter()
                    await fetch_claim(app, "w7-ping", found, conn, up_to=100)
                    times.append(time.perf_counter() - start)
                medians.append(sorted(times)[count // 2])
    return medians


def _exit_if_failed(task: asyncio.Task[None]) -> None:
    """A worker that failed ends the process, so the driver sees it instead of waiting."""
    if not task.cancelled() and task.exception() is not None:
        logging.getLogger("bench.worker").error("worker failed", exc_info=task.exception())
        sys.stderr.flush()
        os._exit(1)


def _write_json(path: str, data: object) -> None:
    with open(path, "w") as f:
        json.dump(data, f)


async def main(dsn: str) -> None:
    print("up", flush=True)
    task: asyncio.Task[None] | None = None
    stopping = asyncio.Event()
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        command, _, argument = line.strip().partition(" ")
        if command == "start" and task is None:
            stopping = asyncio.Event()
            task = asyncio.create_task(serve(dsn, json.loads(argument), stopping))
            task.add_done_callback(_exit_if_failed)
        elif command == "stop" and task is not None:
            stopping.set()
            await task
            task = None
            print("stopped", flush=True)
        elif command == "ping":
            parts = argument.split()
            prefix, queue = parts[1:3] if len(parts) == 3 else ("", "")
            medians = await ping(dsn, int(parts[0]) if parts else 20, prefix, queue)
            print("pong " + " ".join(str(m) for m in medians), flush=True)
        elif command in ("exit", ""):
            if task is not None:
                stopping.set()
                await task
            return
        else:
            raise SystemExit(f"bench.worker: unexpected command {line!r}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR, format="worker %(levelname)s %(name)s %(message)s")
    asyncio.run(main(sys.argv[1]))
