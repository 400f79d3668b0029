"""Metrics: job counters, run-time histograms and queue depths, kept cheaply in the database.

Why in memory first: a busy worker finishes thousands of jobs a second, so counting each one
with a write would double the load. Each worker counts outcomes in memory (a dict update per
job, in ``on_job_completed``) and every ``flush_interval`` seconds adds what it counted to the
current bucket of every resolution with one UPSERT statement. The leader samples queue depths
(a capped count through the claim index, or the planner's estimate past the cap) and jobs
pushed (from the statistics collector's insert count, so pushes cost nothing extra).

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

Resolutions ``1min``, ``5min``, ``1hour`` and ``1day`` are kept for ``retention`` seconds each
(the pruner calls :meth:`Metrics.cleanup`); counters and histograms also have an all-time
``total`` row that the Prometheus exposition reads.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from chancy.errors import ConfigurationError
from chancy.job import QueuedJob
from chancy.plugin import Plugin
from chancy.store import Spec
from chancy.store.loader import Queries

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.worker import Worker

__all__ = [
    "BUCKETS",
    "DEFAULT_RETENTION",
    "GAUGES",
    "HISTOGRAMS",
    "METRICS",
    "RESOLUTIONS",
    "Metrics",
    "prometheus_text",
]

log = logging.getLogger("chancy.metrics")

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

COUNTERS = ("jobs.succeeded", "jobs.failed", "jobs.retried", "jobs.snoozed", "jobs.pushed")
HISTOGRAMS = ("jobs.runtime", "jobs.claim_latency")
GAUGES = ("queue.waiting", "queue.running")
#: Every metric name -> its kind.
METRICS: dict[str, str] = {
    **{name: "counter" for name in COUNTERS},
    **{name: "histogram" for name in HISTOGRAMS},
    **{name: "gauge" for name in GAUGES},
}

_OUTCOME_METRIC = {
    QueuedJob.State.SUCCEEDED: "jobs.succeeded",
    QueuedJob.State.FAILED: "jobs.failed",
    QueuedJob.State.RETRYING: "jobs.retried",
    QueuedJob.State.PENDING: "jobs.snoozed",
}
#: Start times older than this are forgotten (their job was cancelled or recovered).
_START_TTL = 86400.0


@functools.cache
def metrics_queries(prefix: str) -> Queries:
    """The named queries of ``chancy/plugins/metrics/sql`` for one prefix, loaded once."""
    return Queries("chancy.plugins.metrics.sql", prefix)


class _Histogram:
    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.buckets[bisect.bisect_left(BUCKETS, value)] += 1
        self.count += 1
        self.total += value


class Metrics(Plugin):
    """Counters, histograms and gauges of the queue, aggregated in memory, stored per minute.

    :param flush_interval: seconds between a worker's writes of what it counted.
    :param sample_interval: seconds between the leader's samples of queue depths.
    :param retention: seconds each resolution is kept (missing keys keep the defaults).
    :param depth_cap: queue depths are counted exactly up to this many jobs, estimated above.
    """

    Resolutions = RESOLUTIONS

    def __init__(
        self,
        *,
        flush_interval: float = 15,
        sample_interval: float = 60,
        retention: Mapping[str, float] | None = None,
        depth_cap: int = 10000,
    ) -> None:
        super().__init__()
        for name, value in (
            ("flush_interval", flush_interval),
            ("sample_interval", sample_interval),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigurationError(f"Metrics({name}={value!r}) must be a positive number")
        self.retention = {k: float(v) for k, v in DEFAULT_RETENTION.items()}
        for key, value in (retention or {}).items():
            if key not in RESOLUTIONS:
                raise ConfigurationError(
                    f"Metrics(retention=...) has unknown resolution {key!r}; valid:"
                    f" {', '.join(RESOLUTIONS)}"
                )
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigurationError(f"Metrics retention for {key!r} must be positive seconds")
            self.retention[key] = float(value)
        if isinstance(depth_cap, bool) or not isinstance(depth_cap, int) or depth_cap < 1:
            raise ConfigurationError(f"Metrics(depth_cap={depth_cap!r}) must be an int >= 1")
        self.flush_interval = float(flush_interval)
        self.sample_interval = float(sample_interval)
        self.depth_cap = depth_cap
        self._counters: dict[tuple[str, str, str], int] = {}
        self._histograms: dict[tuple[str, str, str], _Histogram] = {}
        self._started: dict[Any, float] = {}
        self._last_sample = -math.inf
        self._last_inserted: int | None = None

    @classmethod
    def get_identifier(cls) -> str:
        return "chancy.metrics"

    def migrate_key(self) -> str | None:
        return "metrics"

    def migrate_package(self) -> str | None:
        return "chancy.plugins.metrics.migrations"

    # -- counting (the hot path: dict updates only) -------------------------------------

    async def on_job_starting(self, *, job: QueuedJob, worker: Worker) -> QueuedJob:
        self._started[job.id] = time.monotonic()
        return job

    async def on_job_completed(
        self, *, worker: Worker, job: QueuedJob, exc: BaseException | None, result: Any
    ) -> QueuedJob:
        self.record(job)
        return job

    def record(self, job: QueuedJob, *, runtime: float | None = None) -> None:
        """Count one finished run of ``job`` (its state is the run's outcome)."""
        name = _OUTCOME_METRIC.get(job.state)
        if name is None:
            return
        key = (name, job.queue, job.func)
        self._counters[key] = self._counters.get(key, 0) + 1
        started = self._started.pop(job.id, None)
        if runtime is None and started is not None:
            runtime = time.monotonic() - started
        if runtime is not None:
            self.observe("jobs.runtime", job.queue, job.func, max(0.0, runtime))
        if job.started_at is not None and job.scheduled_at is not None:
            with contextlib.suppress(TypeError):
                latency = (job.started_at - job.scheduled_at).total_seconds()
                self.observe("jobs.claim_latency", job.queue, job.func, max(0.0, latency))

    def increment(self, name: str, queue: str = "", func: str = "", value: int = 1) -> None:
        """Add ``value`` to a counter (written at the next flush)."""
        key = (name, queue, func)
        self._counters[key] = self._counters.get(key, 0) + value

    def observe(self, name: str, queue: str, func: str, value: float) -> None:
        """Add one observation to a histogram (written at the next flush)."""
        key = (name, queue, func)
        hist = self._histograms.get(key)
        if hist is None:
            hist = self._histograms[key] = _Histogram()
        hist.observe(value)

    # -- writing ------------------------------------------------------------------------

    def _resolution_params(self, *, total: bool) -> dict[str, Any]:
        names: list[str] = list(RESOLUTIONS)
        steps: list[float | None] = [float(s) for s in RESOLUTIONS.values()]
        if total:
            names.append("total")
            steps.append(None)
        return {"resolutions": names, "steps": steps}

    async def flush(self, chancy: Chancy) -> int:
        """Write what was counted since the last flush; return the number of series written.

        What could not be written (the database is unreachable) is kept for the next flush.
        """
        counters, self._counters = self._counters, {}
        histograms, self._histograms = self._histograms, {}
        if not counters and not histograms:
            return 0
        rows: list[tuple[str, str, str, str, int, float, str | None]] = []
        for (name, queue, func), count in sorted(counters.items()):
            rows.append((name, "counter", queue, func, count, 0.0, None))
        for (name, queue, func), hist in sorted(histograms.items()):
            text = "{" + ",".join(map(str, hist.buckets)) + "}"
            rows.append((name, "histogram", queue, func, hist.count, hist.total, text))
        params = {
            "names": [r[0] for r in rows],
            "kinds": [r[1] for r in rows],
            "queues": [r[2] for r in rows],
            "funcs": [r[3] for r in rows],
            "counts": [r[4] for r in rows],
            "totals": [r[5] for r in rows],
            "histograms": [r[6] for r in rows],
            **self._resolution_params(total=True),
        }
        try:
            await chancy._run(Spec(metrics_queries(chancy.prefix)["metrics_add"], params))
        except BaseException:
            self._merge_back(counters, histograms)
            raise
        return len(rows)

    def _merge_back(
        self,
        counters: dict[tuple[str, str, str], int],
        histograms: dict[tuple[str, str, str], _Histogram],
    ) -> None:
        for key, count in counters.items():
            self._counters[key] = self._counters.get(key, 0) + count
        for key, hist in histograms.items():
            mine = self._histograms.get(key)
            if mine is None:
                self._histograms[key] = hist
                continue
            mine.count += hist.count
            mine.total += hist.total
            mine.buckets = [a + b for a, b in zip(mine.buckets, hist.buckets, strict=True)]

    async def queue_depths(self, chancy: Chancy) -> dict[str, dict[str, Any]]:
        """Waiting and running jobs per queue: exact up to ``depth_cap``, estimated above."""
        q = metrics_queries(chancy.prefix)
        rows: list[dict[str, Any]] = await chancy._run(
            Spec(q["metrics_queue_depth"], {"cap": self.depth_cap}, "all")
        )
        out: dict[str, dict[str, Any]] = {}
        for row in rows:
            waiting = int(row["waiting"])
            estimated = False
            if waiting >= self.depth_cap:
                plan: Any = await chancy._run(
                    Spec(q["metrics_queue_waiting_estimate"], {"queue": row["queue"]}, "one")
                )
                waiting = max(waiting, _plan_rows(plan))
                estimated = True
            out[row["queue"]] = {
                "waiting": waiting,
                "running": int(row["running"]),
                "estimated": estimated,
            }
        return out

    async def sample(self, chancy: Chancy) -> dict[str, dict[str, Any]]:
        """The leader's sample: queue depth gauges and jobs pushed since the last sample."""
        q = metrics_queries(chancy.prefix)
        depths = await self.queue_depths(chancy)
        names: list[str] = []
        queues: list[str] = []
        values: list[float] = []
        for queue, depth in depths.items():
            for gauge, key in (("queue.waiting", "waiting"), ("queue.running", "running")):
                names.append(gauge)
                queues.append(queue)
                values.append(float(depth[key]))
        if names:
            await chancy._run(
                Spec(
                    q["metrics_set_gauges"],
                    {
                        "names": names,
                        "queues": queues,
                        "values": values,
                        **self._resolution_params(total=False),
                    },
                )
            )
        row: Any = await chancy._run(
            Spec(q["metrics_jobs_inserted"], {"table": f"{chancy.prefix}jobs"}, "one")
        )
        inserted = int(row["inserted"]) if row else 0
        if self._last_inserted is not None and inserted > self._last_inserted:
            self.increment("jobs.pushed", value=inserted - self._last_inserted)
        self._last_inserted = inserted
        return depths

    async def cleanup(self, chancy: Chancy) -> int | None:
        """Delete buckets past their resolution's retention; return rows deleted."""
        row: Any = await chancy._run(
            Spec(
                metrics_queries(chancy.prefix)["metrics_cleanup"],
                {
                    "resolutions": list(self.retention),
                    "keep": [float(v) for v in self.retention.values()],
                },
                "one",
            )
        )
        return int(row["deleted"]) if row else 0

    # -- the service --------------------------------------------------------------------

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        has_pruner = "chancy.pruner" in chancy.plugins
        last_cleanup = time.monotonic()
        while True:
            await self.sleep(min(self.flush_interval, self.sample_interval))
            now = time.monotonic()
            if worker.is_leader.is_set() and now - self._last_sample >= self.sample_interval:
                self._last_sample = now
                await self.sample(chancy)
                if not has_pruner and now - last_cleanup > 3600:
                    last_cleanup = now
                    await self.cleanup(chancy)
            await self.flush(chancy)
            self._forget_stale_starts(now)

    def _forget_stale_starts(self, now: float) -> None:
        if not self._started:
            return
        stale = [k for k, t in self._started.items() if now - t > _START_TTL]
        for key in stale:
            del self._started[key]

    async def on_worker_stopped(self, worker: Worker) -> None:
        try:
            await self.flush(worker.chancy)
        except Exception:
            log.warning("could not write the last metrics at shutdown", exc_info=True)

    # -- reading ------------------------------------------------------------------------

    @staticmethod
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
        rows: list[dict[str, Any]] = await chancy._run(
            Spec(
                metrics_queries(chancy.prefix)["metrics_series"],
                {
                    "names": list(names),
                    "resolution": resolution,
                    "since": since,
                    "until": until,
                    "queue": queue,
                    "func": func,
                    "limit": limit,
                },
                "all",
            )
        )
        return rows

    @staticmethod
    async def get_names(chancy: Chancy) -> list[dict[str, Any]]:
        """The series that exist: ``name, kind, queue, func``."""
        rows: list[dict[str, Any]] = await chancy._run(
            Spec(metrics_queries(chancy.prefix)["metrics_names"], None, "all")
        )
        return rows

    @staticmethod
    async def get_totals(chancy: Chancy) -> list[dict[str, Any]]:
        """All-time counters and histograms per series."""
        rows: list[dict[str, Any]] = await chancy._run(
            Spec(metrics_queries(chancy.prefix)["metrics_totals"], None, "all")
        )
        return rows

    @staticmethod
    async def get_latest_gauges(chancy: Chancy) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await chancy._run(
            Spec(metrics_queries(chancy.prefix)["metrics_latest_gauges"], None, "all")
        )
        return rows

    @classmethod
    async def prometheus(cls, chancy: Chancy) -> str:
        """The Prometheus text exposition of every stored metric."""
        totals = await cls.get_totals(chancy)
        gauges = await cls.get_latest_gauges(chancy)
        return prometheus_text(totals, gauges)


def _plan_rows(plan: Any) -> int:
    try:
        document = plan["QUERY PLAN"] if isinstance(plan, Mapping) else plan[0]
        if isinstance(document, str):
            import json

            document = json.loads(document)
        return int(document[0]["Plan"]["Plan Rows"])
    except (KeyError, IndexError, TypeError, ValueError):
        return 0


def _prom_name(name: str) -> str:
    return "chancy_" + "".join(c if c.isalnum() else "_" for c in name)


def _prom_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_prom_label(v)}"' for k, v in pairs if v != "")
    return "{" + inner + "}" if inner else ""


