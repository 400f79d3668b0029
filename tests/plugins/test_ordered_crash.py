"""Strict order per key across a SIGKILLed worker, with real worker processes.

The first job of key ``a`` blocks on its first run; its worker is killed while it runs. The
key must wait (its later jobs stay unstarted while the dead worker's job is running), other
keys must flow, and once Recovery gives the job back it runs first, then the rest of the key,
in push order, one at a time.
"""

from __future__ import annotations

import itertools

from chancy import Chancy, Job, Queue
from tests.conftest import eventually
from tests.plugins.conftest import Fleet

ASYNC = Chancy.Executor.Async


def J(func: str, key: str, **kw: object) -> Job:
    return Job(func=f"tests.plugins.jobs.{func}", queue="ord", **kw).with_partition_key(key)  # type: ignore[arg-type]


async def test_a_killed_workers_key_waits_for_recovery_then_runs_in_order(
    chancy: Chancy, fleet: Fleet
) -> None:
    await chancy.declare(
        Queue(
            "ord",
            executor=ASYNC,
            concurrency=10,
            tags={"role=o"},
            polling_interval=1,
            partition_ordered=True,
        )
    )
    doomed = fleet.start("doomed", tags=("role=o",))
    await eventually(doomed.started, timeout=30, message="the first worker started")
    a = [await chancy.push(J("first_run_waits", "a", kwargs={"seconds": 120}))]
    # Higher priorities on the later jobs: they must still wait for the key's first.
    a += [await chancy.push(J("noop", "a", priority=10 + i)) for i in range(4)]
    b = [await chancy.push(J("noop", "b")) for _ in range(5)]

    async def first_running_elsewhere_done() -> bool:
        first = await chancy.get_job(a[0])
        others = await chancy.get_jobs(b)
        return (
            first is not None
            and first.state == "running"
            and all(j.state == "succeeded" for j in others)
        )

    await eventually(first_running_elsewhere_done, timeout=30, message="a0 runs, b finished")
    assert all(j.state == "pending" for j in await chancy.get_jobs(a[1:])), "key a was held"
    doomed.kill()
    survivor = fleet.start("survivor", tags=("role=o",))
    done = await chancy.wait_for_jobs(a, timeout=60)
    by_id = {j.id: j for j in done}
    runs = [by_id[ref.identifier] for ref in a]
    assert [j.state for j in runs] == ["succeeded"] * 5
    assert runs[0].result == "rerun" and runs[0].recoveries == 1
    assert all(j.taken_by == survivor.worker_id for j in runs)
    for before, after in itertools.pairwise(runs):
        assert before.completed_at is not None and after.started_at is not None
        assert after.started_at >= before.completed_at, (before, after)
