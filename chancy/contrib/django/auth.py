"""Dashboard logins checked against Django's users (``django.contrib.auth``).

::

    from chancy.contrib.django.auth import DjangoAuthBackend
    Api(authentication_backend=DjangoAuthBackend())

Superusers and staff users may act (retry, cancel, pause, ...); other active users may only
look, or are refused with ``staff_only=True``. Inactive users never log in.
"""

from __future__ import annotations

from typing import Any

from chancy.plugins.api.auth import ADMIN, READ_ONLY, AuthBackend, User

__all__ = ["DjangoAuthBackend"]


class DjangoAuthBackend(AuthBackend):
    def __init__(self, *, staff_only: bool = False) -> None:
        self.staff_only = staff_only

    async def authenticate(self, username: str, password: str) -> User | None:
        from asgiref.sync import sync_to_async
        from django.contrib.auth import authenticate

        found: Any = await sync_to_async(authenticate)(username=username, password=password)
        if found is None or not found.is_active:
            return None
        if found.is_superuser or found.is_staff:
            return User(found.get_username(), ADMIN)
        if self.staff_only:
            return None
        return User(found.get_username(), READ_ONLY)
