"""Reading metrics back: Chancy 0.26's ``get_metrics`` (keys, windows, points) and chancy's
own series for the dashboard and the Prometheus text."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from chancy.plugins.metrics import store
from chancy.plugins.metrics.model import (
    MAX_BUCKETS,
    MAX_KEYS,
    RESOLUTIONS,
    STATE_OF,
    Metric,
    MetricPoint,
    MetricValue,
)
from chancy.plugins.metrics.prometheus import plan_rows

if TYPE_CHECKING:
    from chancy.app import Chancy


def window(
    retention: Mapping[str, float],
    resolution: str = "5min",
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    range_seconds: int | None = None,
    limit: int | None = None,
) -> tuple[datetime, datetime]:
    """The ``[start, end)`` a ``get_metrics`` call with these arguments covers.

    As in Chancy 0.26: times are timezone-aware bucket boundaries; by default the range
    ends with the current bucket and spans a day or the resolution's retention, whichever
    is shorter; ``limit`` gives it in buckets instead. Raises ``ValueError`` when the
    window is not aligned, exceeds the retention or spans more than 1,000 buckets.
    """
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}")
    width = RESOLUTIONS[resolution]
    kept = retention[resolution]
    if limit is not None:
        if start is not None or range_seconds is not None:
            raise ValueError("limit cannot be combined with start or range_seconds")
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise ValueError("limit must be a whole number of buckets")
        if not 1 <= limit <= kept // width:
            raise ValueError(
                f"limit must be 1 to {int(kept // width)} buckets (the {resolution} retention)"
            )
        range_seconds = limit * width
    if end is None:
        end = _bucket_start(datetime.now(UTC), width) + timedelta(seconds=width)
    if start is None:
        span = range_seconds if range_seconds is not None else min(86400, kept // width * width)
        if not width <= span <= kept or span % width:
            raise ValueError(
                f"range_seconds must be a multiple of {width} (the resolution) within the"
                f" retention ({int(kept)} s)"
            )
        start = end - timedelta(seconds=span)
    elif range_seconds is not None:
        raise ValueError("start cannot be combined with range_seconds")
    for value in (start, end):
        if value.tzinfo is None or value != _bucket_start(value, width):
            raise ValueError(f"start and end must be timezone-aware {resolution} bucket boundaries")
    span_seconds = (end - start).total_seconds()
    if not 0 < span_seconds <= kept:
        raise ValueError(
            f"the window must end after it starts and lie within the retention ({int(kept)} s)"
        )
    if span_seconds / width > MAX_BUCKETS:
        raise ValueError(f"the window spans more than {MAX_BUCKETS} buckets")
    return start, end


async def list_metrics(chancy: Chancy) -> list[str]:
    """Every key ``get_metrics`` can answer, in alphabetical order."""
    rows: list[dict[str, Any]] = await chancy.db.run(store.definitions(chancy.prefix))
    return sorted(_available(rows))


async def get_metrics(
    chancy: Chancy,
    retention: Mapping[str, float],
    metric_prefix: str | None = None,
    worker_id: str | None = None,
    *,
    resolution: str = "5min",
    start: datetime | None = None,
    end: datetime | None = None,
    range_seconds: int | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Metrics whose key is ``metric_prefix`` or starts with it and ``:``, over a window.

    Chancy 0.26's call: returns ``{"start", "end", "resolution", "generated_at",
    "series"}`` where ``series`` maps each key to a :class:`Metric` (its kind, unit and
    chronological :class:`MetricPoint` list; buckets without observations are left out).
    Custom metrics are there under their keys; chancy's own job metrics under 0.26's:
    ``queue:<q>:<state>``, ``queue:<q>:throughput``, ``queue:<q>:execution_time``,
    ``job:<func>:<state>``, ``job:<func>:execution_time`` and ``global:status:<state>``
    (states ``succeeded``, ``failed``, ``retrying`` and ``pending``, the last for snoozed
    runs). The window is :func:`window`'s. Raises ``ValueError`` for a bad window, for
    more than 100 matching keys, and for ``worker_id``: chancy stores metrics summed over
    all workers, so it cannot answer for one worker.
    """
    if worker_id is not None:
        raise ValueError(
            "chancy stores metrics summed over all workers, so get_metrics cannot filter by"
            " worker_id; call it without worker_id"
        )
    start, end = window(
        retention, resolution, start=start, end=end, range_seconds=range_seconds, limit=limit
    )
    defined: list[dict[str, Any]] = await chancy.db.run(store.definitions(chancy.prefix))
    available = _available(defined)
    keys = sorted(
        key
        for key in available
        if not metric_prefix or key == metric_prefix or key.startswith(metric_prefix + ":")
    )
    if len(keys) > MAX_KEYS:
        raise ValueError(
            f"{metric_prefix or 'no prefix'!r} matches {len(keys)} metrics, more than"
            f" {MAX_KEYS}; choose a narrower prefix"
        )
    wanted = {key: available[key] for key in keys}
    names: set[str] = set()
    queues: set[str] = {""}
    funcs: set[str] = set()
    every = False
    for definition in wanted.values():
        names.update(definition.names)
        if definition.scope == "queue":
            queues.add(definition.value)
        elif definition.scope == "job":
            funcs.add(definition.value)
        elif definition.scope == "global":
            every = True
    rows: list[dict[str, Any]] = []
    if names:
        rows = await chancy.db.run(
            store.points(
                chancy.prefix,
                {
                    "names": sorted(names),
                    "resolution": resolution,
                    "start": start,
                    "end": end,
                    "every": every,
                    "queues": sorted(queues),
                    "funcs": sorted(funcs),
                },
            )
        )
    series = {
        key: Metric(definition.kind, definition.unit, _points(definition, rows))  # type: ignore[arg-type]
        for key, definition in wanted.items()
    }
    return {
        "start": start,
        "end": end,
        "resolution": resolution,
        "generated_at": datetime.now(UTC),
        "series": series,
    }


