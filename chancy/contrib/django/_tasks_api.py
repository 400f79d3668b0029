"""Django's tasks framework, from wherever this Django has it.

Django 6 ships it as ``django.tasks``; before that, the ``django-tasks`` backport provides the
same classes as ``django_tasks``. The backend and the job functions import them from here, so
one implementation serves both. The ``django.tasks`` names are Django 6's documented ones; that
branch cannot run in this project's Python 3.11 venv (Django 6 needs Python 3.12), so only the
backport branch is exercised by the tests.
"""

from __future__ import annotations

try:  # Django 6
    from django.tasks import (  # type: ignore[import-not-found,unused-ignore]
        DEFAULT_TASK_BACKEND_ALIAS,
        DEFAULT_TASK_QUEUE_NAME,
        Task,
        TaskContext,
        TaskResult,
        TaskResultStatus,
    )
    from django.tasks.backends.base import BaseTaskBackend  # type: ignore[import-not-found,unused-ignore]
    from django.tasks.base import TaskError  # type: ignore[import-not-found,unused-ignore]
    from django.tasks.exceptions import TaskResultDoesNotExist  # type: ignore[import-not-found,unused-ignore]

    FRAMEWORK = "django.tasks"
except ImportError:  # Django 4.2 to 5.2 with the django-tasks backport
    from django_tasks import (  # type: ignore[no-redef,unused-ignore]
        DEFAULT_TASK_BACKEND_ALIAS,
        DEFAULT_TASK_QUEUE_NAME,
        TaskContext,
        TaskResult,
        TaskResultStatus,
    )
    from django_tasks.backends.base import BaseTaskBackend  # type: ignore[no-redef,unused-ignore]
    from django_tasks.base import Task, TaskError  # type: ignore[no-redef,unused-ignore]
    from django_tasks.exceptions import TaskResultDoesNotExist  # type: ignore[no-redef,unused-ignore]

    FRAMEWORK = "django_tasks"

__all__ = [
    "DEFAULT_TASK_BACKEND_ALIAS",
    "DEFAULT_TASK_QUEUE_NAME",
    "FRAMEWORK",
    "BaseTaskBackend",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
]
