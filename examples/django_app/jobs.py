"""The example's jobs and Django tasks."""

from __future__ import annotations

from django_tasks import task


async def welcome(username: str) -> str:
    return f"welcome, {username}"


@task(queue_name="reports", priority=10)
def add(a: int, b: int) -> int:
    return a + b


@task(queue_name="reports")
def explode() -> None:
    raise ValueError("the report could not be built")
