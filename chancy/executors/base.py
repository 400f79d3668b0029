"""The executor contract: run a claimed job, then report its outcome to the worker.

Executors never touch the database. A worker hands each claimed job to ``push``; when the
job ends, the executor calls ``on_job_completed`` in the worker's event loop, which turns the
outcome into the job's next state (succeeded, retrying, failed, snoozed), lets plugins adjust
it and passes it to ``worker.queue_update`` for the completer to write, fenced by claim id.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import enum
import inspect
import logging
import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chancy.errors import JobFailedError, Retry, Snooze
from chancy.job import COMPLETED_STATES, Limit, QueuedJob, Reference
from chancy.plugin import plugins_with
from chancy.utils import import_string, jsonb_dumps, safe_text

if TYPE_CHECKING:
    from chancy.queue import Queue
    from chancy.worker import Worker

log = logging.getLogger("chancy.executor")

DEFAULT_MAX_RESULT_SIZE = 1024 * 1024


class RemoteJobError(Exception):
    """An exception raised by job code in another process or interpreter.

    Carries the original type name and formatted traceback, so exceptions that cannot be
    pickled still reach the job's ``errors`` intact.
    """

    def __init__(self, type_name: str, message: str, formatted: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.formatted_traceback = formatted


def format_exception(exc: BaseException) -> str:
    """The traceback text stored in a job's ``errors``."""
    formatted = getattr(exc, "formatted_traceback", None)
    if isinstance(formatted, str):
        return formatted
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def encode_result(result: Any, max_size: int) -> tuple[str | None, str | None]:
    """Encode a job's return value as JSON text; return (json, None) or (None, reason)."""
    if result is None:
        return None, None
    try:
        text = jsonb_dumps(result)
    except (TypeError, ValueError) as exc:
        return None, f"the return value is not JSON-serialisable, so it cannot be stored: {exc}"
    if len(text) > max_size:
        return None, (
            f"the return value is {len(text)} bytes as JSON, over the {max_size}-byte limit;"
            " store large results elsewhere and return a reference to them"
        )
    return text, None


@dataclasses.dataclass(frozen=True, slots=True)
class Delayed:
    """Returned by a plugin's ``on_job_completed`` to make the job eligible again later.

    ``delay`` is in seconds and is added to the database's ``now()`` when the outcome is
    written, so a worker's clock never decides when a job runs.
    """

    job: QueuedJob
    delay: float


@dataclasses.dataclass(slots=True)
class Outcome:
    """What the completer writes for one finished run."""

    job: QueuedJob
    #: Seconds after database ``now()`` at which the job becomes eligible again (retry or
    #: snooze); None keeps ``scheduled_at`` as it is.
    delay: float | None = None
    #: The return value as JSON text (None stores SQL NULL).
    result_json: str | None = None


