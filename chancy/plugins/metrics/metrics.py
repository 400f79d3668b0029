"""Metrics: job counters, run-time histograms and queue depths, kept cheaply in the database.

Why in memory first: a busy worker finishes thousands of jobs a second, so counting each one
with a write would double the load. Each worker counts outcomes in memory (a dict update per
job, in ``on_job_completed``) and every ``flush_interval`` seconds adds what it counted to the
current bucket of every resolution with one UPSERT statement. The leader samples queue depths
(a capped count through the claim index, or the planner's estimate past the cap) and jobs
pushed (from the statistics collector's insert count, so pushes cost nothing extra). Names
and kinds are in :mod:`chancy.plugins.metrics.model`.

Resolutions ``1min``, ``5min``, ``1hour`` and ``1day`` are kept for ``retention`` seconds each
(the pruner calls :meth:`Metrics.cleanup`); counters and histograms also have an all-time
``total`` row that the Prometheus exposition reads.

Custom metrics, as in Chancy 0.26: job code (in the worker's process) and plugins report them
with :meth:`Metrics.increment_counter`, :meth:`Metrics.record_gauge` and
:meth:`Metrics.record_histogram_value` (or a worker's ``metrics.counter``, ``metrics.gauge``
and ``metrics.histogram`` hub events), under any key such as ``"orders:placed"``. They are
buffered and flushed with chancy's own series (one row per resolution, plus an all-time row
that records the key's kind and unit) and read back with :meth:`Metrics.get_metrics`, which
also offers chancy's job series under 0.26's keys (``queue:<name>:succeeded``,
``job:<func>:execution_time``, ``global:status:failed``...), and with the Prometheus text.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from chancy.job import QueuedJob
from chancy.plugin import Plugin
from chancy.plugins.metrics import reading, store
from chancy.plugins.metrics.model import (
    BUCKETS,
    DEFAULT_RETENTION,
    DEFAULT_UNIT,
    GAUGES,
    HISTOGRAMS,
    HUB_EVENTS,
    JOBS_EXPIRED,
    METRICS,
    OUTCOME_METRIC,
    RESOLUTIONS,
    START_TTL,
    UNSET,
    WARN_EVERY,
    Histogram,
    Metric,
    MetricPoint,
    build_retention,
    flush_params,
    invalid,
    one_of,
    positive,
    positive_int,
)
from chancy.plugins.metrics.prometheus import prometheus_text

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
    "Metric",
    "MetricPoint",
    "Metrics",
    "prometheus_text",
]

log = logging.getLogger("chancy.metrics")


class Metrics(Plugin):
    """Counters, histograms and gauges of the queue, aggregated in memory, stored per minute.

    :param flush_interval: seconds between a worker's writes of what it counted (default 15).
    :param sample_interval: seconds between the leader's samples of queue depths (default 60).
    :param retention: seconds each resolution is kept (missing keys keep the defaults).
    :param depth_cap: queue depths are counted exactly up to this many jobs, estimated above.
    :param max_buffered_points: custom observations buffered between flushes, counted as
        Chancy 0.26 did (one point per key and resolution); new keys past it are dropped with
        a warning until the next flush.

    Chancy 0.26's keywords are accepted too: ``sync_interval`` (``flush_interval``),
    ``collection_interval`` (``sample_interval``; 0.26 sampled table sizes with it, chancy
    samples queue depths), ``max_points_per_resolution`` (buckets kept per resolution: sets
    that resolution's ``retention`` to buckets x its width) and ``maximum_metric_age`` (an upper
    bound on every resolution's ``retention``).
    """

    Resolutions = RESOLUTIONS

    def __init__(
        self,
        *,
        flush_interval: float = UNSET,
        sample_interval: float = UNSET,
        retention: Mapping[str, float] | None = None,
        depth_cap: int = 10000,
        max_buffered_points: int = 10000,
        sync_interval: float = UNSET,
        collection_interval: float = UNSET,
        max_points_per_resolution: Mapping[str, int] | None = None,
        maximum_metric_age: float | None = None,
    ) -> None:
        super().__init__()
        flush_interval = one_of(
            "flush_interval", flush_interval, "sync_interval", sync_interval, 15
        )
        sample_interval = one_of(
            "sample_interval", sample_interval, "collection_interval", collection_interval, 60
        )
        self.flush_interval = positive("flush_interval", flush_interval)
        self.sample_interval = positive("sample_interval", sample_interval)
        self.retention = build_retention(retention, max_points_per_resolution, maximum_metric_age)
        self.depth_cap = positive_int("depth_cap", depth_cap)
        self.max_buffered_points = positive_int("max_buffered_points", max_buffered_points)
        self._counters: dict[tuple[str, str, str], int | float] = {}
        self._histograms: dict[tuple[str, str, str], Histogram] = {}
        #: Custom gauges: key -> (last value, monotonic time it was observed).
        self._gauges: dict[tuple[str, str, str], tuple[float, float]] = {}
        #: Custom keys seen by this process -> (kind, unit); a key keeps its first.
        self._types: dict[str, tuple[str, str]] = {}
        #: Custom series waiting for the next flush (bounded by max_buffered_points).
        self._custom: set[tuple[str, str, str]] = set()
        # Custom observations may come from job threads; the flush swaps buffers under it.
        self._lock = threading.Lock()
        self._last_warning = -math.inf
        self._handlers: dict[int, tuple[Worker, Any]] = {}
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

    def api_plugin(self) -> str | None:
        """The dashboard's routes and page for this plugin (Chancy 0.26's hook)."""
        return "chancy.plugins.metrics.api.MetricsApiPlugin"

    # -- counting (the hot path: dict updates only) -------------------------------------

    async def on_jobs_starting(self, *, jobs: list[QueuedJob], worker: Worker) -> list[QueuedJob]:
        now = time.monotonic()  # the batch form: one call per claim, not one per job
        self._started.update((job.id, now) for job in jobs)
        return jobs

    async def on_job_completed(
        self, *, worker: Worker, job: QueuedJob, exc: BaseException | None, result: Any
    ) -> QueuedJob:
        self.record(job)
        return job

    def record(self, job: QueuedJob, *, runtime: float | None = None) -> None:
        """Count one finished run of ``job`` (its state is the run's outcome)."""
        name = OUTCOME_METRIC.get(job.state)
        if name is None:
            return
        self.increment(name, queue := job.queue, func := job.func)
        started = self._started.pop(job.id, None)
        if runtime is None and started is not None:
            runtime = time.monotonic() - started
        if runtime is not None:
            self.observe("jobs.runtime", queue, func, runtime if runtime > 0.0 else 0.0)
        if job.started_at is not None and job.scheduled_at is not None:
            try:  # not contextlib.suppress, which costs more than the rest, for every job
                latency = (job.started_at - job.scheduled_at).total_seconds()
            except TypeError:  # one of them naive (a row edited by hand)
                return
            self.observe("jobs.claim_latency", queue, func, latency if latency > 0.0 else 0.0)

    def increment(self, name: str, queue: str = "", func: str = "", value: int | float = 1) -> None:
        """Add ``value`` to a counter (written at the next flush)."""
        key = (name, queue, func)
        self._counters[key] = self._counters.get(key, 0) + value

    def observe(self, name: str, queue: str, func: str, value: float) -> None:
        """Add one observation to a histogram (written at the next flush)."""
        key = (name, queue, func)
        hist = self._histograms.get(key)
        if hist is None:
            hist = self._histograms[key] = Histogram()
        hist.observe(value)

    # -- custom metrics (Chancy 0.26's API) -----------------------------------------------

    async def increment_counter(
        self, metric_key: str, value: float, *, unit: str = "count"
    ) -> None:
        """Add ``value`` to the counter ``metric_key``; each bucket holds the sum.

        Buffered in this process and written at the next flush (``flush_interval``), as in
        Chancy 0.26; call :meth:`flush` to write at once. Use one kind and one unit per key:
        an observation that disagrees with the key's first, an invalid key (1 to 1,024 bytes)
        or a value that is not a finite number is dropped with a warning, never raised, so a
        metric cannot fail a job.
        """
        self._record(metric_key, value, "counter", unit)

    async def record_gauge(self, metric_key: str, value: float, *, unit: str = "number") -> None:
        """Set the gauge ``metric_key``; each bucket keeps the latest value (across workers,
        by when it was observed)."""
        self._record(metric_key, value, "gauge", unit)

    async def record_histogram_value(
        self, metric_key: str, value: float, *, unit: str = "number"
    ) -> None:
        """Add one value to the histogram ``metric_key``; each bucket keeps its count, sum,
        minimum and maximum (and, for ``unit="seconds"``, Prometheus buckets)."""
        self._record(metric_key, value, "histogram", unit)

    def _warn(self, message: str) -> None:
        # Bad custom observations must neither flood the log nor stop a worker.
        now = time.monotonic()
        if now - self._last_warning >= WARN_EVERY:
            self._last_warning = now
            log.warning("%s (further such warnings are held back for a minute)", message)

    def _record(self, key: Any, value: Any, kind: str, unit: Any) -> None:
        unit = DEFAULT_UNIT[kind] if unit is None else unit
        problem = invalid(key, value, unit)
        if problem:
            self._warn(f"dropped the {kind} metric {str(key)[:100]!r}: {problem}")
            return
        if key in METRICS:
            self._warn(
                f"dropped the {kind} metric {key!r}: that name is one of chancy's own metrics;"
                " report custom metrics under another key"
            )
            return
        value = float(value)
        series = (key, "", "")
        with self._lock:
            known = self._types.setdefault(key, (kind, unit))
            if known != (kind, unit):
                self._warn(
                    f"dropped the {kind} metric {key!r} in {unit!r}: the key was first recorded"
                    f" as a {known[0]} in {known[1]!r}; use one kind and unit per key"
                )
                return
            if (
                series not in self._custom
                and (len(self._custom) + 1) * len(RESOLUTIONS) > self.max_buffered_points
            ):
                self._warn(
                    f"dropped the {kind} metric {key!r}: {len(self._custom)} custom metrics are"
                    " waiting for the next flush (max_buffered_points)"
                )
                return
            self._custom.add(series)
            if kind == "counter":
                self._counters[series] = self._counters.get(series, 0) + value
            elif kind == "gauge":
                self._gauges[series] = (value, time.monotonic())
            else:
                hist = self._histograms.get(series)
                if hist is None:
                    hist = self._histograms[series] = Histogram(bucketed=unit == "seconds")
                hist.observe(value)

    def _on_hub_metric(self, event: Any) -> None:
        body = event.body or {}
        if event.name == JOBS_EXPIRED:  # a claim failed jobs past their deadline
            for _, func in body.get("jobs", ()):
                self.increment("jobs.expired", body.get("queue", ""), func)
            return
        kind = event.name.removeprefix("metrics.")
        self._record(body.get("key"), body.get("value"), kind, body.get("unit"))

    async def on_worker_started(self, worker: Worker) -> None:
        # Chancy 0.26's Worker.increment_counter & co. emit these events on the worker's hub.
        if id(worker) in self._handlers:
            return
        handler = self._on_hub_metric
        for name in HUB_EVENTS:
            worker.hub.on(name, handler)
        self._handlers[id(worker)] = (worker, handler)

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
        with self._lock:
            counters, self._counters = self._counters, {}
            histograms, self._histograms = self._histograms, {}
            gauges, self._gauges = self._gauges, {}
            self._custom = set()
        if not counters and not histograms and not gauges:
            return 0
        now = time.monotonic()
        units = dict(self._types)

        def unit_of(name: str, queue: str, func: str) -> str | None:
            # Custom series carry their unit; chancy's own (per queue and function) none.
            known = units.get(name) if queue == func == "" else None
            return known[1] if known else None

        params = flush_params(counters, histograms, gauges, unit_of, now)
        params.update(self._resolution_params(total=True))
        try:
            await chancy.db.run(store.add(chancy.prefix, params))
        except BaseException:
            self._merge_back(counters, histograms, gauges)
            raise
        return len(params["names"])

    def _merge_back(
        self,
        counters: dict[tuple[str, str, str], int | float],
        histograms: dict[tuple[str, str, str], Histogram],
        gauges: dict[tuple[str, str, str], tuple[float, float]],
    ) -> None:
        with self._lock:
            for key, count in counters.items():
                self._counters[key] = self._counters.get(key, 0) + count
            for key, hist in histograms.items():
                mine = self._histograms.get(key)
                if mine is None:
                    self._histograms[key] = hist
                else:
                    mine.merge(hist)
            for key, observed in gauges.items():
                # A newer value recorded meanwhile wins.
                self._gauges.setdefault(key, observed)
            self._custom.update(k for k in (*counters, *histograms, *gauges) if k[0] in self._types)

    async def queue_depths(self, chancy: Chancy) -> dict[str, dict[str, Any]]:
        """Waiting and running jobs per queue: exact up to ``depth_cap``, estimated above."""
        return await reading.queue_depths(chancy, self.depth_cap)

    async def sample(self, chancy: Chancy) -> dict[str, dict[str, Any]]:
        """The leader's sample: queue depth gauges and jobs pushed since the last sample."""
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
            params = {
                "names": names,
                "queues": queues,
                "values": values,
                **self._resolution_params(total=False),
            }
            await chancy.db.run(store.set_gauges(chancy.prefix, params))
        row = await chancy.db.run(store.jobs_inserted(chancy.prefix))
        inserted = int(row["inserted"]) if row else 0
        if self._last_inserted is not None and inserted > self._last_inserted:
            self.increment("jobs.pushed", value=inserted - self._last_inserted)
        self._last_inserted = inserted
        return depths

    async def cleanup(self, chancy: Chancy) -> int | None:
        """Delete buckets past their resolution's retention; return rows deleted."""
        row = await chancy.db.run(store.cleanup(chancy.prefix, self.retention))
        return int(row["deleted"]) if row else 0

    # -- the service --------------------------------------------------------------------

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        has_pruner = any(p.calls_cleanup for p in chancy.plugins.values())
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
        stale = [k for k, t in self._started.items() if now - t > START_TTL]
        for key in stale:
            del self._started[key]

    async def on_worker_stopped(self, worker: Worker) -> None:
        try:
            await self.flush(worker.chancy)
        except Exception:
            log.warning("could not write the last metrics at shutdown", exc_info=True)
        registered = self._handlers.pop(id(worker), None)
        if registered is not None:
            for name in HUB_EVENTS:
                worker.hub.remove(name, registered[1])

    # -- reading (Chancy 0.26's API; see chancy.plugins.metrics.reading) ----------------

    def window(
        self,
        resolution: str = "5min",
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        range_seconds: int | None = None,
        limit: int | None = None,
    ) -> tuple[datetime, datetime]:
        """The ``[start, end)`` a :meth:`get_metrics` call with these arguments covers, as
        in Chancy 0.26 (see :func:`chancy.plugins.metrics.reading.window`)."""
        return reading.window(
            self.retention,
            resolution,
            start=start,
            end=end,
            range_seconds=range_seconds,
            limit=limit,
        )

    async def list_metrics(self, chancy: Chancy) -> list[str]:
        """Every key :meth:`get_metrics` can answer, in alphabetical order."""
        return await reading.list_metrics(chancy)

    async def get_metrics(
        self,
        chancy: Chancy,
        metric_prefix: str | None = None,
        worker_id: str | None = None,
        *,
        resolution: str = "5min",
        start: datetime | None = None,
        end: datetime | None = None,
        range_seconds: int | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """Metrics whose key is ``metric_prefix`` or starts with it and ``:``, over a window:
        Chancy 0.26's call and answer (see :func:`chancy.plugins.metrics.reading.get_metrics`)."""
        return await reading.get_metrics(
            chancy,
            self.retention,
            metric_prefix,
            worker_id,
            resolution=resolution,
            start=start,
            end=end,
            range_seconds=range_seconds,
            limit=limit,
        )

    # -- reading (chancy's series) --------------------------------------------------------

    get_series = staticmethod(reading.get_series)

    @staticmethod
    async def get_names(chancy: Chancy) -> list[dict[str, Any]]:
        """The series that exist: ``name, kind, queue, func``."""
        return await chancy.db.run(store.names(chancy.prefix))

    @staticmethod
    async def get_totals(chancy: Chancy) -> list[dict[str, Any]]:
        """All-time counters and histograms per series."""
        return await chancy.db.run(store.totals(chancy.prefix))

    @staticmethod
    async def get_latest_gauges(chancy: Chancy) -> list[dict[str, Any]]:
        """The latest value of every gauge series."""
        return await chancy.db.run(store.latest_gauges(chancy.prefix))

    @classmethod
    async def prometheus(cls, chancy: Chancy) -> str:
        """The Prometheus text exposition of every stored metric."""
        totals = await cls.get_totals(chancy)
        gauges = await cls.get_latest_gauges(chancy)
        return prometheus_text(totals, gauges)
