"""The executor contract: run a claimed job, then report how the run ended.

Executors never touch the database and run no plugin hooks. The runtime hands each claimed
job to ``push`` (plugins' ``on_job_starting`` already ran for its claim batch); when the run
ends, the executor calls ``on_job_completed(job=..., exc=..., result=...)``, which reports it
to the worker's runtime (chancy.runtime.context.Runtime.report): the outcome is built there
(chancy.outcome), adjusted by plugins and written, fenced by the claim.

Chancy 0.26's executor API is kept: a custom executor may override ``push`` alone (or
``submit_to_pool``), ``supports(capability)`` answers for one capability, and the helpers
``get_function_and_kwargs``, ``prepare_job_for_execution``, ``run_function``, ``get_limit``,
``get_running_jobs`` and ``cancel_execution`` exist with its signatures.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import enum
import inspect
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chancy.errors import ConfigurationError, JobFailedError
from chancy.job import Limit, QueuedJob, Reference
from chancy.outcome import (
    DEFAULT_MAX_RESULT_SIZE,
    Delayed,
    Outcome,
    RemoteJobError,
    build_outcome,
    encode_result,
    evolve,
    format_exception,
)
from chancy.utils import import_string

if TYPE_CHECKING:
    from chancy.queue import Queue
    from chancy.worker import Worker

__all__ = [
    "DEFAULT_MAX_RESULT_SIZE",
    "PLATFORM_LINUX",
    "ConcurrentExecutor",
    "Delayed",
    "Executor",
    "Outcome",
    "RemoteJobError",
    "build_outcome",
    "encode_result",
    "evolve",
    "format_exception",
    "run_coroutine_function",
]

log = logging.getLogger("chancy.executor")


def check_kwargs(job: QueuedJob, func: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    """Raise ``JobFailedError`` when ``kwargs`` (as ``get_function_and_kwargs`` returned
    them, overrides included) do not fit ``func``'s signature, naming both."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return
    try:
        sig.bind(**kwargs)
    except TypeError as exc:
        raise JobFailedError(
            f"the kwargs {sorted(job.kwargs or {})} do not match {job.func}{sig}: {exc}"
        ) from exc


