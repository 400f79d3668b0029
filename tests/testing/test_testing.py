"""chancy.testing and the pytest plugin, used as a project's own tests would use them."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from chancy import Chancy, Job, Queue
from chancy.pytest_plugin import drop_tables
from chancy.testing import assert_pushed, run_job, run_until_idle, sync_assert_pushed
from tests.testing.jobs import send_welcome

ASYNC = Chancy.Executor.Async


async def test_assert_pushed_matches_kwargs_and_explains_a_miss(chancy_app: Chancy) -> None:
    await chancy_app.push(send_welcome.job.with_kwargs(to="ana@example.com", plan="pro"))
    await chancy_app.push(send_welcome.job.with_kwargs(to="bo@example.com"))
    found = await assert_pushed(chancy_app, send_welcome, kwargs={"to": "ana@example.com"})
    assert [j.kwargs["plan"] for j in found] == ["pro"]
    await assert_pushed(chancy_app, "tests.testing.jobs.send_welcome", count=2, queue="emails")
    with pytest.raises(AssertionError) as miss:
        await assert_pushed(chancy_app, send_welcome, kwargs={"to": "cy@example.com"})
    # The message lists what was pushed, so the difference shows.
    assert "ana@example.com" in str(miss.value) and "bo@example.com" in str(miss.value)
    with pytest.raises(AssertionError, match="expected 3 job"):
        await assert_pushed(chancy_app, send_welcome, count=3)
    assert len(sync_assert_pushed(chancy_app, send_welcome, count=2)) == 2


async def test_run_until_idle_runs_what_is_due_and_returns_it(chancy_app: Chancy) -> None:
    await chancy_app.declare(Queue("emails", executor=ASYNC, polling_interval=0.2))
    refs = [
        await chancy_app.push(send_welcome.job.with_kwargs(to=f"u{i}@example.com"))
        for i in range(3)
    ]
    # Scheduled for tomorrow: not due, so it does not keep the queue busy.
    later = await chancy_app.push(
        send_welcome.job.with_kwargs(to="later@example.com").with_scheduled_at(
            datetime.now(UTC) + timedelta(days=1)
        )
    )
    finished = await run_until_idle(chancy_app, queues=["emails"], timeout=30)
    assert sorted(str(j.id) for j in finished) == sorted(str(r.identifier) for r in refs)
    assert {str(j.state) for j in finished} == {"succeeded"}
    assert sorted(j.result for j in finished) == [f"welcome u{i}@example.com" for i in range(3)]
    waiting = await chancy_app.get_job(later)
    assert waiting is not None and str(waiting.state) == "pending"


async def test_run_until_idle_returns_finished_jobs_without_notifications(
    chancy_dsn: str, chancy_prefix: str
) -> None:
    # What it returns is read from the jobs table, not gathered from job.finished
    # notifications: they can arrive after the queue is seen idle (a CI run once got an
    # empty list), and never arrive when the app runs without them.
    async with Chancy(
        chancy_dsn,
        prefix=chancy_prefix,
        notifications=False,
        no_default_plugins=True,
        max_connection_pool_size=2,
    ) as app:
        await app.migrate()
        await app.declare(Queue("emails", executor=ASYNC, polling_interval=0.05))
        ref = await app.push(send_welcome.job.with_kwargs(to="quiet@example.com"))
        finished = await run_until_idle(app, queues=["emails"], timeout=30)
        assert [(str(j.id), str(j.state)) for j in finished] == [(str(ref.identifier), "succeeded")]
        # A second run finds nothing new: only jobs finished while it ran are returned.
        assert await run_until_idle(app, queues=["emails"], timeout=30) == []


async def test_run_until_idle_times_out_on_work_that_does_not_end(chancy_app: Chancy) -> None:
    await chancy_app.declare(Queue("slow", executor=ASYNC, polling_interval=0.2))
    await chancy_app.push(
        Job(func="tests.testing.jobs.sleepy", queue="slow", kwargs={"seconds": 60})
    )
    with pytest.raises(TimeoutError, match="still due or running"):
        await run_until_idle(chancy_app, queues=["slow"], timeout=1)


async def test_run_job_uses_the_queue_s_executor(chancy_app: Chancy) -> None:
    await chancy_app.declare(Queue("cpu", executor=Chancy.Executor.Process, concurrency=1))
    finished = await run_job(chancy_app, Job(func="tests.testing.jobs.which_process", queue="cpu"))
    assert str(finished.state) == "succeeded"
    assert isinstance(finished.result, int) and finished.result != os.getpid()


async def test_drop_tables_removes_every_table_of_a_prefix(chancy_dsn: str) -> None:
    prefix = "tdrop_check_"
    app = Chancy(chancy_dsn, prefix=prefix, no_default_plugins=True, max_connection_pool_size=1)
    async with app:
        await app.migrate()
    dropped = drop_tables(chancy_dsn, prefix)
    assert f"{prefix}jobs" in dropped and f"{prefix}queues" in dropped
    with psycopg.connect(chancy_dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'tdrop\\_check\\_%'"
        ).fetchone()
    assert row is not None and row[0] == 0
