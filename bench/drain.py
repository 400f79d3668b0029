"""Draining a backlog with chancy workers (W2, W5, W6, flow control) and the pieces they share."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from bench import procs
from bench.db import completion_series, connect, drain_window, queries, wait_drained
from chancy import Chancy, Job, Queue


@dataclasses.dataclass(frozen=True)
class Setup:
    """A queue and the worker settings that drain it."""

    name: str
    queue: Queue
    func: str = "bench.jobs.noop"
    worker: dict[str, Any] = dataclasses.field(default_factory=dict)
    workers: int = 1
    #: Spread the jobs over this many partition keys (``k0``, ``k1``, ...); 0: no key.
    keys: int = 0


async def push_backlog(app: Chancy, queue: str, func: str, n: int, keys: int = 0) -> float:
    """Queue ``n`` jobs in one transaction (COPY); return the seconds it took.

    With ``keys``, job ``i`` carries the partition key ``k{i % keys}``.
    """
    job = Job(func=func, queue=queue)
    if keys:
        variants = [job.with_partition_key(f"k{i}") for i in range(keys)]
        jobs = [variants[i % keys] for i in range(n)]
    else:
        jobs = [job] * n
    start = time.perf_counter()
    async for _ in app.push_many(jobs, batch_size=max(n, 1)):
        pass
    return time.perf_counter() - start


async def reset_jobs(dsn: str, prefix: str) -> None:
    """Empty the jobs table, so each repetition starts from the same table."""
    conn = await connect(dsn)
    async with conn:
        await conn.execute(queries(prefix)["jobs_truncate"])


class Drainer:
    """Worker processes serving one queue, drained repeatedly (started once, warmed up)."""

    def __init__(self, app: Chancy, dsn: str, setup: Setup, *, timeout: float) -> None:
        self.app = app
        self.dsn = dsn
        self.prefix = app.prefix
        self.setup = setup
        self.timeout = timeout
        self._workers: Any = None

    async def __aenter__(self) -> Drainer:
        s = self.setup
        await self.app.declare(s.queue, upsert=True)
        settings = {**s.worker, "queues": [s.queue.name]}
        self._workers = procs.workers(self.dsn, self.prefix, settings, s.workers)
        await self._workers.__aenter__()
        # Warm up: children booted, functions imported, statements prepared.
        warm = max(200, 2 * (s.queue.concurrency or 100))
        await self.run(warm)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._workers.__aexit__(*exc)

    async def run(self, n: int) -> dict[str, Any]:
        """Queue ``n`` jobs at once, wait until all finished; the rate as the database saw it."""
        name = self.setup.queue.name
        await reset_jobs(self.dsn, self.prefix)
        # Paused while the jobs are pushed, so every repetition starts with the whole
        # backlog visible to the first claim.
        await self.app.pause_queue(name)
        pushed = await push_backlog(self.app, name, self.setup.func, n, self.setup.keys)
        await self.app.resume_queue(name)
        conn = await connect(self.dsn)
        async with conn:
            await wait_drained(conn, self.prefix, timeout=self.timeout)
            done, seconds, start = await drain_window(conn, self.prefix, name)
            series = await completion_series(conn, self.prefix, name, start)
        if done != n:
            raise RuntimeError(f"{self.setup.name}: {done} of {n} jobs succeeded")
        return {"rate": n / seconds, "seconds": seconds, "series": series, "push": pushed}
