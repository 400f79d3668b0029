"""The Metrics plugin's dashboard extension: the metrics page, and its series on other pages.

Served only while the Metrics plugin is installed (``Metrics.api_plugin()`` names it)::

    GET /api/v1/metrics          {"installed": true, "resolutions", "known", "custom", "metrics"}
    GET /api/v1/metrics/{name}?resolution=&since=&until=&queue=&func=
                                 {"name", "kind", "resolution", "since", "until", "points"}

It also adds the last hour's throughput to the overview (cached for the dashboard's
``throughput_ttl``: it changes only when workers flush), the all-time counts per function to
the functions list, the resolutions to the configuration, and every stored series to
``/metrics`` (counters, histograms, and the gauges last sampled).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from chancy.plugins.api.api_plugin import ApiPlugin, RouteT
from chancy.plugins.api.http import ApiError, parse_time
from chancy.plugins.metrics import store
from chancy.plugins.metrics.metrics import (
    METRICS,
    RESOLUTIONS,
    Metrics,
    prometheus_text,
)

if TYPE_CHECKING:
    from psycopg import AsyncCursor
    from starlette.requests import Request

    from chancy.app import Chancy

__all__ = ["MetricsApiPlugin"]

_OUTCOMES = ("jobs.succeeded", "jobs.failed", "jobs.retried")


class MetricsApiPlugin(ApiPlugin):
    """Routes and page additions for the Metrics plugin (Chancy 0.26's name)."""

    def __init__(self, api: Any) -> None:
        super().__init__(api)
        self._throughput: tuple[float, list[dict[str, Any]]] | None = None

    def name(self) -> str:
        return "metrics"

    def routes(self) -> list[RouteT]:
        return [
            {
                "path": "/api/v1/metrics",
                "endpoint": self.index,
                "methods": ["GET"],
                "name": "get_metrics",
            },
            {
                "path": "/api/v1/metrics/{name}",
                "endpoint": self.metric,
                "methods": ["GET"],
                "name": "get_metric_detail",
            },
        ]

    # -- routes ---------------------------------------------------------------------------

    @staticmethod
    async def index(request: Request, *, chancy: Chancy, worker: Any) -> Any:
        names = await Metrics.get_names(chancy)
        return {
            "installed": True,
            "resolutions": list(RESOLUTIONS),
            "known": METRICS,
            # Metrics reported by job code and plugins (Metrics.increment_counter & co.).
            "custom": {n["name"]: n["kind"] for n in names if n["name"] not in METRICS},
            "metrics": names,
        }

    @staticmethod
    async def metric(request: Request, *, chancy: Chancy, worker: Any) -> Any:
        name = request.path_params["name"]
        kind = METRICS.get(name)
        if kind is None:
            stored = [n for n in await Metrics.get_names(chancy) if n["name"] == name]
            if not stored:
                raise ApiError(
                    404,
                    f"unknown metric {name[:100]!r}; known: {', '.join(METRICS)} and the custom"
                    " metrics listed by /api/v1/metrics",
                )
            kind = stored[0]["kind"]
        params = dict(request.query_params)
        resolution = params.pop("resolution", "1min")
        if resolution not in RESOLUTIONS:
            raise ApiError(400, f"resolution must be one of {', '.join(RESOLUTIONS)}")
        raw_since, raw_until = params.pop("since", None), params.pop("until", None)
        since = parse_time(raw_since, "since") if raw_since else None
        until = parse_time(raw_until, "until") if raw_until else None
        queue = params.pop("queue", None) or None
        func = params.pop("func", None) or None
        if params:
            raise ApiError(400, f"unknown parameters {sorted(params)[:10]}")
        if since is None:
            since = datetime.now(UTC) - timedelta(seconds=RESOLUTIONS[resolution] * 60)
        if until is not None and until < since:
            raise ApiError(400, "until must be after since")
        rows = await Metrics.get_series(
            chancy,
            [name],
            resolution=resolution,
            since=since,
            until=until,
            queue=queue,
            func=func,
            limit=20000,
        )
        return {
            "name": name,
            "kind": kind,
            "resolution": resolution,
            "since": since,
            "until": until,
            "points": rows,
        }

    # -- additions to the dashboard's pages -----------------------------------------------

    def configuration(self) -> Mapping[str, Any]:
        return {"resolutions": list(RESOLUTIONS)}

    async def overview(self, cursor: AsyncCursor[Any]) -> Mapping[str, Any]:
        """The last hour's outcomes per minute, summed over queues and functions."""
        cached = self._throughput
        if cached is not None and cached[0] > time.monotonic():
            return {"throughput": cached[1]}
        now = datetime.now(UTC)
        await cursor.execute(
            store.series_query(self.api.chancy.prefix),
            {
                "names": list(_OUTCOMES),
                "resolution": "1min",
                "since": now - timedelta(hours=1),
                "until": now + timedelta(minutes=5),
                "queue": None,
                "func": None,
                "limit": 20000,
            },
        )
        per_bucket: dict[str, dict[str, Any]] = {}
        for row in await cursor.fetchall():
            key = row["bucket"].isoformat()
            entry = per_bucket.setdefault(
                key, {"bucket": row["bucket"], "succeeded": 0, "failed": 0, "retried": 0}
            )
            entry[row["name"].split(".", 1)[1]] += int(row["count"])
        throughput = [per_bucket[k] for k in sorted(per_bucket)]
        self._throughput = (time.monotonic() + self.api.throughput_ttl, throughput)
        return {"throughput": throughput}

    async def function_counts(self) -> Iterable[Mapping[str, Any]]:
        """All-time counters per function (succeeded, failed, retried, ...)."""
        return [
            {
                "func": row["func"],
                "queue": row["queue"],
                "counter": row["name"].split(".", 1)[-1],
                "count": int(row["count"]),
            }
            for row in await Metrics.get_totals(self.api.db)
            if row["kind"] == "counter" and row["func"]
        ]

    async def prometheus(self) -> str:
        db = self.api.db
        text = prometheus_text(await Metrics.get_totals(db), await Metrics.get_latest_gauges(db))
        return text if text.strip() else ""
