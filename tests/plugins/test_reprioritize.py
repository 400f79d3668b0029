"""Reprioritize: waiting jobs matching the rule gain priority, batched and fenced."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from chancy import Chancy, Job, Queue, QueuedJob, Worker
from chancy.errors import ConfigurationError
from chancy.executors.base import Outcome
from chancy.plugins.leadership import ImmediateLeadership
from chancy.plugins.reprioritize import Reprioritize
from tests.conftest import eventually

R = Reprioritize.Rules


def J(queue: str, priority: int = 0) -> Job:
    return Job(func="tests.plugins.jobs.noop", queue=queue, priority=priority)


async def bump(chancy: Chancy, plugin: Reprioritize, lease: dict[str, Any] | None = None) -> int:
    pool = await chancy.open()
    async with pool.connection() as conn, conn.cursor() as cur:
        return await plugin.reprioritize(chancy, cur, lease=lease)


async def priorities(chancy: Chancy, refs: list[Any]) -> list[int]:
    return [j.priority for j in await chancy.get_jobs(refs)]


async def test_only_waiting_jobs_matching_the_rule_gain_priority(chancy: Chancy) -> None:
    for name in ("rp", "other"):
        await chancy.declare(Queue(name, tags={"^nobody$"}))
    waiting = [await chancy.push(J("rp")) for _ in range(5)]
    top = await chancy.push(J("rp", priority=2**31 - 3))
    running = await chancy.push(J("rp", priority=-1))
    other = await chancy.push(J("other"))
    # `top` is claimed first (highest priority) and left retrying; the rest are claimed and
    # all but `running` given back.
    [claimed_top] = await chancy.db.run(chancy.store.job_fetch("rp", 1, "w"))
    assert claimed_top.id == top.identifier
    await chancy.db.run(chancy.store.job_complete_many([_retrying(claimed_top)], notify=False))
    rest = await chancy.db.run(chancy.store.job_fetch("rp", 6, "w"))
    done = [j for j in rest if j.id != running.identifier]
    await chancy.db.run(chancy.store.job_release_many([(j.id, j.claim_id) for j in done]))
    # Now: 5 pending (priority 0), top retrying (near the int max), running (-1), other.

    plugin = Reprioritize(R.Queue() == "rp", priority_increase=5, batch_size=2)
    assert await bump(chancy, plugin) == 6
    assert await priorities(chancy, waiting) == [5] * 5
    assert await priorities(chancy, [top]) == [2**31 - 1]  # clamped, not overflowed
    assert await priorities(chancy, [running, other]) == [-1, 0]
    assert await bump(chancy, plugin) == 6
    assert await priorities(chancy, waiting) == [10] * 5


def _retrying(job: QueuedJob) -> Outcome:
    return Outcome(dataclasses.replace(job, state=QueuedJob.State.RETRYING, attempts=1))


async def test_reprioritizing_is_fenced_by_the_leaders_lease(chancy: Chancy) -> None:
    await chancy.declare(Queue("rp", tags={"^nobody$"}))
    refs = [await chancy.push(J("rp")) for _ in range(3)]
    plugin = Reprioritize(R.Queue() == "rp")
    assert await bump(chancy, plugin, {"leader": "x", "term": 9, "fenced": True}) == 0
    assert await priorities(chancy, refs) == [0, 0, 0]


async def test_the_leader_raises_priorities_every_interval(chancy: Chancy, make_app: Any) -> None:
    await chancy.declare(Queue("default", tags={"^nobody$"}))
    await chancy.declare(Queue("rp", tags={"^nobody$"}))
    ref = await chancy.push(J("rp"))
    young = await chancy.push(J("rp"))
    rule = (R.Queue() == "rp") & (R.ID() == str(ref.identifier))
    app = make_app(ImmediateLeadership(), Reprioritize(rule, check_interval=0.1))
    async with Worker(app, register_signal_handlers=False):

        async def raised_twice() -> bool:
            return (await priorities(chancy, [ref]))[0] >= 2

        await eventually(raised_twice, timeout=10, message="priority raised on each check")
    assert await priorities(chancy, [young]) == [0]


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigurationError):
        Reprioritize(R.Age())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="check_interval"):
        Reprioritize(R.Age() > 1, check_interval=0)
    with pytest.raises(ConfigurationError, match="priority_increase"):
        Reprioritize(R.Age() > 1, priority_increase=1.5)  # type: ignore[arg-type]
    assert Reprioritize.Rules is R
