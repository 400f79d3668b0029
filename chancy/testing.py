"""Helpers for your own tests: run the queue until idle, run a job, assert what was pushed.

Everything runs against a real database through the real worker, executors and SQL; nothing is
faked. ::

    from chancy.testing import assert_pushed, run_job, run_until_idle

    async def test_signup_sends_a_welcome_email(chancy):
        await signup(chancy, "ana@example.com")
        await assert_pushed(chancy, send_welcome, kwargs={"to": "ana@example.com"})
        finished = await run_until_idle(chancy, queues=["emails"])
        assert [j.state for j in finished] == ["succeeded"]

The pytest plugin (:mod:`chancy.pytest_plugin`) gives each test an isolated table prefix:
``pytest_plugins = ["chancy.pytest_plugin"]`` in your ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from chancy.app import Chancy
from chancy.job import Job, QueuedJob, Reference, as_job
from chancy.utils import importable_name
from chancy.worker import Worker

__all__ = ["assert_pushed", "run_job", "run_until_idle", "sync_assert_pushed"]


async def run_until_idle(
    chancy: Chancy,
    *,
    queues: Iterable[str] | None = None,
    timeout: float = 30.0,
    interval: float = 0.05,
    **worker_options: Any,
) -> list[QueuedJob]:
    """Run a real :class:`~chancy.Worker` until no job of ``queues`` is due or running.

    ``queues`` defaults to every declared queue. Jobs scheduled for later do not keep it
    busy. Returns the jobs of those queues that finished while it ran, oldest first. Raises
    ``TimeoutError`` when work is still due or running after ``timeout`` seconds.
    ``worker_options`` go to ``Worker`` (for example ``tags``).
    """
    names = list(queues) if queues is not None else None
    before = time.monotonic()
    # Finished jobs are read back by completion time, not gathered from job.finished
    # notifications: those may arrive after the queue is seen idle, or not at all when the
    # app runs without notifications.
    since = await chancy.db.run(chancy.store.testing_clock())
    worker_options.setdefault("register_signal_handlers", False)
    worker_options.setdefault("shutdown_timeout", 5)
    worker = Worker(chancy, **worker_options)
    async with worker:
        deadline = before + timeout
        while True:
            # The worker's own completions are written in batches: settle them first.
            await worker.completer.wait_idle()
            active = await chancy.db.run(chancy.store.job_active_count(names))
            if active == 0 and not worker.completer.pending():
                break
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{active} job(s) still due or running after {timeout}s"
                    f" in {names if names is not None else 'all queues'}"
                )
            await asyncio.sleep(interval)
    return await chancy.db.run(chancy.store.testing_finished_since(since, names))


async def run_job(chancy: Chancy, job: Job | Any, *, timeout: float = 30.0) -> QueuedJob:
    """Push ``job`` (a Job or an ``@job`` function's job) and run it through a real worker.

    The worker serves only the job's queue, with its executor (so a process-executor job runs
    in a child process, as in production). Returns the finished job; raises ``TimeoutError``
    when it has not finished within ``timeout``.
    """
    pushed = as_job(job)
    ref = await chancy.push(pushed)
    worker = Worker(chancy, register_signal_handlers=False, shutdown_timeout=5)
    async with worker:
        finished = await chancy.wait_for_job(ref, timeout=timeout)
    if finished is None:
        raise TimeoutError(f"job {ref} did not finish within {timeout}s")
    return finished


async def assert_pushed(
    chancy: Chancy,
    func: str | Callable[..., Any],
    *,
    kwargs: Mapping[str, Any] | None = None,
    queue: str | None = None,
    count: int | None = None,
    limit: int = 1000,
) -> list[QueuedJob]:
    """Assert that jobs of ``func`` were pushed (and whose kwargs include ``kwargs``).

    ``func`` is an import path or the function itself. With ``count``, exactly that many must
    match. Returns the matching jobs, newest first. On failure the ``AssertionError`` lists
    what was pushed for that function, so the difference shows.
    """
    path = func if isinstance(func, str) else importable_name(func)
    found = await chancy.db.run(chancy.store.job_find_by_func(path, queue, limit))
    return _check_pushed(path, found, kwargs, queue, count)


def sync_assert_pushed(
    chancy: Chancy,
    func: str | Callable[..., Any],
    *,
    kwargs: Mapping[str, Any] | None = None,
    queue: str | None = None,
    count: int | None = None,
    limit: int = 1000,
) -> list[QueuedJob]:
    """:func:`assert_pushed` for sync tests."""
    path = func if isinstance(func, str) else importable_name(func)
    found = chancy.db.run_sync(chancy.store.job_find_by_func(path, queue, limit))
    return _check_pushed(path, found, kwargs, queue, count)


def _check_pushed(
    path: str,
    found: list[QueuedJob],
    kwargs: Mapping[str, Any] | None,
    queue: str | None,
    count: int | None,
) -> list[QueuedJob]:
    wanted = dict(kwargs or {})
    matching = [
        j for j in found if all(k in j.kwargs and j.kwargs[k] == v for k, v in wanted.items())
    ]
    if (count is None and matching) or (count is not None and len(matching) == count):
        return matching
    where = f" on queue {queue!r}" if queue is not None else ""
    expected = f"{count} job(s)" if count is not None else "a job"
    seen = "\n".join(f"  - {j.queue}: {j.kwargs!r} ({j.state})" for j in found[:20]) or "  (none)"
    raise AssertionError(
        f"expected {expected} of {path}{where} with kwargs including {wanted!r},"
        f" found {len(matching)}; pushed for {path}:\n{seen}"
    )


def jobs_of(refs: Iterable[Reference]) -> list[str]:
    """The ids of ``refs`` as strings (handy in assertions)."""
    return [str(r.identifier) for r in refs]
