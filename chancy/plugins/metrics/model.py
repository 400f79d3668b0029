"""The metrics plugin's names, value types and in-memory aggregates (no database here).

Stored metrics (``{prefix}metrics``; ``queue`` and ``func`` name the series):

=====================  =========  ===========================================================
name                   kind       what
=====================  =========  ===========================================================
jobs.succeeded         counter    runs that succeeded
jobs.failed            counter    runs that failed for good (no attempts left, or cancelled)
jobs.retried           counter    runs that failed and will be retried
jobs.snoozed           counter    runs that asked to run again later (``Snooze``)
jobs.runtime           histogram  seconds a run took, per queue and function
jobs.claim_latency     histogram  seconds from a job's scheduled time to its claim
jobs.pushed            counter    jobs inserted (all queues; sampled by the leader)
queue.waiting          gauge      pending and retrying jobs of a queue
queue.running          gauge      running jobs of a queue
=====================  =========  ===========================================================
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal, cast

from chancy import events
from chancy.errors import ConfigurationError
from chancy.job import QueuedJob

#: Resolution name -> bucket width in seconds.
RESOLUTIONS: dict[str, int] = {"1min": 60, "5min": 300, "1hour": 3600, "1day": 86400}
#: Resolution name -> seconds its buckets are kept.
DEFAULT_RETENTION: dict[str, float] = {
    "1min": 6 * 3600,
    "5min": 2 * 86400,
    "1hour": 30 * 86400,
    "1day": 365 * 86400,
}
#: Upper bounds (seconds) of the histogram buckets; one more bucket holds the rest.
BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
)

COUNTERS = (
    "jobs.succeeded",
    "jobs.failed",
    "jobs.retried",
    "jobs.snoozed",
    "jobs.pushed",
    "jobs.expired",
)
HISTOGRAMS = ("jobs.runtime", "jobs.claim_latency")
GAUGES = ("queue.waiting", "queue.running")
#: Hub events the plugin counts from: 0.26's custom metrics, and jobs a claim expired.
HUB_EVENTS = ("metrics.counter", "metrics.gauge", "metrics.histogram", events.JOBS_EXPIRED)
JOBS_EXPIRED = events.JOBS_EXPIRED
#: Every metric name -> its kind.
METRICS: dict[str, str] = {
    **{name: "counter" for name in COUNTERS},
    **{name: "histogram" for name in HISTOGRAMS},
    **{name: "gauge" for name in GAUGES},
}

OUTCOME_METRIC = {
    QueuedJob.State.SUCCEEDED: "jobs.succeeded",
    QueuedJob.State.FAILED: "jobs.failed",
    QueuedJob.State.RETRYING: "jobs.retried",
    QueuedJob.State.PENDING: "jobs.snoozed",
}
#: Start times older than this are forgotten (their job was cancelled or recovered).
START_TTL = 86400.0

MetricType = Literal["counter", "gauge", "histogram"]
MetricValue = float | dict[str, float | int | None]
#: The unit a custom observation gets when none is given (as in Chancy 0.26).
DEFAULT_UNIT: dict[str, str] = {"counter": "count", "gauge": "number", "histogram": "number"}
#: chancy's outcome counters -> the job state Chancy 0.26 named them by.
STATE_OF: dict[str, str] = {
    "jobs.succeeded": "succeeded",
    "jobs.failed": "failed",
    "jobs.retried": "retrying",
    "jobs.snoozed": "pending",
}
#: Keys get_metrics answers at most, and buckets per answer (Chancy 0.26's limits).
MAX_KEYS = 100
MAX_BUCKETS = 1000
#: Seconds between two warnings about dropped custom observations.
WARN_EVERY = 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class MetricPoint:
    """One time bucket of a metric, as Chancy 0.26's ``get_metrics`` returns it.

    ``value`` is a counter's total, a gauge's last value, or a histogram's ``count``, ``sum``,
    ``avg``, ``min`` and ``max``; ``sampled_at`` is when the bucket last changed.
    """

    timestamp: datetime
    value: MetricValue
    sampled_at: datetime


@dataclasses.dataclass(slots=True)
class Metric:
    """A metric's kind, unit and points over the requested range (Chancy 0.26's shape)."""

    type: MetricType
    unit: str
    data: list[MetricPoint]

    @property
    def aggregation(self) -> str:
        """How points combine: ``sum`` (counters), ``last`` (gauges), ``summary``."""
        return {"counter": "sum", "gauge": "last", "histogram": "summary"}[self.type]

    @property
    def sampled_at(self) -> datetime | None:
        return max((point.sampled_at for point in self.data), default=None)

    @property
    def summary(self) -> MetricValue | None:
        """The whole range at once: a counter's total, a gauge's latest value, or a
        histogram's count, sum, avg, min and max. None without points."""
        if not self.data:
            return None
        if self.type == "counter":
            return sum(cast(float, point.value) for point in self.data)
        if self.type == "gauge":
            return max(self.data, key=lambda point: point.sampled_at).value
        values = [cast(dict[str, Any], point.value) for point in self.data]
        count = sum(int(v["count"]) for v in values)
        total = sum(float(v["sum"]) for v in values)
        lows = [v["min"] for v in values if v["min"] is not None]
        highs = [v["max"] for v in values if v["max"] is not None]
        return {
            "count": count,
            "sum": total,
            "avg": total / count if count else 0.0,
            "min": min(lows) if lows else None,
            "max": max(highs) if highs else None,
        }


