"""Leadership across real worker processes: starts, graceful stops and SIGKILLs."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import pytest

from chancy import Chancy
from tests.conftest import eventually
from tests.plugins.conftest import LEADERSHIP, Fleet, Proc, lease_row

TIMEOUT = LEADERSHIP["timeout"]
MARGIN = min(5.0, TIMEOUT / 10)  # Leadership's default trust margin


class Sampler:
    """Reads the lease (and who the workers table says leads) as fast as it can."""

    def __init__(self, chancy: Chancy) -> None:
        self.chancy = chancy
        self.samples: list[dict[str, Any]] = []
        self.done = asyncio.Event()

    async def run(self, at_least: int) -> None:
        while not (self.done.is_set() and len(self.samples) >= at_least):
            row = await lease_row(self.chancy)
            workers = await self.chancy.get_all_workers()
            self.samples.append(
                {
                    "at": time.monotonic(),
                    "worker": row["worker_id"] if row else None,
                    "term": row["term"] if row else None,
                    "live": bool(row and row["live"]),
                    "leaders": [w["worker_id"] for w in workers if w["is_leader"]],
                }
            )
            await asyncio.sleep(0.002)

    def live_leader(self) -> Any:
        return self.samples[-1] if self.samples and self.samples[-1]["live"] else None


async def new_leader(chancy: Chancy, *, other_than: set[str], timeout: float) -> dict[str, Any]:
    async def check() -> Any:
        row = await lease_row(chancy)
        if row and row["live"] and row["worker_id"] not in other_than:
            return row
        return None

    return await eventually(check, timeout=timeout, interval=0.005, message="a new leader")


async def reported_at(proc: Proc, kind: str, term: int) -> float:
    """When ``proc`` reported ``kind`` ("gained": just after the election; "lost": here, the
    resignation) for ``term``."""

    def find() -> float | None:
        for e in proc.events():
            if e["e"] == kind and e["term"] == term:
                return float(e["mono"])
        return None

    return await eventually(find, timeout=5, message=f"{proc.worker_id} {kind} term {term}")


async def gained_at(proc: Proc, term: int) -> float:
    return await reported_at(proc, "gained", term)


def tenures(procs: list[Proc]) -> list[tuple[float, float, str, int]]:
    """(start, end, worker, term) of every period a worker process reported is_leader."""
    out = []
    for p in procs:
        start: tuple[float, int] | None = None
        for e in p.events():
            if e["e"] == "gained":
                assert start is None, f"{p.worker_id} gained twice without losing: {p.events()}"
                start = (float(e["mono"]), int(e["term"]))
            elif e["e"] == "lost":
                assert start is not None and int(e["term"]) == start[1]
                out.append((start[0], float(e["mono"]), p.worker_id, start[1]))
                start = None
        if start is not None:
            assert p.killed_at is not None, f"{p.worker_id} exited while leading: {p.events()}"
            out.append((start[0], p.killed_at, p.worker_id, start[1]))
    return sorted(out)


@pytest.mark.slow
async def test_never_two_leaders_and_fast_failover(chancy: Chancy, fleet: Fleet) -> None:
    sampler = Sampler(chancy)
    sampling = asyncio.create_task(sampler.run(at_least=1000))
    figures: dict[str, float] = {}
    try:
        procs = [fleet.start(name) for name in ("a", "b", "c")]
        first = await new_leader(chancy, other_than=set(), timeout=30)
        await eventually(lambda: all(p.started() for p in procs), timeout=30)

        # 1. The leader is SIGKILLed: a follower takes over once its lease runs out.
        leader = fleet.by_worker(first["worker_id"])
        killed = leader.kill()
        second = await new_leader(chancy, other_than={leader.worker_id}, timeout=TIMEOUT + 3)
        figures["sigkill_failover"] = (
            await gained_at(fleet.by_worker(second["worker_id"]), second["term"]) - killed
        )
        assert second["term"] == first["term"] + 1

        # 2. A replacement process joins; a follower is SIGKILLed (the leader is unaffected).
        procs.append(fleet.start("d"))
        await eventually(procs[-1].started, timeout=30)
        follower = next(p for p in procs if p.alive() and p.worker_id != second["worker_id"])
        follower.kill()

        # 3. The leader stops gracefully (SIGTERM): it resigns and a follower takes over.
        leader = fleet.by_worker(second["worker_id"])
        stopped = time.monotonic()
        leader.signal(signal.SIGTERM)
        third = await new_leader(chancy, other_than={leader.worker_id}, timeout=5)
        gained = await gained_at(fleet.by_worker(third["worker_id"]), third["term"])
        figures["graceful_failover"] = gained - stopped
        # The handover itself (the old leader resigned, a follower holds the lease) takes
        # well under a second; signal delivery and the start of the stop before the
        # resignation are the process's, and take longer on a loaded machine.
        figures["graceful_handover"] = gained - await reported_at(leader, "lost", second["term"])
        assert figures["graceful_handover"] < 1.0, figures
        assert figures["graceful_failover"] < 5.0, figures
        await eventually(lambda: not leader.alive(), timeout=15, message="graceful exit")
        assert leader.popen.returncode == 0

        # 4. Two more workers join, then the leader is SIGKILLed again.
        procs += [fleet.start("e"), fleet.start("f")]
        await eventually(lambda: procs[-1].started() and procs[-2].started(), timeout=30)
        leader = fleet.by_worker(third["worker_id"])
        killed = leader.kill()
        fourth = await new_leader(chancy, other_than={leader.worker_id}, timeout=TIMEOUT + 3)
        figures["sigkill_failover_2"] = (
            await gained_at(fleet.by_worker(fourth["worker_id"]), fourth["term"]) - killed
        )

        # 5. Everyone left stops gracefully.
        for p in procs:
            p.signal(signal.SIGTERM)
        for p in procs:
            await eventually(lambda p=p: not p.alive(), timeout=15, message="graceful exit")
    finally:
        sampler.done.set()
        await asyncio.wait_for(sampling, 60)
    print("failover figures:", figures, "samples:", len(sampler.samples))

    # A SIGKILLed leader is replaced within its lease timeout (plus scheduling slack).
    for key in ("sigkill_failover", "sigkill_failover_2"):
        assert figures[key] < TIMEOUT + 0.5, figures

    # The lease table never shows two leaders: one holder per term, terms never go back, and
    # the workers table never names two leaders at once.
    samples = sampler.samples
    assert len(samples) >= 1000
    holders: dict[int, set[str]] = {}
    for s in samples:
        if s["term"] is not None:
            holders.setdefault(s["term"], set()).add(s["worker"])
        assert len(s["leaders"]) <= 1, s
    assert all(len(h) == 1 for h in holders.values()), holders
    terms = [s["term"] for s in samples if s["term"] is not None]
    assert terms == sorted(terms)
    assert len(holders) >= 4

    # From the workers' side: the periods in which each process reported is_leader (by the
    # machine-wide monotonic clock) never overlap, so no two live workers led at once.
    periods = tenures(fleet.procs)
    assert len(periods) >= 4
    latest_end, latest = periods[0][1], periods[0]
    worst = float("-inf")
    for period in periods[1:]:
        start, end, _worker, term = period
        overlap = latest_end - start
        worst = max(worst, overlap)
        assert overlap < MARGIN, f"{latest} and {period} overlap by {overlap:.3f}s"
        assert term > latest[3]
        if end > latest_end:
            latest_end, latest = end, period
    print("largest overlap of leadership periods (negative: a gap):", worst)
