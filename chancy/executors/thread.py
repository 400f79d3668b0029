"""ThreadedExecutor: jobs run in daemon threads of the worker process.

Daemon threads, not ``concurrent.futures.ThreadPoolExecutor``, whose threads are joined at
interpreter exit: a job stuck forever must never keep a stopping worker alive. A job past its
time limit, or cancelled, is reported at once and its slot freed; its thread is interrupted
as far as Python allows and is then retired rather than reused.

While jobs are short, a busy thread is handed a few more to run after its current one (they
wait in its inbox): each job handed over one at a time cost a round trip through the event
loop, hand-offs of the GIL and a wake-up of the loop. Drains of 10,000 no-op jobs with 16
threads (12 of each, alternated): median 19,527 jobs/s one at a time (slowest 11,812),
24,433 with up to four per thread (slowest 21,871). A job waiting in a thread that is
cancelled is skipped; the jobs waiting behind one whose thread is interrupted go back to
the executor's queue.
"""

from __future__ import annotations

import asyncio
import ctypes
import inspect
import itertools
import logging
import operator
import os
import platform
import queue as queue_module
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from chancy.errors import JobFailedError, JobTimeLimitError
from chancy.executors._functions import FunctionCache
from chancy.executors._reporter import Reporter
from chancy.executors.base import Executor, PrefetchingExecutor
from chancy.job import QueuedJob, Reference

if TYPE_CHECKING:
    from chancy.queue import Queue
    from chancy.worker import Worker

log = logging.getLogger("chancy.executor.thread")

_FLUSH_TIMEOUT = 5.0

#: A busy thread holds at most this many runs while jobs are short (``hands_ahead``).
_PER_THREAD = 4
_assigned = operator.attrgetter("assigned")

# Raising an exception in another thread needs CPython's PyThreadState_SetAsyncExc.
_CAN_INTERRUPT = platform.python_implementation() == "CPython" and hasattr(ctypes, "pythonapi")


class JobInterrupted(BaseException):
    """Raised inside a job's thread when its time limit passed or it was cancelled.

    A BaseException, so ``except Exception`` in job code does not swallow it.
    """


def _set_async_exc(ident: int, exc_type: type[BaseException] | None) -> int:
    # None clears a pending exception (ctypes passes NULL).
    func = ctypes.pythonapi.PyThreadState_SetAsyncExc
    return int(func(ctypes.c_ulong(ident), ctypes.py_object(exc_type) if exc_type else None))


class _Thread:
    """A daemon thread that runs the runs put in its inbox, one at a time."""

    __slots__ = ("assigned", "ident", "inbox", "retired", "thread")

    def __init__(self) -> None:
        self.inbox: queue_module.SimpleQueue[_Run | None] = queue_module.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.ident: int | None = None
        #: Runs put in the inbox that the loop has not seen end (the event loop's count).
        self.assigned = 0
        #: Interrupted: it ends after its current run and is never handed another.
        self.retired = False


class _Run:
    """One job on one thread; ``lock`` orders "finished" against "interrupted"."""

    __slots__ = (
        "deadline",
        "elapsed",
        "finished",
        "interrupted",
        "job",
        "limit",
        "lock",
        "loop",
        "started",
        "task",
        "thread",
    )

    def __init__(self, job: QueuedJob, thread: _Thread) -> None:
        self.job = job
        self.thread = thread
        self.lock = threading.Lock()
        #: Set by the thread as it begins the job (a run handed ahead waits until then).
        self.started = False
        self.finished = False
        self.interrupted = False
        self.limit: float | None = None
        self.deadline: asyncio.TimerHandle | None = None
        #: How long the job ran (set by its thread, read by the loop once it is posted).
        self.elapsed = 0.0
        # Set while an async job runs on the thread's own event loop.
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[Any] | None = None


