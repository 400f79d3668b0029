"""Pruner: only finished jobs matching the rule, bounded per pass, fenced; then cleanups."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from chancy import Chancy, Job, Queue, QueuedJob, Reference, Worker
from chancy.errors import ConfigurationError
from chancy.executors.base import Outcome
from chancy.plugin import Plugin
from chancy.plugins.leadership import ImmediateLeadership
from chancy.plugins.pruner import Pruner
from tests.conftest import eventually

R = Pruner.Rules


def J(queue: str) -> Job:
    return Job(func="tests.plugins.jobs.noop", queue=queue)


async def push(chancy: Chancy, queue: str, n: int) -> list[Reference]:
    return [r async for b in chancy.push_many(J(queue) for _ in range(n)) for r in b]


async def finish(chancy: Chancy, queue: str, n: int, state: QueuedJob.State) -> list[QueuedJob]:
    """Claim ``n`` jobs of ``queue`` and write an outcome in ``state`` for each."""
    jobs = await chancy.db.run(chancy.store.job_fetch(queue, n, "w"))
    outcomes = [Outcome(dataclasses.replace(j, state=state, attempts=j.attempts + 1)) for j in jobs]
    await chancy.db.run(chancy.store.job_complete_many(outcomes, notify=False))
    return jobs


async def states(chancy: Chancy, refs: list[Reference]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job in await chancy.get_jobs(refs):
        counts[str(job.state)] = counts.get(str(job.state), 0) + 1
    return counts


async def prune(chancy: Chancy, pruner: Pruner, lease: dict[str, Any] | None = None) -> int:
    pool = await chancy.open()
    async with pool.connection() as conn, conn.cursor() as cur:
        return await pruner.prune(chancy, cur, lease=lease)


async def test_only_finished_jobs_matching_the_rule_are_deleted(chancy: Chancy) -> None:
    for name in ("p", "keep"):
        await chancy.declare(Queue(name, tags={"^nobody$"}))
    refs = await push(chancy, "p", 10)
    others = await push(chancy, "keep", 2)
    await finish(chancy, "p", 3, QueuedJob.State.SUCCEEDED)
    await finish(chancy, "p", 2, QueuedJob.State.FAILED)
    await finish(chancy, "p", 1, QueuedJob.State.RETRYING)
    await chancy.db.run(chancy.store.job_fetch("p", 1, "w"))  # one stays running
    await finish(chancy, "keep", 2, QueuedJob.State.SUCCEEDED)
    assert await states(chancy, refs) == {
        "succeeded": 3,
        "failed": 2,
        "retrying": 1,
        "running": 1,
        "pending": 3,
    }

    # Finished a moment ago: an age rule of an hour keeps them.
    assert await prune(chancy, Pruner(rule=(R.Queue() == "p") & (R.Age() > 3600))) == 0
    # Every job of the queue matches this rule, but only finished ones are ever deleted.
    assert await prune(chancy, Pruner(rule=(R.Queue() == "p") | (R.Priority() > 99))) == 5
    assert await states(chancy, refs) == {"retrying": 1, "running": 1, "pending": 3}
    assert await states(chancy, others) == {"succeeded": 2}


async def test_a_pass_is_bounded_and_batched(chancy: Chancy) -> None:
    await chancy.declare(Queue("p", tags={"^nobody$"}))
    refs = await push(chancy, "p", 25)
    await finish(chancy, "p", 25, QueuedJob.State.SUCCEEDED)
    pruner = Pruner(rule=R.Queue() == "p", maximum_to_prune=10, batch_size=3)
    assert [await prune(chancy, pruner) for _ in range(4)] == [10, 10, 5, 0]
    assert await chancy.get_jobs(refs) == []


async def test_pruning_is_fenced_by_the_leaders_lease(chancy: Chancy) -> None:
    await chancy.declare(Queue("p", tags={"^nobody$"}))
    refs = await push(chancy, "p", 3)
    await finish(chancy, "p", 3, QueuedJob.State.SUCCEEDED)
    pruner = Pruner(rule=R.Queue() == "p")
    stale = {"leader": "someone", "term": 4, "fenced": True}
    assert await prune(chancy, pruner, stale) == 0
    assert len(await chancy.get_jobs(refs)) == 3


def test_bad_settings_fail_at_configuration() -> None:
    with pytest.raises(ConfigurationError):
        Pruner(rule=R.Queue())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="maximum_to_prune"):
        Pruner(maximum_to_prune=0)
    assert Pruner.Rules is R
    default = Pruner()
    assert (default.maximum_to_prune, default.poll_interval) == (10000, 60)


class Tidy(Plugin):
    """A plugin with a cleanup, which the pruner must call after each pass."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    @classmethod
    def get_identifier(cls) -> str:
        return "tests.tidy"

    async def cleanup(self, chancy: Chancy) -> int | None:
        self.calls += 1
        return 0


async def test_the_leaders_pruner_deletes_jobs_then_calls_cleanups(
    chancy: Chancy, make_app: Any
) -> None:
    await chancy.declare(Queue("p", tags={"^nobody$"}))
    await chancy.declare(Queue("default", tags={"^nobody$"}))
    refs = await push(chancy, "p", 4)
    await finish(chancy, "p", 4, QueuedJob.State.SUCCEEDED)
    tidy = Tidy()
    app = make_app(ImmediateLeadership(), Pruner(rule=R.Queue() == "p", poll_interval=0.1), tidy)
    async with Worker(app, register_signal_handlers=False):

        async def pruned() -> bool:
            return await chancy.get_jobs(refs) == [] and tidy.calls >= 1

        await eventually(pruned, timeout=10, message="jobs pruned and cleanup called")
