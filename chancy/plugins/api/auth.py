"""Dashboard authentication: pluggable backends, signed bearer tokens, login rate limits.

Why bearer tokens and no cookies: a browser never sends an ``Authorization`` header by itself,
so another site cannot make a logged-in browser act on the dashboard (no CSRF), and every
action is a POST that needs the token.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import secrets
import time
from collections import deque
from collections.abc import Iterable, Mapping

from chancy.errors import ConfigurationError

__all__ = [
    "ADMIN",
    "READ_ONLY",
    "AuthBackend",
    "LoginLimiter",
    "SimpleAuthBackend",
    "TokenSigner",
    "User",
]

#: Roles: an admin may act (retry, cancel, pause, ...); a read-only user may only look.
ADMIN = "admin"
READ_ONLY = "read-only"
ROLES = frozenset({ADMIN, READ_ONLY})


@dataclasses.dataclass(frozen=True, slots=True)
class User:
    """Who is logged in, and what they may do."""

    username: str
    role: str = ADMIN

    @property
    def can_act(self) -> bool:
        return self.role == ADMIN


class AuthBackend:
    """Decides who may log in; subclass and override :meth:`authenticate`.

    The backend is asked only at login; afterwards the signed token carries the user and role.
    """

    async def authenticate(self, username: str, password: str) -> User | None:
        """Return the user when the credentials are right, else None."""
        raise NotImplementedError


class SimpleAuthBackend(AuthBackend):
    """Users and passwords given in code: ``SimpleAuthBackend({"admin": "secret"})``.

    :param users: username -> password.
    :param read_only: usernames that may look but not act.
    """

    def __init__(self, users: Mapping[str, str], *, read_only: Iterable[str] = ()) -> None:
        if not isinstance(users, Mapping) or not users:
            raise ConfigurationError("SimpleAuthBackend needs a dict of {username: password}")
        for name, password in users.items():
            if not isinstance(name, str) or not isinstance(password, str) or not password:
                raise ConfigurationError(
                    "SimpleAuthBackend users must map usernames to non-empty passwords (str)"
                )
        self._digests = {name: _digest(password) for name, password in users.items()}
        self.read_only = frozenset(read_only)
        unknown = self.read_only - set(users)
        if unknown:
            raise ConfigurationError(f"read_only names unknown users: {sorted(unknown)}")

    async def authenticate(self, username: str, password: str) -> User | None:
        expected = self._digests.get(username)
        # Compare against something even for unknown users, so timing does not tell them apart.
        ok = hmac.compare_digest(expected or _digest(""), _digest(password))
        if expected is None or not ok:
            return None
        return User(username, READ_ONLY if username in self.read_only else ADMIN)


def _digest(password: str) -> bytes:
    return hashlib.sha256(password.encode("utf-8")).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Issues and checks ``payload.signature`` tokens (HMAC-SHA256 with the secret key)."""

    def __init__(self, secret_key: str | bytes, *, ttl: float = 12 * 3600) -> None:
        key = secret_key.encode("utf-8") if isinstance(secret_key, str) else secret_key
        if len(key) < 16:
            raise ConfigurationError("the API secret_key must be at least 16 characters long")
        self._key = key
        self.ttl = ttl

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest())

    def issue(self, user: User, *, ttl: float | None = None) -> tuple[str, float]:
        """Return a token for ``user`` and its expiry (Unix time)."""
        expires = time.time() + (self.ttl if ttl is None else ttl)
        body = json.dumps({"u": user.username, "r": user.role, "e": int(expires)})
        payload = _b64(body.encode("utf-8"))
        return f"{payload}.{self._sign(payload)}", expires

    def verify(self, token: str) -> User | None:
        """The user a valid, unexpired token names, else None."""
        if not isinstance(token, str) or token.count(".") != 1 or len(token) > 4096:
            return None
        payload, signature = token.split(".")
        if not hmac.compare_digest(self._sign(payload), signature):
            return None
        try:
            data = json.loads(_unb64(payload))
            username, role, expires = data["u"], data["r"], float(data["e"])
        except (ValueError, KeyError, TypeError):
            return None
        if role not in ROLES or not isinstance(username, str) or expires < time.time():
            return None
        return User(username, role)


def random_secret() -> str:
    return secrets.token_urlsafe(32)


class LoginLimiter:
    """Allows ``attempts`` failed logins per client and per username within ``window`` seconds."""

    def __init__(self, attempts: int = 5, window: float = 300) -> None:
        self.attempts = attempts
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.get(key)
        if failures is None:
            return deque()
        while failures and now - failures[0] > self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
        return failures

    def retry_after(self, *keys: str) -> float:
        """Seconds until another attempt is allowed for these keys (0 when allowed now)."""
        now = time.monotonic()
        wait = 0.0
        for key in keys:
            failures = self._recent(key, now)
            if len(failures) >= self.attempts:
                wait = max(wait, self.window - (now - failures[0]))
        return wait

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        if len(self._failures) > 100_000:
            # Bound memory under a flood of distinct keys: forget the oldest half.
            for key in list(self._failures)[: len(self._failures) // 2]:
                del self._failures[key]
        for key in keys:
            self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self._failures.pop(key, None)
