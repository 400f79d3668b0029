"""Job functions for the end-to-end tests; workers import them by path.

Each run records itself in the side table ``{prefix}e2e_runs`` (see ``SIDE_TABLE_DDL``): a
serial column gives the order runs started in, and a UNIQUE constraint on the job id makes a
second run of the same job fail loudly. Connections are cached per thread (sync jobs) and per
event loop (async jobs), so ten thousand jobs cost ten thousand INSERTs and no connects.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from typing import Any

import psycopg

from chancy.job import QueuedJob
from tests.e2e.app import DSN_ENV, PREFIX_ENV

SIDE_TABLE_DDL = """
CREATE TABLE {prefix}e2e_runs (
    seq bigserial PRIMARY KEY,
    job_id uuid NOT NULL UNIQUE,
    label text NOT NULL DEFAULT '',
    pid int NOT NULL,
    thread text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""

_local = threading.local()
_async_conns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, psycopg.AsyncConnection[Any]] = (
    weakref.WeakKeyDictionary()
)
_async_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _insert_sql() -> str:
    return (
        f"INSERT INTO {os.environ[PREFIX_ENV]}e2e_runs (job_id, label, pid, thread)"
        " VALUES (%s, %s, %s, %s)"
    )


#: The shared test server may briefly run out of connection slots while other suites run;
#: a job retries its connect for this long rather than fail.
CONNECT_PATIENCE = 20.0


def _sync_conn() -> psycopg.Connection[Any]:
    conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        deadline = time.monotonic() + CONNECT_PATIENCE
        while True:
            try:
                conn = psycopg.connect(os.environ[DSN_ENV], autocommit=True)
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        _local.conn = conn
    return conn


async def _connect_async() -> psycopg.AsyncConnection[Any]:
    deadline = time.monotonic() + CONNECT_PATIENCE
    while True:
        try:
            return await psycopg.AsyncConnection.connect(os.environ[DSN_ENV], autocommit=True)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _async_conn() -> psycopg.AsyncConnection[Any]:
    # One connection per event loop, made once: without the lock every job starting at once
    # would open its own connection, a spike the shared server cannot take.
    loop = asyncio.get_running_loop()
    lock = _async_locks.get(loop)
    if lock is None:
        lock = _async_locks[loop] = asyncio.Lock()
    async with lock:
        conn = _async_conns.get(loop)
        if conn is None or conn.closed:
            conn = _async_conns[loop] = await _connect_async()
        return conn


def _row(job: QueuedJob, label: str) -> tuple[Any, ...]:
    return (job.id, label, os.getpid(), threading.current_thread().name)


def record(label: str = "", *, job: QueuedJob) -> dict[str, Any]:
    """Record this run (sync: thread or process executors)."""
    _sync_conn().execute(_insert_sql(), _row(job, label))  # type: ignore[arg-type]
    return {"pid": os.getpid(), "thread": threading.current_thread().name}


class _Recorder:
    """Batches the async jobs' INSERTs of one event loop: one statement per round trip.

    Runs that arrive while a batch is being written form the next batch, so ten thousand jobs
    need a few hundred statements. Each job still learns whether its own row was new: a
    second run of a job finds its id taken (ON CONFLICT) and fails.
    """

    def __init__(self) -> None:
        self.pending: list[tuple[tuple[Any, ...], asyncio.Future[None]]] = []
        self.task: asyncio.Task[None] | None = None

    async def record(self, row: tuple[Any, ...]) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self.pending.append((row, future))
        if self.task is None or self.task.done():
            self.task = loop.create_task(self._flush())
        await future

    async def _flush(self) -> None:
        while self.pending:
            batch, self.pending = self.pending, []
            try:
                conn = await _async_conn()
                cur = await conn.execute(
                    f"INSERT INTO {os.environ[PREFIX_ENV]}e2e_runs (job_id, label, pid, thread)"
                    " SELECT * FROM unnest(%s::uuid[], %s::text[], %s::int[], %s::text[])"
                    " ON CONFLICT (job_id) DO NOTHING RETURNING job_id",  # type: ignore[arg-type]
                    [list(column) for column in zip(*(row for row, _ in batch), strict=True)],
                )
                inserted = {r[0] for r in await cur.fetchall()}
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for row, future in batch:
                if future.done():
                    continue
                if row[0] in inserted:
                    future.set_result(None)
                else:
                    future.set_exception(RuntimeError(f"job {row[0]} ran twice"))


_recorders: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Recorder] = (
    weakref.WeakKeyDictionary()
)


async def arecord(label: str = "", *, job: QueuedJob) -> dict[str, Any]:
    """Record this run (async: the async executor, or any executor that runs coroutines)."""
    loop = asyncio.get_running_loop()
    recorder = _recorders.get(loop)
    if recorder is None:
        recorder = _recorders[loop] = _Recorder()
    await recorder.record(_row(job, label))
    return {"pid": os.getpid(), "thread": threading.current_thread().name}


def sleep_then_record(seconds: float, label: str = "", *, job: QueuedJob) -> None:
    """Simulate work, then record the run (only runs that finish are recorded)."""
    time.sleep(seconds)
    record(label, job=job)


def exit_hard(code: int = 1) -> None:
    """Kill the process running the job without any cleanup."""
    os._exit(code)


def fail_once(*, job: QueuedJob) -> int:
    """Fail the first attempt, succeed the next."""
    if job.attempts == 0:
        raise RuntimeError("failing the first attempt on purpose")
    return job.attempts
