"""A backend for Django's tasks framework: tasks become chancy jobs, run by chancy workers.

Works with ``django.tasks`` (Django 6) and with the ``django-tasks`` backport (Django 4.2 to
5.2). The path is Chancy 0.26's, so a 0.26 project's settings work unchanged::

    TASKS = {
        "default": {
            "BACKEND": "chancy.contrib.django.backend.ChancyBackend",
            "QUEUES": ["default", "emails"],   # Django queue names tasks may use
            "OPTIONS": {
                "dsn": None,          # None: the DATABASES entry below (0.26: "default")
                "database": "default",  # chancy's: the DATABASES alias to use
                "prefix": "chancy_",  # default: settings.CHANCY_PREFIX, else "chancy_"
                "queue": "default",   # the chancy queue for tasks on Django's default queue
            },
        }
    }

``chancy.contrib.django.tasks.ChancyTaskBackend`` is the same class under chancy's earlier
name. The implementation lives here because this is the path 0.26 projects (and 0.26's
documentation) name in their settings; ``tasks`` only re-exports it.

A task becomes the job ``chancy.contrib.django.task_wrapper.django_task_executor`` (or
``async_django_task_executor`` for an ``async def`` task) with 0.26's kwargs (``_task_path``,
``_args``, ``_kwargs``, ``_takes_context``), so jobs queued by a 0.26 app run on chancy workers
and jobs queued here run on 0.26 workers during a rolling deploy. ``queue_name`` is the chancy
queue (Django's default queue name maps to the ``queue`` option when given), ``priority`` the
job's priority (higher runs first in both) and ``run_after`` its ``scheduled_at``; the result
id is the job id.

Without ``dsn``, enqueueing writes through Django's connection for ``database``, so inside
``transaction.atomic()`` a task exists only if the block commits. With ``dsn``, chancy's own
connection pool writes it at once (the database may not be one Django knows).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any, NamedTuple

from chancy.app import Chancy
from chancy.contrib.django import database_settings, get_chancy, push
from chancy.contrib.django._tasks_api import (
    DEFAULT_TASK_QUEUE_NAME,
    BaseTaskBackend,
    Task,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
)
from chancy.errors import ConfigurationError
from chancy.job import Job, QueuedJob
from chancy.utils import import_string

__all__ = [
    "ASYNC_EXECUTOR",
    "EXECUTOR",
    "ChancyBackend",
    "ChancyTaskResult",
    "exception_class_path",
    "task_result_for",
]

#: The job functions a task becomes (Chancy 0.26's paths).
EXECUTOR = "chancy.contrib.django.task_wrapper.django_task_executor"
ASYNC_EXECUTOR = "chancy.contrib.django.task_wrapper.async_django_task_executor"
#: The job function chancy's backend used before it took 0.26's; its jobs still run and read.
LEGACY_EXECUTOR = "chancy.contrib.django.tasks.run_task"

#: A 0.26 wrapper left the task's return value here; chancy stores it in the job's result.
RETURN_VALUE_META_026 = "_django_return_value"

_STATUS = {
    "pending": TaskResultStatus.READY,
    "retrying": TaskResultStatus.READY,
    "running": TaskResultStatus.RUNNING,
    "succeeded": TaskResultStatus.SUCCESSFUL,
    "failed": TaskResultStatus.FAILED,
}

_OWN_OPTIONS = ("dsn", "database", "prefix", "queue")
# What else OPTIONS may hold: Chancy's own settings, given to the Chancy the backend makes
# (as 0.26 did with every option it did not know).
_CHANCY_OPTIONS = tuple(
    name
    for name in inspect.signature(Chancy.__init__).parameters
    if name not in ("self", "dsn", *_OWN_OPTIONS)
)

# Chancy apps made for a dsn or extra Chancy options, by (where, prefix, options): the backend
# is made once per thread by Django, and each must not open its own pools.
_apps: dict[tuple[str, str, str], Chancy] = {}


@dataclasses.dataclass(frozen=True, kw_only=True)
class ChancyTaskResult(TaskResult):  # type: ignore[misc,unused-ignore]
    """A TaskResult whose ``attempts`` is the job's count of runs.

    Django counts attempts as ``len(worker_ids)``, but a chancy job only records the worker
    of its latest run; ``run_count`` holds the runs started so far (the one in progress
    included), which is what ``TaskContext.attempt`` reports.
    """

    run_count: int = 0

    @property
    def attempts(self) -> int:
        return self.run_count

    def refresh(self) -> None:
        """Reload from the job (Django's refresh would leave ``attempts`` stale)."""
        self._take(self.task.get_backend().get_result(self.id))

    async def arefresh(self) -> None:
        self._take(await self.task.get_backend().aget_result(self.id))

    def _take(self, fresh: Any) -> None:
        for name in (
            "status",
            "enqueued_at",
            "started_at",
            "finished_at",
            "last_attempted_at",
            "errors",
            "worker_ids",
            "_return_value",
            "run_count",
        ):
            object.__setattr__(self, name, getattr(fresh, name, None))


class TaskCall(NamedTuple):
    """What a Django task job asks for, whichever layout stored it."""

    path: str
    args: list[Any]
    kwargs: dict[str, Any]
    takes_context: bool


def task_call(job: QueuedJob) -> TaskCall | None:
    """The task, arguments and context flag a job carries; None if it is not a Django task."""
    given = job.kwargs or {}
    if job.func in (EXECUTOR, ASYNC_EXECUTOR):
        return TaskCall(
            str(given.get("_task_path", "")),
            list(given.get("_args") or ()),
            dict(given.get("_kwargs") or {}),
            bool(given.get("_takes_context", False)),
        )
    if job.func == LEGACY_EXECUTOR:
        return TaskCall(
            str(given.get("task", "")),
            list(given.get("args") or ()),
            dict(given.get("kwargs") or {}),
            bool(given.get("takes_context", False)),
        )
    return None


def resolve_task(path: str, job: QueuedJob, backend: str, takes_context: bool) -> tuple[Any, Any]:
    """(the Task, its function) for a job's ``_task_path``.

    0.26 stored the path of the task's function, which the ``@task`` decorator rebinds to the
    Task itself, so the path usually imports a Task. A plain function (its Task was made
    without rebinding the name) gets a Task on ``backend`` with the job's queue and priority.
    """
    try:
        found = import_string(path)
    except ImportError as exc:
        raise ImportError(
            f"the task {path!r} of job {job.id} cannot be imported here: {exc}. Deploy the"
            " code that defines it to this process (and to the workers), or remove the job."
        ) from exc
    if isinstance(found, Task):
        return found, found.func
    if not callable(found):
        raise ImportError(f"{path!r} (the task of job {job.id}) is neither a task nor a function")
    task = Task(
        func=found,
        backend=backend,
        queue_name=job.queue,
        priority=job.priority,
        takes_context=takes_context,
        run_after=None,
    )
    return task, found


def task_result_for(job: QueuedJob, task: Any, backend: str) -> ChancyTaskResult:
    """The Django TaskResult of a job, as it stands in ``job``."""
    call = task_call(job) or TaskCall("", [], {}, False)
    state = str(job.state)
    result = ChancyTaskResult(
        task=task,
        id=str(job.id),
        status=_STATUS.get(state, TaskResultStatus.FAILED),
        enqueued_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.completed_at if state in ("succeeded", "failed") else None,
        last_attempted_at=job.started_at,
        args=call.args,
        kwargs=call.kwargs,
        backend=backend,
        errors=[
            TaskError(
                exception_class_path=exception_class_path(e.get("traceback") or ""),
                traceback=e.get("traceback") or "",
            )
            for e in job.errors
        ],
        worker_ids=[job.taken_by] if job.taken_by else [],
        # chancy counts a run in ``attempts`` when it ends; the one in progress counts too.
        run_count=job.attempts + (1 if state == "running" else 0),
    )
    if state == "succeeded":
        value = job.result
        if value is None:
            # Finished by a 0.26 worker, which kept the return value in the job's meta.
            value = (job.meta or {}).get(RETURN_VALUE_META_026)
        object.__setattr__(result, "_return_value", value)
    return result


_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::|$)")


