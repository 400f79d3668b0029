"""System routes: the configuration the UI starts from, server facts, the overview (one cheap
request per poll) and ``/metrics`` for Prometheus.

``/metrics`` always answers live gauges read from the tables (queue depths, running jobs, how
long each queue's next job has been due, live workers, the leader), so an alert works from a
worker's first scrape; installed extensions (the Metrics plugin's counters and histograms)
add their own lines after them.
"""

from __future__ import annotations

import platform
from datetime import datetime
from importlib import metadata
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from chancy.plugins.api.counts import STATES
from chancy.plugins.api.routes.queues import queue_view
from chancy.queue import EXECUTORS

if TYPE_CHECKING:
    from chancy.plugins.api.dashboard import Dashboard

__all__ = ["SystemRoutes", "live_gauges"]

PROMETHEUS_TYPE = "text/plain; version=0.0.4"
#: The overview lists at most this many running jobs on dead workers.
STUCK_SHOWN = 20
#: Page names of the extensions the UI has pages for -> the ``features`` flag it reads.
_FEATURES = {
    "metrics": "metrics",
    "cron": "cron",
    "workflow": "workflows",
    "trigger": "triggers",
    "batch": "batches",
}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def live_gauges(depths: dict[str, dict[str, Any]], cluster: dict[str, Any]) -> str:
    """The live gauges in the Prometheus text format (0.0.4)."""
    out: list[str] = []

    def family(name: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} gauge")
        out.extend(f"{name}{labels} {_number(value)}" for labels, value in samples)

    queues = sorted(depths)
    by_queue = [(f'{{queue="{_label(q)}"}}', q) for q in queues]
    family(
        "chancy_queue_waiting_jobs",
        "jobs pending or retrying per queue (exact up to the count threshold, estimated above)",
        [(labels, depths[q]["waiting"]) for labels, q in by_queue],
    )
    family(
        "chancy_queue_running_jobs",
        "jobs running per queue",
        [(labels, depths[q]["running"]) for labels, q in by_queue],
    )
    family(
        "chancy_queue_oldest_waiting_seconds",
        "seconds the job a queue would claim next has been due (per priority, the oldest; 0"
        " when none is due)",
        [(labels, depths[q]["oldest_due_seconds"]) for labels, q in by_queue],
    )
    family("chancy_workers_live", "workers with a live heartbeat", [("", cluster["live_workers"])])
    leader = cluster.get("leader")
    family(
        "chancy_leader_present",
        "1 while a worker holds a live leadership lease, else 0",
        [("", 1 if leader else 0)],
    )
    family(
        "chancy_leader_info",
        "the worker holding the leadership lease (1)",
        [(f'{{worker_id="{_label(str(leader))}"}}', 1)] if leader else [],
    )
    return "\n".join(out) + "\n"


