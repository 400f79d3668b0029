"""Each cron slot fires exactly once across three worker processes whose leader is SIGKILLed.

The test drives the clock: it makes the schedule due (``next_run = now()``) slot after slot,
kills the leader right after some of them (so a firing may be in flight) and starts a
replacement, and checks that every slot produced exactly one job, none was lost and none
doubled.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chancy import Chancy, Queue
from chancy.plugins.cron import Cron
from chancy.plugins.leadership import Leadership
from chancy.plugins.recovery import Recovery
from tests.conftest import drop_prefix, eventually
from tests.cron.conftest import J, due_in, jobs_of, sql
from tests.workflow.fleet import Fleet, leader


@pytest.fixture
async def app(dsn: str, prefix: str) -> AsyncIterator[Chancy]:
    chancy = Chancy(
        dsn,
        prefix=prefix,
        plugins=[Leadership(), Recovery(), Cron()],
        no_default_plugins=True,
        max_connection_pool_size=3,
    )
    async with chancy:
        await chancy.migrate()
        try:
            yield chancy
        finally:
            try:
                await chancy.migrate(to_version=0)
            finally:
                drop_prefix(dsn, prefix)


async def test_each_slot_fires_once_while_the_leader_is_killed_and_replaced(
    app: Chancy, dsn: str, prefix: str, tmp_path: Path
) -> None:
    await app.declare(Queue("default", tags={"^nobody$"}))
    await app.declare(Queue("cron", executor=Chancy.Executor.Async, polling_interval=0.5))
    # Yearly: between the slots the test makes due, nothing fires by itself.
    await Cron.schedule(app, "0 0 1 1 *", J("slot"))
    fleet = Fleet(dsn, prefix, tmp_path, workflow=None, cron={"poll_interval": 30})
    try:
        for name in ("a", "b", "c"):
            fleet.start(name)
        await eventually(lambda: leader(app), timeout=30, message="a leader is elected")
        slots = 8
        kills: list[str] = []
        for slot in range(1, slots + 1):
            set_to = await due_in(app, "slot", 0)
            if slot in (2, 4, 7):
                # Kill the leader at once: the firing may be in flight, committed or not.
                current = await leader(app)
                assert current is not None
                fleet.by_id(current).kill()
                kills.append(current)
                fleet.start("spare")

            async def fired(slot: int = slot, set_to: Any = set_to) -> bool:
                row = (await Cron.get_schedules(app))["slot"]
                jobs = await jobs_of(app, "slot")
                return row["next_run"] > set_to and len(jobs) >= slot

            await eventually(fired, timeout=30, message=f"slot {slot} fired")
            # Let the job finish, so that a second firing of this slot would make a new job
            # instead of being folded into the live one by its unique key.
            await eventually(
                lambda: _all_succeeded(app), timeout=60, message=f"slot {slot}'s job ran"
            )
            assert len(await jobs_of(app, "slot")) == slot, fleet.logs()
        # A leader other than the killed ones holds the lease, and nothing fired twice.
        await eventually(lambda: leader(app), timeout=30, message="a leader is elected")
        assert await leader(app) not in kills
        jobs = await jobs_of(app, "slot")
        assert len(jobs) == slots
        row = await sql(
            app,
            f"SELECT last_run, next_run FROM {prefix}cron WHERE unique_key = 'slot'",
            None,
            "one",
        )
        assert row["last_run"] is not None and row["next_run"].year > row["last_run"].year - 1
    finally:
        fleet.close()
        print(fleet.logs())  # shown when the test fails


async def _all_succeeded(app: Chancy) -> bool:
    return all(job["state"] == "succeeded" for job in await jobs_of(app, "slot"))
