"""``ApiPlugin``: how a plugin adds its own routes and pages to the dashboard (Chancy 0.26's).

A plugin points at its extension from :meth:`chancy.plugin.Plugin.api_plugin`, which returns
the import path of an ``ApiPlugin`` subclass; the dashboard imports it, builds it with itself
as ``api`` and serves its :meth:`ApiPlugin.routes`. The dashboard then knows a plugin by what
it contributes, never by its class name or its attributes, and a plugin that is not installed
adds no route and no page.

A route is a :class:`RouteT` dict, as in 0.26. Its endpoint is called as
``endpoint(request, *, chancy, worker)`` after the dashboard has checked the request's bearer
token (401 without a valid one): ``request.auth`` then holds the scopes ``authenticated``
(and ``admin`` for users who may act) and ``request.user`` a Starlette ``SimpleUser``, so
0.26 endpoints decorated with ``@requires(["authenticated"])`` work unchanged. ``chancy`` is
the dashboard's own ``Chancy`` (the same database and plugins, its own small pool) and
``worker`` the worker serving the dashboard (None when the app is mounted elsewhere). An
endpoint returns a Starlette ``Response``, or any JSON-ready value the dashboard encodes.

chancy reads two optional keys besides 0.26's: ``auth`` (``"read"``, the default, for any
logged-in user; ``"act"`` for admins only, as the dashboard's own actions) and ``cache``
(False keeps a GET's answer out of the dashboard's short GET cache).

Besides routes, an extension may add to pages the dashboard already has, through the
``configuration``, ``overview``, ``function_counts`` and ``prometheus`` hooks (each does
nothing by default). That is how the Metrics plugin puts throughput on the overview and its
series into ``/metrics`` without the dashboard knowing it exists.

This module needs no web framework, so a plugin can name its extension without Starlette
installed.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

if TYPE_CHECKING:
    from psycopg import AsyncCursor

__all__ = ["ApiPlugin", "RouteT"]


class RouteT(TypedDict):
    """One route an :class:`ApiPlugin` adds (Chancy 0.26's shape, plus two optional keys)."""

    path: str
    endpoint: Callable[..., Any]
    methods: list[str] | None
    name: str | None
    is_websocket: NotRequired[bool | None]
    #: chancy: ``"read"`` (default: any logged-in user) or ``"act"`` (admins only).
    auth: NotRequired[str]
    #: chancy: False keeps a GET out of the dashboard's GET cache (default True).
    cache: NotRequired[bool]


class ApiPlugin(abc.ABC):
    """A dashboard extension: routes, and optional additions to the dashboard's own pages.

    :param api: the dashboard serving this extension
        (:class:`chancy.plugins.api.dashboard.Dashboard`).
    """

    def __init__(self, api: Any) -> None:
        self.api = api

    @abc.abstractmethod
    def name(self) -> str:
        """The extension's name; the UI shows a plugin's page when its name is listed in
        ``/api/v1/configuration``'s ``pages`` (``cron``, ``workflow``, ``metrics``,
        ``trigger``)."""

    def routes(self) -> list[RouteT]:
        """The routes to add to the dashboard."""
        return []

    # -- chancy's hooks into the dashboard's own pages ---------------------------------------

    def configuration(self) -> Mapping[str, Any]:
        """Keys added to ``GET /api/v1/configuration`` (facts the UI needs up front)."""
        return {}

    async def overview(self, cursor: AsyncCursor[Any]) -> Mapping[str, Any]:
        """Keys added to ``GET /api/v1/overview``, read on the overview's own ``cursor``
        (a transaction bounded by the dashboard's statement timeout). Keep it cheap: the
        overview is polled every few seconds."""
        return {}

    async def function_counts(self) -> Iterable[Mapping[str, Any]]:
        """Counts per job function added to ``GET /api/v1/functions``: rows of ``func``,
        ``queue``, ``counter`` (the key the count is shown under, such as ``succeeded``) and
        ``count``."""
        return ()

    async def prometheus(self) -> str:
        """Lines added to ``GET /metrics`` (the Prometheus text format, with its own
        ``# TYPE`` lines; names must not clash with the dashboard's live gauges)."""
        return ""
