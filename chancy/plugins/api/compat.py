"""Authentication backends written for Chancy 0.26, used through chancy's :class:`AuthBackend`.

0.26's ``AuthBackend`` was a Starlette ``AuthenticationBackend`` with
``async login(request, username, password) -> bool``, ``async logout(request)`` and
Starlette's ``authenticate(conn)``; chancy's asks ``authenticate(username, password)`` for a
:class:`User`. :func:`as_auth_backend` accepts both: a 0.26-style backend is wrapped so the
login route calls its ``login`` with the real Starlette request, a True grants the admin role
(0.26 had no roles), and the logout route calls its ``logout``. The session it may try to
write is not there (the dashboard uses bearer tokens, as 0.26's did in the end): 0.26's own
backends already ignore that.
"""

from __future__ import annotations

import inspect
from typing import Any

from chancy.errors import ConfigurationError
from chancy.plugins.api.auth import ADMIN, AuthBackend, User

__all__ = ["StarletteLoginBackend", "as_auth_backend"]


class StarletteLoginBackend(AuthBackend):
    """A Chancy 0.26 authentication backend (``login``/``logout``), as chancy's backend.

    :param backend: the 0.26-style backend; its ``login`` decides who may log in.
    """

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def __repr__(self) -> str:
        return f"<StarletteLoginBackend {self.backend!r}>"

    async def authenticate(self, username: str, password: str) -> User | None:
        # A 0.26 backend decides with the request in hand; without one nobody logs in.
        return None

    async def authenticate_request(
        self, request: object, username: str, password: str
    ) -> User | None:
        granted = self.backend.login(request, username, password)
        if inspect.isawaitable(granted):
            granted = await granted
        return User(username, ADMIN) if granted is True else None

    async def logout_request(self, request: object) -> None:
        logout = getattr(self.backend, "logout", None)
        if callable(logout):
            done = logout(request)
            if inspect.isawaitable(done):
                await done


def _takes_credentials(method: Any) -> bool:
    """Whether ``method`` can be called as chancy's ``authenticate(username, password)``."""
    try:
        inspect.signature(method).bind("username", "password")
    except (TypeError, ValueError):
        return False
    return True


def as_auth_backend(backend: Any) -> AuthBackend:
    """``backend`` as chancy's :class:`AuthBackend`: as it is when it is one, wrapped when it
    is a Chancy 0.26-style backend (a ``login`` method and Starlette's ``authenticate(conn)``
    or none), else a :class:`ConfigurationError` that says what to pass."""
    login = getattr(backend, "login", None)
    if isinstance(backend, AuthBackend):
        # A 0.26 backend subclassing ``chancy.plugins.api.auth.AuthBackend`` (now chancy's)
        # has ``login`` and Starlette's ``authenticate(conn)``.
        chancy_style = type(backend).authenticate is not AuthBackend.authenticate and (
            _takes_credentials(backend.authenticate)
        )
        if callable(login) and not chancy_style and not isinstance(backend, StarletteLoginBackend):
            return StarletteLoginBackend(backend)
        return backend
    if callable(login):
        return StarletteLoginBackend(backend)
    raise ConfigurationError(
        "authentication_backend must be an AuthBackend with"
        " `async authenticate(username, password) -> User | None`, e.g."
        " SimpleAuthBackend({'admin': 'a long password'}), or a Chancy 0.26-style backend with"
        f" `async login(request, username, password) -> bool`; got {type(backend).__name__}"
    )
