"""Queue routes: list, show, declare, update, pause, resume and delete queues.

A stored queue whose settings fail validation (edited by hand, or stored before a limit
existed) is shown as stored and marked ``invalid`` with the reason, so an admin can see and
repair it instead of the page failing.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.routing import Route

from chancy.errors import ConfigurationError
from chancy.plugins.api.http import ApiError, dumps, read_object
from chancy.queue import EXECUTORS, Queue
from chancy.store.store import queue_from_row

if TYPE_CHECKING:
    from chancy.plugins.api.dashboard import Dashboard

__all__ = ["QueueRoutes", "queue_view"]

#: A queue's page lists the usage of at most this many partition keys (the busiest).
MAX_LIMIT_KEYS = 100
_QUEUE_FIELDS = tuple(Queue("x").pack())
_EDITABLE = frozenset(
    {
        "name",
        "concurrency",
        "tags",
        "executor",
        "executor_options",
        "polling_interval",
        "rate_limit",
        "rate_limit_window",
        "global_concurrency",
        "partition_concurrency",
        "partition_rate_limit",
        "partition_rate_limit_window",
        "eager_polling",
    }
)
_EMPTY = {"waiting": 0, "running": 0, "estimated": False}


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def queue_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored queue as the API shows it, with ``invalid`` None or saying what is wrong."""
    try:
        return {**queue_from_row(dict(row)).pack(), "invalid": None}
    except ConfigurationError as exc:
        problem = str(exc)
    except (ValueError, TypeError, KeyError) as exc:
        problem = f"a stored value cannot be read ({type(exc).__name__})"
    view = {key: _json_safe(row.get(key)) for key in _QUEUE_FIELDS}
    if isinstance(view.get("tags"), list | tuple):
        view["tags"] = sorted(str(t) for t in view["tags"])
    view["invalid"] = problem
    return view


def _depth(depths: Mapping[str, Mapping[str, Any]], name: str) -> dict[str, Any]:
    found = depths.get(name)
    if found is None:
        return dict(_EMPTY)
    return {k: found[k] for k in _EMPTY}


def queue_from(data: Mapping[str, Any], base: Mapping[str, Any] | None) -> Queue:
    """The queue ``data`` asks for, over the stored view ``base`` for an update."""
    unknown = set(data) - _EDITABLE
    if unknown:
        raise ApiError(
            400, f"unknown queue fields {sorted(unknown)}; editable: {sorted(_EDITABLE)}"
        )
    fields = dict(base) if base is not None else {"name": data.get("name")}
    fields.pop("invalid", None)
    fields.update({k: v for k, v in data.items() if k != "name"})
    executor = fields.get("executor") or EXECUTORS["process"]
    if not isinstance(executor, str):
        raise ApiError(400, f"executor must be one of {', '.join(sorted(EXECUTORS))}")
    executor = EXECUTORS.get(executor, executor)
    if executor not in EXECUTORS.values():
        # Workers import the executor: only the known ones may be set from the web.
        raise ApiError(
            400,
            f"unknown executor {executor[:100]!r}; valid: {', '.join(sorted(EXECUTORS))}",
        )
    fields["executor"] = executor
    tags = fields.get("tags")
    if tags is not None and (
        not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)
    ):
        raise ApiError(400, "tags must be a list of regular expressions (strings)")
    if not isinstance(fields.get("executor_options") or {}, dict):
        raise ApiError(400, "executor_options must be an object")
    if len(dumps(fields.get("executor_options") or {})) > 10000:
        raise ApiError(400, "executor_options is too large")
    if not isinstance(fields.get("eager_polling", False), bool):
        raise ApiError(400, "eager_polling must be true or false")
    state = fields.pop("state", None)
    resume_at = fields.pop("resume_at", None)
    try:
        queue = Queue.unpack(fields)
    except (TypeError, ValueError, KeyError) as exc:
        raise ApiError(400, f"invalid queue: {exc}") from None
    if base is not None:
        try:
            kept = Queue.State(str(state))
        except ValueError:
            # An unreadable stored state: the repaired queue starts paused, so an admin
            # resumes it on purpose.
            kept, resume_at = Queue.State.PAUSED, None
        if isinstance(resume_at, str):
            resume_at = datetime.fromisoformat(resume_at)
        queue = dataclasses.replace(queue, state=kept, resume_at=resume_at)
    return queue


