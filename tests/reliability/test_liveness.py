"""Recovery in seconds, by default: session liveness with real worker processes.

Every worker here runs with chancy's defaults (tests.reliability.liveness_worker): heartbeats
every 30 s with a 90 s timeout, Recovery and Leadership probing the workers' sessions every
second with a 2 s grace. So what these tests measure is what a user gets without tuning:
- a SIGKILLed worker's job runs again on another worker within 5 s;
- a SIGKILLed leader is replaced, and the new leader acts, within 10 s;
- a worker frozen (SIGSTOP) for less than its heartbeat timeout keeps its job;
- a healthy worker whose connections are all terminated keeps its job, run once.
Times are read from the database's clock. The shared server is used: these tests only
terminate their own workers' connections.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from chancy import Chancy, Job, Queue
from tests.reliability.chaos_jobs import SIDE_TABLE_DDL
from tests.reliability.harness import ROOT, worker_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

THREADED = Chancy.Executor.Threaded


class Fleet:
    """Worker processes with default settings, each serving the queues its tag selects."""

    def __init__(self, dsn: str, prefix: str, logs: Path) -> None:
        self.dsn = dsn
        self.prefix = prefix
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def application_name(self, worker_id: str) -> str:
        """What the worker's connections call themselves (to find them in pg_stat_activity)."""
        return f"lw-{self.prefix}{worker_id}"

    def start(self, worker_id: str, tag: str) -> subprocess.Popen[bytes]:
        params = conninfo_to_dict(self.dsn)
        params["application_name"] = self.application_name(worker_id)
        env = worker_env(make_conninfo("", **params), self.prefix)
        with open(self.logs / f"{worker_id}.log", "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.reliability.liveness_worker", worker_id, tag],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs[worker_id] = proc
        return proc

    def log(self, worker_id: str) -> str:
        return (self.logs / f"{worker_id}.log").read_text(errors="replace")

    async def ready(self, worker_id: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while "ready" not in self.log(worker_id):
            if self.procs[worker_id].poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"worker {worker_id} did not start:\n{self.log(worker_id)}")
            await asyncio.sleep(0.05)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def fleet(dsn: str, prefix: str, tmp_path: Path) -> Iterator[Fleet]:
    running = Fleet(dsn, prefix, tmp_path)
    try:
        yield running
    finally:
        running.stop_all()


@pytest_asyncio.fixture
async def app(dsn: str, prefix: str) -> AsyncIterator[Chancy]:
    # The default plugins, as the workers have them (their migration lines too).
    chancy = Chancy(dsn, prefix=prefix, min_connection_pool_size=1, max_connection_pool_size=2)
    async with chancy:
        await chancy.migrate()
        async with chancy.pool.connection() as conn:
            await conn.execute(SIDE_TABLE_DDL.format(prefix=prefix))  # type: ignore[arg-type]
        await chancy.declare(Queue("work", executor=THREADED, concurrency=4, tags={"^role=w$"}))
        await chancy.declare(Queue("lead", executor=THREADED, concurrency=4, tags={"^role=l$"}))
        await chancy.declare(Queue("default", tags={"^nobody$"}))
        try:
            yield chancy
        finally:
            async with chancy.pool.connection() as conn:
                await conn.execute(f"DROP TABLE IF EXISTS {prefix}chaos_runs")  # type: ignore[arg-type]
            await chancy.migrate(to_version=0)


async def one(app: Chancy, query: str, *args: Any) -> Any:
    async with app.pool.connection() as conn:
        cur = await conn.execute(query, args)  # type: ignore[arg-type]
        return await cur.fetchone()


async def until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting until {what}")
        await asyncio.sleep(0.05)


async def leader(app: Chancy) -> tuple[str | None, int | None]:
    row = await one(app, f"SELECT worker_id, term FROM {app.prefix}leader WHERE id = 1")
    return (row[0], row[1]) if row else (None, None)


async def running_on(app: Chancy, ref: Any, worker_id: str) -> bool:
    row = await one(
        app,
        f"SELECT state, taken_by FROM {app.prefix}jobs WHERE id = %s",
        ref.identifier,
    )
    return bool(row and row[0] == "running" and row[1] == worker_id)


async def runs(app: Chancy, ref: Any) -> list[tuple[str, Any]]:
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT worker, started_at FROM {app.prefix}chaos_runs WHERE job_id = %s"  # type: ignore[arg-type]
            " ORDER BY seq",
            (ref.identifier,),
        )
        return [(r[0], r[1]) for r in await cur.fetchall()]


async def db_now(app: Chancy) -> Any:
    return (await one(app, "SELECT clock_timestamp()"))[0]


def hold(queue: str, seconds: float) -> Job:
    return Job(func="tests.reliability.chaos_jobs.hold", queue=queue, kwargs={"seconds": seconds})


