"""Django tasks the backend tests enqueue (and push in Chancy 0.26's job layout).

Postponed annotations on purpose: ``context: TaskContext`` is a string here, as in a project
that uses ``from __future__ import annotations``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from django_tasks import TaskContext, task


class ReportError(Exception):
    """A task's own exception: its class path must reach the TaskError."""


@task(queue_name="reports")
def multiply(a: int, b: int) -> int:
    return a * b


@task()
def echo(value: Any) -> Any:
    """On Django's default queue name (``default``)."""
    return value


def _seen(context: TaskContext) -> dict[str, Any]:
    result = context.task_result
    return {
        "attempt": context.attempt,
        "id": result.id,
        "status": str(result.status),
        "args": result.args,
        "kwargs": result.kwargs,
        "task": result.task.module_path,
        "errors": [e.exception_class_path for e in result.errors],
    }


@task(queue_name="reports", takes_context=True)
def flaky(context: TaskContext, label: str) -> dict[str, Any]:
    """Fails its first attempt (with a message of two lines), succeeds on the next."""
    if context.attempt == 1:
        try:
            raise KeyError(label)
        except KeyError as exc:
            raise ReportError(f"first attempt of {label}\nsecond line") from exc
    return _seen(context)


@task(queue_name="reports", takes_context=True)
def describe(context: TaskContext, label: str, *, times: int = 1) -> dict[str, Any]:
    return {**_seen(context), "label": label * times}


@task(queue_name="reports")
async def add_later(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@task(queue_name="reports", takes_context=True)
async def describe_later(context: TaskContext, label: str) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {**_seen(context), "label": label}


@task(queue_name="reports")
async def count_users() -> int:
    """Django's async ORM from an async task."""
    from django.contrib.auth.models import User

    return await User.objects.acount()


@task(queue_name="reports")
def uses_the_orm() -> bool:
    """Whether this thread's Django connection was still open when the task started."""
    from django.contrib.auth.models import User
    from django.db import connection

    was_open = connection.connection is not None
    User.objects.count()
    return was_open
