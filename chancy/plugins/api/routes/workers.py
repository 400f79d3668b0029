"""``GET /api/v1/workers``: every worker, with liveness, leadership and its running jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.routing import Route

if TYPE_CHECKING:
    from chancy.plugins.api.dashboard import Dashboard

__all__ = ["WorkerRoutes"]


class WorkerRoutes:
    """The workers page's route."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    async def workers(self, request: Request) -> Any:
        return {"workers": await self.dashboard.fetch_all("api_workers")}

    def routes(self) -> list[Route]:
        return [Route("/api/v1/workers", self.dashboard.route(self.workers), methods=["GET"])]
