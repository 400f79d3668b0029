"""AsyncExecutor: ``async def`` jobs as tasks in the worker's own event loop.

The cheapest executor per job (no thread, no process, no pickling), so it is the one the
throughput benchmark drains with: per job there is one task, and the function is imported
and its signature checked once per function rather than once per job. Short jobs are claimed
ahead of free tasks (``PrefetchingExecutor``): the worker processes one batch while the
database claims the next, instead of taking turns.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from chancy.errors import JobFailedError, JobTimeLimitError
from chancy.executors._functions import FunctionCache
from chancy.executors.base import Executor, PrefetchingExecutor
from chancy.job import QueuedJob, Reference

if TYPE_CHECKING:
    from chancy.queue import Queue
    from chancy.worker import Worker

log = logging.getLogger("chancy.executor.async")

_STOP_TIMEOUT = 5.0


class AsyncExecutor(PrefetchingExecutor):
    """Runs ``async def`` jobs as tasks in the worker's event loop; for I/O-bound async code.

    Options: ``time_limit`` (seconds, for jobs without a TIME limit of their own);
    ``prefetch`` (see ``PrefetchingExecutor``: while jobs are short, some are claimed ahead
    and wait for a free task; a cancelled one never starts). A time limit or a cancellation
    cancels the job's task; at most ``concurrency`` tasks run at once. A sync function fails
    its attempt with an error naming the executors that run it: it would block every other
    job on the loop.
    Memory limits are not enforced.
    """

    def __init__(self, worker: Worker, queue: Queue, **options: Any) -> None:
        super().__init__(worker, queue, **options)
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        # Tasks of cancelled jobs, kept referenced until they end.
        self._detached: set[asyncio.Task[None]] = set()
        self._functions = FunctionCache(type(self).get_function_and_kwargs)
        self._warned_memory_limit = False
        cls = type(self)
        # Unless a subclass overrides them, a claimed job starts without awaiting push and
        # submit_to_pool (start_now), and a run reports straight to the runtime rather than
        # through on_job_completed: three coroutines fewer per job.
        self._direct = (
            cls.push is Executor.push and cls.submit_to_pool is AsyncExecutor.submit_to_pool
        )
        self._report_direct = (
            self._report if cls.on_job_completed is Executor.on_job_completed else None
        )

    @classmethod
    def get_capabilities(cls) -> Executor.Capability:
        return (
            cls.Capability.ASYNC_JOBS
            | cls.Capability.TIME_LIMIT
            | cls.Capability.COOPERATIVE_TIME_LIMITS
            | cls.Capability.CANCELLATION
        )

    def get_default_concurrency(self) -> int:
        return 100

    def start_now(self, job: QueuedJob) -> bool:
        if not self._direct:
            return False
        self._submit(job)
        return True

    async def submit_to_pool(self, job: QueuedJob) -> None:
        self._submit(job)

    def _submit(self, job: QueuedJob) -> None:
        if not self._warned_memory_limit and job.limits and self.memory_limit_for(job):
            self._warned_memory_limit = True
            log.warning(
                "queue %s: AsyncExecutor cannot enforce memory limits; jobs with one run"
                " without it (use ProcessExecutor to enforce them)",
                self.queue.name,
            )
        self.jobs[job.id] = job
        if len(self._tasks) < self.concurrency:
            self._start(job)
        else:
            self._waiting.append(job)  # claimed ahead: it starts when a task ends

    def _start(self, job: QueuedJob) -> None:
        self._tasks[job.id] = asyncio.get_running_loop().create_task(self._run(job))

    def _start_next(self) -> None:
        """A task ended: start the job that waits longest, if any."""
        if self._waiting and not self._stopped and len(self._tasks) < self.concurrency:
            self._start(self._waiting.popleft())

    async def _run(self, job: QueuedJob) -> None:
        exc: BaseException | None = None
        result: Any = None
        # This run's task, as _start registered it before the task's first step: the same
        # object as asyncio.current_task() (a Python function on 3.11, 0.3 us a call), since a
        # job runs here once at a time (the ledger). A run whose entry is gone or replaced by
        # the end was detached by cancel() or stop().
        me = self._tasks.get(job.id)
        started = time.monotonic()
        limit = self.time_limit_for(job)
        if limit is not None:
            job = job.with_time_limit(limit)  # time_remaining() and checkpoint() work
        try:
            func, kwargs, is_async, _ = self._functions.resolve(job)
            if not is_async:
                raise JobFailedError(
                    f"{job.func} is not an async function, and AsyncExecutor runs only"
                    " `async def` jobs (a sync job would block the worker's event loop). Put"
                    " it on a queue with ThreadedExecutor or ProcessExecutor, or make it async."
                )
            if limit is None:
                result = await func(**kwargs)
            else:
                timeout = asyncio.timeout(limit)
                try:
                    async with timeout:
                        result = await func(**kwargs)
                except TimeoutError as err:
                    if not timeout.expired():
                        raise  # the job's own TimeoutError
                    raise JobTimeLimitError(
                        f"the job exceeded its time limit of {limit:g}s; its task was cancelled"
                    ) from err
        except asyncio.CancelledError:
            if me is not None and self._tasks.get(job.id) is me:
                raise  # cancelled from outside (the loop is closing): not the job's outcome
            return  # cancel() or stop() took the job; this run has nothing more to say
        except Exception as err:
            exc = err
        if me is None or self._tasks.get(job.id) is not me:
            # cancel() or stop() already took the job (this run was detached; a later run of
            # the same job may hold its place now).
            return
        del self._tasks[job.id]
        self.jobs.pop(job.id, None)
        self.observe_runtime(time.monotonic() - started)
        self._start_next()
        report = self._report_direct
        try:
            if report is not None:
                await report(job, exc, result)
            else:
                await self.on_job_completed(job=job, exc=exc, result=result)
        except Exception:
            log.exception("reporting the outcome of job %s (%s) failed", job.id, job.func)

    async def cancel(self, ref: Reference) -> None:
        job_id = ref.identifier
        task = self._tasks.pop(job_id, None)
        if task is None:
            if (waiting := self.take_waiting(job_id)) is not None:
                await self.on_job_completed(
                    job=waiting, exc=JobFailedError("the job was cancelled before it ran")
                )
            return
        job = self.jobs.pop(job_id, None)
        self._detach(task)
        self._start_next()
        if job is not None:
            await self.on_job_completed(
                job=job, exc=JobFailedError("the job was cancelled while running")
            )

    async def stop(self) -> None:
        """Cancel every running job's task (they are abandoned) and wait briefly for them."""
        self._stop_waiting()
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            self._detach(task)
        pending = set(self._detached)
        if pending:
            await asyncio.wait(pending, timeout=_STOP_TIMEOUT)

    def _detach(self, task: asyncio.Task[None]) -> None:
        task.cancel()
        self._detached.add(task)
        task.add_done_callback(self._detached.discard)
