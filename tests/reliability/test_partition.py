"""A network partition: a worker on its own host is cut off from the database mid-job.

The test makes a network namespace (a host of its own) joined to this one by a veth pair;
a throwaway cluster listens on the veth address. Worker A runs inside the namespace and takes
jobs; once their runs are recorded, the link is cut (the host side of the veth goes down:
packets are dropped, no connection is reset). A's jobs finish during the partition, but their
outcomes cannot be written. Worker B, outside, recovers the jobs when A's heartbeat lease
expires and runs them again. Then the link comes back: A's buffered completions reach the
database and must change nothing. The job rows keep B's outcome, and A's log shows that its
writes were fenced.

Needs root and ``ip netns`` (skipped otherwise).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chancy import Chancy, Job, Queue
from tests.cluster import Cluster, find_pg_bin
from tests.conftest import eventually
from tests.reliability.chaos_jobs import SIDE_TABLE_DDL
from tests.reliability.chaos_worker import TIMEOUT_ENV
from tests.reliability.harness import small_app, spawn_worker, worker_env

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "part_"
JOBS = 6
#: Worker A trusts its lease this long: its jobs finish (and are buffered) inside it.
A_TIMEOUT = 6.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def netns() -> Iterator[dict[str, str]]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("the partition test needs root and iproute2 (ip netns)")
    n = os.getpid() % 200 + 20
    names = {
        "ns": f"chancy-part-{os.getpid()}",
        "host_if": f"chh{os.getpid() % 100000}",
        "ns_if": f"chn{os.getpid() % 100000}",
        "host_ip": f"10.{n}.77.1",
        "ns_ip": f"10.{n}.77.2",
    }
    try:
        _ip("netns", "add", names["ns"])
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create a network namespace here: {exc.stderr!r}")
    try:
        _ip("link", "add", names["host_if"], "type", "veth", "peer", "name", names["ns_if"])
        _ip("link", "set", names["ns_if"], "netns", names["ns"])
        _ip("addr", "add", f"{names['host_ip']}/24", "dev", names["host_if"])
        _ip("link", "set", names["host_if"], "up")
        ns = ["netns", "exec", names["ns"], "ip"]
        _ip(*ns, "addr", "add", f"{names['ns_ip']}/24", "dev", names["ns_if"])
        _ip(*ns, "link", "set", names["ns_if"], "up")
        _ip(*ns, "link", "set", "lo", "up")
        yield names
    finally:
        subprocess.run(["ip", "link", "del", names["host_if"]], capture_output=True)
        subprocess.run(["ip", "netns", "del", names["ns"]], capture_output=True)


@pytest.fixture
def cluster(netns: dict[str, str]) -> Iterator[Cluster]:
    if find_pg_bin() is None:
        pytest.skip("no PostgreSQL server binaries (Debian's postgresql package) on this machine")
    with Cluster(listen=(netns["host_ip"],)) as running:
        yield running


def _worker(
    worker_id: str, dsn: str, log: Path, wrapper: list[str], timeout: float
) -> subprocess.Popen[bytes]:
    return spawn_worker(
        worker_id, worker_env(dsn, PREFIX, **{TIMEOUT_ENV: str(timeout)}), log, wrapper
    )


async def test_a_cut_off_worker_loses_its_jobs_and_its_late_writes_are_fenced(
    netns: dict[str, str], cluster: Cluster, tmp_path: Path
) -> None:
    app = small_app(cluster.dsn, PREFIX)
    logs = {"A": tmp_path / "a.log", "B": tmp_path / "b.log"}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        async with app:
            await app.migrate()
            async with app.pool.connection() as conn:
                await conn.execute(SIDE_TABLE_DDL.format(prefix=PREFIX))  # type: ignore[arg-type]
            await app.declare(Queue("io", executor=Chancy.Executor.Async, concurrency=20))
            procs["A"] = _worker(
                "A",
                cluster.dsn_at(netns["host_ip"]),
                logs["A"],
                ["ip", "netns", "exec", netns["ns"]],
                A_TIMEOUT,
            )

            async def a_serves() -> bool:
                assert procs["A"].poll() is None, logs["A"].read_text()
                return "ready A" in logs["A"].read_text()

            await eventually(a_serves, timeout=60)
            refs = [
                await app.push(
                    Job(
                        func="tests.reliability.chaos_jobs.partitioned",
                        queue="io",
                        kwargs={"seconds": 1.5},
                    )
                )
                for _ in range(JOBS)
            ]

            async def runs() -> list[tuple[str, str]]:
                async with app.pool.connection() as conn:
                    rows = await (
                        await conn.execute(
                            f"SELECT job_id::text, worker FROM {PREFIX}chaos_runs ORDER BY seq"  # type: ignore[arg-type]
                        )
                    ).fetchall()
                return [(r[0], r[1]) for r in rows]

            await eventually(lambda: _count(runs, "A", JOBS), timeout=30)
            # Cut A off while its jobs run: they finish inside the partition.
            _ip("link", "set", netns["host_if"], "down")
            cut = time.monotonic()
            procs["B"] = _worker("B", cluster.dsn, logs["B"], [], 2.0)
            # B recovers A's jobs once A's lease expires, and runs them.
            done = await app.wait_for_jobs(refs, timeout=90, interval=0.5)
            assert {str(j.state) for j in done} == {"succeeded"}
            assert {j.taken_by for j in done} == {"B"}
            results = {str(j.id): j.result for j in done}
            assert all(r is not None and r["worker"] == "B" for r in results.values())
            partition = time.monotonic() - cut
            # Both runs of every job are on record: A's (cut off) and B's.
            recorded = await runs()
            for ref in refs:
                assert sorted(w for j, w in recorded if j == str(ref.identifier)) == ["A", "B"]

            # The link comes back: A's late completions arrive and are fenced.
            _ip("link", "set", netns["host_if"], "up")

            async def fenced() -> bool:
                return "were not written because the job is no longer running" in logs[
                    "A"
                ].read_text(errors="replace")

            await eventually(fenced, timeout=120, interval=0.5)
            after = await app.get_jobs(refs)
            assert {str(j.state) for j in after} == {"succeeded"}
            assert {j.taken_by for j in after} == {"B"}
            assert {str(j.id): j.result for j in after} == results
            assert all(j.attempts == 1 for j in after)
            fenced_line = next(
                line
                for line in logs["A"].read_text(errors="replace").splitlines()
                if "were not written" in line
            )
            assert any(str(ref.identifier) in fenced_line for ref in refs), fenced_line
            print(f"\npartition lasted {partition:.1f}s; A's late writes: {fenced_line}")
            # Workers first: their statements and the migration's DDL take the same tables'
            # locks in opposite orders (CI once saw the server break that deadlock).
            _stop(procs)
            await app.migrate(to_version=0)
    finally:
        _stop(procs)
        for name, path in logs.items():
            if path.exists():
                print(f"----- worker {name} -----\n{path.read_text(errors='replace')[-4000:]}")


def _stop(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)


async def _count(runs: object, worker: str, n: int) -> bool:
    rows = await runs()  # type: ignore[operator]
    return sum(1 for _, w in rows if w == worker) >= n
