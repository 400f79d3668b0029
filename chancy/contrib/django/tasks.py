"""A backend for Django's tasks framework (``django.tasks`` on Django 6, the ``django-tasks``
backport before): tasks are chancy jobs, run by chancy workers.

::

    TASKS = {
        "default": {
            "BACKEND": "chancy.contrib.django.tasks.ChancyTaskBackend",
            "QUEUES": ["default", "emails"],          # chancy queues it may push to
            "OPTIONS": {"database": "default"},       # the DATABASES alias (default)
        }
    }

Mapping: a task's ``queue_name`` is the chancy queue, ``priority`` the job's priority (higher
runs first in both), ``run_after`` its ``scheduled_at``; the result id is the job id. States:
pending/retrying -> READY, running -> RUNNING, succeeded -> SUCCESSFUL, failed -> FAILED; each
failed attempt is a ``TaskError``. Enqueueing uses Django's connection, so inside
``transaction.atomic()`` a task exists only if the block commits. The worker runs the job
``chancy.contrib.django.tasks.run_task``, which needs Django set up (run workers with
``DJANGO_SETTINGS_MODULE``); give the queues a thread or process executor (task functions
are synchronous).
"""

from __future__ import annotations

from typing import Any

try:  # Django 6 ships the framework; before it, the django-tasks backport.
    from django.tasks import TaskResult, TaskResultStatus  # type: ignore[import-not-found,unused-ignore]
    from django.tasks.backends.base import BaseTaskBackend  # type: ignore[import-not-found,unused-ignore]
    from django.tasks.base import TaskError  # type: ignore[import-not-found,unused-ignore]
    from django.tasks.exceptions import TaskResultDoesNotExist  # type: ignore[import-not-found,unused-ignore]
except ImportError:
    from django_tasks import TaskResult, TaskResultStatus  # type: ignore[no-redef,unused-ignore]
    from django_tasks.backends.base import BaseTaskBackend  # type: ignore[no-redef,unused-ignore]
    from django_tasks.base import TaskError  # type: ignore[no-redef,unused-ignore]
    from django_tasks.exceptions import TaskResultDoesNotExist  # type: ignore[no-redef,unused-ignore]

from chancy.contrib.django import get_chancy, push
from chancy.job import Job, QueuedJob
from chancy.utils import import_string

__all__ = ["ChancyTaskBackend", "run_task"]

_STATUS = {
    "pending": TaskResultStatus.READY,
    "retrying": TaskResultStatus.READY,
    "running": TaskResultStatus.RUNNING,
    "succeeded": TaskResultStatus.SUCCESSFUL,
    "failed": TaskResultStatus.FAILED,
}


class ChancyTaskBackend(BaseTaskBackend):
    supports_defer = True
    supports_get_result = True
    supports_priority = True
    supports_async_task = False

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.database = self.options.get("database", "default")
        self.prefix = self.options.get("prefix")

    def _chancy(self) -> Any:
        options = {"prefix": self.prefix} if self.prefix else {}
        return get_chancy(self.database, **options)

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        self.validate_task(task)
        job = Job(
            func="chancy.contrib.django.tasks.run_task",
            queue=task.queue_name,
            priority=int(task.priority),
            kwargs={
                "task": task.module_path,
                "args": list(args),
                "kwargs": dict(kwargs),
                "takes_context": bool(task.takes_context),
            },
        )
        if task.run_after is not None:
            job = job.with_scheduled_at(task.run_after)
        ref = push(job, using=self.database, chancy=self._chancy())
        found = self._chancy().sync_get_job(ref)
        return self._result(task, found) if found is not None else None

    def get_result(self, result_id: str) -> Any:
        try:
            found = self._chancy().sync_get_job(result_id)
        except ValueError:
            found = None
        if found is None or found.func != "chancy.contrib.django.tasks.run_task":
            raise TaskResultDoesNotExist(result_id)
        task = import_string(found.kwargs["task"])
        return self._result(task, found)

    def _result(self, task: Any, job: QueuedJob) -> Any:
        result = TaskResult(
            task=task,
            id=str(job.id),
            status=_STATUS.get(str(job.state), TaskResultStatus.FAILED),
            enqueued_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.completed_at,
            last_attempted_at=job.started_at,
            args=job.kwargs.get("args", []),
            kwargs=job.kwargs.get("kwargs", {}),
            backend=self.alias,
            errors=[
                TaskError(exception_class_path=_exception_path(e), traceback=e.get("traceback", ""))
                for e in job.errors
            ],
            worker_ids=[job.taken_by] if job.taken_by else [],
        )
        if str(job.state) == "succeeded":
            object.__setattr__(result, "_return_value", job.result)
        return result


def _exception_path(error: dict[str, Any]) -> str:
    """The exception class named on a traceback's last line (``builtins.Exception`` if none)."""
    last = (error.get("traceback") or "").strip().splitlines()[-1:] or [""]
    name = last[0].split(":", 1)[0].strip()
    if not name or " " in name:
        return "builtins.Exception"
    return name if "." in name else f"builtins.{name}"


def run_task(task: str, args: list[Any], kwargs: dict[str, Any], takes_context: bool) -> Any:
    """The job a task becomes: import the task and call it (with a context if it takes one)."""
    import django

    django.setup()
    found = import_string(task)
    if takes_context:
        raise NotImplementedError(
            "tasks that take a context are not supported by the chancy backend yet"
        )
    return found.call(*args, **kwargs)
