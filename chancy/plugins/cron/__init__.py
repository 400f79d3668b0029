"""Cron: jobs pushed on a schedule, fired by the leader.

::

    chancy = Chancy(dsn, plugins=[Cron()])
    await Cron.schedule(chancy, "30 2 * * *", report.job.with_unique_key("nightly-report"),
                        timezone="Europe/London")

The expression language and how time zones and daylight saving time are handled are described
in :mod:`chancy.plugins.cron.schedule`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any, TypedDict

import psycopg.errors
from psycopg.rows import dict_row

from chancy import events
from chancy.errors import ConfigurationError
from chancy.job import Job, as_job
from chancy.plugin import Plugin, PluginScope
from chancy.plugins.cron import store
from chancy.plugins.cron.schedule import (
    CronExpression,
    InvalidCronExpression,
    get_timezone,
    next_run,
    parse,
    require_croniter,
    timezone_name,
)
from chancy.plugins.leadership import lease_params
from chancy.plugins.store import UNFENCED
from chancy.store import Spec, run
from chancy.utils import json_dumps

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.worker import Worker

__all__ = ["Cron", "CronExpression", "CronSchedule", "InvalidCronExpression", "next_run", "parse"]

log = logging.getLogger("chancy.cron")


#: The hub (and NOTIFY) event sent when schedules change.
SCHEDULED = events.CRON_SCHEDULED


class CronSchedule(TypedDict):
    """One schedule as returned by :meth:`Cron.get_schedules`."""

    unique_key: str
    job: Job
    cron: str
    last_run: datetime | None
    next_run: datetime
    timezone: str
    #: When the schedule was paused (:meth:`Cron.pause`); None while it is active.
    paused_at: datetime | None


def _get_spec(chancy: Chancy, unique_keys: Iterable[str] | None) -> Spec[list[dict[str, Any]]]:
    if isinstance(unique_keys, str):
        unique_keys = [unique_keys]
    return store.get(chancy.prefix, None if unique_keys is None else list(unique_keys))


def _schedule_from_row(row: Any) -> CronSchedule:
    return CronSchedule(
        unique_key=row["unique_key"],
        job=Job.unpack(row["job"]),
        cron=row["cron"],
        last_run=row["last_run"],
        next_run=row["next_run"],
        timezone=row["timezone"],
        paused_at=row["paused_at"],
    )


@contextlib.contextmanager
def _explain_missing_table(chancy: Chancy) -> Any:
    try:
        yield
    except psycopg.errors.UndefinedTable as exc:
        raise ConfigurationError(
            f"there is no {chancy.prefix}cron table: add Cron() to Chancy(plugins=[...]) and run"
            " `await chancy.migrate()` (or `chancy misc migrate`)"
        ) from exc


def _as_job(item: Any) -> Job:
    return as_job(item, action="schedule")


class Cron(Plugin):
    """Leader-only: push jobs on cron schedules.

    Each schedule is a row of ``{prefix}cron`` keyed by its job's ``unique_key``. The leader
    selects the rows that are due by the database's ``now()`` (``FOR UPDATE SKIP LOCKED``), pushes
    their jobs and moves each row's ``next_run`` to its next slot, all in one transaction fenced
    by its leadership lease. A leader killed half-way therefore leaves nothing behind (the
    transaction rolls back and its successor fires the slot), and a slot that was committed is
    never fired again: no slot is lost or doubled across a change of leader.

    **Missed slots fire once.** When no worker ran for a while (or no leader was elected), a
    schedule whose ``next_run`` passed fires *once* as soon as a leader is back, however many
    slots were missed, and its next slot is then computed from the current time, not from the
    missed one. The same holds after a long outage of the database.

    **Expressions and time zones.** croniter's language, as Chancy 0.26 read it: five fields
    (``minute hour day-of-month month day-of-week``), optionally a sixth for seconds and a
    seventh for the year, with ``L``, ``W``, ``#`` and names, or an alias (``@hourly``,
    ``@daily``/``@midnight``, ``@weekly``, ``@monthly``, ``@yearly``/``@annually``), read as
    wall-clock times in the schedule's IANA time zone. Each matching wall-clock time fires
    once: one skipped by a spring-forward change fires at the change, one repeated by a
    fall-back change fires at its first occurrence (see :mod:`chancy.plugins.cron.schedule`).
    Needs the ``cron`` extra (croniter).

    **Overlap.** Jobs are pushed with their unique key, so while an earlier run of a schedule
    is still pending or running, a firing returns that job instead of queuing another.

    :param poll_interval: the longest the leader sleeps between checks; it also wakes when the
        next schedule is due (computed by the database) and when schedules change.
    :param batch_size: schedules fired per transaction.
    """

    def __init__(self, poll_interval: float = 60, *, batch_size: int = 500) -> None:
        super().__init__()
        if isinstance(poll_interval, bool) or not isinstance(poll_interval, int | float):
            raise ConfigurationError(f"Cron(poll_interval={poll_interval!r}) must be seconds")
        if poll_interval <= 0:
            raise ConfigurationError(f"Cron(poll_interval={poll_interval!r}) must be > 0")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigurationError(f"Cron(batch_size={batch_size!r}) must be an int >= 1")
        require_croniter()  # a worker without the cron extra fails at start, not at firing
        self.poll_interval = float(poll_interval)
        self.batch_size = batch_size
        #: Keys whose stored row could not be read (logged once); left alone until rescheduled.
        self._broken: set[str] = set()
        self._wakers: set[asyncio.Event] = set()

    @classmethod
    def get_identifier(cls) -> str:
        return "chancy.cron"

    @classmethod
    def get_scope(cls) -> PluginScope:
        return PluginScope.LEADER

    def migrate_key(self) -> str | None:
        return "cron"

    def migrate_package(self) -> str | None:
        return "chancy.plugins.cron.migrations"

    def api_plugin(self) -> str | None:
        """The dashboard's routes and page for this plugin (Chancy 0.26's hook)."""
        return "chancy.plugins.cron.api.CronApiPlugin"

    def wake_up(self) -> None:
        super().wake_up()
        for event in self._wakers:
            event.set()

    # -- the leader's service -------------------------------------------------------------

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        wake = asyncio.Event()
        self._wakers.add(wake)

        def on_scheduled(_: Any) -> None:
            self._broken.clear()
            wake.set()

        worker.hub.on(SCHEDULED, on_scheduled)
        stuck = 0
        try:
            while True:
                wake.clear()
                fired = await self.fire_due(chancy, lease=lease_params(worker))
                wait = await self._seconds_until_due(chancy)
                if wait is None:
                    timeout = self.poll_interval
                elif wait > 0:
                    timeout = min(self.poll_interval, wait)
                elif fired:
                    timeout = 0  # a full batch: fire the rest at once
                else:
                    # Due but not fired: it became due between our two statements, another
                    # transaction holds the row, or our lease is no longer current (then
                    # leadership.lost cancels us shortly). Look again soon, then less often.
                    stuck += 1
                    timeout = 0.01 if stuck == 1 else min(self.poll_interval, 0.25)
                if wait is None or wait > 0 or fired:
                    stuck = 0
                if timeout > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), timeout)
        finally:
            worker.hub.remove(SCHEDULED, on_scheduled)
            self._wakers.discard(wake)

    async def _seconds_until_due(self, chancy: Chancy) -> float | None:
        row = await chancy.db.run(store.wait(chancy.prefix, sorted(self._broken)))
        return None if row is None or row["wait"] is None else float(row["wait"])

    async def fire_due(self, chancy: Chancy, *, lease: dict[str, Any] | None = None) -> list[str]:
        """Fire every due schedule, in transactions of ``batch_size``; return the keys fired.

        ``lease`` is the fence from :func:`~chancy.plugins.leadership.lease_params`; without
        it (an operator calling this by hand) the writes are not fenced.
        """
        fence = lease if lease is not None else UNFENCED
        fired: list[str] = []
        pool = await chancy.open()
        while True:
            async with (
                pool.connection() as conn,
                conn.transaction(),
                conn.cursor(row_factory=dict_row) as cur,
            ):
                due = store.due(
                    chancy.prefix, fence, limit=self.batch_size, skip=sorted(self._broken)
                )
                rows = await run(cur, due)
                jobs: list[Job] = []
                keys: list[str] = []
                next_runs: list[datetime] = []
                for row in rows:
                    key = row["unique_key"]
                    try:
                        job = Job.unpack(row["job"])
                        # Next slot from now: missed slots are not fired one by one.
                        upcoming = parse(row["cron"]).next_after(row["now"], row["timezone"])
                    except Exception as exc:
                        self._broken.add(key)
                        log.error(
                            "cron schedule %r cannot be fired and is skipped until it is"
                            " rescheduled: %s",
                            key,
                            exc,
                        )
                        continue
                    jobs.append(job)
                    keys.append(key)
                    next_runs.append(upcoming)
                if jobs:
                    await chancy.push_many_ex(cur, jobs)
                    await run(cur, store.advance(chancy.prefix, keys, next_runs))
            fired.extend(keys)
            if len(rows) < self.batch_size:
                break
        if fired:
            log.info("cron fired %d schedule(s): %s", len(fired), ", ".join(fired))
        return fired

    # -- managing schedules ---------------------------------------------------------------

    @classmethod
    async def schedule(
        cls, chancy: Chancy, cron: str, *jobs: Any, timezone: tzinfo | str = "UTC"
    ) -> None:
        """Create or replace the schedules of ``jobs`` (keyed by their ``unique_key``).

        ``cron`` is a cron expression (croniter's language, as in 0.26) or an alias such as
        ``@daily``, read in ``timezone`` (an IANA name or a ``ZoneInfo``). Every job needs a
        ``unique_key``. Rescheduling a key replaces its job, expression and time zone; when the
        expression and time zone are unchanged its next run is kept.
        """
        pool = await chancy.open()
        async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cls.schedule_ex(chancy, cur, cron, *jobs, timezone=timezone)

    @classmethod
    async def schedule_ex(
        cls,
        chancy: Chancy,
        cursor: psycopg.AsyncCursor[Any],
        cron: str,
        *jobs: Any,
        timezone: tzinfo | str = "UTC",
    ) -> None:
        """:meth:`schedule` inside the caller's transaction."""
        plan = cls._schedule_plan(chancy, cron, jobs, timezone)
        with _explain_missing_table(chancy):
            await chancy.db.run_ex(cursor, plan)

    @classmethod
    def _schedule_plan(
        cls, chancy: Chancy, cron: str, jobs: tuple[Any, ...], timezone: tzinfo | str
    ) -> Any:
        """Checks first (nothing is written on bad input), then one upsert at database time."""
        expression = parse(cron)
        zone_name = timezone_name(timezone)
        zone = get_timezone(zone_name)
        if not jobs:
            raise ValueError("Cron.schedule needs at least one job to schedule")
        packed: list[Job] = []
        seen: set[str] = set()
        for item in jobs:
            job = _as_job(item)
            if not job.unique_key:
                raise ValueError(
                    f"job {job.func} has no unique_key; every cron job needs one, because"
                    " schedules are stored and replaced by it. Use"
                    " job.with_unique_key('a-stable-name')."
                )
            if job.unique_key in seen:
                raise ValueError(f"unique_key {job.unique_key!r} is given twice")
            seen.add(job.unique_key)
            packed.append(job)
        return cls._upsert_plan(chancy, expression, zone, zone_name, packed)

    @staticmethod
    def _upsert_plan(
        chancy: Chancy, expression: CronExpression, zone: tzinfo, zone_name: str, packed: list[Job]
    ) -> Any:
        now: Any = (yield store.now(chancy.prefix))["now"]
        upcoming = expression.next_after(now, zone)
        params = {
            "keys": [j.unique_key for j in packed],
            "queues": [j.queue for j in packed],
            # A fired job is stored with the database's time ("sn"); "s" stays a number, as
            # Chancy 0.26's workers read it (they may share the table during a rolling deploy).
            "jobs": [json_dumps({**j.pack(), "sn": True}) for j in packed],
            "crons": [expression.expression] * len(packed),
            "next_runs": [upcoming] * len(packed),
            "timezones": [zone_name] * len(packed),
            "notify": chancy.notifications,
        }
        yield store.upsert(chancy.prefix, params)

    @classmethod
    async def unschedule(cls, chancy: Chancy, *unique_keys: str) -> int:
        """Remove the schedules with these keys; return how many existed."""
        if not unique_keys:
            return 0
        with _explain_missing_table(chancy):
            row = await chancy.db.run(store.delete(chancy.prefix, unique_keys))
        return int(row["deleted"])

    @classmethod
    async def get_schedules(
        cls, chancy: Chancy, unique_keys: Iterable[str] | None = None
    ) -> dict[str, CronSchedule]:
        """Every schedule (or those with ``unique_keys``), by unique key."""
        with _explain_missing_table(chancy):
            rows: Any = await chancy.db.run(_get_spec(chancy, unique_keys))
        return {row["unique_key"]: _schedule_from_row(row) for row in rows}

    @classmethod
    async def pause(cls, chancy: Chancy, *unique_keys: str) -> list[str]:
        """Stop these schedules from firing until :meth:`resume`; return the keys that exist.

        A pause survives rescheduling (``schedule`` with the same key keeps it), so deploying
        the schedules again does not undo an operator's pause.
        """
        if not unique_keys:
            return []
        with _explain_missing_table(chancy):
            rows = await chancy.db.run(store.pause(chancy.prefix, unique_keys))
        return sorted(row["unique_key"] for row in rows)

    @classmethod
    async def resume(cls, chancy: Chancy, *unique_keys: str) -> list[str]:
        """Let paused schedules fire again; return the keys that were paused.

        Each one is due next at its first slot after now: the slots it missed while paused are
        not fired (no burst of catch-up runs).
        """
        if not unique_keys:
            return []
        with _explain_missing_table(chancy):
            return await chancy.db.run(
                cls._resume_plan(chancy, list(unique_keys)), transaction=True
            )

    @classmethod
    def _resume_plan(cls, chancy: Chancy, keys: list[str]) -> Any:
        rows = yield store.paused_rows(chancy.prefix, keys)
        if not rows:
            return []
        next_runs = [parse(r["cron"]).next_after(r["now"], r["timezone"]) for r in rows]
        resumed = [r["unique_key"] for r in rows]
        yield store.resume(chancy.prefix, resumed, next_runs, notify=chancy.notifications)
        return sorted(resumed)

    # -- sync forms (scripts, WSGI apps): the same SQL on the sync pool --------------------

    @classmethod
    def sync_schedule(
        cls, chancy: Chancy, cron: str, *jobs: Any, timezone: tzinfo | str = "UTC"
    ) -> None:
        """:meth:`schedule` for sync code."""
        plan = cls._schedule_plan(chancy, cron, jobs, timezone)
        with _explain_missing_table(chancy):
            chancy.db.run_sync(plan, transaction=True)

    @classmethod
    def sync_schedule_ex(
        cls,
        chancy: Chancy,
        cursor: psycopg.Cursor[Any],
        cron: str,
        *jobs: Any,
        timezone: tzinfo | str = "UTC",
    ) -> None:
        """:meth:`schedule_ex` for sync code."""
        plan = cls._schedule_plan(chancy, cron, jobs, timezone)
        with _explain_missing_table(chancy):
            chancy.db.run_ex_sync(cursor, plan)

    @classmethod
    def sync_unschedule(cls, chancy: Chancy, *unique_keys: str) -> int:
        if not unique_keys:
            return 0
        with _explain_missing_table(chancy):
            row = chancy.db.run_sync(store.delete(chancy.prefix, unique_keys))
        return int(row["deleted"])

    @classmethod
    def sync_get_schedules(
        cls, chancy: Chancy, unique_keys: Iterable[str] | None = None
    ) -> dict[str, CronSchedule]:
        with _explain_missing_table(chancy):
            rows: Any = chancy.db.run_sync(_get_spec(chancy, unique_keys))
        return {row["unique_key"]: _schedule_from_row(row) for row in rows}

    @classmethod
    def sync_pause(cls, chancy: Chancy, *unique_keys: str) -> list[str]:
        if not unique_keys:
            return []
        with _explain_missing_table(chancy):
            rows = chancy.db.run_sync(store.pause(chancy.prefix, unique_keys))
        return sorted(row["unique_key"] for row in rows)

    @classmethod
    def sync_resume(cls, chancy: Chancy, *unique_keys: str) -> list[str]:
        if not unique_keys:
            return []
        with _explain_missing_table(chancy):
            return chancy.db.run_sync(cls._resume_plan(chancy, list(unique_keys)), transaction=True)
