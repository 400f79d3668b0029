"""A fake worker for executor tests: executors never touch the database, so neither do these.

The fake stands in for the worker's runtime only: executors report each run to
``runtime.report(job, exc, result)``, which here records the exception and result and
builds the outcome the real runtime would write (chancy.outcome.build_outcome).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from chancy.executors.base import Executor, Outcome
from chancy.job import Limit, QueuedJob
from chancy.outcome import build_outcome
from chancy.queue import Queue
from chancy.utils import chancy_uuid, import_string
from tests.executors import jobs

JOBS = jobs.__name__

EXECUTORS = {
    "process": "chancy.executors.process.ProcessExecutor",
    "thread": "chancy.executors.thread.ThreadedExecutor",
    "async": "chancy.executors.asyncex.AsyncExecutor",
}


@pytest.fixture(scope="session", autouse=True)
def _no_leaked_tables() -> None:
    """Executor tests use no database: skip the session's leaked-table check (and its server)."""


@dataclass
class Completed:
    """What ``on_job_completed`` received for one run."""

    exc: BaseException | None
    result: Any


@dataclass
class FakeChancy:
    plugins: dict[str, Any] = field(default_factory=dict)
    max_result_size: int = 1 << 20


class FakeRuntime:
    """What executors report to: records each run and builds its outcome."""

    def __init__(self, worker: FakeWorker) -> None:
        self.worker = worker
        self.completed: dict[uuid.UUID, Completed] = {}

    async def report(self, job: QueuedJob, exc: BaseException | None, result: Any) -> None:
        self.completed[job.id] = Completed(exc, result)
        outcome = build_outcome(
            job, exc, result, max_result_size=self.worker.chancy.max_result_size
        )
        await self.worker.queue_update(outcome)


class FakeWorker:
    """Records outcomes; lets a test await the outcome of one job."""

    def __init__(self) -> None:
        self.chancy = FakeChancy()
        self.runtime = FakeRuntime(self)
        self.recorder = self.runtime
        self.worker_id = "test-worker"
        self.executor: Executor | None = None
        self.outcomes: list[Outcome] = []
        #: Ids of jobs still counted as running when their outcome arrived (must stay empty).
        self.slot_not_freed: list[uuid.UUID] = []
        self._waiters: dict[uuid.UUID, list[asyncio.Future[Outcome]]] = {}

    async def queue_update(self, outcome: Outcome) -> None:
        if self.executor is not None and outcome.job.id in self.executor.running_ids():
            self.slot_not_freed.append(outcome.job.id)
        self.outcomes.append(outcome)
        for waiter in self._waiters.pop(outcome.job.id, []):
            if not waiter.done():
                waiter.set_result(outcome)

    def outcomes_for(self, job: QueuedJob) -> list[Outcome]:
        return [o for o in self.outcomes if o.job.id == job.id]

    async def outcome(self, job: QueuedJob, timeout: float = 20) -> Outcome:
        found = self.outcomes_for(job)
        if found:
            return found[0]
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(job.id, []).append(waiter)
        try:
            async with asyncio.timeout(timeout):
                return await waiter
        except TimeoutError:
            raise AssertionError(f"no outcome for {job.func} within {timeout}s") from None


def make_job(
    func: str,
    /,
    *,
    max_attempts: int = 1,
    time_limit: float | None = None,
    memory_limit: int | None = None,
    meta: dict[str, Any] | None = None,
    **kwargs: Any,
) -> QueuedJob:
    """A claimed job for ``tests.executors.jobs.<func>`` (or a full import path)."""
    limits = []
    if time_limit is not None:
        limits.append(Limit(Limit.Type.TIME, time_limit))  # type: ignore[arg-type]
    if memory_limit is not None:
        limits.append(Limit(Limit.Type.MEMORY, memory_limit))
    return QueuedJob(
        id=chancy_uuid(),
        func=func if "." in func else f"{JOBS}.{func}",
        queue="q",
        kwargs=kwargs,
        state=QueuedJob.State.RUNNING,
        claim_id=uuid.uuid4(),
        max_attempts=max_attempts,
        limits=limits,
        meta=dict(meta or {}),
    )


@dataclass
class Harness:
    """An executor with its fake worker."""

    kind: str
    executor: Any
    worker: FakeWorker

    def func(self, name: str) -> str:
        """The job function to use here: the async variant on the async executor."""
        return f"async_{name}" if self.kind == "async" else name

    async def push(self, job: QueuedJob) -> None:
        assert self.executor.free_slots > 0, "the test expected a free slot"
        await self.executor.push(job)

    async def run(self, job: QueuedJob, timeout: float = 20) -> Outcome:
        await self.push(job)
        return await self.worker.outcome(job, timeout)

    def completed(self, job: QueuedJob) -> Completed:
        return self.worker.recorder.completed[job.id]


def build(kind: str, *, concurrency: int = 2, **options: Any) -> Harness:
    worker = FakeWorker()
    cls = import_string(EXECUTORS[kind])
    queue = Queue("q", concurrency=concurrency, executor=EXECUTORS[kind], executor_options=options)
    executor = cls(worker, queue, **queue.executor_options)
    worker.executor = executor
    return Harness(kind, executor, worker)


@pytest_asyncio.fixture(loop_scope="module")
async def make_harness() -> AsyncIterator[Any]:
    """Build harnesses inside a test; each is stopped at the end of the test."""
    made: list[Harness] = []

    def factory(kind: str, **kwargs: Any) -> Harness:
        harness = build(kind, **kwargs)
        made.append(harness)
        return harness

    yield factory
    for harness in made:
        await harness.executor.stop()
        assert harness.worker.slot_not_freed == []


def _read_marker(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


async def push_stuck(harness: Harness, tmp_path: Path) -> tuple[QueuedJob, int]:
    """Push a job that never returns; once it runs, return it and the pid running it."""
    marker = tmp_path / "running"
    job = make_job("sleep_forever", marker=str(marker))
    await harness.push(job)
    return job, int(await wait_for_file(marker))


async def wait_for_file(path: Path, timeout: float = 20) -> str:
    """Poll until a job's "I am running" marker exists; return its text (the job's pid)."""
    deadline = time.monotonic() + timeout
    while (text := _read_marker(path)) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout}s")
        await asyncio.sleep(0.01)
    return text


@pytest.fixture
def release_threads() -> Iterator[None]:
    """Let thread jobs blocked on ``jobs.RELEASE`` finish when the test ends."""
    jobs.RELEASE.clear()
    yield
    jobs.RELEASE.set()


async def held(
    harness: Harness, tmp_path: Path, time_limit: float | None = None
) -> tuple[QueuedJob, Path]:
    """Start a job that holds its slot until the returned path is created (or its time
    limit passes); return once it runs."""
    marker, release = tmp_path / "running", tmp_path / "release"
    job = make_job(
        harness.func("hold"), marker=str(marker), release=str(release), time_limit=time_limit
    )
    await harness.push(job)
    await wait_for_file(marker)
    return job, release


def short_jobs(harness: Harness) -> None:
    """Make a prefetching executor believe jobs take 0.1 ms, so it hands them to a busy child
    or thread ahead of time."""
    harness.executor._runtime = 0.0001


async def assert_cancelled_unrun(harness: Harness, job: QueuedJob) -> None:
    """``job`` was cancelled while it waited (in the executor or in a child): failed, unrun."""
    outcome = await harness.worker.outcome(job)
    assert outcome.job.state == QueuedJob.State.FAILED
    assert "cancelled before it ran" in outcome.job.errors[0]["traceback"]
