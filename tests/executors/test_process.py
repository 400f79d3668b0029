"""ProcessExecutor: children that die, limits enforced in the child, recycling, stopping."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from chancy.errors import ConfigurationError, JobFailedError
from chancy.executors.base import Executor, RemoteJobError
from chancy.executors.process import ProcessExecutor
from chancy.job import QueuedJob
from tests.conftest import eventually
from tests.executors.conftest import Harness, build, make_job, push_stuck

pytestmark = pytest.mark.asyncio(loop_scope="module")

State = QueuedJob.State
MiB = 1 << 20


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def harness() -> AsyncIterator[Harness]:
    harness = build("process", concurrency=2)
    yield harness
    await harness.executor.stop()
    assert harness.worker.slot_not_freed == []


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_async_job_runs_in_the_child(harness: Harness) -> None:
    outcome = await harness.run(make_job("async_add", a=20, b=22))
    assert outcome.job.state == State.SUCCEEDED
    assert outcome.result_json == "42"
    assert outcome.job.meta["seen"] == 1


async def test_unpicklable_exception_keeps_its_traceback(harness: Harness) -> None:
    job = make_job("raise_unpicklable")
    outcome = await harness.run(job)
    assert outcome.job.state == State.FAILED
    traceback = outcome.job.errors[0]["traceback"]
    assert "tests.executors.jobs.UnpicklableError: code 7: kaput" in traceback
    assert "in raise_unpicklable" in traceback
    exc = harness.completed(job).exc
    assert isinstance(exc, RemoteJobError)
    assert exc.type_name == "tests.executors.jobs.UnpicklableError"


async def test_child_exit_fails_only_its_own_job(harness: Harness) -> None:
    survivor = make_job("sleep_then_return", seconds=0.5, value=7)
    doomed = make_job("exit_now", code=1)
    await harness.push(survivor)
    await harness.push(doomed)
    outcome = await harness.worker.outcome(doomed)
    assert outcome.job.state == State.FAILED
    assert "the process running the job died with exit code 1" in outcome.job.errors[0]["traceback"]
    assert isinstance(harness.completed(doomed).exc, JobFailedError)
    assert (await harness.worker.outcome(survivor)).result_json == "7"
    # The dead child was replaced: the next job on this executor succeeds.
    assert (await harness.run(make_job("add", a=1, b=1))).result_json == "2"


async def test_child_killed_by_a_signal(harness: Harness) -> None:
    outcome = await harness.run(make_job("kill_self"))
    assert outcome.job.state == State.FAILED
    assert "killed by signal SIGKILL" in outcome.job.errors[0]["traceback"]
    assert (await harness.run(make_job("add", a=2, b=1))).result_json == "3"


async def test_memory_limit_fails_the_attempt_and_the_child_recovers(harness: Harness) -> None:
    over = make_job("allocate", size=256 * MiB, memory_limit=32 * MiB, max_attempts=2)
    outcome = await harness.run(over)
    assert outcome.job.state == State.RETRYING
    traceback = outcome.job.errors[0]["traceback"]
    assert f"exceeded its memory limit of {32 * MiB} bytes" in traceback
    assert "MemoryError" in traceback
    # Plugins get a MemoryError, as in Chancy 0.26.
    assert isinstance(harness.completed(over).exc, MemoryError)
    # The limit applies to one job only: the same children run bigger jobs without one.
    for _ in range(2):
        unlimited = await harness.run(make_job("allocate", size=64 * MiB))
        assert unlimited.result_json == str(64 * MiB)
    within = await harness.run(make_job("allocate", size=MiB, memory_limit=32 * MiB))
    assert within.job.state == State.SUCCEEDED


async def test_children_stay_light(harness: Harness) -> None:
    import psycopg  # noqa: F401 - loaded in the parent, must not be in the child

    outcome = await harness.run(make_job("modules_loaded", prefix="psycopg"))
    assert outcome.result_json == "[]"
    outcome = await harness.run(make_job("modules_loaded", prefix="pytest"))
    assert outcome.result_json == "[]"
    # The worker's __main__ (here, the pytest script) is not re-run in children.
    outcome = await harness.run(make_job("main_module_file"))
    assert outcome.result_json is None


async def test_whole_job_is_sent_again_when_the_parent_guessed_wrong(harness: Harness) -> None:
    # The parent learned from earlier runs that `add` needs the QueuedJob; make it forget,
    # so the child gets the slim message, asks for the job and gets it.
    make = make_job("add", a=5, b=5)
    harness.executor._needs_job[make.func] = False
    outcome = await harness.run(make)
    assert outcome.result_json == "10"
    assert outcome.job.meta["seen"] == 1
    assert harness.executor._needs_job[make.func] is True


async def test_recycles_children_after_maximum_jobs(make_harness: Any) -> None:
    harness = make_harness("process", concurrency=1, maximum_jobs_per_worker=2)
    pids = [int((await harness.run(make_job("pid"))).result_json) for _ in range(5)]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
    await eventually(lambda: not is_alive(pids[0]), message="the recycled child exited")


async def test_stop_returns_promptly_with_a_stuck_job(make_harness: Any, tmp_path: Path) -> None:
    harness = make_harness("process", concurrency=1)
    job, pid = await push_stuck(harness, tmp_path)
    started = time.monotonic()
    await harness.executor.stop()
    assert time.monotonic() - started < 3
    assert not is_alive(pid)
    assert len(harness.executor) == 0
    assert harness.worker.outcomes_for(job) == []  # abandoned: the worker gives it back


async def test_time_limit_kills_the_child(make_harness: Any, tmp_path: Path) -> None:
    harness = make_harness("process", concurrency=1, time_limit=0.3)  # the queue's default
    job, pid = await push_stuck(harness, tmp_path)
    outcome = await harness.worker.outcome(job)
    assert "exceeded its time limit of 0.3s" in outcome.job.errors[0]["traceback"]
    await eventually(lambda: not is_alive(pid), message="the timed-out child was killed")


async def test_forkserver_context(make_harness: Any) -> None:
    harness = make_harness("process", concurrency=1, mp_context="forkserver")
    assert (await harness.run(make_job("add", a=1, b=2))).result_json == "3"
    assert (await harness.run(make_job("main_module_file"))).result_json is None


async def test_a_child_that_dies_while_idle_is_replaced(make_harness: Any) -> None:
    harness = make_harness("process", concurrency=1)
    pid = int((await harness.run(make_job("pid"))).result_json)
    os.kill(pid, signal.SIGKILL)
    await eventually(lambda: not harness.executor._slots, message="the dead idle child dropped")
    new_pid = int((await harness.run(make_job("pid"))).result_json)
    assert new_pid != pid


async def test_many_jobs_across_slots(make_harness: Any) -> None:
    harness = make_harness("process", concurrency=2, maximum_jobs_per_worker=10)
    jobs = [make_job("add", a=i, b=1) for i in range(30)]
    waiting = iter(jobs)
    for job in jobs:
        while harness.executor.free_slots == 0:
            # A slot is free again once one more of the jobs out has reported.
            await harness.worker.outcome(next(waiting))
        await harness.push(job)
    outcomes = [await harness.worker.outcome(job) for job in jobs]
    assert [o.result_json for o in outcomes] == [str(i + 1) for i in range(30)]


async def test_capabilities() -> None:
    caps = ProcessExecutor.supports()
    for flag in Executor.Capability:
        assert flag in caps
    assert ProcessExecutor.unsupported_reason() is None


async def test_default_concurrency_is_the_cpu_count() -> None:
    harness = build("process", concurrency=None)  # type: ignore[arg-type]
    assert harness.executor.concurrency == (os.cpu_count() or 1)


@pytest.mark.parametrize(
    ("options", "error", "text"),
    [
        ({"maximum_jobs_per_worker": 0}, ConfigurationError, "maximum_jobs_per_worker"),
        ({"mp_context": "fork"}, ConfigurationError, "'spawn'"),
        ({"workers": 3}, TypeError, "unknown executor_options ['workers']"),
    ],
)
async def test_bad_options_fail_clearly(options: dict[str, Any], error: type, text: str) -> None:
    with pytest.raises(error) as info:
        build("process", **options)
    assert text in str(info.value)
