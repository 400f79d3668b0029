"""The dashboard: a JSON API and a web UI over one chancy installation.

``Api`` serves it from a worker; :func:`build_starlette_app` returns the ASGI app to mount in
your own (needs the ``web`` extra). Plugins add routes and pages with an :class:`ApiPlugin`
named by their ``api_plugin()``. See :mod:`chancy.plugins.api.dashboard` for the routes.
"""

from chancy.plugins.api.api_plugin import ApiPlugin, RouteT
from chancy.plugins.api.auth import ADMIN, READ_ONLY, AuthBackend, SimpleAuthBackend, User
from chancy.plugins.api.plugin import Api

__all__ = [
    "ADMIN",
    "READ_ONLY",
    "Api",
    "ApiPlugin",
    "AuthBackend",
    "RouteT",
    "SimpleAuthBackend",
    "User",
    "build_starlette_app",
]


def __getattr__(name: str) -> object:
    # Starlette is imported only when the app is built, so `import chancy.plugins.api` works
    # without the web extra.
    if name == "build_starlette_app":
        from chancy.plugins.api.app import build_starlette_app

        return build_starlette_app
    raise AttributeError(name)
