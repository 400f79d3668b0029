"""A worker SIGKILLed while it holds the last job of a batch: the job is recovered and rerun
elsewhere, and the batch's callbacks are still pushed exactly once (real worker processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from chancy import Chancy, Queue
from chancy.plugins.batch import Batch, BatchPlugin
from chancy.plugins.leadership import Leadership
from chancy.plugins.recovery import Recovery
from tests.batch.conftest import J, callback_jobs, sql
from tests.batch.runner import ENV
from tests.conftest import eventually, migrated_app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def app(dsn: str, prefix: str) -> AsyncIterator[Chancy]:
    plugins = [Leadership(), Recovery(), BatchPlugin()]
    async with migrated_app(dsn, prefix, plugins, pool=3) as chancy:
        yield chancy


@pytest.fixture
def spawn(dsn: str, prefix: str, tmp_path: Path) -> Iterator[Any]:
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(worker_id: str, tags: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
        config = {"dsn": dsn, "prefix": prefix, "worker_id": worker_id, "tags": list(tags)}
        env = {**os.environ, ENV: json.dumps(config), "PYTHONPATH": str(ROOT)}
        log = tmp_path / f"{worker_id}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "tests.batch.runner"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        procs.append((popen, log))
        return popen

    try:
        yield start
    finally:
        for popen, _ in procs:
            if popen.poll() is None:
                popen.send_signal(signal.SIGKILL)
            popen.wait(timeout=10)
        for _, log in procs:
            print(f"--- {log.name} ---\n{log.read_text(errors='replace')[-3000:]}")


async def leader(app: Chancy) -> str | None:
    rows = await sql(
        app, f"SELECT worker_id FROM {app.prefix}leader WHERE id = 1 AND expires_at > now()"
    )
    return rows[0]["worker_id"] if rows else None


@pytest.mark.parametrize("victim_leads", [False, True], ids=["follower", "leader"])
async def test_sigkill_of_the_worker_holding_the_last_job(
    app: Chancy, spawn: Any, victim_leads: bool
) -> None:
    """The killed worker is a follower, or the leader itself (then another process takes over
    leadership, recovers the job and closes the batch)."""
    await app.declare(Queue("default", tags={"^nobody$"}))
    await app.declare(
        Queue("b", tags={"role=runner"}, executor=Chancy.Executor.Async, polling_interval=0.2)
    )
    await app.declare(Queue("cb", tags={"role=nobody"}))  # callbacks stay pending: countable
    if victim_leads:
        victim = spawn("runner-1", ("role=runner",))
        await eventually(lambda: _is(leader(app), "runner-1"), timeout=30, message="it leads")
        spawn("standby")  # serves no queue: takes over leadership
    else:
        spawn("leader")  # serves no queue: leads, recovers and closes batches
        await eventually(lambda: _is(leader(app), "leader"), timeout=30, message="it leads")
    jobs = [J("ok") for _ in range(5)] + [J("hold_first_run")]
    batch_id = await Batch.push(
        app, jobs, on_success=J("callback", queue="cb"), on_finish=J("callback", queue="cb")
    )
    if not victim_leads:
        victim = spawn("runner-1", ("role=runner",))

    async def only_the_hold_job_left() -> bool:
        status = await Batch.get(app, batch_id)
        return status.counts["succeeded"] == 5 and status.counts["running"] == 1

    await eventually(only_the_hold_job_left, timeout=30, message="the last job is running")
    assert not (await Batch.get(app, batch_id)).callbacks_pushed
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    spawn("runner-2", ("role=runner",))

    async def closed() -> bool:
        return (await Batch.get(app, batch_id)).callbacks_pushed

    await eventually(closed, timeout=60, message="the batch closes after the rerun")
    status = await Batch.get(app, batch_id)
    assert status.counts["succeeded"] == 6 and status.failed == 0
    [held] = await sql(
        app,
        f"SELECT state, recoveries, taken_by, result FROM {app.prefix}jobs"
        " WHERE func = 'tests.batch.jobs.hold_first_run'",
    )
    assert held["state"] == "succeeded" and held["recoveries"] == 1
    assert held["taken_by"] == "runner-2" and held["result"] == "recoveries=1"
    pushed = await callback_jobs(app)
    assert len(pushed) == 2
    assert {str(j["id"]) for j in pushed} == set(status.callbacks.values())
    assert all(j["kwargs"]["batch_counts"]["succeeded"] == 6 for j in pushed)
    if victim_leads:
        # Another process leads now (the standby, or runner-2 if the standby's short lease
        # lapsed on a loaded machine).
        assert await leader(app) in ("standby", "runner-2")


async def _is(value: Any, expected: str) -> bool:
    return await value == expected
