"""Soak: a steady stream of jobs for a long time; memory and table size must level off.

Two worker processes (with the Pruner, deleting finished jobs older than ``PRUNE_AFTER``
seconds) serve a queue fed at a steady rate; autovacuum (naptime 2 s on the throwaway
server) reclaims the deleted rows. Every few seconds the test samples each worker's
resident memory and the jobs table's size (heap and indexes, and its dead rows). After the
warm-up (the first third of the run) neither may keep growing: the workers' memory stays
within 20% (plus 16 MiB) of its warm-up peak, and the table within twice its warm-up peak.

CI runs a short soak (60 s). The one-hour run::

    CHANCY_SOAK_SECONDS=3600 CHANCY_SOAK_RATE=200 \\
        .venv/bin/pytest tests/reliability/test_soak.py -s --timeout=0
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chancy import Chancy, Job, Queue
from tests.cluster import Cluster, find_pg_bin
from tests.reliability.chaos_worker import PRUNE_ENV
from tests.reliability.harness import small_app, spawn_worker, worker_env

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).parent / "out"
SECONDS = float(os.environ.get("CHANCY_SOAK_SECONDS", "60"))
RATE = int(os.environ.get("CHANCY_SOAK_RATE", "200"))
PRUNE_AFTER = 10
SAMPLE = max(2.0, SECONDS / 60)
PREFIX = "soak_"
MIB = 1024 * 1024

pytestmark = [pytest.mark.slow, pytest.mark.timeout(int(SECONDS * 2 + 180))]


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    if find_pg_bin() is None:
        pytest.skip("no PostgreSQL server binaries (Debian's postgresql package) on this machine")
    # Autovacuum reclaims what the Pruner deletes. Its default one-minute nap is shorter than
    # the hour-long soak but not than the CI run, so the throwaway server naps 2 s instead.
    with Cluster({"autovacuum_naptime": "2", "autovacuum_vacuum_scale_factor": "0.05"}) as running:
        yield running


def rss(pid: int) -> int:
    """Resident memory of a process and its children (the process executor's), in bytes."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


async def test_memory_and_table_size_level_off(cluster: Cluster, tmp_path: Path) -> None:
    app = small_app(cluster.dsn, PREFIX)
    samples: list[dict[str, float]] = []
    async with app:
        await app.migrate()
        await app.declare(Queue("soak", executor=Chancy.Executor.Async, concurrency=50))
        env = worker_env(cluster.dsn, PREFIX, **{PRUNE_ENV: str(PRUNE_AFTER)})
        procs = [spawn_worker(f"s{i}", env, tmp_path / f"s{i}.log") for i in range(2)]
        try:
            job = Job(func="tests.reliability.chaos_jobs.work", queue="soak", kwargs={"ms": 5})
            start = time.monotonic()
            next_sample = start + SAMPLE
            tick = start
            pushed = 0
            while time.monotonic() - start < SECONDS:
                async for refs in app.push_many([job] * max(1, RATE // 10)):
                    pushed += len(refs)
                if time.monotonic() >= next_sample:
                    next_sample += SAMPLE
                    async with app.pool.connection() as conn:
                        row = await (
                            await conn.execute(
                                "SELECT pg_total_relation_size(%s::regclass),"
                                " n_live_tup, n_dead_tup FROM pg_stat_user_tables"
                                " WHERE relid = %s::regclass",
                                (f"{PREFIX}jobs", f"{PREFIX}jobs"),
                            )
                        ).fetchone()
                    assert row is not None
                    samples.append(
                        {
                            "t": round(time.monotonic() - start, 1),
                            "rss": sum(rss(p.pid) for p in procs),
                            "table": row[0],
                            "live": row[1],
                            "dead": row[2],
                        }
                    )
                    for p in procs:
                        assert p.poll() is None, (tmp_path / "s0.log").read_text()
                tick += 0.1
                await asyncio.sleep(max(0.0, tick - time.monotonic()))
            async with app.pool.connection() as conn:
                row = await (
                    await conn.execute(
                        f"SELECT count(*) FROM {PREFIX}jobs WHERE state = 'failed'"  # type: ignore[arg-type]
                    )
                ).fetchone()
            failed = row[0] if row else -1
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
    warm = max(2, len(samples) // 3)
    assert len(samples) >= 6, samples
    warm_rss = max(s["rss"] for s in samples[:warm])
    warm_table = max(s["table"] for s in samples[:warm])
    late_rss = max(s["rss"] for s in samples[warm:])
    late_table = max(s["table"] for s in samples[warm:])
    report = {
        "seconds": SECONDS,
        "rate": RATE,
        "pushed": pushed,
        "warm_rss_mib": round(warm_rss / MIB, 1),
        "late_rss_mib": round(late_rss / MIB, 1),
        "warm_table_mib": round(warm_table / MIB, 2),
        "late_table_mib": round(late_table / MIB, 2),
        "last": samples[-1],
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "soak.json").write_text(json.dumps({**report, "samples": samples}, indent=1))
    print(f"\nsoak: {json.dumps(report)}")
    assert late_rss <= warm_rss * 1.2 + 16 * MIB, report
    assert failed == 0, f"{failed} jobs failed during the soak"
    assert late_table <= warm_table * 2, report
