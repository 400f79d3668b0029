"""Job functions for the progress tests (imported by workers and process children)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from chancy import QueuedJob


def _wait_for(path: str) -> None:
    # Job code, not a test: it polls for the file the test creates to let it go on.
    deadline = time.monotonic() + 30
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.005)


def gated(gate: str, *, job: QueuedJob) -> str:
    """Report half done, wait for ``gate`` to exist, report done."""
    job.report_progress(0.5, "half way", {"step": 1, "pid": os.getpid()})
    _wait_for(gate)
    job.report_progress(1.0, "done", {"step": 2})
    return "ok"


async def agated(gate: str, *, job: QueuedJob) -> str:
    job.report_progress(0.5, "half way", {"step": 1, "pid": os.getpid()})
    deadline = time.monotonic() + 30
    while not os.path.exists(gate):  # noqa: ASYNC240 (a stat, in a test's job)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{gate} never appeared")
        await asyncio.sleep(0.005)
    job.report_progress(1.0, "done", {"step": 2})
    return "ok"


def many(n: int, *, job: QueuedJob) -> float:
    """Report ``n`` times in a tight loop; return how long that took."""
    started = time.monotonic()
    for i in range(n):
        job.report_progress((i + 1) / n, f"item {i + 1} of {n}", {"i": i})
    return time.monotonic() - started


async def amany(n: int, *, job: QueuedJob) -> float:
    started = time.monotonic()
    for i in range(n):
        job.report_progress((i + 1) / n, f"item {i + 1} of {n}", {"i": i})
        if i % 1000 == 0:
            await asyncio.sleep(0)
    return time.monotonic() - started


async def noop() -> None:
    return None


def resumable(total: int, *, job: QueuedJob) -> dict[str, Any]:
    """Fail half way on the first attempt; the next one resumes from the saved offset."""
    start = job.progress.data["offset"] if job.progress and job.progress.data else 0
    for offset in range(start, total):
        job.report_progress(offset / total, f"at {offset}", {"offset": offset})
        if job.attempts == 0 and offset == total // 2:
            raise RuntimeError("interrupted half way")
    return {"resumed_from": start, "attempt": job.attempts}


async def aresumable(total: int, *, job: QueuedJob) -> dict[str, Any]:
    return resumable(total, job=job)


async def bad_report(fraction: Any, *, job: QueuedJob) -> None:
    job.report_progress(fraction)


async def read_progress(*, job: QueuedJob) -> Any:
    """Return the progress data this run started with."""
    return job.progress.data if job.progress else None


def twice(gate: str, *, job: QueuedJob) -> str:
    """Report twice in quick succession, then wait: the second report is the one to show."""
    job.report_progress(0.1, "first")
    job.report_progress(0.2, "second")
    _wait_for(gate)
    return "ok"


async def first_run_reports_and_waits(*, job: QueuedJob) -> dict[str, Any]:
    """The first run reports and then hangs (its worker is killed); a rerun returns what the
    first one reported."""
    if job.recoveries == 0:
        job.report_progress(0.3, "first run", {"page": 3})
        await asyncio.sleep(120)
    return {"resumed": job.progress.data if job.progress else None, "recoveries": job.recoveries}
