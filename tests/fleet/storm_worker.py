"""Several workers in one process, for the reconnect-storm test.

``python -m tests.fleet.storm_worker DSN PREFIX FIRST COUNT``: workers ``w{FIRST}`` to
``w{FIRST+COUNT-1}``, each with its own Chancy (default plugins, a pool of 1 to 2 connections
and its own LISTEN connection), as that many worker hosts would have. Prints ``ready wN`` for
each started worker and ``exited wN`` for any that stops before SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from chancy import Chancy, Worker


async def serve(dsn: str, prefix: str, first: int, count: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    apps = [
        Chancy(dsn, prefix=prefix, min_connection_pool_size=1, max_connection_pool_size=2)
        for _ in range(count)
    ]
    workers = [
        Worker(app, worker_id=f"w{first + i}", register_signal_handlers=False)
        for i, app in enumerate(apps)
    ]
    for worker in workers:
        await worker.start()
        print(f"ready {worker.worker_id}", flush=True)

    async def watch(worker: Worker) -> None:
        await worker.wait_for_shutdown()
        if not stop.is_set():
            print(f"exited {worker.worker_id} {worker.fatal_error!r}", flush=True)

    watchers = [asyncio.create_task(watch(w)) for w in workers]
    await stop.wait()
    await asyncio.gather(*(w.stop(timeout=5) for w in workers), return_exceptions=True)
    for task in watchers:
        task.cancel()
    for app in apps:
        with contextlib.suppress(Exception):
            await app.close()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
