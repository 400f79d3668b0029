"""What each job costs the PostgreSQL server: ``python bench/costs.py [--dsn DSN] [--jobs N]``.

For each path (plain jobs, one push per job, unique keys, limits, per-key limits, workflows,
stored results, and the plain paths again with ``synchronous_commit=off``) it pushes N jobs
to a paused queue while one chancy worker (a process of its own, ``bench.worker``) waits,
resumes the queue, waits until every job finished, then prunes them and runs ``VACUUM``.
Per job it reports:

- server time by phase (push, claim, complete, cleanup, other) from ``pg_stat_statements``
  (execution + planning time of each chancy statement, named after its query in chancy's
  ``.sql`` files);
- backend CPU from ``/proc/<pid>/schedstat`` of the server processes: the pusher's backends,
  the worker's backends, and every server process (WAL writer, checkpointer, ... included);
- WAL bytes from ``pg_current_wal_insert_lsn()`` around each phase (``pg_wal_lsn_diff``), with the
  claim/complete split from ``pg_stat_statements``;
- the connections the worker holds (``pg_stat_activity`` by application name), idle and at
  its peak during the drain.

The server: ``--dsn``, else ``$CHANCY_DSN``, is used when it preloads ``pg_stat_statements``;
otherwise (and with ``--throwaway``, or with no DSN at all) a throwaway cluster is started
from this machine's PostgreSQL binaries (``tests/cluster.py``) in a temporary directory on a
free port, with the extension preloaded, and removed at the end. The shared server is never
reconfigured. The tables go to stdout and ``--out`` (``costs.md`` and ``costs.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import os
import shlex
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from psycopg.conninfo import make_conninfo  # noqa: E402

from bench import procs  # noqa: E402
from bench.costs_probe import (  # noqa: E402
    PHASE_ORDER,
    CpuSampler,
    Statements,
    is_local_backend,
    statement_delta,
    statements,
)
from bench.costs_report import markdown  # noqa: E402
from bench.db import connect, installation, queries  # noqa: E402
from bench.workloads import TUNED_WORKER, tuned_queue  # noqa: E402
from chancy import Job, Queue  # noqa: E402
from chancy.app import Chancy  # noqa: E402
from chancy.plugins.pruner import Pruner  # noqa: E402
from chancy.plugins.workflow import Workflow, WorkflowPlugin  # noqa: E402
from chancy.rule import JobRules  # noqa: E402

RUN = f"costs{os.getpid() % 100000}_"
QUEUE = "costs"
PUSHER = "costs_push"
WORKER = "costs_worker"
MONITOR = "costs_monitor"
#: Limits set far above any rate this machine reaches: what enforcing them costs.
NEVER = 10_000_000
KEYS = 100
#: Steps of each workflow: one, then eight depending on it, then one depending on the eight.
FANOUT = 8


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclasses.dataclass(frozen=True)
class Path:
    key: str
    label: str
    queue: Queue
    #: How the jobs are pushed: "many" (push_many, default batch size), "one" (push each),
    #: "workflow" (WorkflowPlugin.push, one workflow of 10 steps at a time).
    push: str = "many"
    func: str = "bench.jobs.take"
    unique: bool = False
    keys: int = 0
    sync_off: bool = False
    #: The share of --jobs this path pushes (one push per job is slow: a commit each).
    share: float = 1.0


def paths() -> list[Path]:
    base = dataclasses.replace(tuned_queue(QUEUE), state=Queue.State.PAUSED)
    limited = dataclasses.replace(
        base, rate_limit=NEVER, rate_limit_window=1, global_concurrency=100_000
    )
    keyed = dataclasses.replace(
        base,
        partition_concurrency=100_000,
        partition_rate_limit=NEVER,
        partition_rate_limit_window=1,
    )
    return [
        Path("plain", "plain (push_many)", base),
        Path("single", "plain, one push() per job", base, push="one", share=0.2),
        Path("unique", "unique keys", base, unique=True),
        Path("limits", "limits: rate + global concurrency", limited),
        Path("keyed", f"per-key limits ({KEYS} keys)", keyed, keys=KEYS),
        Path("workflow", f"workflows (1 -> {FANOUT} -> 1 steps)", base, push="workflow"),
        Path("results", "results stored (~200 B each)", base, func="bench.jobs.result"),
        Path("plain_async", "plain (push_many), synchronous_commit=off", base, sync_off=True),
        Path(
            "single_async",
            "plain, one push() per job, synchronous_commit=off",
            base,
            push="one",
            sync_off=True,
            share=0.2,
        ),
    ]


# -- the server -----------------------------------------------------------------------


@asynccontextmanager
async def server(dsn: str | None, throwaway: bool) -> AsyncIterator[tuple[str, str]]:
    """(DSN, where) of a server with pg_stat_statements loaded."""
    if dsn and not throwaway:
        conn = await connect(dsn)
        async with conn:
            cur = await conn.execute(queries("bench_")["costs_preloaded"])
            row = await cur.fetchone()
        if row and row["preloaded"]:
            yield dsn, "the server given (--dsn / CHANCY_DSN)"
            return
        log(
            "the server given does not preload pg_stat_statements (and must not be"
            " reconfigured): measuring on a throwaway cluster instead"
        )
    from tests.cluster import Cluster

    settings = {
        "shared_preload_libraries": "pg_stat_statements",
        "pg_stat_statements.track_planning": "on",
        "pg_stat_statements.max": "10000",
        "shared_buffers": "128MB",
        "max_connections": "100",
    }
    cluster = Cluster(settings)
    with cluster:
        log(f"throwaway cluster {cluster.bin} on port {cluster.port} ({cluster.root})")
        yield cluster.dsn, f"a throwaway cluster ({cluster.bin.parent.name}, temporary directory)"


def with_params(dsn: str, name: str, sync_off: bool) -> str:
    params: dict[str, str] = {"application_name": name}
    if sync_off:
        params["options"] = "-c synchronous_commit=off"
    return make_conninfo(dsn, **params)


# -- one path -------------------------------------------------------------------------


def make_jobs(path: Path, n: int) -> list[Job]:
    job = Job(func=path.func, queue=QUEUE)
    out = []
    for i in range(n):
        j = job.with_kwargs(n=i)
        if path.unique:
            j = j.with_unique_key(f"u{i}")
        if path.keys:
            j = j.with_partition_key(f"k{i % path.keys}")
        out.append(j)
    return out


def make_workflows(n: int) -> list[Workflow]:
    size = FANOUT + 2
    job = Job(func="bench.jobs.noop", queue=QUEUE)
    flows = []
    for w in range(n // size):
        wf = Workflow(f"costs{w}").add("first", job)
        wf.add_group([(f"b{i}", job) for i in range(FANOUT)], ["first"])
        wf.add("last", job, [f"b{i}" for i in range(FANOUT)])
        flows.append(wf)
    return flows


async def push(app: Chancy, path: Path, n: int) -> int:
    """Push the path's jobs; return how many jobs that makes."""
    if path.push == "workflow":
        flows = make_workflows(n)
        for wf in flows:
            await WorkflowPlugin.push(app, wf)
        return len(flows) * (FANOUT + 2)
    jobs = make_jobs(path, n)
    if path.push == "one":
        for job in jobs:
            await app.push(job)
    else:
        async for _ in app.push_many(jobs):
            pass
    return len(jobs)


