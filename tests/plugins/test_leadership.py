"""Leadership in one process: the trust window, and ImmediateLeadership."""

from __future__ import annotations

from typing import Any

import psycopg

from chancy import Chancy, Queue, Worker
from chancy.hub import Event
from chancy.plugins.leadership import ImmediateLeadership, Leadership
from tests.conftest import eventually
from tests.plugins.conftest import lease_row


async def test_a_leader_whose_renewals_stall_steps_down_before_its_lease_expires(
    chancy: Chancy, make_app: Any, dsn: str, prefix: str
) -> None:
    await chancy.declare(Queue("default", tags={"^nobody$"}))
    app = make_app(Leadership(poll_interval=0.2, timeout=1.5))
    async with Worker(app, register_signal_handlers=False) as worker:
        await eventually(worker.is_leader.is_set, timeout=10)
        term = worker.leader_term
        assert isinstance(term, int)
        # Hold the lease row so renewals hang (as when the database is unreachable).
        async with await psycopg.AsyncConnection.connect(dsn) as conn, conn.transaction():
            await conn.execute(
                f"SELECT 1 FROM {prefix}leader WHERE id = 1 FOR UPDATE"  # type: ignore[arg-type]
            )
            lost = await worker.hub.wait_one("leadership.lost", timeout=5)
            # Stepped down on its own clock while the database lease is still live, so
            # before anyone else could have been elected.
            row = await lease_row(chancy)
            assert row["live"] and row["worker_id"] == worker.worker_id and row["term"] == term
            assert not worker.is_leader.is_set() and worker.leader_term is None
            assert "not renewed" in lost.body["reason"]
        # Once the database answers again it leads again, under a new term.
        await eventually(worker.is_leader.is_set, timeout=10)
        assert isinstance(worker.leader_term, int) and worker.leader_term > term


async def test_immediate_leadership_leads_at_once_without_a_lease(
    chancy: Chancy, make_app: Any
) -> None:
    await chancy.declare(Queue("default", tags={"^nobody$"}))
    app = make_app(ImmediateLeadership())
    worker = Worker(app, register_signal_handlers=False)
    gained: list[Event] = []
    worker.hub.on("leadership.gained", gained.append)
    async with worker:
        await eventually(lambda: gained, timeout=5)
        assert gained[0].body["term"] is None
        assert worker.is_leader.is_set() and worker.leader_term is None
    assert not worker.is_leader.is_set()
    assert await lease_row(chancy) is None
