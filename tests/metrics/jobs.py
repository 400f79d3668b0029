"""Job functions for the metrics and dashboard tests."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any


async def noop() -> None:
    return None


async def echo(**kwargs: Any) -> Any:
    return kwargs


async def always_fails() -> None:
    raise RuntimeError("this job always fails")


async def fails_until_file(path: str) -> str:
    """Fails while ``path`` does not exist; succeeds once it does (a fixed bug)."""
    if not Path(path).exists():  # noqa: ASYNC240
        raise ValueError(f"the file {path} is missing")
    return "fixed"


async def sleeps(seconds: float) -> None:
    await asyncio.sleep(seconds)
