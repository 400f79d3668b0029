"""Job functions for in-process worker tests (AsyncExecutor runs them in the test's loop)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

from chancy import QueuedJob
from chancy.errors import Retry, Snooze
from chancy.executors.asyncex import AsyncExecutor

#: job id (str) -> monotonic start time, filled by ``record``.
STARTED: dict[str, float] = {}
#: Order in which ``ordered`` jobs started.
ORDER: list[Any] = []


async def record(*, job: QueuedJob) -> str:
    STARTED[str(job.id)] = time.monotonic()
    return str(job.id)


async def noop() -> None:
    return None


async def ordered(n: int) -> None:
    ORDER.append(n)


async def echo(value: Any) -> Any:
    return value


async def sleepy(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "woke"


async def fail_once(*, job: QueuedJob) -> str:
    if job.attempts == 0:
        raise ValueError("first attempt fails on purpose")
    return f"ok on attempt {job.attempts}"


async def always_fails() -> None:
    raise RuntimeError("this job always fails")


async def retry_later(delay: float, *, job: QueuedJob) -> str:
    if job.attempts == 0:
        raise Retry(delay)
    return "retried"


async def snooze_once(delay: float, *, job: QueuedJob) -> str:
    if not job.meta.get("snoozed"):
        raise Snooze(delay)
    return "snoozed"


async def set_meta(*, job: QueuedJob) -> int:
    job.meta["progress"] = 100
    job.meta["note"] = "saved"
    return 1


async def big_result() -> str:
    return "x" * (2 * 1024 * 1024)


async def unserialisable() -> object:
    return object()


def sync_function() -> int:
    return 1


#: job id (str) -> one gate per run of ``gated``, in the order the runs started.
GATES: dict[str, list[asyncio.Event]] = {}
#: job id (str) -> the runs of ``gated`` that were interrupted (cancelled).
INTERRUPTED: dict[str, list[int]] = {}
#: job id (str) -> the runs of ``gated`` that returned.
FINISHED: dict[str, list[int]] = {}
#: job id (str) -> for each run, the runs interrupted before it started.
SEEN_INTERRUPTED: dict[str, list[list[int]]] = {}


async def gated(stubborn: bool = False, *, job: QueuedJob) -> int:
    """Wait until the test opens this run's gate; return the run's number (0 first). A
    ``stubborn`` run records an interruption and goes on waiting (it ignores cancellation)."""
    key = str(job.id)
    gates = GATES.setdefault(key, [])
    number = len(gates)
    gate = asyncio.Event()
    gates.append(gate)
    SEEN_INTERRUPTED.setdefault(key, []).append(list(INTERRUPTED.get(key, [])))
    try:
        await gate.wait()
    except asyncio.CancelledError:
        INTERRUPTED.setdefault(key, []).append(number)
        if not stubborn:
            raise
        await gate.wait()
    FINISHED.setdefault(key, []).append(number)
    return number


class RefusingExecutor(AsyncExecutor):
    """Refuses, once, each job whose meta asks for it (as an executor stopped under a claim
    would)."""

    refused: ClassVar[list[str]] = []

    async def submit_to_pool(self, job: QueuedJob) -> None:
        if job.meta.get("refuse") and str(job.id) not in self.refused:
            self.refused.append(str(job.id))
            raise RuntimeError("this executor refuses the job (on purpose)")
        await super().submit_to_pool(job)


class ReportingExecutor(AsyncExecutor):
    """Records what passes through its own ``push`` and ``on_job_completed`` (0.26's executor
    hooks, which the runtime's fast paths must still call when a subclass overrides them)."""

    pushed: ClassVar[list[str]] = []
    reported: ClassVar[list[tuple[str, str | None]]] = []

    async def push(self, job: QueuedJob) -> None:
        self.pushed.append(str(job.id))
        await super().push(job)

    async def on_job_completed(
        self, *, job: QueuedJob, exc: BaseException | None = None, result: Any = None
    ) -> None:
        self.reported.append((str(job.id), None if exc is None else type(exc).__name__))
        await super().on_job_completed(job=job, exc=exc, result=result)