class Measure:
    """The marks around each phase of one path: statements, WAL position, CPU."""

    def __init__(
        self, monitor: Any, sampler: CpuSampler | None, names: Statements, own: bool
    ) -> None:
        self.monitor = monitor
        self.sampler = sampler
        self.names = names
        self.own = own
        self.marks: list[tuple[str, float, dict[int, dict[str, Any]], str, dict[int, int]]] = []

    async def mark(self, label: str) -> None:
        q = queries("bench_")
        cur = await self.monitor.execute(q["costs_wal_lsn"])
        row = await cur.fetchone()
        stmts = await statements(self.monitor)
        cpu = await self.sampler.mark() if self.sampler else {}
        self.marks.append((label, time.monotonic(), stmts, row["lsn"], cpu))

    async def windows(self, n: int, workflows: bool) -> dict[str, Any]:
        """Per-job figures of each window between consecutive marks.

        ``phase_us``: statement time (pg_stat_statements) by phase. ``phase_cpu``: the CPU
        time of the pusher's and of the worker's backends in each window, each divided among
        the phases in proportion to the statement time of its own statements in that window
        (the CPU of one connection cannot be split by statement; the proportions can).
        """
        q = queries("bench_")
        out: dict[str, Any] = {"wal_lsn": {}, "cpu": {}, "seconds": {}}
        phase_us = dict.fromkeys(PHASE_ORDER, 0.0)
        phase_wal = dict.fromkeys(PHASE_ORDER, 0.0)
        phase_cpu = dict.fromkeys(PHASE_ORDER, 0.0)
        details: dict[str, dict[str, Any]] = {}
        for (_, t0, s0, lsn0, c0), (label, t1, s1, lsn1, c1) in zip(
            self.marks, self.marks[1:], strict=False
        ):
            cur = await self.monitor.execute(q["costs_wal_diff"], {"before": lsn0, "after": lsn1})
            row = await cur.fetchone()
            out["wal_lsn"][label] = int(row["bytes"]) / n
            out["seconds"][label] = t1 - t0
            shares: dict[str, dict[str, float]] = {
                PUSHER: dict.fromkeys(PHASE_ORDER, 0.0),
                WORKER: dict.fromkeys(PHASE_ORDER, 0.0),
            }
            for r in statement_delta(s0, s1):
                name = self.names.name(r["query"])
                if name.startswith("bench:"):
                    continue
                phase = Statements.phase(name, label)
                phase_us[phase] += r["us"]
                phase_wal[phase] += r["wal_bytes"]
                who = PUSHER if Statements.by_pusher(phase, name, label, workflows) else WORKER
                shares[who][phase] += r["us"]
                d = details.setdefault(
                    name, {"phase": phase, "calls": 0, "us": 0.0, "wal_bytes": 0, "wal_fpi": 0}
                )
                for k in ("calls", "us", "wal_bytes", "wal_fpi"):
                    d[k] += r[k]
            if self.sampler:
                cpu = self.sampler.between(c0, c1)
                out["cpu"][label] = {k: v / n for k, v in cpu.items()}
                for who, share in shares.items():
                    spent = cpu.get(who, 0.0)
                    total = sum(share.values())
                    if label == "drain" and who == PUSHER:
                        total = 0.0  # the pusher only resumes the queue and watches
                    if label == "push" and who == WORKER and not workflows:
                        # The worker only listens while jobs are pushed: its LISTEN session
                        # receiving the pushes' notifications is part of what a push costs.
                        phase_cpu["push"] += spent
                        continue
                    if total <= 0:
                        fallback = {"push": "push", "cleanup": "cleanup"}.get(label, "other")
                        phase_cpu[fallback if who == PUSHER else "other"] += spent
                        continue
                    for phase, us in share.items():
                        phase_cpu[phase] += spent * us / total
        out["phase_us"] = {k: v / n for k, v in phase_us.items()}
        out["phase_wal"] = {k: v / n for k, v in phase_wal.items()}
        out["phase_cpu"] = {k: v / n for k, v in phase_cpu.items()} if self.sampler else None
        out["statements"] = {
            name: {**d, "us_per_job": d["us"] / n, "calls_per_job": d["calls"] / n}
            for name, d in sorted(details.items(), key=lambda kv: -kv[1]["us"])
        }
        return out


