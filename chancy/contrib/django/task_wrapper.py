"""The job functions Django tasks become (Chancy 0.26's paths and kwargs).

``ChancyBackend.enqueue`` pushes ``django_task_executor`` (or ``async_django_task_executor``
for an ``async def`` task) with the kwargs ``_task_path``, ``_args``, ``_kwargs`` and
``_takes_context``, exactly as 0.26 did, so jobs a 0.26 app queued run here unchanged and a
0.26 worker can run jobs queued here. A worker passes the running job to the keyword-only
``context`` parameter (annotated ``QueuedJob``); a task that takes a context gets a
``TaskContext`` built from it.

The worker needs Django's settings (``DJANGO_SETTINGS_MODULE``); Django is set up on the first
task a process runs. The return value is stored as the job's result.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

from chancy.contrib.django._tasks_api import DEFAULT_TASK_BACKEND_ALIAS, TaskContext
from chancy.contrib.django.backend import resolve_task, task_result_for
from chancy.errors import ConfigurationError
from chancy.job import QueuedJob

__all__ = ["async_django_task_executor", "django_task_executor"]


def django_task_executor(
    *,
    _task_path: str,
    _args: list[Any] | None = None,
    _kwargs: dict[str, Any] | None = None,
    _takes_context: bool = False,
    context: QueuedJob,
) -> Any:
    """Run the Django task ``_task_path`` with ``_args`` and ``_kwargs`` (and a TaskContext
    first when ``_takes_context``); its return value is the job's result.

    An ``async def`` task (queued before its function became async, say) runs to completion
    on an event loop of its own.
    """
    setup_django()
    from asgiref.sync import async_to_sync

    func, args, kwargs = _prepare(_task_path, _args, _kwargs, _takes_context, context)
    _close_old_connections()
    try:
        if inspect.iscoroutinefunction(func):
            return async_to_sync(func)(*args, **kwargs)
        return func(*args, **kwargs)
    finally:
        _close_old_connections()


async def async_django_task_executor(
    *,
    _task_path: str,
    _args: list[Any] | None = None,
    _kwargs: dict[str, Any] | None = None,
    _takes_context: bool = False,
    context: QueuedJob,
) -> Any:
    """``django_task_executor`` for ``async def`` tasks, awaited in the worker's event loop
    (or a thread's, under a thread or process executor).

    A sync task (its function stopped being async after it was queued) runs in Django's
    sync thread, so its ORM calls are allowed.
    """
    setup_django()
    from asgiref.sync import sync_to_async

    func, args, kwargs = _prepare(_task_path, _args, _kwargs, _takes_context, context)
    if inspect.iscoroutinefunction(func):
        return await func(*args, **kwargs)
    return await sync_to_async(func)(*args, **kwargs)


def _prepare(
    path: str,
    args: list[Any] | None,
    kwargs: dict[str, Any] | None,
    takes_context: bool,
    job: QueuedJob,
) -> tuple[Any, list[Any], dict[str, Any]]:
    """The task's function and the arguments to call it with (a TaskContext first if it
    takes one)."""
    # A path that imports a plain function (not a Task) gets a Task on the default backend.
    task, func = resolve_task(path, job, DEFAULT_TASK_BACKEND_ALIAS, takes_context)
    call_args = list(args or ())
    if takes_context:
        result = task_result_for(job, task, str(task.backend))
        call_args.insert(0, TaskContext(task_result=result))
    return func, call_args, dict(kwargs or {})


def _close_old_connections() -> None:
    """Django's ``close_old_connections``, as around a request: this thread's connections
    that broke or outlived ``CONN_MAX_AGE`` are closed, so a worker thread neither reuses a
    dead one nor keeps one open between tasks. A connection inside ``atomic()`` (a task run
    in the caller's thread, as in a TestCase) is left alone: closing it would end the
    caller's transaction."""
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()


def setup_django() -> None:
    """Set Django up in this process unless it is already (once per worker process)."""
    from django.apps import apps

    if apps.ready:
        return
    from django.conf import settings

    if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        raise ConfigurationError(
            "this job runs a Django task, but Django is not configured in this worker: set"
            " DJANGO_SETTINGS_MODULE (for example DJANGO_SETTINGS_MODULE=mysite.settings"
            " chancy worker start ...), or call django.setup() before starting the worker"
        )
    import django

    django.setup()
