"""``primed``: a plan's work before its first statement, done when it is primed."""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row

from chancy import Chancy, Job
from chancy.store import Plan, Spec, run
from chancy.store.runner import primed


def _counting(steps: list[str], values: list[int]) -> Plan[list[Any]]:
    steps.append("built")
    got = []
    for v in values:
        row = yield Spec("SELECT %(v)s::int AS v", {"v": v}, fetch="one")
        got.append(row["v"])
    steps.append("done")
    return got


async def test_a_primed_plan_builds_its_first_statement_at_once_and_runs_the_same(
    chancy: Chancy,
) -> None:
    steps: list[str] = []
    plan = primed(_counting(steps, [1, 2, 3]))
    assert steps == ["built"]  # before any connection ran it
    async with chancy.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        assert await run(cur, plan) == [1, 2, 3]
    assert steps == ["built", "done"]


async def test_a_primed_plan_without_statements_returns_its_value(chancy: Chancy) -> None:
    steps: list[str] = []
    plan = primed(_counting(steps, []))
    assert steps == ["built", "done"]
    async with chancy.pool.connection() as conn, conn.cursor() as cur:
        assert await run(cur, plan) == []


async def test_push_many_batches_written_from_primed_plans_store_every_job(
    chancy: Chancy,
) -> None:
    """Batches after the first are encoded and primed while the one before is written."""
    jobs = [Job(func="tests.jobs.noop", kwargs={"i": i}, unique_key=f"u{i}") for i in range(1500)]
    refs = [r async for batch in chancy.push_many(jobs, batch_size=500) for r in batch]
    got = await chancy.get_jobs(refs)
    assert [j.kwargs["i"] for j in got] == list(range(1500))