def exception_class_path(traceback_text: str) -> str:
    """The import path of the exception a stored traceback ends with.

    Python prints the raised exception on the first unindented line after the last frame
    (``module.Class: message``, builtins without their module); its message may continue
    on further lines, so the last line alone is not it. ``builtins.Exception`` when the text
    names no exception (an empty traceback, an exception group).
    """
    lines = traceback_text.splitlines()
    start = 0
    for i, line in enumerate(lines):
        if line.startswith("  File ") or line.startswith("Traceback (most recent call last)"):
            start = i + 1
    for line in lines[start:]:
        if not line or line[0].isspace():
            continue
        match = _EXCEPTION_LINE.match(line)
        if match is None:
            break
        name = match.group(1)
        return name if "." in name else f"builtins.{name}"
    return "builtins.Exception"


class ChancyBackend(BaseTaskBackend):  # type: ignore[misc,unused-ignore]
    """Django's tasks framework on chancy: ``enqueue`` pushes a job, ``get_result`` reads it.

    Workers need Django set up (``DJANGO_SETTINGS_MODULE``) to run the jobs. Sync tasks run
    on queues with a thread or process executor; ``async def`` tasks also run on the async
    executor.
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        options = dict(params.get("OPTIONS") or {})
        where = f"TASKS[{alias!r}]['OPTIONS']"
        unknown = sorted(set(options) - set(_OWN_OPTIONS) - set(_CHANCY_OPTIONS))
        if unknown:
            raise ConfigurationError(
                f"{where} has unknown option(s) {unknown}; the backend takes"
                f" {list(_OWN_OPTIONS)} and Chancy's own {list(_CHANCY_OPTIONS)}"
            )
        self.dsn: str | None = options.get("dsn")
        if self.dsn is not None and "database" in options:
            raise ConfigurationError(
                f"{where} gives both 'dsn' and 'database'; give 'database' (a DATABASES alias)"
                " to enqueue inside Django's transactions, or 'dsn' for another database"
            )
        self.database: str = options.get("database", "default")
        self.prefix: str | None = options.get("prefix")
        self.default_queue: str | None = options.get("queue")
        if self.default_queue is not None and (
            not isinstance(self.default_queue, str) or not self.default_queue
        ):
            raise ConfigurationError(f"{where}['queue'] must be a chancy queue name")
        self.chancy_options = {k: v for k, v in options.items() if k in _CHANCY_OPTIONS}

    # -- the Chancy it uses -------------------------------------------------------------

    @property
    def chancy(self) -> Chancy:
        """The Chancy for this backend's database and prefix (shared, made on first use)."""
        from django.conf import settings

        prefix: str = self.prefix or getattr(settings, "CHANCY_PREFIX", None) or "chancy_"
        if self.dsn is None and not self.chancy_options:
            # The one get_chancy() gives everyone else for this database, so pools are shared.
            return get_chancy(self.database, prefix=prefix)
        if self.dsn is None:
            dsn: Any = database_settings(self.database)
            where = f"alias:{self.database}"
        else:
            dsn = where = self.dsn
        key = (where, prefix, repr(sorted(self.chancy_options.items())))
        app = _apps.get(key)
        if app is None:
            app = _apps[key] = Chancy(dsn, prefix=prefix, **self.chancy_options)
        return app

    def close(self) -> None:
        """Close the connections this backend's reads opened (they reopen on next use)."""
        self.chancy.sync_close()

    # -- enqueue ------------------------------------------------------------------------

    def queue_for(self, task: Any) -> str:
        """The chancy queue of a task: its ``queue_name``, or the ``queue`` option for
        Django's default queue name."""
        if self.default_queue and task.queue_name == DEFAULT_TASK_QUEUE_NAME:
            return self.default_queue
        return str(task.queue_name)

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        self.validate_task(task)
        job = Job(
            func=ASYNC_EXECUTOR if inspect.iscoroutinefunction(task.func) else EXECUTOR,
            queue=self.queue_for(task),
            priority=int(task.priority),
            kwargs={
                "_task_path": task.module_path,
                "_args": list(args),
                "_kwargs": dict(kwargs),
                "_takes_context": bool(task.takes_context),
            },
        )
        if task.run_after is not None:
            job = job.with_scheduled_at(task.run_after)
        if self.dsn is None:
            ref = push(job, using=self.database, chancy=self.chancy)
        else:
            ref = self.chancy.sync_push(job)
        from django.utils import timezone

        # Built from what was pushed, not read back: inside transaction.atomic() the job is
        # not visible to other connections until the block commits.
        return ChancyTaskResult(
            task=task,
            id=str(ref),
            status=TaskResultStatus.READY,
            enqueued_at=timezone.now(),
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=list(args),
            kwargs=dict(kwargs),
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )

    # -- results ------------------------------------------------------------------------

    def get_result(self, result_id: str) -> Any:
        try:
            found = self.chancy.sync_get_job(result_id)
        except ValueError:  # not a job id
            found = None
        call = task_call(found) if found is not None else None
        if found is None or call is None:
            raise TaskResultDoesNotExist(result_id)
        task, _ = resolve_task(call.path, found, self.alias, call.takes_context)
        return task_result_for(found, task, self.alias)
