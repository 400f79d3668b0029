"""ProcessExecutor under forkserver: one zygote forks every child of an executor.

See ``chancy.executors._zygote``. The rest of the executor's behaviour (exit codes, limits,
recycling) is tested in test_process.py, which runs through the zygote too.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from chancy.job import QueuedJob
from tests.conftest import eventually
from tests.executors.conftest import make_job, push_stuck
from tests.executors.test_process import is_alive as exists

pytestmark = pytest.mark.asyncio(loop_scope="module")

State = QueuedJob.State


def is_alive(pid: int) -> bool:
    """Running: a child whose zygote died is reparented, and a zombie until reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        return exists(pid)


def zygote_pid(harness: Any) -> int:
    zygote = harness.executor._pool._zygote
    assert zygote is not None and zygote.alive
    return int(zygote.process.pid)


async def test_one_zygote_forks_every_child(make_harness: Any) -> None:
    harness = make_harness("process", concurrency=2, maximum_jobs_per_worker=2)
    seen = [json.loads((await harness.run(make_job("pids"))).result_json) for _ in range(6)]
    children = {child for child, _ in seen}
    parents = {parent for _, parent in seen}
    assert len(children) >= 3  # recycled every two jobs
    assert parents == {zygote_pid(harness)}
    assert os.getpid() not in parents | children
    await harness.executor.stop()
    await eventually(
        lambda: not any(is_alive(pid) for pid in children | parents),
        message="the children and the zygote exited with the executor",
    )


async def test_spawn_starts_each_child_itself(make_harness: Any) -> None:
    harness = make_harness("process", concurrency=1, mp_context="spawn")
    _, parent = json.loads((await harness.run(make_job("pids"))).result_json)
    assert parent == os.getpid()
    assert harness.executor._pool._zygote is None


async def test_a_dead_zygote_fails_the_running_job_and_is_replaced(
    make_harness: Any, tmp_path: Path
) -> None:
    harness = make_harness("process", concurrency=1)
    stuck, child = await push_stuck(harness, tmp_path)
    first = zygote_pid(harness)
    os.kill(first, signal.SIGKILL)
    outcome = await harness.worker.outcome(stuck)
    assert outcome.job.state == State.FAILED
    assert "killed by signal SIGKILL" in outcome.job.errors[0]["traceback"]
    # The child died with its zygote (the kernel's parent-death signal), not later.
    await eventually(lambda: not is_alive(child), message="the orphaned child is gone")
    _, parent = json.loads((await harness.run(make_job("pids"))).result_json)
    assert parent == zygote_pid(harness) != first


async def test_children_die_with_their_zygote(tmp_path: Path) -> None:
    # Without the executor, which would kill them itself: the kernel does it.
    import socket

    zygote = bare_zygote()
    ours, theirs = socket.socketpair()
    try:
        child = zygote.spawn(theirs, "test-child", CONFIG)
        theirs.close()
        assert ours.recv(1 << 10)  # READY: the child waits for jobs
        pid = await started(zygote, child)
        assert is_alive(pid)
        os.kill(zygote.process.pid, signal.SIGKILL)
        await eventually(lambda: not is_alive(pid), message="the child died with it")
    finally:
        ours.close()
        zygote.kill_now()
        zygote.close()


async def started(zygote: Any, child: Any) -> int:
    """The child's pid, once the zygote's STARTED reply has been read (spawn returns first)."""

    def read() -> int | None:
        zygote.on_readable()
        return child.pid  # type: ignore[no-any-return]

    return await eventually(read, message="the zygote did not report the child started")


def bare_zygote() -> Any:
    import multiprocessing

    from chancy.executors import _spawning
    from chancy.executors._zygote import Zygote

    with _spawning.main_module_hidden():
        return Zygote(multiprocessing.get_context("forkserver"), "test-zygote", lambda z: None)


CONFIG = {"executor": None, "parent_pid": os.getpid(), "log_level": 30, "main": {}}


async def test_a_kill_asked_for_before_the_child_has_a_pid_happens_when_it_arrives() -> None:
    import socket

    from chancy.executors._spawning import kill_process

    zygote = bare_zygote()
    ours, theirs = socket.socketpair()
    try:
        child = zygote.spawn(theirs, "test-child", CONFIG)
        theirs.close()
        assert child.pid is None  # spawn returns before the zygote has forked
        kill_process(child)  # a time limit or a cancellation, this early

        def ended() -> int | None:
            zygote.on_readable()
            return child.exitcode  # type: ignore[no-any-return]

        assert await eventually(ended, message="the child was not killed") == -signal.SIGKILL
    finally:
        ours.close()
        zygote.kill_now()
        zygote.close()


async def test_a_zygote_that_does_not_answer_is_given_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    from chancy.executors import _zygote

    monkeypatch.setattr(_zygote, "SPAWN_WAIT", 0.2)
    zygote = bare_zygote()
    ours, theirs = socket.socketpair()
    os.kill(zygote.process.pid, signal.SIGSTOP)
    try:
        child = zygote.spawn(theirs, "test-child", CONFIG)
        theirs.close()
        await eventually(lambda: not zygote.alive, message="the stuck zygote was kept")
        assert child.exitcode == -signal.SIGKILL  # what it held fails as killed
        await eventually(lambda: zygote.process.exitcode is not None, timeout=10)
    finally:
        ours.close()
        if zygote.process.exitcode is None:
            os.kill(zygote.process.pid, signal.SIGCONT)
        zygote.kill_now()
        zygote.close()
