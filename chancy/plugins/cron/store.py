"""The cron plugin's store: one function per named query of ``sql/cron.sql``.

Each returns a ``Spec`` for ``chancy.db`` to run, on a pool connection or inside the caller's
transaction. Times are the database's (``cron_now``, ``now`` in the rows), never a worker's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from chancy.store import Spec
from chancy.store.loader import Queries, queries

Row = dict[str, Any]


def _q(prefix: str) -> Queries:
    return queries("chancy.plugins.cron.sql", prefix)


def now(prefix: str) -> Spec[Row]:
    """The database's clock, which schedules are computed from."""
    return Spec(_q(prefix)["cron_now"], None, "one")


def upsert(prefix: str, params: Mapping[str, Any]) -> Spec[Row]:
    """Create or replace schedules by unique key (arrays of keys, queues, jobs, crons,
    next_runs, timezones; ``notify`` wakes the leader)."""
    return Spec(_q(prefix)["cron_upsert"], dict(params), "one")


def delete(prefix: str, keys: Sequence[str]) -> Spec[Row]:
    """Remove schedules; ``deleted`` counts those that existed."""
    return Spec(_q(prefix)["cron_delete"], {"keys": list(keys)}, "one")


def get(prefix: str, keys: Sequence[str] | None) -> Spec[list[Row]]:
    """Every schedule, or those with ``keys``."""
    return Spec(_q(prefix)["cron_get"], {"keys": None if keys is None else list(keys)}, "all")


def due(
    prefix: str, fence: Mapping[str, Any], *, limit: int, skip: Sequence[str]
) -> Spec[list[Row]]:
    """Lock up to ``limit`` due schedules (fenced by the leader's lease), skipping ``skip``."""
    return Spec(_q(prefix)["cron_due"], {**fence, "limit": limit, "skip": list(skip)}, "all")


def advance(prefix: str, keys: Sequence[str], next_runs: Sequence[datetime]) -> Spec[None]:
    """Record that the schedules fired, and when each is due next."""
    params = {"keys": list(keys), "next_runs": list(next_runs)}
    return Spec(_q(prefix)["cron_advance"], params)


def wait(prefix: str, skip: Sequence[str]) -> Spec[Row | None]:
    """Seconds until the next schedule (other than ``skip``) is due."""
    return Spec(_q(prefix)["cron_wait"], {"skip": list(skip)}, "one")


def pause(prefix: str, keys: Sequence[str]) -> Spec[list[Row]]:
    """Pause schedules; the rows of those that exist."""
    return Spec(_q(prefix)["cron_pause"], {"keys": list(keys)}, "all")


def paused_rows(prefix: str, keys: Sequence[str]) -> Spec[list[Row]]:
    """The paused schedules among ``keys``, locked, with the database's ``now``."""
    return Spec(_q(prefix)["cron_paused_rows"], {"keys": list(keys)}, "all")


def resume(
    prefix: str, keys: Sequence[str], next_runs: Sequence[datetime], *, notify: bool
) -> Spec[Row]:
    """Resume paused schedules, each due next at ``next_runs``."""
    params = {"keys": list(keys), "next_runs": list(next_runs), "notify": notify}
    return Spec(_q(prefix)["cron_resume"], params, "one")
