"""RetryPlugin: backoff delays checked against their bounds with database timestamps."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

import pytest

from chancy import Chancy, Job, Queue, QueuedJob, Worker
from chancy.errors import Retry, Snooze
from chancy.executors.base import Delayed
from chancy.plugin import Plugin
from chancy.plugins.retry import DEFAULT_RETRY_SETTINGS, RetryPlugin, backoff_bounds
from tests.conftest import eventually

ASYNC = Chancy.Executor.Async
#: The time a failed run takes to reach the database after its claim (run, flush): generous.
SLACK = 1.0


class Runs(Plugin):
    """Records each run's claim time and the scheduled_at it was claimed under (both DB time)."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: dict[uuid.UUID, list[tuple[datetime, datetime]]] = {}

    @classmethod
    def get_identifier(cls) -> str:
        return "tests.runs"

    async def on_job_starting(self, *, job: QueuedJob, worker: Worker) -> QueuedJob:
        assert job.started_at is not None
        self.runs.setdefault(job.id, []).append((job.started_at, job.scheduled_at))
        return job


async def run_until_done(app: Chancy, job: Job) -> QueuedJob:
    await app.declare(Queue("default", tags={"^nobody$"}))
    await app.declare(Queue("r", executor=ASYNC, polling_interval=0.05))
    async with Worker(app, register_signal_handlers=False):
        ref = await app.push(job)
        done = await app.wait_for_job(ref, timeout=30)
    assert done is not None
    return done


async def test_backoff_delays_stay_within_their_bounds(chancy: Chancy, make_app: Any) -> None:
    runs = Runs()
    app = make_app(RetryPlugin(), runs)
    settings = {
        "backoff": 0.4,
        "backoff_factor": 2,
        "backoff_limit": 0.7,
        "backoff_jitter": [0.1, 0.3],
    }
    job = Job(
        func="tests.plugins.jobs.always_fails",
        queue="r",
        max_attempts=3,
        meta={"retry_settings": settings},
    )
    done = await run_until_done(app, job)
    assert done.state == "failed" and done.attempts == 3
    [(start1, _), (start2, sched2), (start3, sched3)] = runs.runs[done.id]
    full = {**DEFAULT_RETRY_SETTINGS, **settings, "backoff_jitter": (0.1, 0.3)}
    # Attempt 1 failed: 0.4 s * 2**0 plus 0.1-0.3 s of jitter. Attempt 2: 0.4 * 2 = 0.8 s,
    # capped at 0.7 s, plus jitter.
    for attempts, started, scheduled, claimed in (
        (1, start1, sched2, start2),
        (2, start2, sched3, start3),
    ):
        lo, hi = backoff_bounds(attempts, full)
        # scheduled = (when the failure was written) + delay, and the failure was written
        # after the run started, at most SLACK later.
        waited = (scheduled - started).total_seconds()
        assert lo <= waited <= hi + SLACK, (attempts, waited, lo, hi)
        # The retry did not run before it was due.
        assert claimed >= scheduled
    assert backoff_bounds(1, full) == pytest.approx((0.5, 0.7))
    assert backoff_bounds(2, full) == pytest.approx((0.8, 1.0))


async def test_without_the_plugin_a_failed_job_is_eligible_at_once(
    chancy: Chancy, make_app: Any
) -> None:
    runs = Runs()
    app = make_app(runs)
    job = Job(
        func="tests.plugins.jobs.always_fails",
        queue="r",
        max_attempts=2,
        meta={"retry_settings": {"backoff": 100}},
    )
    done = await run_until_done(app, job)
    [(start1, sched1), (_, sched2)] = runs.runs[done.id]
    assert sched2 == sched1 <= start1


async def test_an_explicit_retry_delay_is_kept(chancy: Chancy, make_app: Any) -> None:
    runs = Runs()
    app = make_app(RetryPlugin(), runs)
    job = Job(
        func="tests.plugins.jobs.retry_in",
        queue="r",
        kwargs={"seconds": 0.3},
        max_attempts=2,
        meta={"retry_settings": {"backoff": 100, "backoff_jitter": [100, 100]}},
    )
    done = await run_until_done(app, job)
    [(start1, _), (_, sched2)] = runs.runs[done.id]
    waited = (sched2 - start1).total_seconds()
    assert 0.3 <= waited <= 0.3 + SLACK


def queued(attempts: int, meta: dict[str, Any], state: str = "retrying") -> QueuedJob:
    return QueuedJob(
        id=uuid.uuid4(),
        func="tests.plugins.jobs.always_fails",
        queue="r",
        attempts=attempts,
        max_attempts=10,
        meta=meta,
        state=QueuedJob.State(state),
    )


async def completed(job: QueuedJob, exc: BaseException | None = RuntimeError("x")) -> Any:
    return await RetryPlugin().on_job_completed(worker=None, job=job, exc=exc, result=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [
        {"backoff": "soon"},
        {"backoff": -1},
        {"backoff_factor": 0},
        {"backoff_limit": float("nan")},
        {"backoff_jitter": [5, 1]},
        {"backoff_jitter": 3},
        {"backof": 2},
        "not a dict",
    ],
)
async def test_invalid_settings_warn_and_fall_back_to_defaults(
    bad: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="chancy.retry")
    outcome = await completed(queued(1, {"retry_settings": bad}))
    assert isinstance(outcome, Delayed)
    lo, hi = backoff_bounds(1, DEFAULT_RETRY_SETTINGS)
    assert (lo, hi) == (2.0, 6.0)
    assert lo <= outcome.delay <= hi
    assert any("retry" in r.getMessage() for r in caplog.records), caplog.text


async def test_the_plugin_leaves_other_outcomes_alone() -> None:
    job = queued(1, {})
    assert await completed(job, exc=None) is job
    assert await completed(job, exc=Retry(3)) is job
    snoozed = queued(0, {}, "pending")
    assert await completed(snoozed, exc=Snooze(3)) is snoozed
    failed = queued(10, {}, "failed")
    assert await completed(failed) is failed


async def test_huge_exponents_are_capped_by_the_limit() -> None:
    outcome = await completed(queued(5000, {"retry_settings": {"backoff_jitter": [0, 0]}}))
    assert isinstance(outcome, Delayed)
    assert outcome.delay == 300.0


async def test_the_worker_keeps_running_when_settings_are_invalid(
    chancy: Chancy, make_app: Any
) -> None:
    app = make_app(RetryPlugin())
    await app.declare(Queue("default", tags={"^nobody$"}))
    await app.declare(Queue("r", executor=ASYNC, polling_interval=0.05))
    bad = Job(
        func="tests.plugins.jobs.always_fails",
        queue="r",
        max_attempts=2,
        meta={"retry_settings": {"backoff": "x", "backoff_jitter": [0, 0.1]}},
    )
    async with Worker(app, register_signal_handlers=False) as worker:
        ref = await app.push(bad)
        # backoff falls back to 1 s: the retry is due 1.0-1.1 s after the failure.
        done = await app.wait_for_job(ref, timeout=30)
        assert done is not None and done.state == "failed" and done.attempts == 2
        ok = await app.push(Job(func="tests.plugins.jobs.noop", queue="r"))
        assert (await app.wait_for_job(ok, timeout=10)).state == "succeeded"  # type: ignore[union-attr]
        await eventually(lambda: worker.fatal_error is None)
