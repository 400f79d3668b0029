"""Job functions for the metrics and dashboard tests."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any


async def noop() -> None:
    return None


async def echo(**kwargs: Any) -> Any:
    return kwargs


async def always_fails() -> None:
    raise RuntimeError("this job always fails")


async def fails_until_file(path: str) -> str:
    """Fails while ``path`` does not exist; succeeds once it does (a fixed bug)."""
    if not Path(path).exists():  # noqa: ASYNC240
        raise ValueError(f"the file {path} is missing")
    return "fixed"


async def sleeps(seconds: float) -> None:
    await asyncio.sleep(seconds)


#: The app a test's worker serves, for job code that reports custom metrics (as job code in
#: an application reaches its own ``chancy`` app).
APP: Any = None


async def reports_metrics(n: int) -> None:
    """Report custom metrics from job code (async executor, the worker's process)."""
    metrics = APP.plugins["chancy.metrics"]
    await metrics.increment_counter("shop:orders", n)
    await metrics.record_gauge("shop:basket_size", n * 10)
    await metrics.record_histogram_value("shop:latency", n / 10, unit="seconds")


def reports_metrics_from_a_thread(n: int) -> None:
    """The same from a plain function on a threaded executor."""
    metrics = APP.plugins["chancy.metrics"]
    asyncio.run(metrics.increment_counter("shop:threaded", n))
