"""Job functions for the workflow tests (importable by the worker processes of runner.py)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import psycopg

from chancy import QueuedJob

#: Workflow id -> (step id, start, end) of every run in this process, in start order.
RUNS: dict[str, list[tuple[str, float, float]]] = defaultdict(list)
#: Workflow id -> step id -> the dependencies the step received.
RECEIVED: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)


def _where(job: QueuedJob) -> tuple[str, str]:
    marker = job.meta.get("workflow") or {}
    return str(marker.get("id")), str(marker.get("step"))


async def step(seconds: float = 0, *, job: QueuedJob) -> str:
    """Record the run (and how long it took) under its workflow; return the step id."""
    workflow, step_id = _where(job)
    start = time.monotonic()
    if seconds:
        await asyncio.sleep(seconds)
    RUNS[workflow].append((step_id, start, time.monotonic()))
    RECEIVED[workflow][step_id] = dict(job.dependencies)
    return step_id


async def noop() -> None:
    return None


async def fail(*, job: QueuedJob) -> None:
    workflow, step_id = _where(job)
    RUNS[workflow].append((step_id, time.monotonic(), time.monotonic()))
    raise RuntimeError(f"step {step_id} fails on purpose")


async def flaky(*, job: QueuedJob) -> str:
    """Fails its first attempt, succeeds on the second."""
    workflow, step_id = _where(job)
    RUNS[workflow].append((step_id, time.monotonic(), time.monotonic()))
    if job.attempts == 0:
        raise RuntimeError("first attempt fails on purpose")
    return f"attempt {job.attempts + 1}"


async def value(x: int, *, job: QueuedJob) -> int:
    """Return ``x`` plus the sum of the results of the steps this one depends on."""
    workflow, step_id = _where(job)
    RECEIVED[workflow][step_id] = dict(job.dependencies)
    return x + sum(int(v) for v in job.dependencies.values())


def sync_value(x: int, *, job: QueuedJob) -> dict[str, Any]:
    """A plain (sync) function for a threaded queue: echo x and what it received."""
    return {"x": x, "received": dict(job.dependencies)}


async def record_run(dsn: str, table: str, step_id: str, seconds: float = 0) -> str:
    """Record this run in a side table (for tests with worker processes); return the step."""
    if seconds:
        await asyncio.sleep(seconds)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(
            f"INSERT INTO {table} (step_id) VALUES (%s)",  # type: ignore[arg-type]
            (step_id,),
        )
    return step_id
