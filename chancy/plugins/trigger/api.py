"""The Trigger plugin's dashboard extension: list, enable, disable and remove triggers.

Served only while the Trigger plugin is installed (``Trigger.api_plugin()`` names
:class:`TriggerApiPlugin`)::

    GET  /api/v1/triggers                 {"triggers": [TriggerConfig.to_dict(), ...]}
    POST /api/v1/triggers/{id}/enable     {"id": ..., "enabled": true, "changed": bool}
    POST /api/v1/triggers/{id}/disable    {"id": ..., "enabled": false, "changed": bool}
    POST /api/v1/triggers/{id}/delete     {"id": ..., "deleted": true}

The actions need the admin role, like every other dashboard action. An unknown id is a 404,
a malformed one a 400; without the trigger tables the list is a 404 saying the plugin's
migrations are missing. :func:`routes` returns the same routes as Starlette routes of a given
dashboard, for apps that assemble their own route table.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from chancy.plugins.api.api_plugin import ApiPlugin, RouteT
from chancy.plugins.api.http import ApiError
from chancy.plugins.trigger import Trigger, TriggerError

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.routing import BaseRoute

    from chancy.app import Chancy
    from chancy.plugins.api.dashboard import Dashboard

__all__ = ["TriggerApiPlugin", "routes"]


def _trigger_id(request: Request) -> uuid.UUID:
    text = request.path_params["id"]
    try:
        return uuid.UUID(str(text).strip())
    except ValueError:
        raise ApiError(400, f"malformed trigger id {str(text)[:64]!r}: expected a UUID") from None


async def _existing(chancy: Chancy, trigger_id: uuid.UUID) -> None:
    try:
        found = await Trigger.get_triggers(chancy, trigger_ids=[trigger_id])
    except TriggerError as exc:
        raise ApiError(404, str(exc)) from None
    if not found:
        raise ApiError(404, f"no trigger with id {trigger_id}")


class TriggerApiPlugin(ApiPlugin):
    """Routes for the Trigger plugin's triggers."""

    def name(self) -> str:
        return "trigger"

    def routes(self) -> list[RouteT]:
        listing: RouteT = {
            "path": "/api/v1/triggers",
            "endpoint": self.triggers,
            "methods": ["GET"],
            "name": "get_triggers",
        }
        actions: list[RouteT] = [
            {
                "path": f"/api/v1/triggers/{{id}}/{action}",
                "endpoint": endpoint,
                "methods": ["POST"],
                "name": f"trigger_{action}",
                "auth": "act",
            }
            for action, endpoint in (
                ("enable", self.enable),
                ("disable", self.disable),
                ("delete", self.remove),
            )
        ]
        return [listing, *actions]

    @staticmethod
    async def triggers(request: Request, *, chancy: Chancy, worker: Any) -> Any:
        try:
            found = await Trigger.get_triggers(chancy)
        except TriggerError as exc:
            raise ApiError(404, f"triggers need the Trigger plugin: {exc}") from None
        return {"triggers": [t.to_dict() for t in found.values()]}

    @staticmethod
    async def _switch(request: Request, chancy: Chancy, enabled: bool) -> Any:
        trigger_id = _trigger_id(request)
        await _existing(chancy, trigger_id)
        try:
            if enabled:
                changed = await Trigger.enable_trigger(chancy, trigger_id)
            else:
                changed = await Trigger.disable_trigger(chancy, trigger_id)
        except TriggerError as exc:
            # e.g. its table was dropped: enabling it cannot work until that is fixed.
            raise ApiError(409, str(exc)) from None
        return {"id": str(trigger_id), "enabled": enabled, "changed": changed}

    @staticmethod
    async def enable(request: Request, *, chancy: Chancy, worker: Any) -> Any:
        return await TriggerApiPlugin._switch(request, chancy, True)

    @staticmethod
    async def disable(request: Request, *, chancy: Chancy, worker: Any) -> Any:
        return await TriggerApiPlugin._switch(request, chancy, False)

    @staticmethod
    async def remove(request: Request, *, chancy: Chancy, worker: Any) -> Any:
        trigger_id = _trigger_id(request)
        await _existing(chancy, trigger_id)
        try:
            await Trigger.unregister_trigger(chancy, trigger_id)
        except TriggerError as exc:
            raise ApiError(404, str(exc)) from None
        return {"id": str(trigger_id), "deleted": True}


def routes(dashboard: Dashboard) -> list[BaseRoute]:
    """The Trigger plugin's routes for ``dashboard``, as Starlette routes."""
    from chancy.plugins.api.extensions import extension_route

    return [extension_route(dashboard, spec) for spec in TriggerApiPlugin(dashboard).routes()]
