"""ProcessExecutor: every slot runs its jobs in its own spawned child process.

Each child is fed over its own socket pair, so a child that dies (segfault, OOM kill,
``os._exit``) fails only the job it was running and only that child is replaced; a shared
``ProcessPoolExecutor`` would instead break and fail every job in flight. The parent never
blocks its event loop on a child: it reads each socket with ``loop.add_reader`` and writes
without blocking, and it enforces time limits from the loop (a child past its deadline is
killed), so a stuck job cannot stall the worker.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import dataclasses
import functools
import itertools
import logging
import multiprocessing
import multiprocessing.spawn
import multiprocessing.util  # registers its atexit hook before ours, so ours runs first
import os
import socket
import uuid
import weakref
from typing import TYPE_CHECKING, Any

from chancy.errors import ConfigurationError, JobFailedError, JobTimeLimitError
from chancy.executors import _child
from chancy.executors._children import Child
from chancy.executors._reporter import Reporter
from chancy.executors._spawning import (
    cpu_count,
    default_start_method,
    describe_exit,
    describe_main,
    kill_process,
    main_module_hidden,
    preload_in_forkserver,
)
from chancy.executors.base import PLATFORM_LINUX, ConcurrentExecutor, Executor
from chancy.job import QueuedJob, Reference
from chancy.progress import Report, deliver

if TYPE_CHECKING:
    from chancy.queue import Queue
    from chancy.worker import Worker

log = logging.getLogger("chancy.executor.process")

_MAX_REMEMBERED_FUNCS = 2048
_EXIT_WAIT = 5.0
#: Jobs are claimed ahead of free children only to cover this much of their run time, so a
#: queue of long jobs is never held back from other workers.
_PREFETCH_WINDOW = 0.05


class ProcessExecutor(ConcurrentExecutor):
    """Runs each job in a child process; the default executor, for CPU-bound or unsafe code.

    Options (a queue's ``executor_options``):

    - ``maximum_jobs_per_worker`` (100, as in Chancy 0.26): a child is replaced after running
      this many jobs, which bounds the damage of leaks in job code; raise it for short jobs
      (each replacement forks a child, a few milliseconds of CPU with the forkserver).
    - ``mp_context`` ("forkserver" where the platform has it, else "spawn"): the
      multiprocessing start method, by name or as a context object
      (``multiprocessing.get_context(...)``, as Chancy 0.26 took it). A forkserver child
      starts in milliseconds (forked from a clean server process that imported the child's
      code once); a spawned one boots a new interpreter (about 0.2 s of CPU), which adds up
      when children are recycled often.
      "fork" is refused: forking a running worker (threads, event loop, open connections)
      is unsafe.
    - ``time_limit`` (None): seconds a job may run when it has no TIME limit of its own.
    - ``prefetch`` (64): at most this many jobs per child are claimed ahead and wait in the
      worker for a free child, so short jobs do not wait for a database round trip each. Only
      as many as cover about 50 ms of the measured run time are taken (none until a run time
      is known), so queues of long jobs are not held back from other workers.

    Children start when first needed and are reused. They import the worker's ``__main__``
    module only when a job defined there arrives (as multiprocessing does, under the name
    ``__mp_main__``, so code behind an ``if __name__ == "__main__":`` guard does not run
    again), so a worker started from a script or the ``chancy`` command does not re-run it,
    nor import psycopg, in every child. A time limit kills the child at the deadline; a
    memory limit caps how much address space a job may add to its child (``RLIMIT_AS``,
    Linux), so an allocation past it raises ``MemoryError`` and fails that attempt.
    Cancellation kills the child.
    Override ``on_initialize_worker`` to prepare each child (``django.setup()``, logging).
    """

    def __init__(
        self,
        worker: Worker,
        queue: Queue,
        *,
        maximum_jobs_per_worker: int = 100,
        mp_context: Any = None,
        prefetch: int = 64,
        **options: Any,
    ) -> None:
        super().__init__(worker, queue, **options)
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
            raise ConfigurationError(f"prefetch must be an integer >= 0, got {prefetch!r}")
        self.prefetch = prefetch
        # Claimed jobs waiting for a free child, and the smoothed run time of a job (seconds).
        self._waiting: collections.deque[QueuedJob] = collections.deque()
        self._runtime: float | None = None
        if (
            isinstance(maximum_jobs_per_worker, bool)
            or not isinstance(maximum_jobs_per_worker, int)
            or maximum_jobs_per_worker < 1
        ):
            raise ConfigurationError(
                f"maximum_jobs_per_worker must be a positive integer, got"
                f" {maximum_jobs_per_worker!r}"
            )
        if mp_context is None:
            mp_context = default_start_method()
        elif not isinstance(mp_context, str) and hasattr(mp_context, "get_start_method"):
            mp_context = mp_context.get_start_method()
        if mp_context not in ("spawn", "forkserver"):
            raise ConfigurationError(
                f"mp_context {mp_context!r} is not supported; use 'spawn' or"
                " 'forkserver' ('fork' is unsafe in a running worker)"
            )
        try:
            self._context: Any = multiprocessing.get_context(mp_context)
        except ValueError as exc:
            raise ConfigurationError(
                f"mp_context {mp_context!r} is not available on this platform: {exc}"
            ) from None
        if mp_context == "forkserver":
            preload_in_forkserver()
        self.maximum_jobs_per_worker = maximum_jobs_per_worker
        # A retiring child's successor starts this many jobs before the end of its budget,
        # so the slot never waits for a child to boot.
        self._successor_lead = max(1, maximum_jobs_per_worker // 10)
        self._children: set[Child] = set()
        self._idle: list[Child] = []
        self._busy: dict[uuid.UUID, Child] = {}
        # func path -> whether its children need the whole QueuedJob (see _child).
        self._needs_job: dict[str, bool] = {}
        self._reporter = Reporter(self.on_job_completed)
        self._reaping: set[asyncio.Task[None]] = set()
        self._serial = itertools.count(1)
        self._stopped = False

    # -- capabilities -------------------------------------------------------------------

    @classmethod
    def get_capabilities(cls) -> Executor.Capability:
        caps = (
            cls.Capability.SYNC_JOBS
            | cls.Capability.ASYNC_JOBS
            | cls.Capability.TIME_LIMIT
            | cls.Capability.COOPERATIVE_TIME_LIMITS
            | cls.Capability.CANCELLATION
        )
        if PLATFORM_LINUX and _child.resource is not None:
            caps |= cls.Capability.MEMORY_LIMIT
        return caps

    @classmethod
    def unsupported_reason(cls) -> str | None:
        if os.name != "posix":
            return (
                "ProcessExecutor needs a POSIX system (it watches its children with"
                " loop.add_reader); use ThreadedExecutor or AsyncExecutor on this platform"
            )
        return None

    def get_default_concurrency(self) -> int:
        return cpu_count()

    @property
    def free_slots(self) -> int:
        """Room for more claimed jobs: free children plus the prefetch allowance.

        Reported in steps of a quarter of the capacity, so a backlog is claimed in batches
        rather than one job per freed child.
        """
        capacity = self.concurrency
        runtime = self._runtime
        if not self.prefetch or runtime is None or runtime >= _PREFETCH_WINDOW:
            return max(0, capacity - len(self.jobs))
        capacity += min(self.prefetch, int(_PREFETCH_WINDOW / max(runtime, 1e-6))) * capacity
        free = capacity - len(self.jobs)
        return free if free >= capacity // 4 else 0

    @staticmethod
    def on_initialize_worker() -> None:
        """Called once in each child before it runs jobs; override to prepare children.

        Runs in the child, after ``sys.path`` and the working directory match the worker's.
        By default it calls ``django.setup()`` when Django is configured
        (``DJANGO_SETTINGS_MODULE`` is set), as Chancy 0.26 did, so jobs can use the ORM.
        """
        if os.environ.get("DJANGO_SETTINGS_MODULE"):
            try:
                import django
            except ImportError:
                return
            django.setup()

    # -- running jobs -------------------------------------------------------------------

    async def submit_to_pool(self, job: QueuedJob) -> None:
        if self._stopped:
            raise RuntimeError("this ProcessExecutor was stopped; it cannot run more jobs")
        if not self._idle and len(self._busy) >= self.concurrency:
            # Claimed ahead: it starts as soon as a child is free.
            self.jobs[job.id] = job
            self._waiting.append(job)
            return
        self._start(job)

    def _feed(self) -> None:
        """Start waiting jobs on free children."""
        while (
            self._waiting
            and not self._stopped
            and (self._idle or len(self._busy) < self.concurrency)
        ):
            self._start(self._waiting.popleft())

    def _start(self, job: QueuedJob) -> None:
        child = self._idle.pop() if self._idle else None
        if child is None:
            try:
                child = self._spawn()
            except Exception as exc:
                log.exception("could not start a process for job %s", job.id)
                self.jobs.pop(job.id, None)
                self._reporter.report(
                    job, JobFailedError(f"could not start a process to run the job: {exc}")
                )
                return
        self.jobs[job.id] = job
        self._busy[job.id] = child
        child.job = job
        if (
            child.successor is None
            and child.jobs_done + self._successor_lead >= self.maximum_jobs_per_worker
        ):
            child.successor = self._try_spawn()
        child.time_limit = self.time_limit_for(job)
        if child.time_limit is not None:
            # The job can read time_remaining() (CLOCK_MONOTONIC is host-wide on Linux).
            job = child.job = job.with_time_limit(child.time_limit)
        child.memory_limit = self.memory_limit_for(job)
        full = self._needs_job.get(job.func, True)
        child.sent_at = asyncio.get_running_loop().time()
        child.send(_child.job_message(job, child.memory_limit, full=full))
        if child.ready and child.time_limit is not None:
            self._arm_deadline(child)

    async def cancel(self, ref: Reference) -> None:
        child = self._busy.get(ref.identifier)
        if child is not None:
            self._abandon(child, JobFailedError("the job was cancelled while running"))
            return
        for job in self._waiting:
            if job.id == ref.identifier:
                self._waiting.remove(job)
                self.jobs.pop(job.id, None)
                self._reporter.report(job, JobFailedError("the job was cancelled before it ran"))
                return

    async def stop(self) -> None:
        """Kill every child (running jobs are abandoned) and wait briefly for them to exit."""
        self._stopped = True
        self._idle.clear()
        self._busy.clear()
        self._waiting.clear()
        self.jobs.clear()
        for child in list(self._children):
            child.job = None
            self._discard(child, kill=True)
        if self._reaping:
            await asyncio.wait(set(self._reaping), timeout=_EXIT_WAIT)
        await self._reporter.flush(timeout=_EXIT_WAIT)
        _live_executors.discard(self)

    # -- children -----------------------------------------------------------------------

    def _spawn(self) -> Child:
        loop = asyncio.get_running_loop()
        parent_sock, child_sock = socket.socketpair()
        try:
            process = self._context.Process(
                target=_child.main,
                args=(child_sock, self._child_config()),
                name=f"chancy-{self.queue.name}-{next(self._serial)}",
            )
            with main_module_hidden():
                process.start()
        except BaseException:
            parent_sock.close()
            raise
        finally:
            child_sock.close()
        parent_sock.setblocking(False)
        child = Child(process, parent_sock)
        loop.add_reader(parent_sock.fileno(), self._on_readable, child)
        self._children.add(child)
        _live_executors.add(self)
        return child

    def _try_spawn(self) -> Child | None:
        try:
            return self._spawn()
        except Exception:
            log.exception("could not start a process for queue %s", self.queue.name)
            return None

    def _child_config(self) -> dict[str, Any]:
        cls = type(self)
        path: str | None = f"{cls.__module__}.{cls.__qualname__}"
        if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
            path = None  # not importable in the child; it uses ProcessExecutor's hooks
        return {
            "executor": path,
            "parent_pid": os.getpid(),
            "log_level": logging.getLogger().getEffectiveLevel(),
            "main": describe_main(),
        }

    def _discard(self, child: Child, *, kill: bool, job: QueuedJob | None = None) -> None:
        """Stop using ``child``: close its socket, kill it if asked, reap it in the background.

        With ``job``, the job is reported as failed with the child's exit code once known.
        """
        if child.closed:
            return
        child.closed = True
        if child.deadline is not None:
            child.deadline.cancel()
            child.deadline = None
        loop = asyncio.get_running_loop()
        fd = child.sock.fileno()
        loop.remove_reader(fd)
        if child.outbuf:
            loop.remove_writer(fd)
            child.outbuf.clear()
        if kill:
            kill_process(child.process)
        child.sock.close()  # a live child reads EOF and exits
        with contextlib.suppress(ValueError):
            self._idle.remove(child)
        self._children.discard(child)
        successor, child.successor = child.successor, None
        if successor is not None:
            if self._stopped:
                self._discard(successor, kill=True)
            else:
                self._idle.append(successor)
        task = loop.create_task(self._wait_exit(child, job))
        self._reaping.add(task)
        task.add_done_callback(self._reaping.discard)

    async def _wait_exit(self, child: Child, job: QueuedJob | None) -> None:
        """Wait for ``child`` to exit (no zombies); report ``job`` as killed with its exit code."""
        process = child.process
        loop = asyncio.get_running_loop()
        kill_at = loop.time() + _EXIT_WAIT
        delay = 0.001
        while process.exitcode is None:
            if loop.time() >= kill_at:
                kill_process(process)  # a recycled child that does not exit on EOF
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        code = process.exitcode
        with contextlib.suppress(ValueError):
            process.close()
        if job is not None:
            self._reporter.report(job, JobFailedError(describe_exit(code, child.memory_limit)))

    def _abandon(self, child: Child, exc: BaseException) -> None:
        """Kill the child running a job, free its slot and report ``exc`` as the outcome."""
        job = child.job
        child.job = None
        self._discard(child, kill=True)
        if job is not None:
            self.jobs.pop(job.id, None)
            self._busy.pop(job.id, None)
            self._reporter.report(job, exc)
        self._feed()

    def _arm_deadline(self, child: Child) -> None:
        assert child.time_limit is not None
        child.deadline = asyncio.get_running_loop().call_later(
            child.time_limit, self._on_deadline, child, child.job
        )

    def _on_deadline(self, child: Child, job: QueuedJob | None) -> None:
        if child.job is job:
            self._abandon(
                child,
                JobTimeLimitError(
                    f"the job exceeded its time limit of {child.time_limit:g}s; the process"
                    " running it was killed"
                ),
            )

    def _on_readable(self, child: Child) -> None:
        try:
            child.read(
                functools.partial(self._on_message, child),
                functools.partial(self._on_child_gone, child),
            )
        except Exception as exc:
            # A reply that cannot be decoded: this child can no longer be trusted.
            log.exception("bad reply from process %s", child.process.pid)
            self._abandon(child, JobFailedError(f"the job's process sent a bad reply: {exc}"))

    def _on_message(self, child: Child, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == _child.DONE or kind == _child.FAILED:
            self._on_finished(child, message)
        elif kind == _child.READY:
            child.ready = True
            if child.job is not None and child.time_limit is not None:
                self._arm_deadline(child)
        elif kind == _child.PROGRESS:
            job = child.job
            if job is not None and job.id.int == message[1]:
                deliver(job.id, job.claim_id, Report(message[2], message[3], message[4]))
        elif kind == _child.NEED_JOB and child.job is not None:
            self._needs_job[child.job.func] = True
            child.send(_child.job_message(child.job, child.memory_limit, full=True))

    def _on_finished(self, child: Child, message: tuple[Any, ...]) -> None:
        job = child.job
        if job is None:
            return
        # Decoded first: if that fails, the job is still the child's and is failed with it.
        exc, result, meta = _child.decode_outcome(message)
        child.job = None
        if child.deadline is not None:
            child.deadline.cancel()
            child.deadline = None
        self.jobs.pop(job.id, None)
        self._busy.pop(job.id, None)
        used_job = message[1]
        if self._needs_job.get(job.func) is not used_job:
            if len(self._needs_job) >= _MAX_REMEMBERED_FUNCS:
                self._needs_job.clear()
            self._needs_job[job.func] = used_job
        if child.jobs_done:  # a child's first job also waited for it to boot
            elapsed = asyncio.get_running_loop().time() - child.sent_at
            runtime = self._runtime
            self._runtime = elapsed if runtime is None else 0.8 * runtime + 0.2 * elapsed
        child.jobs_done += 1
        if child.jobs_done < self.maximum_jobs_per_worker:
            self._idle.append(child)
        else:
            self._discard(child, kill=False)  # its successor, started earlier, becomes idle
        self._feed()
        if meta is not None:
            job = dataclasses.replace(job, meta=meta)
        self._reporter.report(job, exc, result)

    def _on_child_gone(self, child: Child) -> None:
        """The child closed its socket, so it died: fail its job once its exit code is known."""
        job = child.job
        child.job = None
        if job is not None:
            self.jobs.pop(job.id, None)
            self._busy.pop(job.id, None)
        self._discard(child, kill=False, job=job)
        self._feed()

    def _kill_all_now(self) -> None:
        """Kill every child at once (interpreter exit, no event loop)."""
        for child in self._children:
            kill_process(child.process)


_live_executors: weakref.WeakSet[ProcessExecutor] = weakref.WeakSet()


@atexit.register
def _kill_children_at_exit() -> None:
    # multiprocessing joins non-daemon children at exit; a child stuck in a job would hang
    # the worker's exit, so kill them first. (Children are not daemonic so that jobs may
    # start processes of their own.)
    for executor in list(_live_executors):
        executor._kill_all_now()
