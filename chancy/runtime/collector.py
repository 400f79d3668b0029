"""Python's cyclic garbage collector while workers run in this process (``Worker(tune_gc=)``).

A worker holds thousands of jobs in flight, each a few tracked objects (the job, its task,
its outcome), and allocates them by the tens of thousands per second. With the collector's
defaults (a young collection every 700 net allocations) the young jobs were walked again and
again, and every full collection walked all of the process's modules and classes too: 13-16%
of a worker's CPU while it drained no-op jobs, to collect almost nothing (jobs form no
cycles; reference counting frees them).

While a worker runs, the objects that existed when the first worker of the process started
(modules, classes, the application's set-up) are frozen (``gc.freeze``: full collections
skip them), and the young generation's threshold is raised to ``GEN0_THRESHOLD``, above what
jobs in flight hold, so collections are rare; each worker also collects the young
generations every ``SWEEP_INTERVAL`` seconds, so cyclic garbage is not kept long on a worker
that allocates little. Both are undone when the last worker of the process stops, and
neither is done when the application manages the collector itself: the collector turned
off, objects already frozen, or a first threshold other than Python's 700.
"""

from __future__ import annotations

import asyncio
import gc

#: The young generation's threshold while workers run (Python's default is 700). Cyclic
#: garbage waits at most this many net allocations for a collection: a few MB.
GEN0_THRESHOLD = 50_000
#: While workers run, the young generations are also collected this often (seconds), so that
#: cyclic garbage (a failed job's traceback holding its frames and their data) waits at most
#: this long on a worker that allocates little, rather than until 50,000 allocations.
SWEEP_INTERVAL = 10.0
#: Python's default first threshold: any other value means the application chose its own.
_PYTHON_DEFAULT = 700

_workers = 0
#: What the first worker changed, to undo when the last one stops: (froze, thresholds set,
#: thresholds before).
_changed: tuple[bool, tuple[int, ...] | None, tuple[int, ...]] | None = None


def worker_started() -> None:
    """A worker of this process started serving; the first one tunes the collector."""
    global _workers, _changed
    _workers += 1
    if _workers > 1 or not gc.isenabled():
        return
    froze = gc.get_freeze_count() == 0
    if froze:
        gc.freeze()
    before = gc.get_threshold()
    raised: tuple[int, ...] | None = None
    if before[0] == _PYTHON_DEFAULT:
        raised = (GEN0_THRESHOLD, *before[1:])
        gc.set_threshold(*raised)
    _changed = (froze, raised, before)


def worker_stopped() -> None:
    """A worker that ``worker_started`` counted stopped; the last one undoes the tuning
    (what the application changed since is left as it is)."""
    global _workers, _changed
    _workers = max(0, _workers - 1)
    if _workers or _changed is None:
        return
    froze, raised, before = _changed
    _changed = None
    if raised is not None and gc.get_threshold() == raised:
        gc.set_threshold(*before)
    if froze:
        gc.unfreeze()


def tuned() -> bool:
    """Whether the collector is tuned for running workers now."""
    return _changed is not None


async def sweep() -> None:
    """A worker's service: collect the young generations every ``SWEEP_INTERVAL`` seconds
    while the collector is tuned (a few ms each)."""
    while True:
        await asyncio.sleep(SWEEP_INTERVAL)
        if tuned():
            gc.collect(1)
