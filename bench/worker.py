"""A benchmark worker process: ``python -m bench.worker DSN PREFIX SETTINGS_JSON``.

Runs one chancy ``Worker`` (the default plugins, like a real deployment) until SIGTERM. It
prints ``ready`` once it serves its queues, so the driver pushes only when every worker is
up. With ``latency_out`` in the settings it writes the start latencies that
``bench.jobs.record_start`` collected to that file when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys

from chancy import Chancy, Worker


async def serve(dsn: str, prefix: str, settings: dict) -> None:
    app = Chancy(
        dsn,
        prefix=prefix,
        min_connection_pool_size=settings.get("pool_min", 1),
        max_connection_pool_size=settings.get("pool_max", 10),
    )
    async with app:
        worker = Worker(
            app,
            shutdown_timeout=10,
            completer_batch_size=settings.get("completer_batch_size", 1000),
            completer_interval=settings.get("completer_interval", 0.005),
        )
        async with worker:
            queues = set(settings.get("queues", ()))
            while not queues <= set(worker.executors):
                with contextlib.suppress(TimeoutError):
                    await worker.hub.wait_for("worker.queue.started", timeout=0.5)
            print("ready", flush=True)
            await worker.wait_for_shutdown()
    out = settings.get("latency_out")
    if out:
        from bench import jobs

        await asyncio.to_thread(_write_json, out, jobs.LATENCIES)


def _write_json(path: str, data: object) -> None:
    with open(path, "w") as f:
        json.dump(data, f)


def main() -> None:
    logging.basicConfig(level=logging.ERROR, format="worker %(levelname)s %(name)s %(message)s")
    dsn, prefix, raw = sys.argv[1:4]
    asyncio.run(serve(dsn, prefix, json.loads(raw)))


if __name__ == "__main__":
    main()