class Executor(abc.ABC):
    """Base of all executors. One instance serves one queue in one worker."""

    class Capability(enum.Flag):
        SYNC_JOBS = enum.auto()
        ASYNC_JOBS = enum.auto()
        TIME_LIMIT = enum.auto()
        MEMORY_LIMIT = enum.auto()
        CANCELLATION = enum.auto()

    def __init__(self, worker: Worker, queue: Queue, **options: Any) -> None:
        self.worker = worker
        self.queue = queue
        #: Default time limit (seconds) for jobs of this queue without a TIME limit of their own.
        self.default_time_limit: float | None = options.pop("time_limit", None)
        if options:
            raise TypeError(
                f"{type(self).__name__} got unknown executor_options {sorted(options)}; check"
                f" the queue's executor_options"
            )

    # -- capabilities -----------------------------------------------------------------

    @classmethod
    def supports(cls) -> Executor.Capability:
        """What this executor can do on this platform."""
        return cls.Capability(0)

    @classmethod
    def unsupported_reason(cls) -> str | None:
        """Why this executor cannot run here at all, or None when it can."""
        return None

    # -- the pool ---------------------------------------------------------------------

    async def push(self, job: QueuedJob) -> None:
        """Run ``job``: plugin hooks first, then the executor's own pool."""
        job = await self.on_job_starting(job)
        if job.state in COMPLETED_STATES:
            # A plugin finished the job before it started.
            await self.worker.queue_update(Outcome(job))
            return
        await self.submit_to_pool(job)

    @abc.abstractmethod
    async def submit_to_pool(self, job: QueuedJob) -> None:
        """Start running ``job`` without further checks; return once it has started."""

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
        return set()

    async def __aenter__(self) -> Executor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- helpers for implementations --------------------------------------------------

    def time_limit_for(self, job: QueuedJob) -> float | None:
        limits = [lim.value for lim in job.limits if lim.type_ is Limit.Type.TIME]
        if limits:
            return float(min(limits))
        return self.default_time_limit

    @staticmethod
    def memory_limit_for(job: QueuedJob) -> int | None:
        limits = [lim.value for lim in job.limits if lim.type_ is Limit.Type.MEMORY]
        return int(min(limits)) if limits else None

    @staticmethod
    def get_function_and_kwargs(job: QueuedJob) -> tuple[Callable[..., Any], dict[str, Any]]:
        """Import the job's function and build its kwargs, checked against its signature.

        A keyword-only parameter annotated ``QueuedJob`` receives the running job.
        Raises ``JobFailedError`` with a clear message when the function cannot be imported
        or the kwargs do not fit it.
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
        try:
            sig.bind(**kwargs)
        except TypeError as exc:
            raise JobFailedError(
                f"the kwargs {sorted(job.kwargs or {})} do not match {job.func}{sig}: {exc}"
            ) from exc
        return func, kwargs

    # -- outcomes ---------------------------------------------------------------------

    def _hooks(self, hook: str) -> list[Any]:
        """The plugins that implement ``hook``, looked up again only when the plugins change."""
        plugins = tuple(self.worker.chancy.plugins.values())
        cache: dict[str, tuple[tuple[Any, ...], list[Any]]] = self.__dict__.setdefault(
            "_hook_cache", {}
        )
        cached = cache.get(hook)
        if cached is None or cached[0] != plugins:
            cached = cache[hook] = (plugins, plugins_with(plugins, hook))
        return cached[1]

    async def on_job_starting(self, job: QueuedJob) -> QueuedJob:
        for plugin in self._hooks("on_job_starting"):
            try:
                job = await plugin.on_job_starting(job=job, worker=self.worker)
            except NotImplementedError:
                continue
        return job

    async def on_job_completed(
        self, *, job: QueuedJob, exc: BaseException | None = None, result: Any = None
    ) -> None:
        """Turn a finished run into the job's next state and hand it to the completer.

        ``job`` is the job as the run left it (its ``meta`` may have been changed by the job).
        """
        outcome = build_outcome(
            job,
            exc,
            result,
            max_result_size=getattr(self.worker.chancy, "max_result_size", DEFAULT_MAX_RESULT_SIZE),
        )
        if exc is not None and not isinstance(exc, Snooze):
            log.debug("job %s (%s) failed", job.id, job.func, exc_info=exc)
        new_job = outcome.job
        delayed: float | None = None
        for plugin in self._hooks("on_job_completed"):
            try:
                changed = await plugin.on_job_completed(
                    job=new_job, worker=self.worker, exc=exc, result=result
                )
            except NotImplementedError:
                continue
            if isinstance(changed, Delayed):
                new_job = changed.job
                delayed = max(0.0, float(changed.delay))
            elif changed is not None:
                new_job = changed
        if delayed is not None:
            outcome.delay = delayed
        if new_job is not outcome.job:
            if delayed is None and new_job.scheduled_at != outcome.job.scheduled_at:
                # A plugin chose an absolute time; it overrides any relative delay.
                outcome.delay = None
            outcome.job = new_job
        await self.worker.queue_update(outcome)


_JOB_FIELDS = tuple(f.name for f in dataclasses.fields(QueuedJob))


def _make_copier() -> Callable[[QueuedJob, dict[str, Any]], QueuedJob]:
    """Build ``copy(job, changes)``: a new QueuedJob with ``changes`` applied, field by field.

    Generated once from the dataclass fields, so a copy is straight-line attribute stores
    rather than a loop with a lookup per field.
    """
    lines = ["def copy(job, changes, _new=_new, _cls=_cls, _set=_set):", "    new = _new(_cls)"]
    for name in _JOB_FIELDS:
        lines.append(f"    _set(new, {name!r}, changes.get({name!r}, job.{name}))")
    lines.append("    return new")
    namespace: dict[str, Any] = {
        "_new": object.__new__,
        "_cls": QueuedJob,
        "_set": object.__setattr__,
    }
    exec("\n".join(lines), namespace)
    copier: Callable[[QueuedJob, dict[str, Any]], QueuedJob] = namespace["copy"]
    return copier


_copy_job = _make_copier()


def evolve(job: QueuedJob, **changes: Any) -> QueuedJob:
    """``dataclasses.replace`` for a QueuedJob, without its introspection on every call.

    Every outcome makes one new job, so this is on the hot path. Subclasses (which may
    validate in ``__post_init__``) go through ``dataclasses.replace``.
    """
    if type(job) is not QueuedJob:
        return dataclasses.replace(job, **changes)
    return _copy_job(job, changes)


def build_outcome(
    job: QueuedJob,
    exc: BaseException | None,
    result: Any,
    *,
    max_result_size: int = DEFAULT_MAX_RESULT_SIZE,
) -> Outcome:
    """Compute the state a run leaves its job in (pure: no database, no clock)."""
    if isinstance(exc, Snooze):
        meta = dict(job.meta)
        meta["snoozed"] = int(meta.get("snoozed", 0)) + 1
        return Outcome(evolve(job, state=QueuedJob.State.PENDING, meta=meta), delay=exc.delay)
    attempts = job.attempts + 1
    if exc is None:
        result_json, reason = encode_result(result, max_result_size)
        meta = job.meta
        if reason is not None:
            meta = {**meta, "result_error": reason}
        return Outcome(
            evolve(job, state=QueuedJob.State.SUCCEEDED, attempts=attempts, meta=meta, result=None),
            result_json=result_json,
        )
    traceback_text = safe_text(format_exception(exc))
    errors = [*job.errors, {"attempt": job.attempts, "traceback": traceback_text}]
    failed = attempts >= job.max_attempts
    state = QueuedJob.State.FAILED if failed else QueuedJob.State.RETRYING
    delay = exc.delay if isinstance(exc, Retry) and not failed else None
    return Outcome(evolve(job, state=state, attempts=attempts, errors=errors), delay=delay)


class ConcurrentExecutor(Executor, abc.ABC):
    """Base for executors that track running jobs as futures or tasks keyed by job id."""

    def __init__(self, worker: Worker, queue: Queue, **options: Any) -> None:
        super().__init__(worker, queue, **options)
        self.jobs: dict[Any, QueuedJob] = {}

    def __len__(self) -> int:
        return len(self.jobs)

    def running_ids(self) -> set[Any]:
        return {job.id for job in self.jobs.values()}


def run_coroutine_function(func: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Call ``func``; if it is async, run it to completion on a fresh event loop."""
    value = func(**kwargs)
    if inspect.isawaitable(value):
        return asyncio.run(_await(value))
    return value


async def _await(value: Any) -> Any:
    return await value


PLATFORM_LINUX = sys.platform.startswith("linux")
