"""Job functions for the plugin tests (importable by the worker processes of runner.py)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

from chancy import QueuedJob
from chancy.errors import Retry


async def noop() -> None:
    return None


async def first_run_waits(seconds: float, *, job: QueuedJob) -> str:
    """A long first run (so its worker can be killed under it); a recovered run is quick."""
    if job.recoveries == 0:
        await asyncio.sleep(seconds)
        return "first run"
    return "rerun"


async def wait_for_file(path: str, *, job: QueuedJob) -> str:
    """First run: wait until ``path`` exists (the zombie); a recovered run returns at once."""
    if job.recoveries == 0:
        # Polling a file is fine in a test job: the test creates it from another process.
        while not Path(path).exists():  # noqa: ASYNC110, ASYNC240
            await asyncio.sleep(0.02)
        return "zombie"
    return "rerun"


async def kill_my_worker() -> None:
    """SIGKILL the worker process running this job (AsyncExecutor: this very process)."""
    os.kill(os.getpid(), signal.SIGKILL)
    await asyncio.sleep(60)


async def always_fails() -> None:
    raise RuntimeError("this job always fails")


async def retry_in(seconds: float) -> None:
    raise Retry(seconds)


async def echo_meta(*, job: QueuedJob) -> Any:
    return dict(job.meta)
