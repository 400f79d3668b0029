"""Job routes: filtered lists with cursor pagination, counts per state, one job, bulk
actions (retry, cancel, purge) and the job functions seen.

Lists are keyset-paginated on the time-ordered id and counts are capped or estimated (see
:mod:`chancy.plugins.api.counts`); bulk actions take at most ``max_bulk`` jobs a request.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import psycopg
from starlette.requests import Request
from starlette.routing import Route

from chancy.errors import InvalidJobError
from chancy.plugins.api.counts import STATES
from chancy.plugins.api.filters import job_rule
from chancy.plugins.api.http import ApiError, parse_int, parse_uuid, read_object
from chancy.rule import AndCondition, JobRules

if TYPE_CHECKING:
    from chancy.plugins.api.dashboard import Dashboard

__all__ = ["JobRoutes"]

#: The functions page reads the functions of this many most recent jobs.
RECENT_SCAN = 5000


class JobRoutes:
    """The jobs pages' routes."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    async def jobs(self, request: Request) -> Any:
        d = self.dashboard
        params = dict(request.query_params)
        limit = parse_int(params.pop("limit", None), "limit", 50, 1, d.max_page_size)
        cursor_raw = params.pop("cursor", None)
        cursor = parse_uuid(cursor_raw, "cursor") if cursor_raw else None
        with_count = params.pop("count", "") in ("1", "true")
        rule = job_rule(params)
        query, qparams = d.counter.composed("api_jobs_list", rule)
        # Unfiltered pages read the primary key backwards: bounded without a timeout.
        async with d.cursor(timeout=with_count or not isinstance(rule, JobRules.All)) as cur:
            await cur.execute(query, {**qparams, "cursor": cursor, "limit": limit + 1})
            rows = await cur.fetchall()
            more = len(rows) > limit
            rows = rows[:limit]
            total = None
            if with_count:
                total = await d.counter.jobs(cur, rule, big=await d.counter.big_table(cur))
        return {
            "jobs": [dict(r) for r in rows],
            "next_cursor": str(rows[-1]["id"]) if more and rows else None,
            "limit": limit,
            "total": total,
        }

    async def counts(self, request: Request) -> Any:
        d = self.dashboard
        params = dict(request.query_params)
        params.pop("state", None)
        base = job_rule(params)
        async with d.cursor() as cur:
            await cur.execute(d.q["api_jobs_state_stats"], {"table": f"{d.chancy.prefix}jobs"})
            stats = await cur.fetchone() or {}
            big = int(stats.get("estimate") or 0) > d.count_threshold
            if big and isinstance(base, JobRules.All):
                return {"counts": await d.counter.whole_table(cur, stats)}
            if big:
                counts = {}
                for state in STATES:
                    rule = AndCondition(base, JobRules.State() == state)
                    counts[state] = await d.counter.jobs(cur, rule, big=True)
                return {"counts": counts}
            query, qparams = d.counter.composed("api_jobs_count_by_state", base)
            cap = d.count_threshold + 1
            try:
                async with cur.connection.transaction():
                    await cur.execute(query, {**qparams, "cap": cap, "states": list(STATES)})
                    rows = await cur.fetchall()
            except psycopg.errors.QueryCanceled:
                rows = [{"state": st, "n": cap} for st in STATES]
            counts = {}
            for row in rows:
                n = int(row["n"])
                if n < cap:
                    counts[row["state"]] = {"count": n, "estimated": False}
                else:
                    rule = AndCondition(base, JobRules.State() == row["state"])
                    counts[row["state"]] = await d.counter.jobs(cur, rule, big=True)
        return {"counts": counts}

    async def job(self, request: Request) -> Any:
        job_id = parse_uuid(request.path_params["id"])
        row = await self.dashboard.fetch_one("api_job_get", {"id": job_id})
        if row is None:
            raise ApiError(404, f"no job {job_id}")
        data = dict(row)
        meta = data.get("meta") or {}
        data["cancelled"] = bool(meta.get("cancelled"))
        data["cancel_reason"] = meta.get("cancel_reason") if data["cancelled"] else None
        data["cancelled_by"] = meta.get("cancelled_by") if data["cancelled"] else None
        return {"job": data}

    async def _bulk_ids(
        self, data: Mapping[str, Any], extra: frozenset[str] = frozenset()
    ) -> tuple[list[uuid.UUID], bool]:
        """The ids a bulk action applies to: given, or selected by a filter (bounded)."""
        d = self.dashboard
        unknown = set(data) - {"ids", "filter"} - extra
        if unknown:
            raise ApiError(400, f"unknown fields {sorted(unknown)}; send 'ids' or 'filter'")
        if ("ids" in data) == ("filter" in data):
            raise ApiError(400, "send either 'ids' (a list of job ids) or 'filter' (an object)")
        if "ids" in data:
            ids = data["ids"]
            if not isinstance(ids, list) or not ids:
                raise ApiError(400, "ids must be a non-empty list of job ids")
            if len(ids) > d.max_bulk:
                raise ApiError(400, f"at most {d.max_bulk} ids per request")
            return [parse_uuid(i) for i in ids], False
        criteria = data["filter"]
        if not isinstance(criteria, dict) or not criteria:
            raise ApiError(
                400,
                "filter must be a non-empty object of job filters (state, queue, func,"
                " func_contains, since, until, filter)",
            )
        query, params = d.counter.composed("api_jobs_ids", job_rule(criteria))
        async with d.cursor() as cur:
            await cur.execute(query, {**params, "limit": d.max_bulk + 1})
            rows = await cur.fetchall()
        more = len(rows) > d.max_bulk
        return [r["id"] for r in rows[: d.max_bulk]], more

    async def retry(self, request: Request) -> Any:
        ids, more = await self._bulk_ids(await read_object(request))
        result = await self.dashboard.db.retry_jobs(ids)
        return {
            "matched": len(ids),
            "retried": [str(r) for r in result],
            "skipped": [str(r) for r in result.skipped],
            "more": more,
        }

    async def cancel(self, request: Request) -> Any:
        data = await read_object(request)
        ids, more = await self._bulk_ids(data, frozenset({"reason"}))
        reason = data.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise ApiError(400, "reason must be a string (why the jobs are cancelled)")
        user = self.dashboard.user(request)
        by = f"{user.username} (dashboard)" if user is not None else "dashboard"
        try:
            cancelled = [
                str(i) for i in ids if await self.dashboard.db.cancel_job(i, reason, by=by)
            ]
        except InvalidJobError as exc:
            raise ApiError(400, str(exc)) from None
        return {"matched": len(ids), "cancelled": cancelled, "more": more}

    async def purge(self, request: Request) -> Any:
        ids, more = await self._bulk_ids(await read_object(request))
        purged = await self.dashboard.db.purge_jobs(ids)
        return {"matched": len(ids), "purged": purged, "more": more}

    async def functions(self, request: Request) -> Any:
        """Functions among the most recent jobs, with the counts extensions add (all time)."""
        recent = await self.dashboard.fetch_all("api_recent_functions", {"scan": RECENT_SCAN})
        by_func: dict[str, dict[str, Any]] = {
            r["func"]: {
                "func": r["func"],
                "recent": r["recent"],
                "recent_failed": r["failed"],
                "last_pushed": r["last_pushed"],
                "queues": sorted(r["queues"] or []),
            }
            for r in recent
        }
        for extension in self.dashboard.extensions:
            for row in await extension.function_counts():
                func, queue = str(row["func"]), str(row.get("queue") or "")
                entry = by_func.setdefault(
                    func, {"func": func, "recent": 0, "recent_failed": 0, "queues": []}
                )
                key = str(row["counter"])
                entry[key] = entry.get(key, 0) + int(row["count"])
                if queue and queue not in entry["queues"]:
                    entry["queues"] = sorted([*entry["queues"], queue])
        return {"functions": [by_func[k] for k in sorted(by_func)], "scanned": RECENT_SCAN}

    def routes(self) -> list[Route]:
        r = self.dashboard.route
        get, post = ["GET"], ["POST"]
        return [
            Route("/api/v1/jobs", r(self.jobs), methods=get),
            Route("/api/v1/jobs/counts", r(self.counts), methods=get),
            Route("/api/v1/jobs/retry", r(self.retry, auth="act"), methods=post),
            Route("/api/v1/jobs/cancel", r(self.cancel, auth="act"), methods=post),
            Route("/api/v1/jobs/purge", r(self.purge, auth="act"), methods=post),
            Route("/api/v1/jobs/{id}", r(self.job), methods=get),
            Route("/api/v1/functions", r(self.functions), methods=get),
        ]