async def wait_done(monitor: Any, prefix: str, total: int, workflows: bool) -> None:
    q = queries(prefix)
    deadline = time.monotonic() + max(120.0, total / 50)
    while True:
        cur = await monitor.execute(q["costs_jobs_done"])
        row = await cur.fetchone()
        if row["failed"]:
            raise RuntimeError(f"{row['failed']} jobs failed in {prefix}")
        done = row["succeeded"] == total
        if done and workflows:
            cur = await monitor.execute(q["costs_workflows_open"])
            done = (await cur.fetchone())["n"] == 0
        if done:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{prefix}: {row['succeeded']} of {total} jobs finished in time")
        await asyncio.sleep(0.05)


async def connections(monitor: Any) -> dict[str, int]:
    cur = await monitor.execute(queries("bench_")["costs_connections"], {"names": [WORKER, PUSHER]})
    return {r["name"]: int(r["n"]) for r in await cur.fetchall()}


async def table_stats(monitor: Any, prefix: str, total: int) -> dict[str, float]:
    """Row versions per job written to the jobs table, once every backend that wrote them
    has exited (a backend's counters reach the statistics when it exits, or up to 10 s
    later while it lives): read until no pusher or worker session is left and two reads
    agree."""
    q = queries(prefix)
    last: dict[str, Any] | None = None
    deadline = time.monotonic() + 10
    while True:
        cur = await monitor.execute(q["costs_table_stats"])
        row = dict(await cur.fetchone() or {})
        if (row == last and not await connections(monitor)) or time.monotonic() > deadline:
            return {k: int(v or 0) / total for k, v in row.items()}
        last = row
        await asyncio.sleep(0.1)


