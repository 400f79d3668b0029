"""The Cron plugin's dashboard extension: list schedules, run one now, pause, resume, remove.

Served only while the Cron plugin is installed (``Cron.api_plugin()`` names it)::

    GET  /api/v1/crons                 {"crons": [{unique_key, cron, timezone, job, ...}]}
    POST /api/v1/crons/{key}/run       {"job_id": ...}            push the job now
    POST /api/v1/crons/{key}/pause     {"unique_key", "paused_at"}
    POST /api/v1/crons/{key}/resume    {"unique_key", "paused_at": null}
    POST /api/v1/crons/{key}/delete    {"deleted": 1}

The actions need the admin role; an unknown key is a 404.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chancy.plugins.api.api_plugin import ApiPlugin, RouteT
from chancy.plugins.api.http import ApiError
from chancy.plugins.cron import Cron

if TYPE_CHECKING:
    from starlette.requests import Request

    from chancy.app import Chancy

__all__ = ["CronApi", "CronApiPlugin"]


def _missing(key: str) -> ApiError:
    return ApiError(404, f"no cron schedule with key {key[:200]!r}")


class CronApiPlugin(ApiPlugin):
    """Routes for the Cron plugin's schedules (Chancy 0.26's name for this extension)."""

    def name(self) -> str:
        return "cron"

    def routes(self) -> list[RouteT]:
        base = "/api/v1/crons"
        actions: list[RouteT] = [
            {
                "path": f"{base}/{{key}}/{action}",
                "endpoint": endpoint,
                "methods": ["POST"],
                "name": f"cron_{action}",
                "auth": "act",
            }
            for action, endpoint in (
                ("run", self.run),
                ("delete", self.delete),
                ("pause", self.pause),
                ("resume", self.resume),
            )
        ]
        listing: RouteT = {
            "path": base,
            "endpoint": self.crons,
            "methods": ["GET"],
            "name": "get_cron",
        }
        return [listing, *actions]

    @staticmethod
    async def crons(request: Request, *, chancy: Chancy, worker: Any) -> Any:
        schedules = await Cron.get_schedules(chancy)
        out = []
        for key in sorted(schedules):
            item: dict[str, Any] = dict(schedules[key])
            job = item.get("job")
            if job is not None:
                item["job"] = {
                    "func": job.func,
                    "queue": job.queue,
                    "kwargs": job.kwargs,
                    "priority": job.priority,
                    "max_attempts": job.max_attempts,
                }
            out.append(item)
        return {"crons": out}

    @staticmethod
    async def run(request: Request, *, chancy: Chancy, worker: Any) -> Any:
        key = request.path_params["key"]
        schedules = await Cron.get_schedules(chancy, [key])
        if key not in schedules:
            raise _missing(key)
        ref = await chancy.push(schedules[key]["job"])
        return {"job_id": str(ref.identifier)}

    @staticmethod
    async def pause(request: Request, *, chancy: Chancy, worker: Any) -> Any:
        key = request.path_params["key"]
        if not await Cron.pause(chancy, key):
            raise _missing(key)
        return await CronApiPlugin._state(chancy, key)

    @staticmethod
    async def resume(request: Request, *, chancy: Chancy, worker: Any) -> Any:
        key = request.path_params["key"]
        # Resuming a schedule that is not paused changes nothing; an unknown one is a 404.
        await Cron.resume(chancy, key)
        return await CronApiPlugin._state(chancy, key)

    @staticmethod
    async def _state(chancy: Chancy, key: str) -> dict[str, Any]:
        schedules = await Cron.get_schedules(chancy, [key])
        if key not in schedules:
            raise _missing(key)
        return {"unique_key": key, "paused_at": schedules[key]["paused_at"]}

    @staticmethod
    async def delete(request: Request, *, chancy: Chancy, worker: Any) -> Any:
        key = request.path_params["key"]
        deleted = await Cron.unschedule(chancy, key)
        if not deleted:
            raise _missing(key)
        return {"deleted": deleted}


#: The name this extension had in chancy's plans; the same class.
CronApi = CronApiPlugin