async def get_series(
    chancy: Chancy,
    names: Sequence[str],
    *,
    resolution: str = "1min",
    since: datetime | None = None,
    until: datetime | None = None,
    queue: str | None = None,
    func: str | None = None,
    limit: int = 20000,
) -> list[dict[str, Any]]:
    """Buckets of ``names`` at ``resolution`` between ``since`` and ``until``.

    Each row: ``name, kind, queue, func, bucket, count, total, histogram``.
    """
    if resolution not in RESOLUTIONS and resolution != "total":
        raise ValueError(
            f"unknown resolution {resolution!r}; valid: {', '.join(RESOLUTIONS)}, total"
        )
    now = datetime.now(UTC)
    until = until or now + timedelta(days=1)
    if since is None and resolution == "total":
        since = datetime(2000, 1, 1, tzinfo=UTC)
    elif since is None:
        since = now - timedelta(seconds=RESOLUTIONS[resolution] * 60)
    spec = store.series(
        chancy.prefix,
        names,
        resolution=resolution,
        since=since,
        until=until,
        queue=queue,
        func=func,
        limit=limit,
    )
    return await chancy.db.run(spec)


def _bucket_start(moment: datetime, width: int) -> datetime:
    """The start of the bucket of ``width`` seconds holding ``moment`` (aligned to the epoch,
    as the database's ``date_bin`` from 2000-01-01 is for every resolution)."""
    return datetime.fromtimestamp(math.floor(moment.timestamp() / width) * width, UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class _Definition:
    """What a get_metrics key reads: stored names, filtered to one scope, and combined."""

    kind: str
    unit: str
    names: tuple[str, ...]
    #: "custom" (the key is stored as is), or chancy's job series summed over "queue" (one
    #: queue), "job" (one function) or "global" (all of them).
    scope: str
    value: str = ""


def _available(rows: Iterable[Mapping[str, Any]]) -> dict[str, _Definition]:
    """Every get_metrics key, from the all-time rows of the stored series."""
    found: dict[str, _Definition] = {}
    for row in rows:
        name, queue, func = row["name"], row["queue"], row["func"]
        if row["unit"] is not None:
            if queue == func == "":
                found[name] = _Definition(row["kind"], row["unit"], (name,), "custom")
            continue
        state = STATE_OF.get(name)
        if state is not None:
            counted = tuple(STATE_OF)
            for key, scope, value, names in (
                (f"global:status:{state}", "global", "", (name,)),
                (f"queue:{queue}:{state}", "queue", queue, (name,)),
                (f"queue:{queue}:throughput", "queue", queue, counted),
                (f"job:{func}:{state}", "job", func, (name,)),
            ):
                if (scope == "queue" and not queue) or (scope == "job" and not func):
                    continue
                found[key] = _Definition("counter", "count", names, scope, value)
        elif name == "jobs.runtime":
            if queue:
                found[f"queue:{queue}:execution_time"] = _Definition(
                    "histogram", "seconds", (name,), "queue", queue
                )
            if func:
                found[f"job:{func}:execution_time"] = _Definition(
                    "histogram", "seconds", (name,), "job", func
                )
    return found


def _points(definition: _Definition, rows: Iterable[Mapping[str, Any]]) -> list[MetricPoint]:
    """Combine the stored rows that make up one key into one point per bucket."""
    buckets: dict[datetime, list[Mapping[str, Any]]] = {}
    for row in rows:
        if row["name"] not in definition.names:
            continue
        if definition.scope == "custom":
            if (row["kind"], row["unit"], row["queue"], row["func"]) != (
                definition.kind,
                definition.unit,
                "",
                "",
            ):
                continue
        elif row["unit"] is not None:
            continue
        elif definition.scope == "queue" and row["queue"] != definition.value:
            continue
        elif definition.scope == "job" and row["func"] != definition.value:
            continue
        buckets.setdefault(row["bucket"], []).append(row)
    points: list[MetricPoint] = []
    for bucket in sorted(buckets):
        group = buckets[bucket]
        sampled = max(row["updated_at"] for row in group)
        value: MetricValue
        if definition.kind == "counter":
            value = float(sum(int(row["count"]) + float(row["total"]) for row in group))
        elif definition.kind == "gauge":
            value = float(max(group, key=lambda row: row["updated_at"])["total"])
        else:
            count = sum(int(row["count"]) for row in group)
            total = float(sum(float(row["total"]) for row in group))
            lows = [row["minimum"] for row in group if row["minimum"] is not None]
            highs = [row["maximum"] for row in group if row["maximum"] is not None]
            value = {
                "count": count,
                "sum": total,
                "avg": total / count if count else 0.0,
                "min": min(lows) if lows else None,
                "max": max(highs) if highs else None,
            }
        points.append(MetricPoint(bucket, value, sampled))
    return points


async def queue_depths(chancy: Chancy, cap: int) -> dict[str, dict[str, Any]]:
    """Waiting and running jobs per queue: exact up to ``depth_cap``, estimated above."""
    rows = await chancy.db.run(store.queue_depth(chancy.prefix, cap))
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        waiting = int(row["waiting"])
        estimated = False
        if waiting >= cap:
            plan = await chancy.db.run(store.queue_waiting_estimate(chancy.prefix, row["queue"]))
            waiting = max(waiting, plan_rows(plan))
            estimated = True
        out[row["queue"]] = {
            "waiting": waiting,
            "running": int(row["running"]),
            "estimated": estimated,
        }
    return out
