"""Job functions the benchmarks run (importable by workers and process-executor children)."""

from __future__ import annotations

import time

from chancy import QueuedJob

#: Seconds from push to start, appended by ``record_start`` in the worker that ran it.
LATENCIES: list[float] = []


async def noop() -> None:
    """The no-op async job every drain runs."""
    return None


async def reports_progress(*, job: QueuedJob) -> None:
    """A no-op that reports its progress 10 times (W2's cost of progress reporting)."""
    for i in range(1, 11):
        job.report_progress(i / 10, "working", {"i": i})


def noop_sync() -> None:
    """The no-op job of the thread and process executor drains."""
    return None


async def record_start(t: float) -> None:
    """Record start minus push time; ``t`` is the pusher's ``time.time()`` (same machine)."""
    LATENCIES.append(time.time() - t)


async def result(n: int) -> dict[str, object]:
    """A job that returns a value to store (about 200 bytes of JSON), for bench/costs.py."""
    return {"n": n, "status": "ok", "items": list(range(20)), "note": "x" * 80}


async def take(n: int) -> None:
    """A no-op job with one argument (each job of bench/costs.py carries its own kwargs)."""
    return None
