"""The BatchPlugin's dashboard extension: batches with their progress, and one batch.

Served only while the BatchPlugin is installed (``BatchPlugin.api_plugin()`` names it)::

    GET /api/v1/batches?state=open|closed&limit=&before=   {"batches": [...]}
    GET /api/v1/batches/{id}                               {"batch": {...}}

The list shows the counts the leader recorded (no job is read); one batch shows every job's
live state (``Batch.get``).
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import TYPE_CHECKING, Any

from chancy.plugins.api.api_plugin import ApiPlugin, RouteT
from chancy.plugins.api.http import ApiError, parse_int, parse_uuid
from chancy.plugins.batch import store
from chancy.plugins.batch.client import Batch

if TYPE_CHECKING:
    from starlette.requests import Request

    from chancy.app import Chancy

__all__ = ["BatchApiPlugin"]

_STATES = {"open": True, "closed": False}
_LAST = uuid.UUID(int=(1 << 128) - 1)


def _listed(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "total": row["total"],
        "succeeded": row["succeeded"],
        "failed": row["failed"],
        "remaining": row["remaining"],
        "state": "open" if row["finished_at"] is None else "closed",
        "callbacks": dict(row["callbacks"] or {}),
        "created_at": row["created_at"],
        "finished_at": row["finished_at"],
    }


class BatchApiPlugin(ApiPlugin):
    """Routes for batches."""

    def name(self) -> str:
        return "batch"

    def routes(self) -> list[RouteT]:
        return [
            {
                "path": "/api/v1/batches",
                "endpoint": self.batches,
                "methods": ["GET"],
                "name": "get_batches",
            },
            {
                "path": "/api/v1/batches/{id}",
                "endpoint": self.batch,
                "methods": ["GET"],
                "name": "get_batch",
            },
        ]

    async def batches(self, request: Request, *, chancy: Chancy, worker: Any) -> Any:
        params = dict(request.query_params)
        limit = parse_int(params.pop("limit", None), "limit", 50, 1, self.api.max_page_size)
        before_text = params.pop("before", None)
        before = _LAST if not before_text else parse_uuid(before_text, "batch id")
        state = params.pop("state", "") or None
        if state is not None and state not in _STATES:
            raise ApiError(400, f"unknown batch state; valid: {', '.join(_STATES)}")
        if params:
            raise ApiError(400, f"unknown parameters {sorted(params)[:10]}")
        open_ = None if state is None else _STATES[state]
        rows = await chancy.db.run(store.list_page(chancy.prefix, before, open_, limit))
        return {"batches": [_listed(row) for row in rows]}

    @staticmethod
    async def batch(request: Request, *, chancy: Chancy, worker: Any) -> Any:
        batch_id = parse_uuid(request.path_params["id"], "batch id")
        try:
            status = await Batch.get(chancy, batch_id)
        except KeyError:
            raise ApiError(404, f"no batch {batch_id}") from None
        data = dataclasses.asdict(status)
        data["finished"] = status.finished
        data["state"] = "closed" if status.callbacks_pushed else "open"
        return {"batch": data}