async def run_path(
    dsn: str, path: Path, n: int, monitor: Any, sampler: CpuSampler | None, own: bool
) -> dict[str, Any]:
    prefix = f"{RUN}{path.key}_"
    push_dsn = with_params(dsn, PUSHER, path.sync_off)
    worker_dsn = with_params(dsn, WORKER, path.sync_off)
    async with installation(push_dsn, prefix) as app:
        await app.declare(path.queue, upsert=True)
        settings = {**TUNED_WORKER, "queues": [QUEUE]}
        async with procs.workers(worker_dsn, prefix, settings) as fleet:
            if own:
                await monitor.execute(queries(prefix)["costs_checkpoint"])
            idle = (await connections(monitor)).get(WORKER, 0)
            measure = Measure(monitor, sampler, Statements(prefix), own)
            await monitor.execute(queries(prefix)["costs_statements_reset"])
            await measure.mark("start")
            total = await push(app, path, n)
            await measure.mark("push")
            peak = idle
            await app.resume_queue(QUEUE)
            waiter = asyncio.create_task(wait_done(monitor, prefix, total, path.push == "workflow"))
            while not waiter.done():
                peak = max(peak, (await connections(monitor)).get(WORKER, 0))
                fleet.check_alive()
                await asyncio.wait([waiter], timeout=0.1)
            await waiter
            await measure.mark("drain")
            pruner = Pruner(rule=JobRules.Age() >= 0, maximum_to_prune=10 * total)
            async with app.pool.connection() as conn, conn.cursor() as cursor:
                pruned = await pruner.prune(app, cursor)
                await cursor.execute(queries(prefix)["vacuum_jobs"])
            await measure.mark("cleanup")
            figures = await measure.windows(total, path.push == "workflow")
        await app.close()
        table = await table_stats(monitor, prefix, total)
    return {
        "table": table,
        "key": path.key,
        "label": path.label,
        "jobs": total,
        "pruned": pruned,
        "connections": {"idle": idle, "peak": peak, "pool_max": TUNED_WORKER["pool_max"]},
        **figures,
    }


async def measure_all(args: argparse.Namespace) -> dict[str, Any]:
    dsn_given = args.dsn or os.environ.get("CHANCY_DSN")
    chosen = paths()
    if args.paths:
        wanted = {p.strip() for p in args.paths.split(",") if p.strip()}
        unknown = wanted - {p.key for p in chosen}
        if unknown:
            raise SystemExit(
                f"unknown paths {sorted(unknown)}; choose from {','.join(p.key for p in chosen)}"
            )
        chosen = [p for p in chosen if p.key in wanted]
    async with server(dsn_given, args.throwaway) as (dsn, where):
        own = not where.startswith("the server given")
        mdsn = make_conninfo(dsn, application_name=MONITOR)
        monitor = await connect(mdsn)
        async with monitor:
            q = queries("bench_")
            await monitor.execute(q["costs_extension"])
            await monitor.execute(q["costs_untracked"])
            cur = await monitor.execute(q["costs_settings"])
            settings = dict(await cur.fetchone() or {})
            cur = await monitor.execute(q["costs_backend_pid"])
            row = await cur.fetchone()
            assert row is not None
            monitor_pid = int(row["pid"])
            local = is_local_backend(monitor_pid)
            results = []
            try:
                for path in chosen:
                    n = max(100, int(args.jobs * path.share))
                    log(f"{path.label}: {n:,} jobs ...")
                    if local:
                        async with CpuSampler(mdsn, monitor_pid, exclude=[monitor_pid]) as s:
                            results.append(await run_path(dsn, path, n, monitor, s, own))
                    else:
                        results.append(await run_path(dsn, path, n, monitor, None, own))
            finally:
                await procs.close_pools()
    return {"server": where, "settings": settings, "local": local, "paths": results}


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/costs.py", description=__doc__.splitlines()[0])
    p.add_argument("--dsn", help="PostgreSQL DSN (default $CHANCY_DSN; see --throwaway)")
    p.add_argument("--jobs", type=int, default=5_000, help="jobs per path (default 5,000)")
    p.add_argument("--paths", help="comma-separated subset of the paths (by key)")
    p.add_argument(
        "--throwaway",
        action="store_true",
        help="always measure on a throwaway cluster (the default when the server given does"
        " not preload pg_stat_statements, or none is given)",
    )
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "out"), help="output folder")
    return p.parse_args(argv)


def main(argv: list[str] | None = None, run: Callable[..., Any] = asyncio.run) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    # A terminated run still stops its throwaway cluster and worker processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.jobs < 100:
        raise SystemExit("--jobs must be at least 100")
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.monotonic()
    data = run(measure_all(args))
    data["date"] = f"{started:%Y-%m-%d %H:%M} UTC"
    data["command"] = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    data["minutes"] = (time.monotonic() - t0) / 60
    data["jobs_per_path"] = args.jobs
    try:
        data["load"] = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        data["load"] = "unknown"
    text = markdown(data)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "costs.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "costs.json"), "w") as f:
        json.dump(data, f, indent=1, default=str)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
