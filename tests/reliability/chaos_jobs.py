"""Jobs of the chaos test; every run records itself in ``{prefix}chaos_runs`` when it starts.

A run that misbehaves (raises, overruns its time limit, overfills its memory limit, kills its
own process) does so only when the side table holds no earlier run of its job, so each job
succeeds at last. Side-table writes ride out a database restart: they reconnect and retry
for up to ``PATIENCE`` seconds instead of failing the job.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import psycopg

from chancy.job import QueuedJob

DSN_ENV = "CHANCY_CHAOS_DSN"
PREFIX_ENV = "CHANCY_CHAOS_PREFIX"
PATIENCE = 60.0

SIDE_TABLE_DDL = """
CREATE TABLE {prefix}chaos_runs (
    seq bigserial PRIMARY KEY,
    job_id uuid NOT NULL,
    kind text NOT NULL,
    worker text NOT NULL,
    pid int NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX ON {prefix}chaos_runs (job_id);
"""

_INSERT = (
    "INSERT INTO {prefix}chaos_runs (job_id, kind, worker, pid) VALUES (%s, %s, %s, %s)"
    " RETURNING (SELECT count(*) FROM {prefix}chaos_runs WHERE job_id = %s) AS earlier"
)

_sync: psycopg.Connection[Any] | None = None
_async: dict[int, psycopg.AsyncConnection[Any]] = {}
_connecting: dict[int, asyncio.Lock] = {}


def _sql() -> str:
    return _INSERT.format(prefix=os.environ[PREFIX_ENV])


def _params(job: QueuedJob, kind: str) -> tuple[Any, ...]:
    return (job.id, kind, job.taken_by or "?", os.getpid(), job.id)


def record_sync(job: QueuedJob, kind: str) -> int:
    """Record this run; return how many runs of the job were recorded before it."""
    global _sync
    deadline = time.monotonic() + PATIENCE
    while True:
        try:
            if _sync is None or _sync.closed:
                _sync = psycopg.connect(os.environ[DSN_ENV], autocommit=True, connect_timeout=5)
            row = _sync.execute(_sql(), _params(job, kind)).fetchone()  # type: ignore[arg-type]
            return int(row[0]) if row else 0
        except psycopg.OperationalError:
            _sync = None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


async def _loop_conn(key: int) -> psycopg.AsyncConnection[Any]:
    """One side-table connection per event loop, opened once however many jobs ask at once."""
    lock = _connecting.setdefault(key, asyncio.Lock())
    async with lock:
        conn = _async.get(key)
        if conn is None or conn.closed:
            conn = _async[key] = await psycopg.AsyncConnection.connect(
                os.environ[DSN_ENV], autocommit=True, connect_timeout=5
            )
        return conn


async def record_async(job: QueuedJob, kind: str) -> int:
    loop = id(asyncio.get_running_loop())
    deadline = time.monotonic() + PATIENCE
    while True:
        try:
            conn = await _loop_conn(loop)
            cur = await conn.execute(_sql(), _params(job, kind))  # type: ignore[arg-type]
            row = await cur.fetchone()
            return int(row[0]) if row else 0
        except psycopg.OperationalError:
            _async.pop(loop, None)
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def work(ms: int = 0) -> None:
    """A job that only takes a little time (the soak test: no side table)."""
    await asyncio.sleep(ms / 1000)


async def normal(ms: int = 0, *, job: QueuedJob) -> None:
    await record_async(job, "normal")
    await asyncio.sleep(ms / 1000)


async def flaky(*, job: QueuedJob) -> None:
    if await record_async(job, "flaky") == 0:
        raise RuntimeError("the first run of a flaky job fails")


def overrun(*, job: QueuedJob) -> None:
    if record_sync(job, "overrun") == 0:
        time.sleep(30)  # past its time limit: the executor kills the process


def memhog(*, job: QueuedJob) -> None:
    if record_sync(job, "memhog") == 0:
        hog = bytearray(512 * 1024 * 1024)  # past its memory limit: MemoryError
        hog[-1] = 1


def suicide(*, job: QueuedJob) -> None:
    if record_sync(job, "suicide") == 0:
        os.kill(os.getpid(), signal.SIGKILL)


async def partitioned(seconds: float, *, job: QueuedJob) -> dict[str, Any]:
    """Record the run, work for ``seconds``, and say which worker ran it."""
    await record_async(job, "partitioned")
    await asyncio.sleep(seconds)
    return {"worker": job.taken_by, "pid": os.getpid()}


class _Batcher:
    """Records runs of one event loop in batches: one INSERT per round trip, not per job.

    A job returns only once its row is written, so a finished job's run is on record.
    """

    def __init__(self) -> None:
        self.pending: list[tuple[Any, asyncio.Future[None]]] = []
        self.task: asyncio.Task[None] | None = None

    async def add(self, job_id: Any) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((job_id, future))
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._flush())
        await future

    async def _flush(self) -> None:
        prefix = os.environ[PREFIX_ENV]
        while self.pending:
            batch, self.pending = self.pending, []
            try:
                conn = await _loop_conn(-id(asyncio.get_running_loop()))
                await conn.execute(
                    f"INSERT INTO {prefix}drain_runs (job_id, pid)"  # type: ignore[arg-type]
                    " SELECT unnest(%s::uuid[]), %s",
                    ([job_id for job_id, _ in batch], os.getpid()),
                )
            except Exception as exc:
                _async.pop(-id(asyncio.get_running_loop()), None)
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for _, future in batch:
                future.set_result(None)


_batchers: dict[int, _Batcher] = {}

DRAIN_TABLE_DDL = "CREATE TABLE {prefix}drain_runs (job_id uuid NOT NULL, pid int NOT NULL)"


async def counted(*, job: QueuedJob) -> None:
    """A no-op that records its run (batched), for the exactly-once drain."""
    batcher = _batchers.setdefault(id(asyncio.get_running_loop()), _Batcher())
    await batcher.add(job.id)


def hold(*, seconds: float, job: QueuedJob) -> None:
    """Record the run, then take ``seconds`` (the liveness tests kill workers under it)."""
    record_sync(job, "hold")
    time.sleep(seconds)
