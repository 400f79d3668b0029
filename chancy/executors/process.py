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
import contextlib
import dataclasses
import functools
import logging
import multiprocessing
import multiprocessing.spawn
import os
import uuid
from typing import TYPE_CHECKING, Any

from chancy.errors import ConfigurationError, JobFailedError, JobTimeLimitError
from chancy.executors import _child
from chancy.executors._children import Child, Sent
from chancy.executors._pool import EXIT_WAIT, ChildPool
from chancy.executors._reporter import Reporter
from chancy.executors._spawning import (
    child_config,
    cpu_count,
    default_start_method,
    preload_in_forkserver,
)
from chancy.executors.base import (
    HAND_AHEAD_WINDOW,
    PLATFORM_LINUX,
    Executor,
    PrefetchingExecutor,
)
from chancy.job import QueuedJob, Reference
from chancy.progress import Report, deliver

if TYPE_CHECKING:
    from chancy.queue import Queue
    from chancy.worker import Worker

log = logging.getLogger("chancy.executor.process")

_MAX_REMEMBERED_FUNCS = 2048
#: A child is sent jobs ahead (they wait in the child, so it never idles for a round trip
#: through the worker's loop) only while jobs are short (``hands_ahead``), as many as cover
#: HAND_AHEAD_WINDOW of run time and at most _MAX_AHEAD of them: a child that dies or times
#: out hands them back to be rerun.
_MAX_AHEAD = 32
#: A job cancelled while waiting in a child is asked to be skipped; if it reaches the head
#: without the child confirming, it is running, and the child is killed after this long.
_SKIP_GRACE = 0.5
#: Jobs claimed ahead per child (``prefetch``'s default here; 64 elsewhere). A process queue
#: has few slots (one per core) and a no-op job takes about 0.1 ms, so 64 per slot covered a
#: few milliseconds of work, and a drain claimed (and wrote outcomes) in batches of about
#: 50 jobs; the 50 ms window of run time still bounds what is taken.
PREFETCH = 256
#: More than a child takes to start (a few ms of CPU with the forkserver), on a busy host.
_BOOT_TIME = 0.05


