"""Job functions for the SQL push and Trigger tests (AsyncExecutor runs them in the test's loop)."""

from __future__ import annotations

from typing import Any

from chancy import QueuedJob, job


async def send(to: str) -> str:
    return f"sent to {to}"


async def echo(**kwargs: Any) -> dict[str, Any]:
    return kwargs


async def noop() -> None:
    return None


@job(queue="events")
async def process_user_change(*, context: QueuedJob) -> dict[str, Any]:
    """Chancy 0.26's docstring example: the job reads what fired it from its meta."""
    return dict(context.meta["trigger"])
