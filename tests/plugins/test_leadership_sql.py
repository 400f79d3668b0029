"""The lease statements of leader.sql and the fence of leader-only writes, at the SQL level."""

from __future__ import annotations

from typing import Any

import pytest

from chancy import Chancy, Job, Queue
from chancy.plugins.leadership import ImmediateLeadership, Leadership, lease_params
from chancy.plugins.recovery import Recovery
from chancy.store import Spec
from chancy.store.loader import queries
from tests.conftest import eventually
from tests.plugins.conftest import lease_row


async def q(chancy: Chancy, name: str, **params: Any) -> Any:
    return await chancy.db.run(
        Spec(queries("chancy.plugins.sql", chancy.prefix)[name], params, "one")
    )


async def elect(chancy: Chancy, worker_id: str, timeout: float = 60, key: int | None = None) -> Any:
    return await q(
        chancy, "leader_elect", worker_id=worker_id, timeout=timeout, liveness_key=key, grace=2.0
    )


async def renew(chancy: Chancy, worker_id: str, term: int, timeout: float = 60) -> Any:
    return await q(
        chancy,
        "leader_renew",
        worker_id=worker_id,
        term=term,
        timeout=timeout,
        liveness_key=None,
        notify=False,
    )


async def lease(chancy: Chancy) -> Any:
    return await lease_row(chancy)


async def test_election_takes_a_free_lease_and_reports_the_holder(chancy: Chancy) -> None:
    first = await elect(chancy, "a")
    assert first["term"] == 1
    second = await elect(chancy, "b")
    assert second["term"] is None
    assert second["holder"] == "a"
    assert 55 < second["remaining"] <= 60
    row = await lease(chancy)
    assert (row["worker_id"], row["term"], row["live"]) == ("a", 1, True)


async def test_a_former_leader_whose_lease_was_taken_cannot_renew_it(chancy: Chancy) -> None:
    a = await elect(chancy, "a", timeout=0.3)
    assert a["term"] == 1
    assert await renew(chancy, "a", 1, timeout=0.3) is not None
    # A stops renewing (paused, partitioned); its lease runs out in database time.
    await eventually(lambda: _not_live(chancy), timeout=5, message="lease expires")
    b = await elect(chancy, "b")
    assert b["term"] == 2
    # A comes back: neither its renewal nor an election goes through while B's lease is live.
    assert await renew(chancy, "a", 1) is None
    assert await renew(chancy, "a", 1, timeout=0.3) is None
    assert (await elect(chancy, "a"))["term"] is None
    # Not even with B's term: the worker must match too.
    assert await renew(chancy, "a", 2) is None
    row = await lease(chancy)
    assert (row["worker_id"], row["term"]) == ("b", 2)
    # B renews normally.
    assert (await renew(chancy, "b", 2))["term"] == 2


async def _not_live(chancy: Chancy) -> bool:
    row = await lease(chancy)
    return row is not None and not row["live"]


async def test_an_expired_lease_cannot_be_renewed_even_by_its_holder(chancy: Chancy) -> None:
    assert (await elect(chancy, "a", timeout=0.2))["term"] == 1
    await eventually(lambda: _not_live(chancy), timeout=5, message="lease expires")
    assert await renew(chancy, "a", 1) is None
    # It has to be elected again, which starts a new term.
    assert (await elect(chancy, "a"))["term"] == 2


async def test_re_election_by_the_holder_starts_a_new_term(chancy: Chancy) -> None:
    assert (await elect(chancy, "a"))["term"] == 1
    assert (await elect(chancy, "a"))["term"] == 2
    assert await renew(chancy, "a", 1) is None
    assert await renew(chancy, "a", 2) is not None


async def test_resignation_expires_only_the_callers_lease_and_keeps_the_term(
    chancy: Chancy,
) -> None:
    assert (await elect(chancy, "a"))["term"] == 1
    assert await q(chancy, "leader_resign", worker_id="b", notify=False) is None
    assert (await lease(chancy))["live"] is True
    resigned = await q(chancy, "leader_resign", worker_id="a", notify=False)
    assert resigned["term"] == 1
    row = await lease(chancy)
    assert (row["worker_id"], row["term"], row["live"]) == ("a", 1, False)
    # Terms only grow: the next leader gets term 2, never a reused 1.
    assert (await elect(chancy, "b"))["term"] == 2


async def test_leader_only_writes_apply_only_under_the_current_lease(chancy: Chancy) -> None:
    """Recovery's statement, fenced: a stale or foreign term changes nothing."""
    await chancy.declare(Queue("f", tags={"^nobody$"}))
    ref = await chancy.push(Job(func="tests.plugins.jobs.noop", queue="f"))
    # Claim it as a worker that never heartbeats, so recovery considers it abandoned.
    claimed = await chancy.db.run(chancy.store.job_fetch("f", 1, "ghost"))
    assert [j.id for j in claimed] == [ref.identifier]
    recovery = Recovery()

    assert (await elect(chancy, "a", timeout=0.3))["term"] == 1
    await eventually(lambda: _not_live(chancy), timeout=5, message="lease expires")
    assert (await elect(chancy, "b"))["term"] == 2

    stale = {"leader": "a", "term": 1, "fenced": True}
    assert await recovery.recover(chancy, lease=stale) == (0, 0)
    foreign = {"leader": "a", "term": 2, "fenced": True}
    assert await recovery.recover(chancy, lease=foreign) == (0, 0)
    not_leading = {"leader": "b", "term": None, "fenced": True}
    assert await recovery.recover(chancy, lease=not_leading) == (0, 0)
    job = await chancy.get_job(ref)
    assert job is not None and job.state == "running"

    current = {"leader": "b", "term": 2, "fenced": True}
    assert await recovery.recover(chancy, lease=current) == (1, 0)
    job = await chancy.get_job(ref)
    assert job is not None and job.state == "pending" and job.claim_id is None


def test_lease_params_fence_unless_leadership_is_immediate(dsn: str, prefix: str) -> None:
    class FakeWorker:
        def __init__(self, chancy: Chancy) -> None:
            self.chancy = chancy
            self.worker_id = "w"
            self.leader_term: int | None = 7

    fenced = Chancy(dsn, prefix=prefix, no_default_plugins=True, plugins=[Leadership()])
    assert lease_params(FakeWorker(fenced)) == {"leader": "w", "term": 7, "fenced": True}  # type: ignore[arg-type]
    immediate = Chancy(dsn, prefix=prefix, no_default_plugins=True, plugins=[ImmediateLeadership()])
    assert lease_params(FakeWorker(immediate))["fenced"] is False  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"poll_interval": 60, "timeout": 60}, "poll_interval must be shorter"),
        ({"poll_interval": 10, "timeout": 10.5}, "poll_interval must be shorter"),
        ({"poll_interval": 0, "timeout": 10}, "positive"),
        ({"poll_interval": 1, "timeout": 10, "trust_margin": 10}, "trust_margin"),
    ],
)
def test_leadership_settings_are_checked(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Leadership(**kwargs)
