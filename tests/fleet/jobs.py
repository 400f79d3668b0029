"""Jobs of the fleet tests (async: they run on the AsyncExecutor)."""

from __future__ import annotations

import asyncio

from chancy.job import QueuedJob


async def echo(n: int = 0) -> int:
    return n


async def stall_first_run(*, job: QueuedJob) -> str:
    """Never ends on its first run (its worker is killed meanwhile); ends once recovered."""
    if job.recoveries == 0:
        await asyncio.Event().wait()
    return f"recovered {job.recoveries}"
