"""chancy's earlier name for the Django tasks backend, kept so settings that use it still work.

``"BACKEND": "chancy.contrib.django.tasks.ChancyTaskBackend"`` and Chancy 0.26's
``"chancy.contrib.django.backend.ChancyBackend"`` are the same class (see
:mod:`chancy.contrib.django.backend`). ``run_task`` is the job function this backend pushed
before it took 0.26's (``chancy.contrib.django.task_wrapper``): jobs queued with it still run,
and their results still read.
"""

from __future__ import annotations

from typing import Any

from chancy.contrib.django.backend import ChancyBackend
from chancy.contrib.django.task_wrapper import django_task_executor
from chancy.job import QueuedJob

__all__ = ["ChancyTaskBackend", "run_task"]

ChancyTaskBackend = ChancyBackend


def run_task(
    task: str,
    args: list[Any],
    kwargs: dict[str, Any],
    takes_context: bool = False,
    *,
    job: QueuedJob,
) -> Any:
    """Run a job queued in chancy's earlier layout (``task``, ``args``, ``kwargs``)."""
    return django_task_executor(
        _task_path=task, _args=args, _kwargs=kwargs, _takes_context=takes_context, context=job
    )