def _fmt(value: float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(float(value))


def prometheus_text(
    totals: Iterable[Mapping[str, Any]], gauges: Iterable[Mapping[str, Any]]
) -> str:
    """Render all-time rows and latest gauges in the Prometheus text format (0.0.4)."""
    out: list[str] = []
    by_name: dict[str, list[Mapping[str, Any]]] = {}
    for row in totals:
        by_name.setdefault(row["name"], []).append(row)
    for name in sorted(by_name):
        rows = by_name[name]
        kind = rows[0]["kind"]
        if kind == "counter":
            metric = _prom_name(name) + "_total"
            out.append(f"# HELP {metric} chancy {name} (all time)")
            out.append(f"# TYPE {metric} counter")
            for row in rows:
                labels = _labels((("queue", row["queue"]), ("func", row["func"])))
                out.append(f"{metric}{labels} {int(row['count'])}")
        elif kind == "histogram":
            metric = _prom_name(name) + "_seconds"
            out.append(f"# HELP {metric} chancy {name} in seconds (all time)")
            out.append(f"# TYPE {metric} histogram")
            for row in rows:
                base = (("queue", row["queue"]), ("func", row["func"]))
                counts = list(row["histogram"] or [])
                cumulative = 0
                for bound, count in zip((*BUCKETS, math.inf), counts, strict=False):
                    cumulative += int(count)
                    le = "+Inf" if bound == math.inf else _fmt(float(bound))
                    out.append(f"{metric}_bucket{_labels((*base, ('le', le)))} {cumulative}")
                out.append(f"{metric}_sum{_labels(base)} {_fmt(float(row['total']))}")
                out.append(f"{metric}_count{_labels(base)} {int(row['count'])}")
    gauge_rows: dict[str, list[Mapping[str, Any]]] = {}
    for row in gauges:
        gauge_rows.setdefault(row["name"], []).append(row)
    for name in sorted(gauge_rows):
        metric = _prom_name(name)
        out.append(f"# HELP {metric} chancy {name} (last sample)")
        out.append(f"# TYPE {metric} gauge")
        for row in gauge_rows[name]:
            labels = _labels((("queue", row["queue"]), ("func", row["func"])))
            out.append(f"{metric}{labels} {_fmt(float(row['value']))}")
    return "\n".join(out) + "\n"
