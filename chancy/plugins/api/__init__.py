"""The dashboard: a JSON API and a web UI over one chancy installation.

``Api`` serves it from a worker; :func:`build_starlette_app` returns the ASGI app to mount in
your own (needs the ``web`` extra). See :mod:`chancy.plugins.api.app` for the routes.
"""

from chancy.plugins.api.auth import ADMIN, READ_ONLY, AuthBackend, SimpleAuthBackend, User
from chancy.plugins.api.plugin import Api

__all__ = [
    "ADMIN",
    "READ_ONLY",
    "Api",
    "AuthBackend",
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
