"""Draining a backlog with chancy workers (W2, W5, W6, flow control) and the pieces they share.

Every drain runs under one of three statistics conditions, each on its own installation (its
own table prefix), because statistics survive ``TRUNCATE`` and a table once analyzed can
never look fresh again:

- ``fresh``: the table as created, never analyzed (autovacuum off), statistics as the push
  left them;
- ``analyzed``: ``VACUUM ANALYZE`` of the jobs table with the whole backlog queued, right
  before the workers start: what autovacuum does after a large insert (autovacuum off
  otherwise, so the moment is always the same);
- ``autovacuum``: the jobs table with aggressive per-table autovacuum and autoanalyze
  settings (see ``jobs_autovacuum_aggressive``), left on for the whole workload: the
  statistics are whatever autovacuum last took, at moments the server picks. When the
  server's daemon is off (``autovacuum = off``), :class:`Autovacuum` does its work during
  each drain instead.

Each drain starts new chancy workers (in pooled processes, see ``bench.procs``) with the
backlog already queued and is measured twice: by the database's clock (first ``started_at``
to last ``completed_at``), and from the moment the workers are told to start to the moment
an outside poller (this process) sees no unfinished job, so the workers' start-up and the
write-back of the last completions count too. A drain that has not finished ``cap`` seconds
after the go is cut off and measured over what it finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import psycopg

from bench import procs
from bench.db import completion_series, connect, drain_window, installation, queries
from chancy import Chancy, Job, Queue

#: The statistics conditions, in the order each repetition runs them.
CONDITIONS = ("fresh", "analyzed", "autovacuum")

#: The two ways every drain is measured, as the report names them.
DB_CLOCK = "database clock"
OUTSIDE = "outside poller"


@dataclasses.dataclass(frozen=True)
class Setup:
    """A queue and the worker settings that drain it."""

    name: str
    queue: Queue
    func: str = "bench.jobs.noop"
    worker: dict[str, Any] = dataclasses.field(default_factory=dict)
    workers: int = 1
    #: Spread the jobs over this many partition keys (``k0``, ``k1``, ...); 0: no key.
    keys: int = 0


@dataclasses.dataclass
class Drained:
    """One drain of ``n`` jobs, measured both ways."""

    n: int
    #: Jobs per second by the database's clock: first claim to last completion.
    rate: float
    #: Jobs per second from the go to the poller seeing the last completion.
    outside: float
    #: Seconds from the go to the first claim (``started_at``), and from the last
    #: ``completed_at`` to the poller seeing it (the write-back and the polling interval;
    #: None for a drain cut off before it finished).
    startup: float
    writeback: float | None
    #: Seconds the push of the backlog took (not measured as a figure).
    push: float
    #: Autovacuum and autoanalyze runs on the jobs table that finished during the drain (the
    #: daemon's, or the stand-in's when the server's daemon is off).
    autovacuum: int = 0
    autoanalyze: int = 0
    series: list[tuple[float, int]] = dataclasses.field(default_factory=list)
    #: For a drain cut off at its cap: how many jobs the poller saw finished by then (the
    #: outside rate is over those); None when the drain finished.
    finished: int | None = None


#: The per-table thresholds of the ``autovacuum`` condition (see jobs_autovacuum_aggressive).
AUTOVACUUM_THRESHOLD = 500
#: How often the stand-in for the daemon looks at the table while a drain runs.
AUTOVACUUM_INTERVAL = 1.0

_daemon: dict[str, bool] = {}


async def server_autovacuum(dsn: str) -> bool:
    """Whether the server runs the autovacuum daemon (cached per DSN)."""
    if dsn not in _daemon:
        conn = await connect(dsn)
        async with conn:
            cur = await conn.execute(queries("bench_")["server_autovacuum"])
            row = await cur.fetchone()
        _daemon[dsn] = bool(row and row["on"])
    return _daemon[dsn]


class Autovacuum:
    """What autovacuum would do to one jobs table with the aggressive settings, done here.

    Used for the ``autovacuum`` condition when the server's daemon is off (``autovacuum =
    off`` disables it whatever a table's own settings say, and the suite never changes server
    settings). While a drain runs, it looks at the table's counters every
    ``AUTOVACUUM_INTERVAL`` seconds, starting one interval after the go, and runs ``VACUUM``,
    ``ANALYZE`` or both by the daemon's rules with the per-table thresholds (500 changed rows,
    no scale factor). Where the daemon waits for its next visit of the database (once per
    ``autovacuum_naptime``), this looks every second, so drains are hit mid-way, which is what
    the condition is for.
    """

    def __init__(self, dsn: str, prefix: str) -> None:
        self.dsn = dsn
        self.prefix = prefix
        self.vacuums = 0
        self.analyzes = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Autovacuum:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        # A VACUUM under way finishes (a fraction of a second on these tables).
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        q = queries(self.prefix)
        conn = await connect(self.dsn)
        async with conn:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), AUTOVACUUM_INTERVAL)
                if self._stop.is_set():
                    return
                cur = await conn.execute(q["jobs_changes"])
                row = await cur.fetchone()
                if row is None:
                    continue
                vacuum = max(row["dead"], row["inserted"]) > AUTOVACUUM_THRESHOLD
                analyze = row["changed"] > AUTOVACUUM_THRESHOLD
                if vacuum and analyze:
                    await conn.execute(q["vacuum_analyze_jobs"])
                elif vacuum:
                    await conn.execute(q["vacuum_jobs"])
                elif analyze:
                    await conn.execute(q["analyze_jobs"])
                self.vacuums += vacuum
                self.analyzes += analyze


def condition_prefix(prefix: str, condition: str) -> str:
    return f"{prefix}{condition}_"


@contextlib.asynccontextmanager
async def installations(
    dsn: str, prefix: str, conditions: Sequence[str], *, pool: int = 4
) -> AsyncIterator[dict[str, Chancy]]:
    """One fresh chancy installation per condition (``{prefix}{condition}_``), removed after."""
    unknown = set(conditions) - set(CONDITIONS)
    if unknown:
        raise ValueError(f"unknown conditions {sorted(unknown)}; choose from {CONDITIONS}")
    async with contextlib.AsyncExitStack() as stack:
        apps: dict[str, Chancy] = {}
        for condition in conditions:
            cprefix = condition_prefix(prefix, condition)
            apps[condition] = await stack.enter_async_context(installation(dsn, cprefix, pool=pool))
            if condition == "autovacuum":
                conn = await connect(dsn)
                async with conn:
                    await conn.execute(queries(cprefix)["jobs_autovacuum_aggressive"])
        yield apps


async def push_backlog(
    app: Chancy,
    queue: str,
    func: str,
    n: int,
    keys: int = 0,
    scheduled_at: datetime.datetime | None = None,
) -> float:
    """Queue ``n`` jobs in one transaction (COPY); return the seconds it took.

    With ``keys``, job ``i`` carries the partition key ``k{i % keys}``; with
    ``scheduled_at``, every job is scheduled for then.
    """
    job = Job(func=func, queue=queue)
    if scheduled_at is not None:
        job = job.with_scheduled_at(scheduled_at)
    if keys:
        variants = [job.with_partition_key(f"k{i}") for i in range(keys)]
        jobs = [variants[i % keys] for i in range(n)]
    else:
        jobs = [job] * n
    start = time.perf_counter()
    async for _ in app.push_many(jobs, batch_size=max(n, 1)):
        pass
    return time.perf_counter() - start


async def reset_jobs(dsn: str, prefix: str) -> None:
    """Empty the jobs table, so each repetition starts from the same table."""
    conn = await connect(dsn)
    async with conn:
        await conn.execute(queries(prefix)["jobs_truncate"])


async def maintenance(conn: psycopg.AsyncConnection[Any], prefix: str) -> dict[str, int]:
    """Vacuum and analyze counts of the jobs table so far (cumulative statistics)."""
    # Autocommit: each statement is its own transaction, so this reads the current counts.
    cur = await conn.execute(queries(prefix)["jobs_maintenance"])
    row = await cur.fetchone()
    return dict(row) if row else {"autovacuum": 0, "autoanalyze": 0, "vacuum": 0, "analyze": 0}


async def poll_drained(
    conn: psycopg.AsyncConnection[Any],
    prefix: str,
    fleet: procs.Fleet,
    *,
    cap: float,
    interval: float = 0.01,
) -> tuple[float, bool]:
    """Poll until no job waits or runs, or until ``cap`` seconds after the go.

    Returns when the last poll was sent and whether it saw the drain finished. A completion
    is visible to a poll once the worker committed it, so a finished drain is seen at most
    one interval (plus one round trip) after its last commit. Fails early when a worker
    process died.
    """
    q = queries(prefix)["jobs_unfinished"]
    while True:
        sent = time.time()
        cur = await conn.execute(q)
        row = await cur.fetchone()
        if row is not None and not row["busy"]:
            return sent, True
        fleet.check_alive()
        if sent - fleet.go_time > cap:
            return sent, False
        await asyncio.sleep(interval)


async def drain(
    app: Chancy, dsn: str, setup: Setup, n: int, condition: str, *, cap: float
) -> Drained:
    """Queue ``n`` jobs, apply ``condition``, start the workers, wait until all finished.

    The worker processes boot (import, connect) while the backlog is pushed; their
    ``Worker`` starts only at the go, after the push and the condition's step. A drain still
    unfinished ``cap`` seconds after the go is cut off (its workers stopped): a collapsed
    drain would otherwise take minutes, and its rate so far is an upper bound of the rest.
    """
    prefix = app.prefix
    q = queries(prefix)
    name = setup.queue.name
    await reset_jobs(dsn, prefix)
    settings = {**setup.worker, "queues": [name]}
    fleet = procs.Fleet(dsn, prefix, settings, setup.workers)
    try:
        pushed = await push_backlog(app, name, setup.func, n, setup.keys)
        conn = await connect(dsn)
        async with conn:
            if condition == "analyzed":
                await conn.execute(q["vacuum_analyze_jobs"])
            await conn.execute(q["poller_session"])
            await fleet.up()
            before = await maintenance(conn, prefix)
            emulated = condition == "autovacuum" and not await server_autovacuum(dsn)
            async with Autovacuum(dsn, prefix) if emulated else _nothing() as stand_in:
                fleet.go()
                seen, complete = await poll_drained(conn, prefix, fleet, cap=cap)
                finished = n
                if not complete:
                    cur = await conn.execute(q["jobs_succeeded"], {"queue": name})
                    row = await cur.fetchone()
                    finished = int(row["n"]) if row else 0
            await fleet.stop()
            after = await maintenance(conn, prefix)
            done, seconds, first = await drain_window(conn, prefix, name)
            series = await completion_series(conn, prefix, name, first)
    finally:
        await fleet.stop()
    if complete and done != n:
        raise RuntimeError(f"{setup.name} ({condition}): {done} of {n} jobs succeeded")
    if not done:
        raise RuntimeError(f"{setup.name} ({condition}): no job finished in {cap:g}s")
    return Drained(
        n=n,
        rate=done / seconds,
        outside=finished / (seen - fleet.go_time),
        startup=first - fleet.go_time,
        writeback=seen - (first + seconds) if complete else None,
        push=pushed,
        autovacuum=after["autovacuum"] - before["autovacuum"] + _runs(stand_in, "vacuums"),
        autoanalyze=after["autoanalyze"] - before["autoanalyze"] + _runs(stand_in, "analyzes"),
        series=series,
        finished=None if complete else finished,
    )


@contextlib.asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield None


def _runs(stand_in: Autovacuum | None, kind: str) -> int:
    return 0 if stand_in is None else int(getattr(stand_in, kind))
