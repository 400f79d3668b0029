"""Job functions the benchmarks run (importable by workers and process-executor children)."""

from __future__ import annotations

import time

#: Seconds from push to start, appended by ``record_start`` in the worker that ran it.
LATENCIES: list[float] = []


async def noop() -> None:
    """The no-op async job every drain runs."""
    return None


def noop_sync() -> None:
    """The no-op job of the thread and process executor drains."""
    return None


async def record_start(t: float) -> None:
    """Record start minus push time; ``t`` is the pusher's ``time.time()`` (same machine)."""
    LATENCIES.append(time.time() - t)
