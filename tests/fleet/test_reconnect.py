"""A fleet's bad day: the database restarts under many workers, which all come back.

``CHANCY_STORM_WORKERS`` workers (20 by default) run in a few processes
(tests.fleet.storm_worker), each with its own small pool and LISTEN connection, against a
throwaway cluster (tests.cluster) logging every connection. The server is stopped
(immediate mode), stays down for ``CHANCY_STORM_OUTAGE`` seconds (5) while a stand-in on its
port counts the connection attempts, then starts again. Measured: connection attempts per
second (peak and total, during the outage and after the restart) and the time from the
restart until every worker has completed a job pushed after it. Asserted: every worker serves
again within 60 s and none exits. The 100-worker run of docs/reliability.md::

    CHANCY_STORM_WORKERS=100 CHANCY_TEST_DSN=... .venv/bin/pytest -p no:cacheprovider -q -s \\
        tests/fleet/test_reconnect.py
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from types import TracebackType

import pytest

from chancy import Chancy, Job, Queue
from tests.cluster import Cluster, find_pg_bin
from tests.conftest import eventually, new_prefix
from tests.fleet.jobs import echo

WORKERS = int(os.environ.get("CHANCY_STORM_WORKERS", "20"))
PROCESSES = int(os.environ.get("CHANCY_STORM_PROCESSES", "2" if WORKERS <= 20 else "4"))
OUTAGE = float(os.environ.get("CHANCY_STORM_OUTAGE", "5"))
SERVE_WITHIN = 60.0
ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300 + 6 * WORKERS)]


class PortStandIn:
    """Holds the stopped server's port: accepts each connection attempt, records when, and
    closes it (the client sees a failed connection, as with the port closed)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.times: list[float] = []
        self._stop = threading.Event()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._sock], [], [], 0.1)
            if ready:
                conn, _ = self._sock.accept()
                self.times.append(time.time())
                conn.close()

    def __enter__(self) -> PortStandIn:
        self._sock.bind(("127.0.0.1", self.port))
        self._sock.listen(4096)
        self._thread.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()


