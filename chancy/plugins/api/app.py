"""The dashboard as an ASGI app: :func:`build_starlette_app`.

The pieces live in their own modules: :mod:`~chancy.plugins.api.http` (HTTP plumbing),
:mod:`~chancy.plugins.api.dashboard` (the shell and its route table),
:mod:`~chancy.plugins.api.routes` (the core routes) and the plugins' own
:class:`~chancy.plugins.api.ApiPlugin` extensions. ``Dashboard`` and ``ApiError`` are
importable from here as before.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response

from chancy.app import Chancy
from chancy.plugins.api.dashboard import Dashboard
from chancy.plugins.api.http import JSON, ApiError, Hardened

if TYPE_CHECKING:
    from chancy.worker import Worker

__all__ = ["ApiError", "Dashboard", "build_starlette_app"]


def build_starlette_app(
    chancy: Chancy,
    *,
    authentication_backend: Any,
    secret_key: str | None = None,
    allow_origins: Iterable[str] = (),
    debug: bool = False,
    worker: Worker | None = None,
    **options: Any,
) -> Starlette:
    """The dashboard as an ASGI app, to serve alone or mount in another app::

        app = Starlette(routes=[Mount("/chancy", build_starlette_app(chancy, ...))])

    ``authentication_backend`` is a chancy :class:`~chancy.plugins.api.AuthBackend` or a
    Chancy 0.26-style one (``login``/``logout``). ``options`` are :class:`Dashboard`'s tuning
    knobs (``statement_timeout``, ``count_threshold``, ``max_page_size``, ``max_bulk``,
    ``cache_ttl``, ``token_ttl``, ``login_attempts``, ``client_login_attempts``,
    ``login_window``, ``pool_size``, ``user_concurrency``, ``busy_wait``, ``health_ttl``) and
    ``metrics_token``, a fixed bearer token that opens only ``/metrics``, for Prometheus.
    ``debug=True`` logs every request at DEBUG on the ``chancy.api`` logger (answers never
    carry a traceback); ``worker`` is handed to plugin endpoints (the ``Api`` plugin passes
    the worker serving it).

    The dashboard opens its own small connection pool on first use; it is closed by the
    app's lifespan, or by ``await app.state.dashboard.close()`` when the app is mounted in
    another (a mounted app's lifespan does not run).
    """
    dashboard = Dashboard(
        chancy,
        authentication_backend=authentication_backend,
        secret_key=secret_key,
        worker=worker,
        debug=debug,
        **options,
    )
    middleware = [Middleware(Hardened)]
    origins = list(allow_origins)
    if origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=origins,
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type"],
            )
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await dashboard.close()

    async def http_error(request: Request, exc: Exception) -> Response:
        # The router's own answers (no such route, wrong method) in JSON like every other.
        status = exc.status_code if isinstance(exc, HTTPException) else 400
        headers = exc.headers if isinstance(exc, HTTPException) else None
        messages = {404: "no such route", 405: "method not allowed"}
        return JSON(
            {"error": messages.get(status, "bad request")}, status_code=status, headers=headers
        )

    # Starlette's own debug mode stays off whatever ``debug`` says: it sends tracebacks to
    # the client.
    app = Starlette(
        debug=False,
        routes=dashboard.routes(),
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error},
    )
    app.router.redirect_slashes = False
    app.state.dashboard = dashboard
    return app