class SystemRoutes:
    """Routes for configuration, system facts, the overview and Prometheus."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    async def configuration(self, request: Request) -> Any:
        d = self.dashboard
        chancy = d.chancy
        pages = sorted({extension.name() for extension in d.extensions})
        answer: dict[str, Any] = {
            "prefix": chancy.prefix,
            "notifications": chancy.notifications,
            "min_connection_pool_size": chancy.min_connection_pool_size,
            "max_connection_pool_size": chancy.max_connection_pool_size,
            "plugins": [
                {
                    "identifier": identifier,
                    "class": f"{type(p).__module__}.{type(p).__qualname__}",
                    "scope": p.get_scope().value,
                    "migrate_key": p.migrate_key(),
                }
                for identifier, p in chancy.plugins.items()
            ],
            # The extensions installed, by name: the UI shows a plugin's page only then.
            "pages": pages,
            "features": {flag: page in pages for page, flag in _FEATURES.items()},
            "executors": EXECUTORS,
            "states": STATES,
            "limits": {
                "max_page_size": d.max_page_size,
                "max_bulk": d.max_bulk,
                "count_threshold": d.count_threshold,
                "dashboard_pool_size": d.pool_size,
                "user_concurrency": d.user_concurrency,
                "token_ttl": d.signer.ttl,
            },
        }
        for extension in d.extensions:
            for key, value in extension.configuration().items():
                answer.setdefault(key, value)
        return answer

    async def system(self, request: Request) -> Any:
        d = self.dashboard
        row = await d.fetch_one("api_system", {"jobs": f"{d.chancy.prefix}jobs"}) or {}
        versions = await d.fetch_all("api_schema_versions")
        try:
            version = metadata.version("chancy")
        except metadata.PackageNotFoundError:
            version = None
        return {
            "chancy_version": version,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "server": row,
            "schema_versions": {r["version_of"]: r["version"] for r in versions},
        }

    async def overview(self, request: Request) -> Any:
        # One statement for the page (it is polled every few seconds), plus what extensions
        # add (the Metrics plugin's throughput, which it caches between its flushes).
        d = self.dashboard
        extra: dict[str, Any] = {"throughput": []}
        async with d.cursor() as cur:
            await cur.execute(d.q["api_overview"], {"cap": d.count_threshold, "stuck": STUCK_SHOWN})
            row: Any = await cur.fetchone()
            queues = []
            for raw in row["queues"]:
                waiting, estimated = await d.counter.waiting(
                    cur, raw["name"], int(raw.pop("waiting"))
                )
                running = int(raw.pop("running"))
                if isinstance(raw.get("resume_at"), str):
                    raw["resume_at"] = datetime.fromisoformat(raw["resume_at"])
                depth = {"waiting": waiting, "running": running, "estimated": estimated}
                queues.append({**queue_view(raw), **depth})
            for extension in d.extensions:
                extra.update(await extension.overview(cur))
        workers, stuck = row["workers"], row["stuck"]
        live = [w for w in workers if w["alive"]]
        return {
            "queues": queues,
            "workers": {
                "live": len(live),
                "total": len(workers),
                "leader": next((w["worker_id"] for w in live if w["is_leader"]), None),
            },
            "alerts": _alerts(queues, workers, stuck),
            **extra,
        }

    async def prometheus(self, request: Request) -> Response:
        d = self.dashboard
        async with d.cursor() as cur:
            depths = await d.counter.depths(cur)
            await cur.execute(d.q["api_cluster"])
            cluster: Any = await cur.fetchone()
        parts = [live_gauges(depths, cluster)]
        for extension in d.extensions:
            text = await extension.prometheus()
            if text.strip():
                parts.append(text if text.endswith("\n") else text + "\n")
        return PlainTextResponse("".join(parts), media_type=PROMETHEUS_TYPE)

    def routes(self) -> list[Route]:
        r = self.dashboard.route
        get = ["GET"]
        return [
            Route("/metrics", r(self.prometheus, auth="metrics"), methods=get),
            Route("/api/v1/configuration", r(self.configuration, database=False), methods=get),
            Route("/api/v1/system", r(self.system), methods=get),
            Route("/api/v1/overview", r(self.overview), methods=get),
        ]


def _alerts(
    queues: list[dict[str, Any]], workers: list[dict[str, Any]], stuck: list[Any]
) -> list[dict[str, Any]]:
    """What the overview warns about: no workers or leader, jobs on dead workers, queues that
    are invalid, paused, or waiting with nobody serving them."""
    alerts: list[dict[str, Any]] = []
    live = [w for w in workers if w["alive"]]
    if not live:
        alerts.append({"level": "error", "kind": "no_workers", "message": "no live workers"})
    elif not any(w["is_leader"] for w in live):
        alerts.append(
            {
                "level": "warning",
                "kind": "no_leader",
                "message": "no worker holds leadership (recovery and cron are not running)",
            }
        )
    if stuck:
        more = "+" if len(stuck) >= STUCK_SHOWN else ""
        alerts.append(
            {
                "level": "error",
                "kind": "jobs_on_dead_workers",
                "message": f"{len(stuck)}{more} running job(s) on workers without a live heartbeat",
                "jobs": [str(job_id) for job_id in stuck],
            }
        )
    for q in queues:
        if q["invalid"]:
            alerts.append(
                {
                    "level": "error",
                    "kind": "queue_invalid",
                    "message": f"queue {q['name']} has invalid stored settings (workers skip it"
                    f" or keep the settings they read before): {q['invalid']}",
                    "queue": q["name"],
                }
            )
        elif q["state"] == "paused":
            alerts.append(
                {
                    "level": "warning",
                    "kind": "queue_paused",
                    "message": f"queue {q['name']} is paused",
                    "queue": q["name"],
                }
            )
        elif q["waiting"] and not any(q["name"] in (w["queues"] or []) for w in live):
            alerts.append(
                {
                    "level": "warning",
                    "kind": "queue_unserved",
                    "message": f"queue {q['name']} has waiting jobs and no live worker serves it",
                    "queue": q["name"],
                }
            )
    return alerts