class QueueRoutes:
    """The queues pages' routes."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    async def _depths(self) -> dict[str, dict[str, Any]]:
        async with self.dashboard.cursor() as cur:
            return await self.dashboard.counter.depths(cur)

    async def _row(self, name: str) -> dict[str, Any]:
        """The stored row of queue ``name`` (404 when there is none), not yet validated."""
        if len(name) > 200:
            raise ApiError(404, f"no queue named {name[:200]!r}")
        row = await self.dashboard.fetch_one("api_queue", {"name": name})
        if row is None:
            raise ApiError(404, f"no queue named {name[:200]!r}")
        return row

    async def _answer(self, name: str, stored: Any) -> dict[str, Any]:
        # A state change stores its part even when other stored values are invalid; the
        # answer then shows the row as stored, marked invalid.
        if isinstance(stored, Queue):
            return {"queue": {**stored.pack(), "invalid": None}}
        return {"queue": queue_view(await self._row(name))}

    async def queues(self, request: Request) -> Any:
        rows = await self.dashboard.fetch_all("api_queues")
        depths = await self._depths()
        views = [queue_view(row) for row in rows]
        return {"queues": [{**v, **_depth(depths, v["name"])} for v in views]}

    async def queue(self, request: Request) -> Any:
        view = queue_view(await self._row(request.path_params["name"]))
        name = view["name"]
        depths = await self._depths()
        workers = await self.dashboard.fetch_all("api_workers")
        serving = [w["worker_id"] for w in workers if name in (w["queues"] or [])]
        limits = None
        if view["invalid"] is None and Queue.unpack(view).has_limits:
            limits = await self.dashboard.db.get_limit_usage(name)
            keys = limits["partitions"]
            if len(keys) > MAX_LIMIT_KEYS:
                busiest = sorted(keys, key=lambda k: (-keys[k]["running"], k))[:MAX_LIMIT_KEYS]
                limits["partitions"] = {k: keys[k] for k in busiest}
                limits["partitions_truncated"] = True
        return {**view, **_depth(depths, name), "workers": serving, "limits": limits}

    async def create(self, request: Request) -> Any:
        data = await read_object(request)
        queue = queue_from(data, None)
        if await self.dashboard.fetch_one("api_queue", {"name": queue.name}) is not None:
            raise ApiError(409, f"queue {queue.name!r} exists; update it instead")
        stored = await self.dashboard.db.declare(queue)
        return {"queue": stored.pack()}

    async def update(self, request: Request) -> Any:
        current = queue_view(await self._row(request.path_params["name"]))
        data = await read_object(request)
        data.pop("name", None)
        queue = queue_from(data, current)
        stored = await self.dashboard.db.declare(queue, upsert=True)
        return {"queue": stored.pack()}

    async def pause(self, request: Request) -> Any:
        name = request.path_params["name"]
        data = await read_object(request)
        resume_in = data.get("resume_in")
        resume_at: timedelta | None = None
        if resume_in is not None:
            if (
                isinstance(resume_in, bool)
                or not isinstance(resume_in, int | float)
                or not 0 < resume_in <= 366 * 86400
            ):
                raise ApiError(400, "resume_in must be a number of seconds (up to a year)")
            resume_at = timedelta(seconds=resume_in)
        await self._row(name)
        try:
            stored: Any = await self.dashboard.db.pause_queue(name, resume_at=resume_at)
        except ConfigurationError:
            stored = None
        return await self._answer(name, stored)

    async def resume(self, request: Request) -> Any:
        name = request.path_params["name"]
        await self._row(name)
        try:
            stored: Any = await self.dashboard.db.resume_queue(name)
        except ConfigurationError:
            stored = None
        return await self._answer(name, stored)

    async def delete(self, request: Request) -> Any:
        name = request.path_params["name"]
        data = await read_object(request)
        purge = data.get("purge_jobs", False)
        if not isinstance(purge, bool):
            raise ApiError(400, "purge_jobs must be true or false")
        await self._row(name)
        deleted = await self.dashboard.db.delete_queue(name, purge_jobs=purge)
        return {"deleted": deleted}

    def routes(self) -> list[Route]:
        r = self.dashboard.route
        get, post = ["GET"], ["POST"]
        base = "/api/v1/queues"
        return [
            Route(base, r(self.queues), methods=get),
            Route(base, r(self.create, auth="act"), methods=post),
            Route(base + "/{name}", r(self.queue), methods=get),
            Route(base + "/{name}", r(self.update, auth="act"), methods=post),
            Route(base + "/{name}/pause", r(self.pause, auth="act"), methods=post),
            Route(base + "/{name}/resume", r(self.resume, auth="act"), methods=post),
            Route(base + "/{name}/delete", r(self.delete, auth="act"), methods=post),
        ]
