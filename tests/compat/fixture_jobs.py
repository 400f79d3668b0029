"""Job functions that the recorded Chancy databases (tests/compat/databases/) refer to.

The dumps store jobs by import path (``tests.compat.fixture_jobs.<name>``), so these names and
signatures are part of the fixtures: renaming one breaks every dump. They are plain sync
functions, so the thread and process executors of every Chancy version and of chancy run them.
"""

from __future__ import annotations

from typing import Any


def echo(**kwargs: Any) -> dict[str, Any]:
    """Return the job's kwargs, so a test can see they reached the function intact."""
    return kwargs


def fail(**kwargs: Any) -> None:
    """Always raise: the recorded database holds one job that ended ``failed`` this way."""
    raise RuntimeError(f"fixture job failed on purpose ({kwargs})")


def step(*, name: str, **kwargs: Any) -> str:
    """A workflow step; returns its own name."""
    return name


def tick(**kwargs: Any) -> str:
    """The job of the recorded cron schedule."""
    return "tick"
