"""Cron schedules in the database: schedule, reschedule, unschedule, and fencing of firing."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from chancy import Chancy, Queue, Worker
from chancy.plugins.cron import Cron
from chancy.plugins.cron.schedule import parse
from tests.conftest import eventually
from tests.cron.conftest import J, due_in, jobs_of, sql

ASYNC = Chancy.Executor.Async


async def db_now(app: Chancy) -> object:
    return (await sql(app, "SELECT now() AS now", None, "one"))["now"]


async def test_schedule_and_get_schedules_round_trip(app: Chancy) -> None:
    before = await db_now(app)
    await Cron.schedule(
        app,
        "0 3 * * *",
        J("nightly-a", kwargs={"x": 1}, priority=4),
        J("nightly-b"),
        timezone="Europe/London",
    )
    schedules = await Cron.get_schedules(app)
    assert sorted(schedules) == ["nightly-a", "nightly-b"]
    a = schedules["nightly-a"]
    assert a["unique_key"] == "nightly-a"
    assert a["cron"] == "0 3 * * *" and a["timezone"] == "Europe/London"
    assert a["last_run"] is None
    assert a["job"].func == "tests.workflow.jobs.noop" and a["job"].kwargs == {"x": 1}
    assert a["job"].priority == 4 and a["job"].unique_key == "nightly-a"
    assert a["job"].queue == "cron"
    local = a["next_run"].astimezone(ZoneInfo("Europe/London"))
    assert (local.hour, local.minute) == (3, 0)
    assert a["next_run"] == parse("0 3 * * *").next_after(before, "Europe/London")  # type: ignore[arg-type]
    only = await Cron.get_schedules(app, unique_keys=["nightly-b", "missing"])
    assert list(only) == ["nightly-b"]


async def test_a_stored_schedule_is_readable_by_chancy_026(app: Chancy) -> None:
    """0.26's workers unpack a row's job with datetime.fromtimestamp(job["s"])."""
    await Cron.schedule(app, "@daily", J("shared"))
    row = await sql(
        app, f"SELECT job FROM {app.prefix}cron WHERE unique_key = 'shared'", None, "one"
    )
    assert isinstance(row["job"]["s"], float) and row["job"]["sn"] is True
    # What chancy pushes when it fires is still stored with the database's time.
    assert type((await Cron.get_schedules(app))["shared"]["job"].scheduled_at).__name__ == (
        "DefaultNow"
    )


async def test_the_default_time_zone_is_utc_and_zoneinfo_is_accepted(app: Chancy) -> None:
    await Cron.schedule(app, "@daily", J("utc"))
    await Cron.schedule(app, "@daily", J("ny"), timezone=ZoneInfo("America/New_York"))
    schedules = await Cron.get_schedules(app)
    assert schedules["utc"]["timezone"] == "UTC"
    assert schedules["utc"]["next_run"].astimezone(ZoneInfo("UTC")).hour == 0
    assert schedules["ny"]["timezone"] == "America/New_York"
    assert schedules["ny"]["next_run"].astimezone(ZoneInfo("America/New_York")).hour == 0


async def test_rescheduling_replaces_the_job_and_keeps_next_run_unless_the_timing_changed(
    app: Chancy,
) -> None:
    await Cron.schedule(app, "0 3 * * *", J("k", kwargs={"v": 1}))
    # Move next_run so we can see whether a reschedule keeps it.
    kept = await due_in(app, "k", 3600)
    await Cron.schedule(app, "0 3 * * *", J("k", kwargs={"v": 2}))
    same = (await Cron.get_schedules(app))["k"]
    assert same["job"].kwargs == {"v": 2}
    assert same["next_run"] == kept  # same expression and zone: next_run kept
    await Cron.schedule(app, "*/5 * * * *", J("k", kwargs={"v": 3}))
    changed = (await Cron.get_schedules(app))["k"]
    assert changed["cron"] == "*/5 * * * *" and changed["job"].kwargs == {"v": 3}
    assert changed["next_run"] != kept and changed["next_run"].minute % 5 == 0
    await Cron.schedule(app, "*/5 * * * *", J("k"), timezone="Asia/Kolkata")
    moved = (await Cron.get_schedules(app))["k"]
    assert moved["timezone"] == "Asia/Kolkata"  # a new zone recomputes (here: same minutes)


async def test_unschedule(app: Chancy) -> None:
    await Cron.schedule(app, "@hourly", J("a"), J("b"), J("c"))
    assert await Cron.unschedule(app, "a", "c", "missing") == 2
    assert list(await Cron.get_schedules(app)) == ["b"]
    assert await Cron.unschedule(app) == 0
    assert await Cron.unschedule(app, "a") == 0


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("@daily", J(None)), {}, "has no unique_key"),
        (("@daily", J("x"), J("x")), {}, "given twice"),
        (("@daily",), {}, "at least one job"),
        (("61 * * * *", J("x")), {}, "out of range"),
        (("@fortnightly", J("x")), {}, "unknown cron alias"),
        (("@daily", J("x")), {"timezone": "Atlantis/Capital"}, "unknown time zone"),
    ],
)
async def test_bad_schedules_are_value_errors_and_store_nothing(
    app: Chancy, args: tuple[object, ...], kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        await Cron.schedule(app, *args, **kwargs)  # type: ignore[arg-type]
    assert await Cron.get_schedules(app) == {}


async def test_non_jobs_are_refused(app: Chancy) -> None:
    with pytest.raises(TypeError, match="cannot schedule"):
        await Cron.schedule(app, "@daily", "tests.workflow.jobs.noop")


async def test_a_due_schedule_fires_once_and_advances(app: Chancy, cron: Cron) -> None:
    await Cron.schedule(app, "0 0 1 1 *", J("yearly", kwargs={"n": 7}))
    assert await cron.fire_due(app) == []  # not due yet
    due = await due_in(app, "yearly", -1)
    assert await cron.fire_due(app) == ["yearly"]
    assert await cron.fire_due(app) == []
    jobs = await jobs_of(app, "yearly")
    assert len(jobs) == 1 and jobs[0]["kwargs"] == {"n": 7}
    row = (await Cron.get_schedules(app))["yearly"]
    assert row["last_run"] is not None and row["last_run"] > due
    assert row["next_run"] == parse("0 0 1 1 *").next_after(row["last_run"])


async def test_a_paused_schedule_never_fires_and_resumes_at_its_next_slot(
    app: Chancy, cron: Cron
) -> None:
    await Cron.schedule(app, "*/5 * * * *", J("pausable"), J("other"))
    assert await Cron.pause(app, "pausable", "missing") == ["pausable"]
    row = (await Cron.get_schedules(app))["pausable"]
    assert row["paused_at"] is not None
    assert (await Cron.get_schedules(app))["other"]["paused_at"] is None
    # Both overdue by a day: only the active one fires; the paused one stays put.
    await sql(app, f"UPDATE {app.prefix}cron SET next_run = now() - interval '1 day'")
    assert await cron.fire_due(app) == ["other"]
    assert await jobs_of(app, "pausable") == []
    # Rescheduling (a deploy) keeps the pause.
    await Cron.schedule(app, "*/5 * * * *", J("pausable"))
    assert (await Cron.get_schedules(app))["pausable"]["paused_at"] is not None
    assert await cron.fire_due(app) == []
    # Resume: due next at the first slot after now, not at once (no catch-up burst).
    assert await Cron.resume(app, "pausable", "other", "missing") == ["pausable"]
    now = await db_now(app)
    row = (await Cron.get_schedules(app))["pausable"]
    assert row["paused_at"] is None
    assert now < row["next_run"] <= now + timedelta(minutes=5)  # type: ignore[operator]
    assert await cron.fire_due(app) == []
    assert await Cron.pause(app) == [] and await Cron.resume(app) == []


async def test_missed_slots_fire_once_and_the_next_run_counts_from_now(
    app: Chancy, cron: Cron
) -> None:
    await Cron.schedule(app, "*/5 * * * *", J("missed"))
    # As if no worker ran for three days: hundreds of slots passed.
    await sql(
        app,
        f"UPDATE {app.prefix}cron SET next_run = now() - interval '3 days'",
    )
    assert await cron.fire_due(app) == ["missed"]
    assert len(await jobs_of(app, "missed")) == 1
    now = await db_now(app)
    row = (await Cron.get_schedules(app))["missed"]
    assert now < row["next_run"] <= now + timedelta(minutes=5)  # type: ignore[operator]
    assert await cron.fire_due(app) == []


async def test_a_firing_that_dies_half_way_leaves_nothing_behind(
    app: Chancy, cron: Cron, monkeypatch: pytest.MonkeyPatch
) -> None:
    await Cron.schedule(app, "0 0 1 1 *", J("atomic"))
    due = await due_in(app, "atomic", -1)
    push_many_ex = app.push_many_ex

    async def push_then_die(cursor: object, jobs: object, **kwargs: object) -> object:
        await push_many_ex(cursor, jobs, **kwargs)  # type: ignore[arg-type]
        raise ConnectionError("the leader died after pushing, before advancing next_run")

    monkeypatch.setattr(app, "push_many_ex", push_then_die)
    with pytest.raises(ConnectionError):
        await cron.fire_due(app)
    monkeypatch.undo()
    # Rolled back: no job, the slot still due; the next leader fires it, once.
    assert await jobs_of(app, "atomic") == []
    assert (await Cron.get_schedules(app))["atomic"]["next_run"] == due
    assert await cron.fire_due(app) == ["atomic"]
    assert len(await jobs_of(app, "atomic")) == 1


async def test_a_live_job_is_not_queued_twice(app: Chancy, cron: Cron) -> None:
    # Nobody serves the queue: the first run is still pending at the next slot.
    await Cron.schedule(app, "0 0 1 1 *", J("overlap", queue="nobody"))
    for _ in range(3):
        await due_in(app, "overlap", -1)
        assert await cron.fire_due(app) == ["overlap"]
    assert len(await jobs_of(app, "overlap")) == 1


async def test_firing_without_the_lease_changes_nothing(app: Chancy, cron: Cron) -> None:
    await Cron.schedule(app, "0 0 1 1 *", J("fenced"))
    due = await due_in(app, "fenced", -1)
    stranger = {"leader": "someone-else", "term": 3, "fenced": True}
    assert await cron.fire_due(app, lease=stranger) == []
    assert await jobs_of(app, "fenced") == []
    assert (await Cron.get_schedules(app))["fenced"]["next_run"] == due


async def test_concurrent_firing_fires_each_slot_once(app: Chancy) -> None:
    keys = [f"k{i}" for i in range(20)]
    await Cron.schedule(app, "0 0 1 1 *", *(J(k) for k in keys))
    await sql(app, f"UPDATE {app.prefix}cron SET next_run = now() - interval '1 second'")
    # Four "leaders" without a lease (ImmediateLeadership on four workers) race.
    firers = [Cron(batch_size=3) for _ in range(4)]
    fired = await asyncio.gather(*(c.fire_due(app) for c in firers))
    assert sorted(k for batch in fired for k in batch) == sorted(keys)
    for key in keys:
        assert len(await jobs_of(app, key)) == 1


async def test_a_broken_row_is_skipped_and_the_others_fire(app: Chancy, cron: Cron) -> None:
    await Cron.schedule(app, "0 0 1 1 *", J("good"), J("bad"))
    await sql(app, f"UPDATE {app.prefix}cron SET cron = 'not cron' WHERE unique_key = 'bad'")
    await sql(app, f"UPDATE {app.prefix}cron SET next_run = now() - interval '1 second'")
    assert await cron.fire_due(app) == ["good"]
    assert await jobs_of(app, "bad") == []
    # Rescheduling repairs it.
    await Cron.schedule(app, "0 0 1 1 *", J("bad"))
    await due_in(app, "bad", -1)
    cron._broken.clear()  # the leader clears this on cron.scheduled
    assert await cron.fire_due(app) == ["bad"]


async def test_the_leader_fires_on_time_and_jobs_run(app: Chancy, cron: Cron) -> None:
    assert cron.poll_interval == 30
    await app.declare(Queue("cron", executor=ASYNC))
    await Cron.schedule(app, "0 0 1 1 *", J("soon"))
    async with Worker(app, register_signal_handlers=False, shutdown_timeout=5) as worker:
        await eventually(lambda: worker.is_leader.is_set())
        for _ in range(3):
            before = len(await jobs_of(app, "soon"))
            target = await due_in(app, "soon", 0.5)
            started = time.monotonic()

            async def fired(before: int = before) -> list[dict[str, object]] | None:
                found = await jobs_of(app, "soon")
                return found if len(found) > before else None

            found = await eventually(fired, timeout=10, message="the schedule fired")
            elapsed = time.monotonic() - started
            created = found[-1]["created_at"]
            assert created >= target, "fired before it was due (database time)"  # type: ignore[operator]
            assert elapsed < 5, f"fired {elapsed:.2f}s after being due; the poll is 30s"
            await eventually(lambda: _all_succeeded(app, "soon"), timeout=10, message="the job ran")
        assert len(await jobs_of(app, "soon")) == 3


async def _all_succeeded(app: Chancy, key: str) -> bool:
    return all(job["state"] == "succeeded" for job in await jobs_of(app, key))


async def test_without_the_cron_table_the_error_says_what_to_do(dsn: str, prefix: str) -> None:
    from chancy.errors import ConfigurationError

    bare = Chancy(dsn, prefix=prefix, no_default_plugins=True, max_connection_pool_size=2)
    async with bare:
        with pytest.raises(ConfigurationError, match="add Cron\\(\\) to Chancy"):
            await Cron.schedule(bare, "@daily", J("x"))
        with pytest.raises(ConfigurationError, match=r"no .*cron table"):
            await Cron.get_schedules(bare)
