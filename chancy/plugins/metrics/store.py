"""The metrics plugin's store: one function per named query of ``sql/metrics.sql``.

Each returns a ``Spec`` for ``chancy.db`` (or, for the dashboard, the query's text to run on
its own cursor). Writes are one statement per flush or sample, whatever the number of series.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, LiteralString

from chancy.store import Spec
from chancy.store.loader import Queries, queries

Row = dict[str, Any]


def q(prefix: str) -> Queries:
    """The metrics queries for one prefix (the dashboard runs some on its own cursor)."""
    return queries("chancy.plugins.metrics.sql", prefix)


def add(prefix: str, params: Mapping[str, Any]) -> Spec[None]:
    """Add a flush's counters, histograms and gauges to every resolution's bucket."""
    return Spec(q(prefix)["metrics_add"], dict(params))


def set_gauges(prefix: str, params: Mapping[str, Any]) -> Spec[None]:
    """Set the leader's sampled gauges (queue depths) in every resolution's bucket."""
    return Spec(q(prefix)["metrics_set_gauges"], dict(params))


def queue_depth(prefix: str, cap: int) -> Spec[list[Row]]:
    """Waiting (capped at ``cap``) and running jobs per queue."""
    return Spec(q(prefix)["metrics_queue_depth"], {"cap": cap}, "all")


def queue_waiting_estimate(prefix: str, queue: str) -> Spec[Row | None]:
    """The planner's estimate of a queue's waiting jobs (past the cap), as a JSON plan."""
    return Spec(q(prefix)["metrics_queue_waiting_estimate"], {"queue": queue}, "one")


def jobs_inserted(prefix: str) -> Spec[Row | None]:
    """Rows ever inserted into the jobs table, from the statistics collector."""
    return Spec(q(prefix)["metrics_jobs_inserted"], {"table": f"{prefix}jobs"}, "one")


def cleanup(prefix: str, retention: Mapping[str, float]) -> Spec[Row | None]:
    """Delete buckets past their resolution's retention; ``deleted`` counts them."""
    params = {"resolutions": list(retention), "keep": [float(v) for v in retention.values()]}
    return Spec(q(prefix)["metrics_cleanup"], params, "one")


def series_query(prefix: str) -> LiteralString:
    """The text of ``metrics_series``, for a caller with its own cursor."""
    return q(prefix)["metrics_series"]


def series(
    prefix: str,
    names: Sequence[str],
    *,
    resolution: str,
    since: datetime,
    until: datetime,
    queue: str | None,
    func: str | None,
    limit: int,
) -> Spec[list[Row]]:
    """Buckets of ``names`` at ``resolution`` in ``[since, until]``."""
    params = {
        "names": list(names),
        "resolution": resolution,
        "since": since,
        "until": until,
        "queue": queue,
        "func": func,
        "limit": limit,
    }
    return Spec(series_query(prefix), params, "all")


def names(prefix: str) -> Spec[list[Row]]:
    """The series that exist: name, kind, queue, func."""
    return Spec(q(prefix)["metrics_names"], None, "all")


def totals(prefix: str) -> Spec[list[Row]]:
    """All-time counters and histograms per series."""
    return Spec(q(prefix)["metrics_totals"], None, "all")


def latest_gauges(prefix: str) -> Spec[list[Row]]:
    """The latest value of every gauge series."""
    return Spec(q(prefix)["metrics_latest_gauges"], None, "all")


def definitions(prefix: str) -> Spec[list[Row]]:
    """The all-time rows that say which keys exist, with their kind and unit."""
    return Spec(q(prefix)["metrics_definitions"], None, "all")


def points(prefix: str, params: Mapping[str, Any]) -> Spec[list[Row]]:
    """The buckets of a get_metrics window (names, resolution, start, end, scopes)."""
    return Spec(q(prefix)["metrics_points"], dict(params), "all")
