"""Cancellation with a reason: who and why are stored with the job and read back."""

from __future__ import annotations

import psycopg
import pytest

from chancy import Chancy, Job, QueuedJob
from chancy.app_jobs import MAX_REASON, default_canceller

J = Job(func="tests.durable.jobs.wait_forever", queue="c")


async def test_reason_and_canceller_are_stored_and_returned(chancy: Chancy) -> None:
    ref = await chancy.push(J)
    assert await chancy.cancel_job(ref, "duplicate of 1234", by="ops:alice")
    job = await chancy.get_job(ref)
    assert job is not None and job.state == "failed"
    assert (job.cancel_reason, job.cancelled_by) == ("duplicate of 1234", "ops:alice")
    assert job.meta == {
        "cancelled": True,
        "cancel_reason": "duplicate of 1234",
        "cancelled_by": "ops:alice",
    }
    traceback = job.errors[-1]["traceback"]
    assert "by ops:alice" in traceback and "Reason: duplicate of 1234" in traceback
    # A second cancel of a finished job changes nothing, not even the reason.
    assert not await chancy.cancel_job(ref, "other")
    again = await chancy.get_job(ref)
    assert again is not None and again.cancel_reason == "duplicate of 1234"


async def test_the_0_26_call_still_works_and_records_who(chancy: Chancy) -> None:
    ref = await chancy.push(J)
    assert await chancy.cancel_job(ref)
    job = await chancy.get_job(ref)
    assert job is not None and job.meta["cancelled"] is True
    assert job.cancel_reason is None and job.cancelled_by == default_canceller()
    assert "Reason" not in job.errors[-1]["traceback"]


async def test_retry_clears_the_cancellation(chancy: Chancy) -> None:
    ref = await chancy.push(J)
    await chancy.cancel_job(ref, reason="pause the campaign")
    await chancy.retry_jobs([ref])
    job = await chancy.get_job(ref)
    assert job is not None and job.state == "retrying"
    assert job.cancel_reason is None and job.cancelled_by is None and job.meta == {}
    assert "pause the campaign" in job.errors[-1]["traceback"]  # the history stays


async def test_sync_and_cursor_forms(chancy: Chancy) -> None:
    a, b, c = [await chancy.push(J) for _ in range(3)]
    assert chancy.sync_cancel_job(a, "sync")
    with psycopg.connect(chancy.dsn) as conn, conn.cursor() as cur:
        assert chancy.sync_cancel_job_ex(cur, b, "rolled back")
        conn.rollback()
    async with await psycopg.AsyncConnection.connect(chancy.dsn) as conn:
        async with conn.cursor() as cur:
            assert await chancy.cancel_job_ex(cur, c, reason="in tx", by="me")
    jobs = await chancy.get_jobs([a, b, c])
    assert [j.cancel_reason for j in jobs] == ["sync", None, "in tx"]
    assert str(jobs[1].state) == "pending"
    chancy.sync_close()


@pytest.mark.parametrize(
    ("reason", "by", "message"),
    [
        (5, None, "reason must be a string"),
        ("x" * (MAX_REASON + 1), None, "keep it under"),
        ("nul \x00 inside", None, "NUL"),
        ("fine", ["not", "text"], "by must be a string"),
    ],
)
async def test_bad_reasons_are_refused_and_nothing_changes(
    chancy: Chancy, reason: object, by: object, message: str
) -> None:
    ref = await chancy.push(J)
    with pytest.raises(ValueError, match=message):
        await chancy.cancel_job(ref, reason, by=by)  # type: ignore[arg-type]
    job = await chancy.get_job(ref)
    assert job is not None and job.state == QueuedJob.State.PENDING and job.meta == {}
