"""What a batch costs: a fixed number of statements however many jobs, and (slow, printed, not
asserted) the time of pushing and recording 100,000 jobs against a plain push_many."""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

import pytest

from chancy import Chancy
from chancy.plugins.batch import Batch, BatchPlugin
from chancy.store import Spec
from tests.batch.conftest import J, callback_jobs, sql


def counting(plan: Generator[Spec[Any], Any, Any], seen: list[Spec[Any]]) -> Any:
    """``plan``, recording every statement it runs."""
    try:
        spec = next(plan)
        while True:
            seen.append(spec)
            spec = plan.send((yield spec))
    except StopIteration as stop:
        return stop.value


async def test_a_push_costs_a_fixed_number_of_statements(app: Chancy) -> None:
    for size in (1, 25_000):
        seen: list[Spec[Any]] = []
        plan = Batch._push_plan(app, [J("ok")] * size, None, None, J("callback", queue="cb"))
        batch_id = await app.db.run(counting(plan, seen), transaction=True)
        assert (await Batch.get(app, batch_id)).total == size
        # The batch row, the jobs (a COPY per 10,000 keyless jobs, with its preparation and
        # one NOTIFY per queue), the membership: statements grow with chunks, never with jobs.
        assert len(seen) <= 3 + 3 * (size // 10_000 + 1), [s.fetch for s in seen]


@pytest.mark.slow
async def test_timing_of_a_100k_job_batch(app: Chancy, plugin: BatchPlugin) -> None:
    n = 100_000
    jobs = [J("ok", kwargs={"i": i}) for i in range(n)]

    started = time.perf_counter()
    async for _ in app.push_many(jobs, batch_size=10_000):
        pass
    plain = time.perf_counter() - started
    await sql(app, f"TRUNCATE {app.prefix}jobs", fetch="none")

    started = time.perf_counter()
    batch_id = await Batch.push(app, jobs, on_finish=J("callback", queue="cb"))
    batched = time.perf_counter() - started
    assert (await Batch.get(app, batch_id)).total == n

    started = time.perf_counter()
    status = await Batch.get(app, batch_id)
    read_open = time.perf_counter() - started
    assert status.counts["pending"] == n

    await sql(
        app,
        f"UPDATE {app.prefix}jobs SET state = 'succeeded', completed_at = now()",
        fetch="none",
    )
    started = time.perf_counter()
    assert not await plugin.process(app)
    recorded = time.perf_counter() - started
    assert len(await callback_jobs(app)) == 1
    started = time.perf_counter()
    status = await Batch.get(app, batch_id)
    read_closed = time.perf_counter() - started
    assert status.callbacks_pushed and status.succeeded == n

    per_job = (batched - plain) / n * 1e6
    print(
        f"\n{n} jobs: push_many {plain:.2f}s, Batch.push {batched:.2f}s"
        f" (+{per_job:.1f} us/job for membership); recording every outcome and closing"
        f" {recorded:.2f}s ({recorded / n * 1e6:.1f} us/job, full pass);"
        f" Batch.get open {read_open * 1e3:.0f} ms, closed {read_closed * 1e3:.1f} ms"
    )
