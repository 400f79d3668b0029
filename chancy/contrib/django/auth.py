"""Dashboard logins checked against Django's users (``django.contrib.auth``).

::

    from chancy.contrib.django.auth import DjangoAuthBackend

    Api(authentication_backend=DjangoAuthBackend())  # superusers only, as Chancy 0.26
    Api(authentication_backend=DjangoAuthBackend(roles=True))  # staff act, others look

By default only active superusers log in, and they may act (retry, cancel, pause, ...):
Chancy 0.26's rule. With ``roles=True`` staff users may act as well and every other active
user may look but not act; add ``staff_only=True`` to refuse those other users instead.
Inactive users never log in.

The backend answers both ways a dashboard asks: chancy's ``authenticate(username, password)``
(the API issues its own token), and 0.26's session calls ``login(request, username,
password)``, ``logout(request)`` and ``authenticate(conn)``.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from chancy.plugins.api.auth import ADMIN, READ_ONLY, AuthBackend, User

__all__ = ["DjangoAuthBackend"]


class DjangoAuthBackend(AuthBackend):
    """Django users as dashboard users; see the module docstring for who may log in.

    :param roles: let staff act and other active users look (default: superusers only).
    :param staff_only: with roles, refuse users who are neither staff nor superusers (implies
        ``roles``).
    """

    def __init__(self, *, roles: bool = False, staff_only: bool = False) -> None:
        self.roles = roles or staff_only
        self.staff_only = staff_only

    async def _check(self, username: str, password: str) -> User | None:
        from asgiref.sync import sync_to_async
        from django.contrib.auth import authenticate

        found: Any = await sync_to_async(authenticate)(username=username, password=password)
        if found is None or not found.is_active:
            return None
        if found.is_superuser:
            return User(found.get_username(), ADMIN)
        if not self.roles:
            return None
        if found.is_staff:
            return User(found.get_username(), ADMIN)
        if self.staff_only:
            return None
        return User(found.get_username(), READ_ONLY)

    async def authenticate(self, username: Any, password: str | None = None) -> Any:
        """``authenticate(username, password)`` -> ``User`` or None (chancy's API), or, called
        with one connection as 0.26's API did, the session's ``(AuthCredentials, SimpleUser)``
        or None."""
        if password is None and not isinstance(username, str):
            return self._from_session(username)
        if not isinstance(username, str) or not isinstance(password, str):
            return None
        return await self._check(username, password)

    async def login(self, request: Any, username: str, password: str) -> bool:
        """0.26's session login: True (and the username kept in the session) when allowed."""
        user = await self._check(username, password)
        if user is None:
            return False
        with suppress(AssertionError):  # no SessionMiddleware: token-only, nothing to keep
            request.session["username"] = user.username
        return True

    async def logout(self, request: Any) -> None:
        with suppress(AssertionError):
            request.session.pop("username", None)

    @staticmethod
    def _from_session(conn: Any) -> Any:
        from starlette.authentication import AuthCredentials, SimpleUser

        try:
            username = conn.session.get("username")
        except AssertionError:
            return None
        if username is None:
            return None
        return AuthCredentials(["authenticated"]), SimpleUser(username)