class Retention(dict[str, float]):
    """Seconds kept per resolution; also callable, as Chancy 0.26's ``retention(resolution)``."""

    def __call__(self, resolution: str) -> float:
        try:
            return self[resolution]
        except KeyError:
            raise ValueError(
                f"unknown resolution {resolution!r}; valid: {', '.join(RESOLUTIONS)}"
            ) from None


class Unset:
    def __repr__(self) -> str:
        return "<unset>"


UNSET: Any = Unset()


class Histogram:
    __slots__ = ("buckets", "count", "maximum", "minimum", "total")

    def __init__(self, *, bucketed: bool = True) -> None:
        # Buckets are in seconds: a custom histogram in another unit keeps none.
        self.buckets: list[int] | None = [0] * (len(BUCKETS) + 1) if bucketed else None
        self.count = 0
        self.total = 0.0
        self.minimum = math.inf
        self.maximum = -math.inf

    def observe(self, value: float) -> None:
        if self.buckets is not None:
            self.buckets[bisect.bisect_left(BUCKETS, value)] += 1
        self.count += 1
        self.total += value
        if value < self.minimum:
            self.minimum = value
        if value > self.maximum:
            self.maximum = value

    def merge(self, other: Histogram) -> None:
        self.count += other.count
        self.total += other.total
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)
        if self.buckets is not None and other.buckets is not None:
            self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]


def one_of(ours: str, ours_value: Any, theirs: str, theirs_value: Any, default: Any) -> Any:
    """A setting that chancy and Chancy 0.26 name differently; giving both is an error."""
    if ours_value is not UNSET and theirs_value is not UNSET:
        raise ConfigurationError(
            f"Metrics got both {ours}= and {theirs}= (Chancy 0.26's name for it); give only one"
        )
    if ours_value is not UNSET:
        return ours_value
    return default if theirs_value is UNSET else theirs_value


def positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"Metrics({name}={value!r}) must be an int >= 1")
    return value


def positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(f"Metrics({name}={value!r}) must be a positive number")
    return float(value)


def invalid(key: Any, value: Any, unit: Any) -> str | None:
    """Why a custom observation cannot be stored (Chancy 0.26's rules), or None."""
    if not isinstance(key, str) or "\x00" in key:
        return "a key must be a string without NUL characters"
    try:
        size = len(key.encode())
    except UnicodeEncodeError:
        return "a key must be valid text"
    if not 0 < size <= 1024:
        return "a key must be 1 to 1,024 bytes long"
    if not isinstance(unit, str) or "\x00" in unit or not 0 < len(unit) <= 64:
        return "a unit must be a string of 1 to 64 characters"
    try:
        unit.encode()
    except UnicodeEncodeError:
        return "a unit must be valid text"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"the value must be a number, not {type(value).__name__}"
    try:
        finite = math.isfinite(value)
    except OverflowError:
        finite = False
    if not finite:
        return "the value must be a finite number"
    return None