class Executor(abc.ABC):
    """Base of all executors. One instance serves one queue in one worker."""

    class Capability(enum.IntFlag):
        """What an executor can do (Chancy 0.26's names are aliases of chancy's)."""

        NONE = 0
        SYNC_JOBS = enum.auto()
        ASYNC_JOBS = enum.auto()
        TIME_LIMIT = enum.auto()
        MEMORY_LIMIT = enum.auto()
        CANCELLATION = enum.auto()
        #: Jobs read ``QueuedJob.time_remaining`` / call ``checkpoint()`` to honour a limit.
        COOPERATIVE_TIME_LIMITS = enum.auto()
        AUTOMATIC_TIME_LIMITS = TIME_LIMIT
        MEMORY_LIMITS = MEMORY_LIMIT

    def __init__(self, worker: Worker, queue: Queue, **options: Any) -> None:
        cls = type(self)
        if cls.push is Executor.push and cls.submit_to_pool is Executor.submit_to_pool:
            raise TypeError(f"{cls.__name__} must override push() (or submit_to_pool())")
        self.worker = worker
        self.queue = queue
        #: Default time limit (seconds) for jobs of this queue without a TIME limit of their own.
        self.default_time_limit: float | None = options.pop("time_limit", None)
        if options:
            raise TypeError(
                f"{type(self).__name__} got unknown executor_options {sorted(options)}; check"
                f" the queue's executor_options"
            )
        # Where runs are reported: the worker's runtime (a stand-in worker may lack one).
        runtime = getattr(worker, "runtime", None)
        self._report: Callable[..., Any] | None = getattr(runtime, "report", None)

    # -- capabilities -----------------------------------------------------------------

    #: Chancy 0.26's class attribute; ``get_capabilities`` is what counts.
    capabilities = Capability.NONE

    @classmethod
    def get_capabilities(cls) -> Executor.Capability:
        """What this executor can do on this platform."""
        return cls.capabilities

    @classmethod
    def supports(cls, capability: Executor.Capability | None = None) -> Any:
        """``supports(capability)``: whether every given capability is supported (Chancy
        0.26); ``supports()``: the capabilities themselves."""
        capabilities = cls.get_capabilities()
        if capability is None:
            return capabilities
        return (capabilities & capability) == capability

    @classmethod
    def unsupported_reason(cls) -> str | None:
        """Why this executor cannot run here at all, or None when it can."""
        return None

    # -- the pool ---------------------------------------------------------------------

    async def push(self, job: QueuedJob) -> None:
        """Start running ``job`` (return once it has started); report it when it ends."""
        await self.submit_to_pool(job)

    async def submit_to_pool(self, job: QueuedJob) -> None:
        """Start running ``job`` without further checks; return once it has started."""
        raise NotImplementedError

    def start_now(self, job: QueuedJob) -> bool:
        """Start ``job`` as ``push`` would, without awaiting, if this executor can (its own
        ``push`` and ``submit_to_pool``, not a subclass's); False: nothing was done, await
        ``push``. The runtime's fast path for the jobs of a claim."""
        return False

    @abc.abstractmethod
    async def stop(self) -> None:
        """Release the executor's resources; running jobs are abandoned."""

    @abc.abstractmethod
    async def cancel(self, ref: Reference) -> None:
        """Interrupt the running job ``ref`` if this executor runs it; free its slot."""

    @abc.abstractmethod
    def get_default_concurrency(self) -> int:
        """Slots used when the queue's ``concurrency`` is None."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """The number of jobs running now."""

    @property
    def concurrency(self) -> int:
        if self.queue.concurrency is None:
            return self.get_default_concurrency()
        return self.queue.concurrency

    @property
    def free_slots(self) -> int:
        return max(0, self.concurrency - len(self))

    @property
    def chancy(self) -> Any:
        return self.worker.chancy

    def running_ids(self) -> set[Any]:
        """Ids of the jobs running now (used to give them back at shutdown)."""
        return {job.id for job in self.get_running_jobs()}

    def get_running_jobs(self) -> list[QueuedJob]:
        """The jobs running now."""
        return []

    def get_running_job(self, ref: Reference) -> QueuedJob | None:
        return next((j for j in self.get_running_jobs() if j.id == ref.identifier), None)

    def is_job_running(self, ref: Reference) -> bool:
        return self.get_running_job(ref) is not None

    async def cancel_execution(self, job: QueuedJob) -> None:
        """Interrupt this execution of ``job`` (its id and claim); default: ``cancel``."""
        await self.cancel(Reference(job.id))

    async def __aenter__(self) -> Executor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- helpers for implementations --------------------------------------------------

    def time_limit_for(self, job: QueuedJob) -> float | None:
        if not job.limits:
            return self.default_time_limit
        limits = [lim.value for lim in job.limits if lim.type_ is Limit.Type.TIME]
        if limits:
            return float(min(limits))
        return self.default_time_limit

    @staticmethod
    def memory_limit_for(job: QueuedJob) -> int | None:
        limits = [lim.value for lim in job.limits if lim.type_ is Limit.Type.MEMORY]
        return int(min(limits)) if limits else None

    @staticmethod
    def get_limit(job: QueuedJob, limit_type: Limit.Type) -> int | None:
        """The first limit of ``limit_type`` the job carries (Chancy 0.26's helper)."""
        return next((lim.value for lim in job.limits if lim.type_ == limit_type), None)

    @classmethod
    def prepare_job_for_execution(
        cls, job: QueuedJob
    ) -> tuple[QueuedJob, Callable[..., Any], dict[str, Any]]:
        """The job (with a cooperative deadline when its TIME limit calls for one), its
        function and kwargs (Chancy 0.26's helper for custom executors)."""
        time_limit = cls.get_limit(job, Limit.Type.TIME)
        capabilities = cls.get_capabilities()
        if time_limit is not None and not (capabilities & cls.Capability.TIME_LIMIT):
            job = job.with_time_limit(float(time_limit))
        func, kwargs = cls.get_function_and_kwargs(job)
        check_kwargs(job, func, kwargs)
        return job, func, kwargs

    @staticmethod
    def run_function(func: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        """Run a sync function, or an async one to completion on a fresh event loop."""
        return run_coroutine_function(func, kwargs)

    @staticmethod
    def get_function_and_kwargs(job: QueuedJob) -> tuple[Callable[..., Any], dict[str, Any]]:
        """Import the job's function and build its kwargs.

        A keyword-only parameter annotated ``QueuedJob`` receives the running job. Raises
        ``JobFailedError`` with a clear message when the function cannot be imported.
        Chancy 0.26's way to inject application-level dependencies is to override this,
        call ``super()`` and add kwargs, so the kwargs are checked against the signature
        after it returns (``check_kwargs``), not here.
        """
        try:
            func = import_string(job.func)
        except Exception as exc:
            raise JobFailedError(
                f"could not import job function {job.func!r}: {exc}. Is the module installed"
                " on this worker, and is the path spelled 'package.module.function'?"
            ) from exc
        if not callable(func):
            raise JobFailedError(f"{job.func!r} is not callable")
        kwargs = dict(job.kwargs or {})
        try:
            sig = inspect.signature(func)
        except (TypeError, ValueError):
            return func, kwargs
        for name, param in sig.parameters.items():
            if param.kind is not param.KEYWORD_ONLY:
                continue
            ann = param.annotation
            if (
                ann is QueuedJob
                or ann == "QueuedJob"
                or (isinstance(ann, type) and issubclass(ann, QueuedJob))
            ):
                kwargs[name] = job
        return func, kwargs

    # -- reporting --------------------------------------------------------------------

    async def on_job_starting(self, job: QueuedJob) -> QueuedJob:
        """Kept for Chancy 0.26's executors, which called it from ``push``: the runtime now
        runs the plugins' ``on_job_starting`` once per claim batch, before ``push``."""
        return job

    async def on_job_completed(
        self, *, job: QueuedJob, exc: BaseException | None = None, result: Any = None
    ) -> None:
        """Report that a run of ``job`` ended: it raised ``exc`` or returned ``result``.

        ``job`` is the job as the run left it (its ``meta`` may have been changed by the job).
        """
        if self._report is not None:
            await self._report(job, exc, result)
            return
        # A stand-in worker without a runtime (Chancy 0.26's contract): hand it the outcome.
        outcome = build_outcome(
            job,
            exc,
            result,
            max_result_size=getattr(self.worker.chancy, "max_result_size", DEFAULT_MAX_RESULT_SIZE),
        )
        await self.worker.queue_update(outcome)


class ConcurrentExecutor(Executor, abc.ABC):
    """Base for executors that track running jobs as futures or tasks keyed by job id."""

    def __init__(self, worker: Worker, queue: Queue, **options: Any) -> None:
        super().__init__(worker, queue, **options)
        self.jobs: dict[Any, QueuedJob] = {}

    def __len__(self) -> int:
        return len(self.jobs)

    def get_running_jobs(self) -> list[QueuedJob]:
        return list(self.jobs.values())


#: Jobs are claimed ahead of free slots only to cover this much of their measured run time,
#: so a queue of long jobs is never held back from other workers.
PREFETCH_WINDOW = 0.05
#: At most this many jobs of one queue wait in a worker's executor, claimed ahead. Past a few
#: hundred jobs a bigger claim only makes each claim and each completion write longer: an
#: async queue of 500 tasks claimed 8,000 no-op jobs at a time unbounded and drained 20%
#: slower than with this cap.
MAX_AHEAD = 1000
#: Executors that also keep jobs waiting inside a busy child or thread (ProcessExecutor,
#: ThreadedExecutor) do so only while jobs take under this long on average, so that a job
#: is never held back long behind another (``PrefetchingExecutor.hands_ahead``).
HAND_AHEAD_WINDOW = 0.005


class PrefetchingExecutor(ConcurrentExecutor):
    """A ConcurrentExecutor that claims short jobs ahead of its free slots.

    Option ``prefetch`` (64): at most this many jobs per slot are claimed ahead and wait in
    the executor for a free slot, so short jobs do not wait for a database round trip each.
    Only as many as cover about 50 ms of the measured run time are taken (none until a run
    time is known), so queues of long jobs are not held back from other workers, and never
    more than ``MAX_AHEAD`` in all. ``0`` turns it off. Queues with fairness, per-key order or
    per-key limits never claim ahead: the claim picks whose turn it is, and a job claimed
    ahead would run after a key that became due meanwhile.
    """

    def __init__(self, worker: Worker, queue: Queue, *, prefetch: int = 64, **options: Any):
        super().__init__(worker, queue, **options)
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
            raise ConfigurationError(f"prefetch must be an integer >= 0, got {prefetch!r}")
        self.prefetch = prefetch
        #: The smoothed run time of a job in seconds (None until one was measured).
        self._runtime: float | None = None
        #: Jobs claimed ahead, waiting in the executor for a free slot.
        self._waiting: collections.deque[QueuedJob] = collections.deque()
        #: Set by ``stop``: nothing starts any more, waiting jobs included.
        self._stopped = False

    def _stop_waiting(self) -> None:
        """``stop``'s common part: start nothing more; forget the waiting and running jobs
        (the worker gives back the jobs it still holds)."""
        self._stopped = True
        self._waiting.clear()
        self.jobs.clear()

    def take_waiting(self, job_id: Any) -> QueuedJob | None:
        """Remove the job ``job_id`` if it waits for a slot (it never starts); return it."""
        for job in self._waiting:
            if job.id == job_id:
                self._waiting.remove(job)
                self.jobs.pop(job.id, None)
                return job
        return None

    def hands_ahead(self) -> float | None:
        """The measured run time while jobs may also wait inside a busy child or thread
        (prefetch on, jobs under ``HAND_AHEAD_WINDOW``); None otherwise."""
        runtime = self._runtime
        if not self.prefetch or runtime is None or runtime >= HAND_AHEAD_WINDOW:
            return None
        return runtime

    def observe_runtime(self, elapsed: float) -> None:
        runtime = self._runtime
        self._runtime = elapsed if runtime is None else 0.8 * runtime + 0.2 * elapsed

    @property
    def free_slots(self) -> int:
        """Room for more claimed jobs: free slots plus the prefetch allowance.

        Reported in steps of a quarter of the capacity, so a backlog is claimed in batches
        rather than one job per freed slot.
        """
        capacity = self.concurrency
        runtime = self._runtime
        if (
            not self.prefetch
            or runtime is None
            or runtime >= PREFETCH_WINDOW
            # Keys' turns are the claim's order: jobs claimed ahead would jump the queue.
            or self.queue.is_keyed
        ):
            return max(0, capacity - len(self.jobs))
        ahead = min(self.prefetch, int(PREFETCH_WINDOW / max(runtime, 1e-6))) * capacity
        capacity += min(ahead, MAX_AHEAD)
        free = capacity - len(self.jobs)
        return free if free >= capacity // 4 else 0


def run_coroutine_function(func: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Call ``func``; if it is async, run it to completion on a fresh event loop."""
    value = func(**kwargs)
    if inspect.isawaitable(value):
        return asyncio.run(_await(value))
    return value


async def _await(value: Any) -> Any:
    return await value


PLATFORM_LINUX = sys.platform.startswith("linux")
