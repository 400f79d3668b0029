"""Job functions for the executor tests, in an importable module so spawned children find them."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from pathlib import Path

from chancy.errors import Retry, Snooze
from chancy.job import QueuedJob

#: Released at the end of a test, to let thread jobs that block on it finish.
RELEASE = threading.Event()


def noop() -> None:
    return None


async def async_noop() -> None:
    return None


def add(a: int, b: int, *, job: QueuedJob) -> int:
    job.meta["seen"] = job.meta.get("seen", 0) + 1
    job.meta["attempt"] = job.attempts
    return a + b


async def async_add(a: int, b: int, *, job: QueuedJob) -> int:
    await asyncio.sleep(0)
    job.meta["seen"] = job.meta.get("seen", 0) + 1
    job.meta["attempt"] = job.attempts
    return a + b


def fail(message: str) -> None:
    raise ValueError(message)


async def async_fail(message: str) -> None:
    await asyncio.sleep(0)
    raise ValueError(message)


def retry(delay: float) -> None:
    raise Retry(delay)


async def async_retry(delay: float) -> None:
    raise Retry(delay)


def snooze(delay: float) -> None:
    raise Snooze(delay)


async def async_snooze(delay: float) -> None:
    raise Snooze(delay)


class UnpicklableError(Exception):
    """An exception whose constructor needs two arguments, so it cannot be unpickled."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"code {code}: {detail}")
        self.lock = threading.Lock()


def raise_unpicklable() -> None:
    raise UnpicklableError(7, "kaput")


def pid() -> int:
    return os.getpid()


def pids() -> list[int]:
    """This process's pid and its parent's."""
    return [os.getpid(), os.getppid()]


def modules_loaded(prefix: str) -> list[str]:
    return sorted(name for name in sys.modules if name.split(".")[0] == prefix)


def main_module_file() -> str | None:
    return getattr(sys.modules["__main__"], "__file__", None)


def exit_now(code: int) -> None:
    os._exit(code)


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def allocate(size: int) -> int:
    block = bytearray(size)
    return len(block)


def sleep_forever(marker: str) -> None:
    """Write this process's pid to ``marker``, then never return (but stay interruptible)."""
    _touch(marker)
    while True:
        time.sleep(0.05)


def sleep_then_return(seconds: float, value: int) -> int:
    time.sleep(seconds)
    return value


async def async_raise_timeout() -> None:
    raise TimeoutError("the job's own timeout")


async def async_sleep_forever(marker: str) -> None:
    _touch(marker)
    await asyncio.Event().wait()


def _touch(path: str) -> None:
    # Written aside then renamed, so a reader never sees the file empty.
    partial = Path(f"{path}.partial")
    partial.write_text(str(os.getpid()))
    partial.replace(path)


def block_until_released(marker: str) -> None:
    """Stuck in a C-level wait, where no exception can interrupt a thread."""
    _touch(marker)
    RELEASE.wait()


def unserialisable_result() -> object:
    return threading.Lock()


async def async_unserialisable_result() -> object:
    return threading.Lock()


NOT_CALLABLE = 42


def hold(marker: str, release: str) -> int:
    """Write this process's pid to ``marker``, then wait (at most 30 s) for ``release``."""
    _touch(marker)
    deadline = time.monotonic() + 30
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.005)
    return os.getpid()


def mark(path: str) -> int:
    """Write this process's pid to ``path``: proof that the job ran."""
    _touch(path)
    return os.getpid()


async def async_hold(marker: str, release: str) -> int:
    """``hold`` for AsyncExecutor: write the pid to ``marker``, wait (at most 30 s) for
    ``release`` without blocking the loop."""
    _touch(marker)
    deadline = time.monotonic() + 30
    # The release is a file, as for the other executors' jobs (written by the test).
    while not os.path.exists(release) and time.monotonic() < deadline:  # noqa: ASYNC110, ASYNC240
        await asyncio.sleep(0.005)
    return os.getpid()


async def async_mark(path: str) -> int:
    """``mark`` for AsyncExecutor."""
    _touch(path)
    return os.getpid()
