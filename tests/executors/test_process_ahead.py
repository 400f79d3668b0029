"""ProcessExecutor: jobs sent to a child ahead of time, and what happens to them.

While jobs are short, a child is sent several at once (they wait in the child), so it never
idles for a round trip through the worker's loop. These tests hold the first job in the
child, so the ones behind it are certainly waiting there, and check that they run in order,
that a cancelled one is skipped, and that a child that dies or times out hands them back.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from chancy.executors._children import Child
from chancy.job import QueuedJob, Reference
from tests.conftest import eventually
from tests.executors.conftest import (
    Harness,
    assert_cancelled_unrun,
    held,
    make_job,
    push_stuck,
    short_jobs,
    wait_for_file,
)
from tests.executors.test_process import is_alive

pytestmark = pytest.mark.asyncio(loop_scope="module")

State = QueuedJob.State


def only_child(harness: Harness) -> Child:
    (child,) = harness.executor._slots
    return child


async def sent_ahead(harness: Harness, count: int) -> Child:
    """The only child, once ``count`` jobs were sent to it (pushed jobs are sent together at
    the loop's next turn)."""

    def sent() -> Child | None:
        child = only_child(harness)
        return child if len(child.pipeline) == count else None

    return await eventually(sent, message=f"{count} jobs were not sent to the child")


async def test_jobs_sent_ahead_wait_in_the_child_and_run_in_order(
    make_harness: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = make_harness("process", concurrency=1)
    first, release = await held(harness, tmp_path)
    short_jobs(harness)
    writes: list[int] = []
    write = Child._write

    def counted(child: Child, data: bytes) -> None:
        writes.append(len(data))
        write(child, data)

    monkeypatch.setattr(Child, "_write", counted)
    behind = [make_job("add", a=i, b=100) for i in range(3)]
    for job in behind:
        await harness.push(job)
    # Sent to the busy child rather than kept in the worker: one write for the three.
    child = await sent_ahead(harness, 4)
    assert len(writes) == 1, writes
    assert [sent.job.id for sent in child.pipeline] == [
        first.id,
        *(job.id for job in behind),
    ]
    release.touch()
    pid = (await harness.worker.outcome(first)).result_json
    outcomes = [await harness.worker.outcome(job) for job in behind]
    assert [o.result_json for o in outcomes] == ["100", "101", "102"]
    assert all(o.job.meta["seen"] == 1 for o in outcomes)
    assert int(pid or 0) == int((await harness.run(make_job("pid"))).result_json or 0)


async def test_a_cancelled_job_waiting_in_a_child_is_skipped(
    make_harness: Any, tmp_path: Path
) -> None:
    harness = make_harness("process", concurrency=1)
    first, release = await held(harness, tmp_path)
    short_jobs(harness)
    ran = tmp_path / "ran"
    cancelled = make_job("mark", path=str(ran))
    after = make_job("add", a=2, b=3)
    await harness.push(cancelled)
    await harness.push(after)
    await sent_ahead(harness, 3)
    await harness.executor.cancel(Reference(cancelled.id))
    release.touch()
    await assert_cancelled_unrun(harness, cancelled)
    assert (await harness.worker.outcome(first)).job.state == State.SUCCEEDED
    assert (await harness.worker.outcome(after)).result_json == "5"
    assert not ran.exists()  # the child dropped it


async def test_a_child_that_dies_hands_back_the_jobs_waiting_in_it(
    make_harness: Any, tmp_path: Path
) -> None:
    harness = make_harness("process", concurrency=1)
    first, _ = await held(harness, tmp_path)
    short_jobs(harness)
    behind = [make_job("pid") for _ in range(3)]
    for job in behind:
        await harness.push(job)
    await sent_ahead(harness, 4)
    pid = only_child(harness).process.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    outcome = await harness.worker.outcome(first)
    assert "killed by signal SIGKILL" in outcome.job.errors[0]["traceback"]
    # The jobs behind it never started: they run in the next child, not failed.
    outcomes = [await harness.worker.outcome(job) for job in behind]
    assert [o.job.state for o in outcomes] == [State.SUCCEEDED] * 3
    assert {int(o.result_json or 0) for o in outcomes} != {pid}


async def test_a_time_limit_kills_only_the_running_job(make_harness: Any, tmp_path: Path) -> None:
    harness = make_harness("process", concurrency=1)
    marker = tmp_path / "running"
    stuck = make_job("sleep_forever", marker=str(marker), time_limit=0.5)
    await harness.push(stuck)
    await wait_for_file(marker)
    short_jobs(harness)
    behind = [make_job("add", a=i, b=1) for i in range(2)]
    for job in behind:
        await harness.push(job)
    await sent_ahead(harness, 3)
    outcome = await harness.worker.outcome(stuck)
    assert "exceeded its time limit of 0.5s" in outcome.job.errors[0]["traceback"]
    assert [(await harness.worker.outcome(job)).result_json for job in behind] == ["1", "2"]


async def test_the_whole_job_is_sent_again_with_others_waiting_behind(
    make_harness: Any, tmp_path: Path
) -> None:
    harness = make_harness("process", concurrency=1)
    first, release = await held(harness, tmp_path)
    short_jobs(harness)
    jobs = [make_job("add", a=i, b=i) for i in (1, 2, 3)]
    # The parent wrongly believes `add` does not use its QueuedJob: each is sent slim, the
    # child asks for the first one in full while the next ones already wait behind it.
    harness.executor._needs_job[jobs[0].func] = False
    for job in jobs:
        await harness.push(job)
    release.touch()
    outcomes = [await harness.worker.outcome(job) for job in jobs]
    assert [o.result_json for o in outcomes] == ["2", "4", "6"]
    assert all(o.job.meta["seen"] == 1 for o in outcomes)
    assert (await harness.worker.outcome(first)).job.state == State.SUCCEEDED


async def test_a_cancelled_job_the_child_started_anyway_is_killed(
    make_harness: Any, tmp_path: Path
) -> None:
    harness = make_harness("process", concurrency=1)
    job, pid = await push_stuck(harness, tmp_path)
    # The race the skip can lose: the child started the job before the skip reached it,
    # so no SKIPPED comes back. Once the job is at the head, the child is killed.
    child = only_child(harness)
    child.skipping.add(job.id)
    harness.executor._arm_head(child)
    outcome = await harness.worker.outcome(job)
    assert "cancelled while running" in outcome.job.errors[0]["traceback"]
    await eventually(lambda: not is_alive(pid), message="the child running it was killed")


@pytest.mark.parametrize(("runtime", "started_early"), [(0.0001, True), (1.0, False)])
async def test_a_successor_starts_earlier_when_jobs_are_short(
    make_harness: Any, runtime: float, started_early: bool
) -> None:
    # A child that runs 20 jobs: for 1 s jobs its successor starts 2 jobs before its end
    # (10%); for short ones, 10 before (half), so a fast queue never waits for a boot.
    harness = make_harness("process", concurrency=1, maximum_jobs_per_worker=20)
    for i in range(10):
        harness.executor._runtime = runtime
        await harness.run(make_job("add", a=i, b=0))
    assert (only_child(harness).successor is not None) is started_early


async def test_a_job_cancelled_in_a_child_that_then_dies_is_not_run_again(
    make_harness: Any, tmp_path: Path
) -> None:
    harness = make_harness("process", concurrency=1)
    first, _ = await held(harness, tmp_path)
    short_jobs(harness)
    ran = tmp_path / "ran"
    cancelled = make_job("mark", path=str(ran))
    after = make_job("add", a=1, b=1)
    await harness.push(cancelled)
    await harness.push(after)
    # The skip waits in the child's socket (the child reads it between jobs), then the
    # child dies: the cancelled job must not be handed to the next child with the others.
    await harness.executor.cancel(Reference(cancelled.id))
    pid = only_child(harness).process.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert "SIGKILL" in (await harness.worker.outcome(first)).job.errors[0]["traceback"]
    await assert_cancelled_unrun(harness, cancelled)
    assert (await harness.worker.outcome(after)).result_json == "2"
    assert not ran.exists()