class ProcessExecutor(PrefetchingExecutor):
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
    - ``prefetch`` (256): at most this many jobs per child are claimed ahead and wait in the
      worker for a free child, so short jobs do not wait for a database round trip each. Only
      as many as cover about 50 ms of the measured run time are taken (none until a run time
      is known), so queues of long jobs are not held back from other workers. While jobs
      take under 5 ms, up to 8 of them are also sent to a busy child ahead of time (``0``
      turns both off).

    Children start when first needed and are reused. They import the worker's ``__main__``
    module only when a job defined there arrives (as multiprocessing does, under the name
    ``__mp_main__``, so code behind an ``if __name__ == "__main__":`` guard does not run
    again), so a worker started from a script or the ``chancy`` command does not re-run it,
    nor import psycopg, in every child. A time limit kills the child at the deadline; a
    memory limit caps how much address space a job may add to its child (``RLIMIT_AS``,
    Linux), so an allocation past it raises ``MemoryError`` and fails that attempt.
    Cancellation kills the child running the job; a job waiting in a child is skipped. Jobs
    waiting behind one that kills its child or times out run in another child.
    Override ``on_initialize_worker`` to prepare each child (``django.setup()``, logging).
    """

    def __init__(
        self,
        worker: Worker,
        queue: Queue,
        *,
        maximum_jobs_per_worker: int = 100,
        mp_context: Any = None,
        **options: Any,
    ) -> None:
        options.setdefault("prefetch", PREFETCH)
        super().__init__(worker, queue, **options)
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
        # A retiring child's successor starts this many jobs before the end of its budget
        # (more for short jobs, see _lead), so the slot never waits for a child to boot.
        self._successor_lead = max(1, maximum_jobs_per_worker // 10)
        #: The children that take jobs (at most ``concurrency``); successors join on retiring.
        self._slots: list[Child] = []
        #: Which child holds each job sent to one.
        self._busy: dict[uuid.UUID, Child] = {}
        # func path -> whether its children need the whole QueuedJob (see _child).
        self._needs_job: dict[str, bool] = {}
        self._reporter = Reporter(self.on_job_completed)
        #: A feed asked for at the loop's next turn (see _feed_soon).
        self._feed_handle: asyncio.Handle | None = None
        self._pool = ChildPool(
            self._context,
            queue.name,
            functools.partial(child_config, type(self)),
            self._on_readable,
            lambda job, exc: self._reporter.report(job, exc),
        )

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
        self.jobs[job.id] = job
        self._waiting.append(job)
        self._feed_soon()

    def _ahead(self) -> int:
        """How many jobs a child may hold: 1, plus some sent ahead while jobs are short."""
        runtime = self.hands_ahead()
        if runtime is None:
            return 1
        return 1 + min(self.prefetch, _MAX_AHEAD, int(HAND_AHEAD_WINDOW / max(runtime, 1e-6)))

    def _feed_soon(self) -> None:
        """``_feed`` at the loop's next turn: the jobs of one claim, or the outcomes of one
        read from a child, then cost one write per child rather than one per job."""
        if self._feed_handle is None:
            self._feed_handle = asyncio.get_running_loop().call_soon(self._fed_soon)

    def _fed_soon(self) -> None:
        self._feed_handle = None
        self._feed()

    def _feed(self) -> None:
        """Send waiting jobs to children with room, one write per child."""
        if self._stopped:
            return
        depth = self._ahead()
        fed: list[Child] = []
        while self._waiting:
            try:
                child = self._pick(depth)
            except Exception as exc:
                log.exception("could not start a process for queue %s", self.queue.name)
                job = self._waiting.popleft()
                self.jobs.pop(job.id, None)
                self._reporter.report(
                    job, JobFailedError(f"could not start a process to run the job: {exc}")
                )
                continue
            if child is None:
                break
            self._assign(child, self._waiting.popleft())
            if child not in fed:
                fed.append(child)
        for child in fed:
            child.flush()

    def _pick(self, depth: int) -> Child | None:
        """The child to send the next job to: an idle one, a new one, or the least loaded."""
        best: Child | None = None
        for child in self._slots:
            held = len(child.pipeline)
            if held >= depth or child.jobs_done + held >= self.maximum_jobs_per_worker:
                continue  # full, or its remaining jobs are all sent
            if best is None or held < len(best.pipeline):
                best = child
                if not held:
                    break
        if (best is None or best.pipeline) and len(self._slots) < self.concurrency:
            best = self._pool.spawn()
            self._slots.append(best)
        return best

    def _assign(self, child: Child, job: QueuedJob) -> None:
        time_limit = self.time_limit_for(job)
        if time_limit is not None:
            # The job can read time_remaining() (CLOCK_MONOTONIC is host-wide on Linux).
            job = job.with_time_limit(time_limit)
        memory_limit = self.memory_limit_for(job)
        child.pipeline.append(
            Sent(job, time_limit, memory_limit, asyncio.get_running_loop().time())
        )
        self._busy[job.id] = child
        if (
            child.successor is None
            and child.jobs_done + len(child.pipeline) + self._lead() >= self.maximum_jobs_per_worker
        ):
            self._start_successor(child)
        full = self._needs_job.get(job.func, True)
        child.queue(_child.job_message(job, memory_limit, full=full))
        if len(child.pipeline) == 1 and child.ready:
            self._arm_head(child)

    def _lead(self) -> int:
        """Jobs before a child's end to start its successor: enough to cover a boot."""
        runtime = self._runtime
        if runtime is None:
            return self._successor_lead
        cover = int(_BOOT_TIME / max(runtime, 1e-6))
        return max(self._successor_lead, min(self.maximum_jobs_per_worker // 2, cover))

    def _arm_head(self, child: Child) -> None:
        """Start the deadline of the job at the head of ``child``'s pipeline, if it has one."""
        if child.deadline is not None:
            child.deadline.cancel()
            child.deadline = None
        head = child.head
        if head is None:
            return
        loop = asyncio.get_running_loop()
        if head.job.id in child.skipping:
            child.deadline = loop.call_later(_SKIP_GRACE, self._on_deadline, child, head.job)
        elif head.time_limit is not None:
            child.deadline = loop.call_later(head.time_limit, self._on_deadline, child, head.job)

    def _requeue(self, child: Child, entries: list[Sent]) -> None:
        """Jobs a lost child held but had not started: run them elsewhere, except those
        cancelled meanwhile (asked to be skipped), which are reported cancelled."""
        for entry in reversed(entries):
            job_id = entry.job.id
            self._busy.pop(job_id, None)
            job = self.jobs.get(job_id)
            if job is None:
                continue
            if job_id in child.skipping:
                self.jobs.pop(job_id, None)
                self._reporter.report(job, JobFailedError("the job was cancelled before it ran"))
            else:
                self._waiting.appendleft(job)

    async def cancel(self, ref: Reference) -> None:
        child = self._busy.get(ref.identifier)
        if child is not None:
            head = child.head
            if head is not None and head.job.id == ref.identifier:
                self._abandon(child, JobFailedError("the job was cancelled while running"))
            elif ref.identifier not in child.skipping:
                # Sent ahead and not started: the child drops it and answers SKIPPED.
                child.skipping.add(ref.identifier)
                child.send((_child.SKIP, ref.identifier.int))
            return
        if (job := self.take_waiting(ref.identifier)) is not None:
            self._reporter.report(job, JobFailedError("the job was cancelled before it ran"))

    async def stop(self) -> None:
        """Kill every child (running jobs are abandoned) and wait briefly for them to exit."""
        self._stop_waiting()
        self._slots.clear()
        self._busy.clear()
        await self._pool.close()
        await self._reporter.flush(timeout=EXIT_WAIT)

    # -- children -----------------------------------------------------------------------

    def _start_successor(self, child: Child) -> None:
        """Start the child that takes ``child``'s slot when it retires."""
        try:
            child.successor = self._pool.spawn()
        except Exception:
            log.exception("could not start a process for queue %s", self.queue.name)

    def _discard(self, child: Child, *, kill: bool, job: Sent | None = None) -> None:
        """Stop using ``child`` (see ChildPool.discard); its successor takes its slot."""
        if child.closed:
            return
        self._pool.discard(child, kill=kill, job=job)
        with contextlib.suppress(ValueError):
            self._slots.remove(child)
        successor, child.successor = child.successor, None
        if successor is not None:
            if self._stopped:
                self._pool.discard(successor, kill=True)
            else:
                self._slots.append(successor)

    def _abandon(self, child: Child, exc: BaseException) -> None:
        """Kill the child running a job, report ``exc`` as that job's outcome and send the
        jobs waiting in the child elsewhere."""
        held = list(child.pipeline)
        child.pipeline.clear()
        self._discard(child, kill=True)
        if held:
            job = held[0].job
            self.jobs.pop(job.id, None)
            self._busy.pop(job.id, None)
            self._reporter.report(job, exc)
        self._requeue(child, held[1:])
        self._feed()

    def _on_deadline(self, child: Child, job: QueuedJob) -> None:
        head = child.head
        if head is None or head.job is not job:
            return
        if job.id in child.skipping:
            exc: BaseException = JobFailedError("the job was cancelled while running")
        else:
            exc = JobTimeLimitError(
                f"the job exceeded its time limit of {head.time_limit:g}s; the process"
                " running it was killed"
            )
        self._abandon(child, exc)

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
            self._arm_head(child)
        elif kind == _child.PROGRESS:
            job = child.job
            if job is not None and job.id.int == message[1]:
                deliver(job.id, job.claim_id, Report(message[2], message[3], message[4]))
        elif kind == _child.NEED_JOB:
            head = child.head
            if head is not None and head.job.id not in child.skipping:
                self._needs_job[head.job.func] = True
                child.send(_child.job_message(head.job, head.memory_limit, full=True))
        elif kind == _child.SKIPPED:
            self._on_skipped(child, message[1])

    def _on_skipped(self, child: Child, id_int: int) -> None:
        index = next((i for i, e in enumerate(child.pipeline) if e.job.id.int == id_int), None)
        if index is None:
            return
        job = child.pipeline[index].job
        del child.pipeline[index]
        child.skipping.discard(job.id)
        self.jobs.pop(job.id, None)
        self._busy.pop(job.id, None)
        if index == 0 and child.ready:
            self._arm_head(child)
        self._feed()
        self._reporter.report(job, JobFailedError("the job was cancelled before it ran"))

    def _on_finished(self, child: Child, message: tuple[Any, ...]) -> None:
        head = child.head
        if head is None:
            return
        # Decoded first: if that fails, the job is still the child's and is failed with it.
        exc, result, meta = _child.decode_outcome(message)
        child.pipeline.popleft()
        job = head.job
        child.skipping.discard(job.id)
        self.jobs.pop(job.id, None)
        self._busy.pop(job.id, None)
        used_job = message[1]
        if self._needs_job.get(job.func) is not used_job:
            if len(self._needs_job) >= _MAX_REMEMBERED_FUNCS:
                self._needs_job.clear()
            self._needs_job[job.func] = used_job
        now = asyncio.get_running_loop().time()
        if child.jobs_done:  # a child's first job also waited for it to boot
            # It started when it was sent or when the job before it finished, if later.
            self.observe_runtime(now - max(head.sent_at, child.last_done))
        child.last_done = now
        child.jobs_done += 1
        if child.jobs_done >= self.maximum_jobs_per_worker and not child.pipeline:
            self._discard(child, kill=False)  # its successor, started earlier, takes its slot
        elif child.ready:
            self._arm_head(child)
        self._feed_soon()
        if meta is not None:
            job = dataclasses.replace(job, meta=meta)
        self._reporter.report(job, exc, result)

    def _on_child_gone(self, child: Child) -> None:
        """The child closed its socket, so it died: fail the job it was running once its exit
        code is known, and send the jobs waiting in it elsewhere."""
        held = list(child.pipeline)
        child.pipeline.clear()
        head = held[0] if held else None
        if head is not None:
            self.jobs.pop(head.job.id, None)
            self._busy.pop(head.job.id, None)
        self._discard(child, kill=False, job=head)
        self._requeue(child, held[1:])
        self._feed()