def connections_logged(log: Path, since: float) -> list[float]:
    """When the server received each connection (``log_connections``), from ``since`` on."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if "connection received:" not in line:
            continue
        stamp = " ".join(line.split()[:3])  # 2026-12-05 01:05:06.353 UTC
        with contextlib.suppress(ValueError):
            at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f %Z").timestamp()
            if at >= since:
                found.append(at)
    return found


def peak_per_second(times: list[float]) -> int:
    return max(per_second(times), default=0)


def per_second(times: list[float]) -> list[int]:
    """Attempts in each second from the first one on."""
    if not times:
        return []
    counts = collections.Counter(int(t - times[0]) for t in times)
    return [counts[s] for s in range(max(counts) + 1)]


class Fleet:
    """The worker processes, each hosting a share of the workers."""

    def __init__(self, dsn: str, prefix: str, logs: Path) -> None:
        self.dsn, self.prefix, self.logs = dsn, prefix, logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHANCY_")}
        env["PYTHONUNBUFFERED"] = "1"
        share, extra = divmod(WORKERS, PROCESSES)
        first = 0
        for n in range(PROCESSES):
            count = share + (1 if n < extra else 0)
            with open(self.logs / f"p{n}.log", "wb") as out:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "tests.fleet.storm_worker", self.dsn,
                         self.prefix, str(first), str(count)],
                        cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                    )
                )  # fmt: skip
            first += count

    def output(self) -> str:
        return "\n".join(
            (self.logs / f"p{n}.log").read_text(errors="replace") for n in range(len(self.procs))
        )

    def ready(self) -> int:
        died = [p.returncode for p in self.procs if p.poll() is not None]
        if died:
            pytest.fail(f"a worker process exited ({died}):\n{self.output()[-5000:]}")
        return sum(line.startswith("ready w") for line in self.output().splitlines())

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def app_for(dsn: str, prefix: str) -> Chancy:
    return Chancy(
        dsn,
        prefix=prefix,
        no_default_plugins=True,
        min_connection_pool_size=1,
        max_connection_pool_size=2,
    )


async def push_one_each(app: Chancy) -> list[object]:
    return [
        await app.push(Job.from_func(echo, queue=f"q{i}", kwargs={"n": i})) for i in range(WORKERS)
    ]


async def all_served(app: Chancy, refs: list[object]) -> bool:
    jobs = await app.get_jobs(refs)  # type: ignore[arg-type]
    return len(jobs) == WORKERS and all(str(j.state) == "succeeded" for j in jobs)


async def test_a_fleet_reconnects_after_a_restart_without_a_stampede(tmp_path: Path) -> None:
    if find_pg_bin() is None:
        pytest.skip("no PostgreSQL server binaries for a throwaway cluster")
    settings = {
        "max_connections": str(WORKERS * 4 + 20),
        "log_connections": "on",
        "log_line_prefix": "'%m '",
        "log_timezone": "UTC",
    }
    prefix = new_prefix()
    with Cluster(settings) as cluster:
        async with Chancy(cluster.dsn, prefix=prefix, max_connection_pool_size=2) as full:
            await full.migrate()  # the default plugins' lines too
        async with app_for(cluster.dsn, prefix) as app:
            for i in range(WORKERS):
                await app.declare(
                    Queue(f"q{i}", executor=Chancy.Executor.Async, tags={f"^worker_id=w{i}$"},
                          polling_interval=1)
                )  # fmt: skip
            fleet = Fleet(cluster.dsn, prefix, tmp_path)
            fleet.start()
            try:
                await eventually(
                    lambda: fleet.ready() == WORKERS,
                    timeout=60 + WORKERS,
                    interval=0.2,
                    message=f"{WORKERS} workers started",
                )
                refs = await push_one_each(app)
                await eventually(lambda: all_served(app, refs), timeout=60, interval=0.2)
                await app.close()

                # The outage: an immediate stop (a crash, no goodbye to the clients).
                cluster.stop("immediate")
                down_at = time.time()
                with PortStandIn(cluster.port) as stand_in:
                    # The outage lasts a set time (what is measured happens meanwhile).
                    await asyncio.sleep(OUTAGE)
                cluster.start()
                up_at = time.time()

                # A fresh app (its own pool, no backoff) pushes one job per worker.
                async with app_for(cluster.dsn, prefix) as after:
                    refs = await push_one_each(after)
                    pushed_at = time.time()
                    await eventually(
                        lambda: all_served(after, refs),
                        timeout=SERVE_WITHIN,
                        interval=0.1,
                        message=f"every worker served a job within {SERVE_WITHIN}s",
                    )
                    served_at = time.time()
                    jobs = await after.get_jobs(refs)  # type: ignore[arg-type]
                assert sorted(j.taken_by or "" for j in jobs) == sorted(
                    f"w{i}" for i in range(WORKERS)
                )
                assert fleet.ready() == WORKERS
                assert "exited w" not in fleet.output()
            finally:
                fleet.stop()
        during = stand_in.times
        after_restart = connections_logged(cluster.log, up_at - 1)
    delays = sorted(j.completed_at.timestamp() - up_at for j in jobs if j.completed_at)
    figures = (
        f"\n{WORKERS} workers in {PROCESSES} processes, {OUTAGE:g}s outage:"
        f" attempts during the outage {len(during)} (peak {peak_per_second(during)}/s,"
        f" {len(during) / max(0.001, up_at - down_at):.1f}/s on average);"
        f" connections after the restart {len(after_restart)}"
        f" (peak {peak_per_second(after_restart)}/s);"
        f" jobs pushed {pushed_at - up_at:.1f}s after the restart;"
        f" every worker served again {served_at - up_at:.1f}s after the restart"
        f" (jobs done after p50 {delays[len(delays) // 2]:.1f}s,"
        f" p90 {delays[len(delays) * 9 // 10]:.1f}s, max {delays[-1]:.1f}s)"
    )
    print(figures)
    print(f"per second, outage: {per_second(during)}; after: {per_second(sorted(after_restart))}")
    # Past the first seconds (every connection found broken at once), the fleet backs off:
    # 3 connections per worker, each tried every 2.5 s on average, so about 1.2 attempts per
    # worker per second; a retry loop without backoff would make hundreds.
    steady = per_second(during)[2:]
    assert steady and sum(steady) / len(steady) <= 3 * WORKERS, per_second(during)
    assert "exited" not in fleet.output()
