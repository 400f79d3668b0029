"""Django tasks (django-tasks backport API) run by chancy workers in the tests."""

from __future__ import annotations

from django_tasks import task


@task(queue_name="reports", priority=10)
def add(a: int, b: int) -> int:
    return a + b


@task(queue_name="reports")
def explode() -> None:
    raise ValueError("the report could not be built")