class ThreadedExecutor(PrefetchingExecutor):
    """Runs sync and async jobs in daemon threads; for I/O-bound code that is not async.

    Options: ``time_limit`` (seconds, for jobs without a TIME limit of their own) and
    ``prefetch`` (64; short jobs are claimed ahead of free threads, see PrefetchingExecutor).
    While jobs take under 5 ms, a busy thread is also handed up to 3 more jobs without a time
    limit, to run after its current one (``prefetch=0`` turns both off).

    Limits are best effort, as threads cannot be killed: at the deadline (or on
    cancellation) the job is reported as failed and its slot freed at once; an async job's
    task is cancelled, and a sync job gets ``JobInterrupted`` raised in its thread, which
    lands when the thread next runs Python code (not while it blocks in a C call such as
    ``time.sleep`` or a socket read). Memory limits are not enforced (threads share memory).
    """

    def __init__(self, worker: Worker, queue: Queue, **options: Any) -> None:
        super().__init__(worker, queue, **options)
        self._idle: list[_Thread] = []
        #: Threads that have runs (at most ``concurrency``); the others are idle or retired.
        self._busy: set[_Thread] = set()
        self._runs: dict[uuid.UUID, _Run] = {}
        self._functions = FunctionCache(type(self).get_function_and_kwargs)
        self._reporter = Reporter(self.on_job_completed)
        self._done: deque[tuple[_Run, QueuedJob, BaseException | None, Any]] = deque()
        self._done_lock = threading.Lock()
        self._wakeup_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._serial = itertools.count(1)
        self._warned_memory_limit = False

    @classmethod
    def get_capabilities(cls) -> Executor.Capability:
        caps = (
            cls.Capability.SYNC_JOBS
            | cls.Capability.ASYNC_JOBS
            | cls.Capability.COOPERATIVE_TIME_LIMITS
        )
        if _CAN_INTERRUPT:
            caps |= cls.Capability.TIME_LIMIT | cls.Capability.CANCELLATION
        return caps

    def get_default_concurrency(self) -> int:
        return min(32, (os.cpu_count() or 1) + 4)

    # -- the event loop's side ----------------------------------------------------------

    async def submit_to_pool(self, job: QueuedJob) -> None:
        if self._stopped:
            raise RuntimeError(f"this {type(self).__name__} was stopped; it cannot run more jobs")
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if not self._warned_memory_limit and self.memory_limit_for(job) is not None:
            self._warned_memory_limit = True
            log.warning(
                "queue %s: %s cannot enforce memory limits; jobs with one run without it (use"
                " ProcessExecutor to enforce them)",
                self.queue.name,
                type(self).__name__,
            )
        self.jobs[job.id] = job
        if len(self._busy) < self.concurrency:
            self._start(job, self._idle.pop() if self._idle else None)
            return
        if not self._waiting and self._may_wait_in_a_thread(job):
            depth = self._per_thread()
            thread = min(self._busy, key=_assigned, default=None)
            if thread is not None and thread.assigned < depth:
                self._start(job, thread)  # runs after the job(s) before it on that thread
                return
        self._waiting.append(job)  # claimed ahead: it starts when a thread is free

    def _per_thread(self) -> int:
        """How many runs a thread may hold: 1, or more while jobs are short."""
        return 1 if self.hands_ahead() is None else _PER_THREAD

    def _may_wait_in_a_thread(self, job: QueuedJob) -> bool:
        """A job may wait behind another in a thread unless it has a time limit (its clock
        starts when it is handed over)."""
        return self.time_limit_for(job) is None

    def _fill(self, thread: _Thread) -> None:
        """Hand ``thread`` waiting jobs, in order: one when it is idle, more while jobs are
        short and the next one may wait in a thread."""
        waiting = self._waiting
        if not waiting or self._stopped:
            return
        if not thread.assigned:
            self._start(waiting.popleft(), thread)
        depth = self._per_thread()
        while waiting and thread.assigned < depth and self._may_wait_in_a_thread(waiting[0]):
            self._start(waiting.popleft(), thread)

    def _start(self, job: QueuedJob, thread: _Thread | None) -> None:
        assert self._loop is not None
        limit = self.time_limit_for(job)
        if limit is not None:
            job = job.with_time_limit(limit)  # time_remaining() and checkpoint() work
        if thread is None:
            thread = self._start_thread()
        run = _Run(job, thread)
        self.jobs[job.id] = job
        self._runs[job.id] = run
        thread.assigned += 1
        self._busy.add(thread)
        if limit is not None:
            run.limit = limit
            run.deadline = self._loop.call_later(limit, self._on_deadline, run)
        thread.inbox.put(run)

    def _release(self, thread: _Thread) -> None:
        """One of ``thread``'s runs left it (ended, or cancelled before it started): hand it
        what waits, or let it be idle. A retired thread's earlier runs still end here."""
        thread.assigned -= 1
        if thread.retired:
            return
        self._fill(thread)
        if not thread.assigned:
            self._busy.discard(thread)
            self._idle.append(thread)

    async def cancel(self, ref: Reference) -> None:
        run = self._runs.get(ref.identifier)
        if run is not None:
            self._abandon(
                run,
                JobFailedError("the job was cancelled while running"),
                unstarted=JobFailedError("the job was cancelled before it ran"),
            )
            return
        if (job := self.take_waiting(ref.identifier)) is not None:
            self._reporter.report(job, JobFailedError("the job was cancelled before it ran"))

    async def stop(self) -> None:
        """Interrupt running jobs (best effort), end idle threads; never waits for a job."""
        self._stop_waiting()
        for run in list(self._runs.values()):
            if run.deadline is not None:
                run.deadline.cancel()
            self._interrupt(run)
        self._runs.clear()
        # A busy thread ends after its runs (skipped, or interrupted: then it retires first).
        for thread in (*self._idle, *self._busy):
            thread.inbox.put(None)
        self._idle.clear()
        self._busy.clear()
        await self._reporter.flush(timeout=_FLUSH_TIMEOUT)

    def _start_thread(self) -> _Thread:
        thread = _Thread()
        thread.thread = threading.Thread(
            target=self._thread_main,
            args=(thread,),
            name=f"chancy-{self.queue.name}-{next(self._serial)}",
            daemon=True,
        )
        thread.thread.start()
        thread.ident = thread.thread.ident
        return thread

    def _on_deadline(self, run: _Run) -> None:
        self._abandon(
            run,
            JobTimeLimitError(
                f"the job exceeded its time limit of {run.limit:g}s; its thread was interrupted"
            ),
        )

    def _abandon(
        self, run: _Run, exc: BaseException, *, unstarted: BaseException | None = None
    ) -> None:
        """Report ``run`` as failed with ``exc`` now and free its slot, if it has not ended.

        A run that had not started (it waited in its thread) is skipped by its thread, which
        goes on, and is reported with ``unstarted`` when given. One that had started is
        interrupted and its thread retires: the runs waiting behind it in that thread go
        back to the front of the executor's queue."""
        job = run.job
        if self._runs.get(job.id) is not run:
            return
        started = self._interrupt(run)
        if started is None:
            return  # already finished: its own outcome is on its way
        del self._runs[job.id]
        self.jobs.pop(job.id, None)
        if run.deadline is not None:
            run.deadline.cancel()
        if started:
            self._retire(run.thread)
        else:
            self._release(run.thread)
        while self._waiting and not self._stopped and len(self._busy) < self.concurrency:
            self._fill(self._idle.pop() if self._idle else self._start_thread())
        self._reporter.report(job, exc if started or unstarted is None else unstarted)

    def _retire(self, thread: _Thread) -> None:
        """``thread`` was interrupted and ends after its current run: take back the runs
        waiting behind it (not started; marked so it would skip them) and queue their jobs
        first, in order."""
        thread.retired = True
        self._busy.discard(thread)
        behind = []
        for job_id, other in list(self._runs.items()):
            if other.thread is not thread:
                continue
            with other.lock:
                if other.started:
                    continue  # it ran before the interrupted one: its outcome is on its way
                other.interrupted = True
            del self._runs[job_id]
            if other.deadline is not None:
                other.deadline.cancel()
            behind.append(other.job)
        self._waiting.extendleft(reversed(behind))

    def _interrupt(self, run: _Run) -> bool | None:
        """Interrupt ``run`` unless it already ended: None when it had, False when it had not
        started (its thread skips it), True when it was running (its thread is interrupted)."""
        with run.lock:
            if run.finished or run.interrupted:
                return None
            run.interrupted = True
            if not run.started:
                return False
            if run.task is not None and run.loop is not None:
                try:
                    run.loop.call_soon_threadsafe(run.task.cancel)
                except RuntimeError:
                    pass  # its loop is closing: the job is returning anyway
            else:
                self._interrupt_thread(run)
        return True

    def _interrupt_thread(self, run: _Run) -> None:
        """Stop the sync job running on ``run``'s thread (called with ``run.lock`` held)."""
        ident = run.thread.ident
        if _CAN_INTERRUPT and ident is not None:
            _set_async_exc(ident, JobInterrupted)

    def _drain(self) -> None:
        """Take finished runs posted by threads, free their slots and report them."""
        with self._done_lock:
            finished = list(self._done)
            self._done.clear()
            self._wakeup_pending = False
        for run, job, exc, result in finished:
            if self._runs.get(job.id) is not run:
                continue  # stopped meanwhile: the job was given back
            del self._runs[job.id]
            self.jobs.pop(job.id, None)
            if run.deadline is not None:
                run.deadline.cancel()
            self.observe_runtime(run.elapsed)
            self._release(run.thread)
            self._reporter.report(job, exc, result)

    # -- the threads' side --------------------------------------------------------------

    def _thread_main(self, thread: _Thread) -> None:
        try:
            while True:
                run = thread.inbox.get()
                if run is None or not self._execute(run):
                    return
        except JobInterrupted:
            pass  # a stray interrupt aimed at a job that had just ended

    def _execute(self, run: _Run) -> bool:
        """Run one job and post its outcome; False when the thread must retire."""
        with run.lock:
            if run.interrupted:
                # Cancelled, or taken back, before it started: the loop already dealt with
                # it, and nothing was raised in this thread, which goes on.
                return True
            run.started = True
        try:
            started = time.monotonic()
            job, exc, result = self._invoke(run)
            run.elapsed = time.monotonic() - started
            with run.lock:
                run.finished = True
                interrupted: bool = run.interrupted
        except JobInterrupted:
            interrupted = True
        if interrupted:
            # The job was already reported; an interrupt may still be pending for this thread,
            # so clear it and retire the thread instead of giving it another job.
            while True:
                try:
                    if _CAN_INTERRUPT:
                        _set_async_exc(threading.get_ident(), None)
                    break
                except JobInterrupted:
                    continue
            return False
        self._post(run, job, exc, result)
        return True

    def _invoke(self, run: _Run) -> tuple[QueuedJob, BaseException | None, Any]:
        """Run the job in this thread: (job as the run left it, exception, result)."""
        job = run.job
        try:
            func, kwargs, _, _ = self._functions.resolve(job)
            value = func(**kwargs)
            if inspect.isawaitable(value):
                value = asyncio.run(self._run_awaitable(run, value))
        except BaseException as exc:  # job code may raise SystemExit; it fails only the job
            return job, exc, None
        return job, None, value

    @staticmethod
    async def _run_awaitable(run: _Run, awaitable: Awaitable[Any]) -> Any:
        # Expose this loop and task so an interrupt can cancel the job promptly.
        with run.lock:
            run.loop = asyncio.get_running_loop()
            run.task = asyncio.current_task()
        return await awaitable

    def _post(self, run: _Run, job: QueuedJob, exc: BaseException | None, result: Any) -> None:
        """Hand a finished run to the event loop, waking it once per batch."""
        with self._done_lock:
            self._done.append((run, job, exc, result))
            if self._wakeup_pending:
                return
            self._wakeup_pending = True
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._drain)
        except RuntimeError:
            pass  # the worker's loop is closed: nobody is left to tell
