"""A tour of chancy in one command: ``python -m chancy.demo`` (or ``python3 dev.py demo``).

It declares three queues, each with the executor that suits its work: an asyncio queue for
I/O-bound coroutines, a thread queue for blocking calls, and a process queue for CPU-bound
code, one process per core. It pushes a mix of jobs (a few of them fail once and are retried),
runs a real ``Worker`` in this process while drawing its progress, and ends with a table of
what ran where and how fast.

The database is ``--dsn``, else ``$CHANCY_DSN``, else an embedded PostgreSQL server started
for the occasion. The demo keeps to its own table prefix (``chancy_demo_``) and removes its
tables when it ends, so it can point at a database that holds other data.

On a terminal, the tour ends where an operator would look next: the worker keeps running with
the dashboard on a local port (its address and a generated login are printed), and the jobs
stay on view until Ctrl-C. Without a terminal (scripts, CI) it exits after the summary.

The job functions live in this package's ``__init__``, which imports nothing heavy, so a
process child that imports ``chancy.demo`` to run one starts quickly. The tour itself is
``chancy.demo.tour`` (plan, worker, dashboard) and ``chancy.demo.report`` (progress, summary).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chancy.job import QueuedJob

PREFIX = "chancy_demo_"
#: The job functions, by import path: this module may run as ``__main__``, but workers and
#: process children import it as ``chancy.demo``.
MODULE = "chancy.demo"


# -- the jobs -----------------------------------------------------------------------------


def _where() -> dict[str, Any]:
    return {"pid": os.getpid(), "thread": threading.current_thread().name}


async def fetch_page(url: str, latency: float, flaky: bool = False, *, job: QueuedJob) -> Any:
    """I/O-bound: waits on the "network" without holding a thread (asyncio queue)."""
    await asyncio.sleep(latency)
    if flaky and job.attempts == 0:
        raise ConnectionError(f"{url}: connection reset (simulated; the retry will succeed)")
    return {**_where(), "bytes": len(url) * 1024}


def make_thumbnail(image: int, flaky: bool = False, *, job: QueuedJob) -> Any:
    """Blocking: a slow "disk read", then some hashing (thread queue)."""
    time.sleep(0.02)
    digest = hashlib.sha256(image.to_bytes(8, "big"))
    for _ in range(50):
        digest = hashlib.sha256(digest.digest() * 512)
    if flaky and job.attempts == 0:
        raise OSError(f"image {image}: file busy (simulated; the retry will succeed)")
    return {**_where(), "digest": digest.hexdigest()[:12]}


def count_primes(limit: int, flaky: bool = False, *, job: QueuedJob) -> Any:
    """CPU-bound: pure Python arithmetic that would hold the GIL (process queue)."""
    if flaky and job.attempts == 0:
        raise ArithmeticError(f"primes below {limit}: bit flip (simulated; the retry will succeed)")
    # A plain-Python sieve: the kind of loop that holds the GIL, so it scales with processes.
    sieve = bytearray([1]) * limit
    sieve[:2] = b"\x00\x00"
    for n in range(2, int(limit**0.5) + 1):
        if sieve[n]:
            for multiple in range(n * n, limit, n):
                sieve[multiple] = 0
    count = sum(sieve)
    return {**_where(), "primes": count}