def build_retention(
    retention: Mapping[str, float] | None,
    max_points_per_resolution: Mapping[str, int] | None,
    maximum_metric_age: float | None,
) -> Retention:
    """Seconds kept per resolution from chancy's ``retention`` or Chancy 0.26's
    ``max_points_per_resolution`` and ``maximum_metric_age``, checked."""
    kept = Retention({k: float(v) for k, v in DEFAULT_RETENTION.items()})
    for key, value in (retention or {}).items():
        if key not in RESOLUTIONS:
            raise ConfigurationError(
                f"Metrics(retention=...) has unknown resolution {key!r}; valid:"
                f" {', '.join(RESOLUTIONS)}"
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigurationError(f"Metrics retention for {key!r} must be positive seconds")
        kept[key] = float(value)
    for key, points in (max_points_per_resolution or {}).items():
        if key not in RESOLUTIONS:
            raise ConfigurationError(
                f"Metrics(max_points_per_resolution=...) has unknown resolution {key!r};"
                f" valid: {', '.join(RESOLUTIONS)}"
            )
        if isinstance(points, bool) or not isinstance(points, int) or points <= 0:
            raise ConfigurationError(
                f"Metrics(max_points_per_resolution={{{key!r}: {points!r}}}) must be a"
                " positive number of buckets"
            )
        if key in (retention or {}):
            raise ConfigurationError(
                f"Metrics got the {key!r} resolution in both retention= and"
                " max_points_per_resolution=; give it in only one"
            )
        kept[key] = float(points * RESOLUTIONS[key])
    if maximum_metric_age is not None:
        age = positive("maximum_metric_age", maximum_metric_age)
        for key in kept:
            kept[key] = min(kept[key], age)
    return kept


def flush_params(
    counters: Mapping[tuple[str, str, str], int | float],
    histograms: Mapping[tuple[str, str, str], Histogram],
    gauges: Mapping[tuple[str, str, str], tuple[float, float]],
    unit_of: Callable[[str, str, str], str | None],
    now: float,
) -> dict[str, Any]:
    """The arrays ``metrics_add`` takes for one flush (one element per series)."""
    rows: list[tuple[Any, ...]] = []
    for (name, queue, func), value in sorted(counters.items()):
        unit = unit_of(name, queue, func)
        # A counter's value is count + total: whole increments in count (chancy's own
        # counters, exact at any size), anything else in total.
        whole = isinstance(value, int) and abs(value) < 2**62
        rows.append(
            (
                name,
                "counter",
                queue,
                func,
                value if whole else 0,
                0.0 if whole else float(value),
                None,
                unit,
                None,
                None,
                0.0,
            )
        )
    for (name, queue, func), hist in sorted(histograms.items()):
        unit = unit_of(name, queue, func)
        text = None
        if hist.buckets is not None:
            text = "{" + ",".join(map(str, hist.buckets)) + "}"
        rows.append(
            (
                name,
                "histogram",
                queue,
                func,
                hist.count,
                hist.total,
                text,
                unit,
                hist.minimum,
                hist.maximum,
                0.0,
            )
        )
    for (name, queue, func), (value, seen) in sorted(gauges.items()):
        unit = unit_of(name, queue, func)
        rows.append(
            (name, "gauge", queue, func, 1, value, None, unit, None, None, max(0.0, now - seen))
        )
    columns = (
        "names",
        "kinds",
        "queues",
        "funcs",
        "counts",
        "totals",
        "histograms",
        "units",
        "minimums",
        "maximums",
        "ages",
    )
    params: dict[str, Any] = {column: [row[i] for row in rows] for i, column in enumerate(columns)}
    return params
