"""The plugins' dashboard extensions: found through ``Plugin.api_plugin()``, served as routes.

Each installed plugin whose ``api_plugin()`` names an :class:`ApiPlugin` gets it built once
with the dashboard; its :class:`RouteT` routes become Starlette routes behind the dashboard's
own wrapper, so a plugin's endpoint gets the same token check, roles, per-user limits and
error answers (never a traceback) as the core routes, and is called as Chancy 0.26 called it:
``endpoint(request, *, chancy, worker)`` with ``request.auth`` and ``request.user`` set the
way Starlette's authentication middleware sets them.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.authentication import AuthCredentials, SimpleUser
from starlette.requests import HTTPConnection, Request
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from chancy.errors import ConfigurationError
from chancy.plugins.api.api_plugin import ApiPlugin, RouteT
from chancy.plugins.api.auth import User
from chancy.plugins.api.http import ApiError
from chancy.utils import import_string

if TYPE_CHECKING:
    from chancy.plugins.api.dashboard import Dashboard

__all__ = ["extension_route", "load_extensions"]

log = logging.getLogger("chancy.api")

_AUTH_LEVELS = ("read", "act")


def load_extensions(dashboard: Dashboard) -> list[ApiPlugin]:
    """An instance of each :class:`ApiPlugin` the installed plugins name, in plugin order.

    A path that cannot be imported or names something else is a configuration error that
    says which plugin named it; two plugins naming one extension get it once.
    """
    seen: set[type[ApiPlugin]] = set()
    found: list[ApiPlugin] = []
    for identifier, plugin in dashboard.chancy.plugins.items():
        path = plugin.api_plugin()
        if path is None:
            continue
        try:
            cls = import_string(path)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigurationError(
                f"plugin {identifier!r} names the dashboard extension {path!r}, which cannot"
                f" be imported ({exc}); fix its api_plugin() or install what it needs"
            ) from exc
        if not (isinstance(cls, type) and issubclass(cls, ApiPlugin)):
            raise ConfigurationError(
                f"plugin {identifier!r}: api_plugin() must name an ApiPlugin subclass"
                f" (chancy.plugins.api.ApiPlugin), got {path!r}"
            )
        if cls in seen:
            continue
        seen.add(cls)
        extension = cls(dashboard)
        log.debug("dashboard extension %r (%s) of plugin %s", extension.name(), path, identifier)
        found.append(extension)
    return found


def _as_starlette_user(connection: HTTPConnection, user: User) -> None:
    # What Starlette's AuthenticationMiddleware would set, so ``@requires`` works.
    scopes = ["authenticated", *(["admin"] if user.can_act else [])]
    connection.scope["auth"] = AuthCredentials(scopes)
    connection.scope["user"] = SimpleUser(user.username)


def extension_route(dashboard: Dashboard, spec: RouteT) -> BaseRoute:
    """A Starlette route for one :class:`RouteT` of an extension.

    Its endpoint runs behind the dashboard's wrapper: the token is checked first (401), then
    the role for ``auth="act"`` (403), within the per-user limits, and a failure is answered
    without a traceback.
    """
    endpoint = spec["endpoint"]
    auth = spec.get("auth", "read")
    if auth not in _AUTH_LEVELS:
        raise ConfigurationError(
            f"dashboard route {spec['path']!r}: auth must be one of {_AUTH_LEVELS}, got {auth!r}"
        )
    if spec.get("is_websocket"):
        return WebSocketRoute(
            spec["path"], _websocket(dashboard, endpoint, auth), name=spec.get("name")
        )

    async def handler(request: Request) -> Any:
        _as_starlette_user(request, request.state.user)
        await dashboard.db.open()
        result = endpoint(request, chancy=dashboard.db, worker=dashboard.worker)
        return await result if inspect.isawaitable(result) else result

    return Route(
        spec["path"],
        dashboard.route(handler, auth=auth, cache=spec.get("cache", True)),
        methods=spec.get("methods") or ["GET"],
        name=spec.get("name"),
    )


def _websocket(
    dashboard: Dashboard, endpoint: Callable[..., Any], auth: str
) -> Callable[[WebSocket], Awaitable[None]]:
    async def serve(websocket: WebSocket) -> None:
        try:
            user, _ = await dashboard.require_user(websocket)
            if auth == "act" and not user.can_act:
                raise ApiError(403, f"user {user.username!r} is read-only")
        except ApiError:
            # Policy violation: no valid token (or no admin role) on the upgrade request.
            await websocket.close(code=1008)
            return
        _as_starlette_user(websocket, user)
        await dashboard.db.open()
        await endpoint(websocket, chancy=dashboard.db, worker=dashboard.worker)

    return serve
