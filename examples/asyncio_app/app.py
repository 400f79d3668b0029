"""A plain asyncio program: declare queues, push jobs, run a worker, wait for the results.

``CHANCY_DSN=postgresql://localhost/app python -m examples.asyncio_app`` (the package's
``__main__`` imports this module by name: jobs must live in an importable module, never in
``__main__``, because workers import them).
"""

from __future__ import annotations

import asyncio

from chancy import Chancy, Job, Queue, Worker, job


@job(queue="thumbnails", max_attempts=3)
async def thumbnail(image: str, size: int = 128) -> str:
    await asyncio.sleep(0.01)  # stands for real work; it must be idempotent
    return f"{image}@{size}px"


def fibonacci(n: int) -> int:
    """CPU-bound work for the process executor."""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


async def main(dsn: str, prefix: str = "chancy_") -> dict[str, object]:
    async with Chancy(dsn, prefix=prefix) as chancy:
        await chancy.migrate()
        await chancy.declare(Queue("thumbnails", executor=Chancy.Executor.Async, concurrency=20))
        await chancy.declare(Queue("cpu", executor=Chancy.Executor.Process, concurrency=2))
        refs = [await chancy.push(thumbnail.job.with_kwargs(image=f"img{i}.png")) for i in range(5)]
        refs.append(await chancy.push(Job.from_func(fibonacci, queue="cpu", kwargs={"n": 90})))
        async with Worker(chancy):
            done = await chancy.wait_for_jobs(refs, timeout=60)
        return {str(j.id): j.result for j in done}