async def test_a_killed_workers_job_runs_again_within_5s(app: Chancy, fleet: Fleet) -> None:
    fleet.start("lead-1", "role=l")
    await fleet.ready("lead-1")
    await until(lambda: _is(leader(app), "lead-1"), 30, "lead-1 leads")
    fleet.start("w-a", "role=w")
    await fleet.ready("w-a")
    ref = await app.push(hold("work", 120))
    await until(lambda: running_on(app, ref, "w-a"), 30, "w-a runs the job")
    fleet.start("w-b", "role=w")
    await fleet.ready("w-b")

    fleet.procs["w-a"].send_signal(signal.SIGKILL)
    killed_at = await db_now(app)
    await until(lambda: _ran_twice(app, ref), 30, "w-b runs the job again")
    rerun = (await runs(app, ref))[-1]
    assert rerun[0] == "w-b"
    delay = (rerun[1] - killed_at).total_seconds()
    print(f"killed worker's job ran again after {delay:.2f}s")
    assert delay < 5, f"the job ran again {delay:.2f}s after the kill (want < 5 s)"
    job = await app.get_job(ref)
    assert job is not None and job.recoveries == 1 and job.attempts == 0


async def _ran_twice(app: Chancy, ref: Any) -> bool:
    return len(await runs(app, ref)) >= 2


async def _is(value: Any, worker_id: str) -> bool:
    return (await value)[0] == worker_id


async def test_a_killed_leader_is_replaced_and_acts_within_10s(app: Chancy, fleet: Fleet) -> None:
    fleet.start("l-a", "role=l")
    await fleet.ready("l-a")
    await until(lambda: _is(leader(app), "l-a"), 30, "l-a leads")
    _, first_term = await leader(app)
    # The leader runs a job: only the next leader's Recovery can give it back. It is pushed
    # before l-b starts, so l-a (the only worker serving the queue) is the one that takes it.
    ref = await app.push(hold("lead", 120))
    await until(lambda: running_on(app, ref, "l-a"), 30, "the leader runs the job")
    fleet.start("l-b", "role=l")
    await fleet.ready("l-b")

    fleet.procs["l-a"].send_signal(signal.SIGKILL)
    killed_at = await db_now(app)
    await until(lambda: _is(leader(app), "l-b"), 30, "l-b leads")
    led_after = (await db_now(app) - killed_at).total_seconds()
    _, term = await leader(app)
    assert term is not None and first_term is not None and term > first_term
    await until(lambda: _ran_twice(app, ref), 30, "the new leader recovered the job")
    rerun = (await runs(app, ref))[-1]
    assert rerun[0] == "l-b"
    acted = (rerun[1] - killed_at).total_seconds()
    print(f"new leader after {led_after:.2f}s; the dead leader's job ran again after {acted:.2f}s")
    assert led_after < 10
    assert acted < 10, f"the new leader acted {acted:.2f}s after the kill (want < 10 s)"


async def test_a_worker_frozen_shorter_than_its_heartbeat_timeout_keeps_its_job(
    app: Chancy, fleet: Fleet
) -> None:
    fleet.start("lead-1", "role=l")
    await fleet.ready("lead-1")
    await until(lambda: _is(leader(app), "lead-1"), 30, "lead-1 leads")
    fleet.start("w-a", "role=w")
    fleet.start("w-b", "role=w")
    await fleet.ready("w-a")
    await fleet.ready("w-b")
    ref = await app.push(hold("work", 12))
    await until(lambda: _running_anywhere(app, ref), 30, "a worker runs the job")
    holder = (
        await one(app, f"SELECT taken_by FROM {app.prefix}jobs WHERE id = %s", ref.identifier)
    )[0]
    # Frozen for 8 s: its session (and liveness lock) stays; its heartbeat (90 s) holds.
    fleet.procs[holder].send_signal(signal.SIGSTOP)
    await asyncio.sleep(8)  # the freeze itself is what is tested
    fleet.procs[holder].send_signal(signal.SIGCONT)
    done = await app.wait_for_job(ref, timeout=60)
    assert done is not None and done.state == "succeeded"
    assert done.recoveries == 0
    assert [w for w, _ in await runs(app, ref)] == [holder]


async def _running_anywhere(app: Chancy, ref: Any) -> bool:
    row = await one(app, f"SELECT state FROM {app.prefix}jobs WHERE id = %s", ref.identifier)
    return bool(row and row[0] == "running")


async def test_a_purged_healthy_worker_keeps_its_job_and_nothing_runs_twice(
    app: Chancy, fleet: Fleet
) -> None:
    fleet.start("lead-1", "role=l")
    await fleet.ready("lead-1")
    await until(lambda: _is(leader(app), "lead-1"), 30, "lead-1 leads")
    fleet.start("w-a", "role=w")
    fleet.start("w-b", "role=w")
    await fleet.ready("w-a")
    await fleet.ready("w-b")
    refs = [await app.push(hold("work", 6)) for _ in range(4)]
    for ref in refs:
        await until(lambda ref=ref: _running_anywhere(app, ref), 30, "the jobs run")
    # Every connection of both job-running workers: pool, LISTEN and liveness session.
    names = [fleet.application_name("w-a"), fleet.application_name("w-b")]
    row = await one(
        app,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE application_name = ANY(%s) AND datname = current_database()",
        names,
    )
    assert row[0] >= 4, "expected at least a pool and a LISTEN connection per worker"
    done = await app.wait_for_jobs(refs, timeout=60)
    assert [j.state for j in done] == ["succeeded"] * 4
    assert [j.recoveries for j in done] == [0] * 4
    for ref in refs:
        assert len(await runs(app, ref)) == 1, "a job ran twice after a connection purge"
