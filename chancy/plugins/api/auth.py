"""Dashboard authentication: pluggable backends, signed bearer tokens, login rate limits.

Why bearer tokens and no cookies: a browser never sends an ``Authorization`` header by itself,
so another site cannot make a logged-in browser act on the dashboard (no CSRF), and every
action is a POST that needs the token.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import heapq
import hmac
import json
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping

from chancy.errors import ConfigurationError

__all__ = [
    "ADMIN",
    "READ_ONLY",
    "AuthBackend",
    "Claims",
    "LoginLimiter",
    "Revocations",
    "SimpleAuthBackend",
    "Ticket",
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

    The backend is asked at login; afterwards the signed token carries the user and role.
    Override :meth:`get_user` too and the dashboard asks it on every request, so a deleted
    user is refused and a demoted one loses the admin role at once, not when the token ends.
    """

    async def authenticate(self, username: str, password: str) -> User | None:
        """Return the user when the credentials are right, else None."""
        raise NotImplementedError

    async def get_user(self, username: str) -> User | None:
        """The user as the backend knows them now (None: gone), asked on every request.

        Optional: by default it is not implemented and a token stays valid, with the role it
        was issued with, until it expires or its user logs out. Keep it fast (it runs per
        request); it may await I/O.
        """
        raise NotImplementedError

    @property
    def looks_users_up(self) -> bool:
        """True when this backend implements :meth:`get_user`."""
        return type(self).get_user is not AuthBackend.get_user

    async def authenticate_request(
        self, request: object, username: str, password: str
    ) -> User | None:
        """The login route's question, with the HTTP request it came in (Starlette's).

        By default it is :meth:`authenticate`; a backend that needs the request (Chancy
        0.26's ``login(request, username, password)`` took it) overrides this instead.
        """
        return await self.authenticate(username, password)

    async def logout_request(self, request: object) -> None:
        """Called by the logout route after the token is revoked; nothing by default."""


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

    async def get_user(self, username: str) -> User | None:
        if username not in self._digests:
            return None
        return User(username, READ_ONLY if username in self.read_only else ADMIN)

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


#: How long a login token lasts unless ``token_ttl`` says otherwise: an hour, so a token
#: copied from a browser is worth little for long. Logging out revokes it sooner.
DEFAULT_TOKEN_TTL = 3600.0


@dataclasses.dataclass(frozen=True, slots=True)
class Claims:
    """What a valid token says: its user, its id (for revocation) and its expiry."""

    user: User
    token_id: str
    expires: float


class TokenSigner:
    """Issues and checks ``payload.signature`` tokens (HMAC-SHA256 with the secret key).

    Each token carries a random id, so that one token can be revoked (logout) without
    touching the user's other sessions.
    """

    def __init__(self, secret_key: str | bytes, *, ttl: float = DEFAULT_TOKEN_TTL) -> None:
        key = secret_key.encode("utf-8") if isinstance(secret_key, str) else secret_key
        if len(key) < 16:
            raise ConfigurationError("the API secret_key must be at least 16 characters long")
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= 7 * 86400:
            raise ConfigurationError(
                f"token_ttl must be a number of seconds up to a week (7 * 86400), got {ttl!r}"
            )
        self._key = key
        self.ttl = ttl

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest())

    def issue(self, user: User, *, ttl: float | None = None) -> tuple[str, float]:
        """Return a token for ``user`` and its expiry (Unix time)."""
        expires = time.time() + (self.ttl if ttl is None else ttl)
        body = json.dumps(
            {"u": user.username, "r": user.role, "e": int(expires), "j": secrets.token_urlsafe(12)}
        )
        payload = _b64(body.encode("utf-8"))
        return f"{payload}.{self._sign(payload)}", expires

    def verify(self, token: str) -> User | None:
        """The user a valid, unexpired token names, else None."""
        claims = self.claims(token)
        return claims.user if claims is not None else None

    def claims(self, token: str) -> Claims | None:
        """What a valid, unexpired token says, else None (never raises on any input)."""
        if (
            not isinstance(token, str)
            or len(token) > 4096
            or not token.isascii()
            or token.count(".") != 1
        ):
            return None
        payload, signature = token.split(".")
        if not hmac.compare_digest(self._sign(payload), signature):
            return None
        try:
            data = json.loads(_unb64(payload))
            username, role, expires = data["u"], data["r"], float(data["e"])
            token_id = data["j"]
        except (ValueError, KeyError, TypeError):
            return None
        if (
            role not in ROLES
            or not isinstance(username, str)
            or not isinstance(token_id, str)
            or not expires >= time.time()
        ):
            return None
        return Claims(User(username, role), token_id, expires)


def random_secret() -> str:
    return secrets.token_urlsafe(32)


class Revocations:
    """Ids of tokens revoked before their expiry, each kept until then; bounded.

    Why bounded: logging out is open to every logged-in user, so the set must not grow
    without end. Past ``max_entries`` (after dropping what has expired anyway), the entry
    closest to its own expiry makes room: its token is revived for the little time it had
    left. Reaching that needs ``max_entries`` logouts within one token lifetime.
    """

    def __init__(
        self, *, max_entries: int = 100_000, clock: Callable[[], float] = time.time
    ) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def add(self, token_id: str, expires: float) -> None:
        self._drop_expired()
        while len(self._expiry) >= self.max_entries and self._heap:
            _, oldest = heapq.heappop(self._heap)
            self._expiry.pop(oldest, None)
        self._expiry[token_id] = expires
        heapq.heappush(self._heap, (expires, token_id))

    def _drop_expired(self) -> None:
        now = self._clock()
        while self._heap and self._heap[0][0] < now:
            _, token_id = heapq.heappop(self._heap)
            self._expiry.pop(token_id, None)

    def __contains__(self, token_id: object) -> bool:
        expires = self._expiry.get(token_id)  # type: ignore[call-overload]
        if expires is None:
            return False
        if expires < self._clock():
            self._drop_expired()
            return False
        return True

    def __len__(self) -> int:
        self._drop_expired()
        return len(self._expiry)


@dataclasses.dataclass
class _Entry:
    failures: deque[float]
    inflight: int
    touched: float


@dataclasses.dataclass(frozen=True, slots=True)
class Ticket:
    """The answer to :meth:`LoginLimiter.reserve`: granted, or refused for ``retry_after`` s."""

    keys: tuple[str, ...]
    granted: bool
    retry_after: float = 0.0


class LoginLimiter:
    """Allows ``attempts`` failed logins per key within ``window`` seconds.

    An attempt is reserved before the backend is asked and counts while it is in flight, so
    parallel attempts cannot all pass the check before any failure is recorded: at most
    ``attempts`` of them reach the backend. Memory is bounded by ``max_keys``: expired
    entries make room first; when every entry is still active, a key not yet tracked is
    refused (429) rather than an active lock dropped.
    """

    def __init__(
        self,
        attempts: int = 5,
        window: float = 300,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ConfigurationError(f"login_attempts must be a positive integer, got {attempts!r}")
        if isinstance(window, bool) or not isinstance(window, int | float) or not window > 0:
            raise ConfigurationError(f"login_window must be a positive number, got {window!r}")
        self.attempts = attempts
        self.window = float(window)
        self.max_keys = max_keys
        self._clock = clock
        #: Least recently touched first, so expired entries are found at the front.
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _purge(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, entry = next(iter(entries.items()))
            if entry.inflight or now - entry.touched <= self.window:
                break
            del entries[key]

    def _wait(self, entry: _Entry, now: float) -> float:
        failures = entry.failures
        while failures and now - failures[0] > self.window:
            failures.popleft()
        if len(failures) >= self.attempts:
            return max(0.001, self.window - (now - failures[0]))
        if len(failures) + entry.inflight >= self.attempts:
            # Attempts in flight fill the allowance; one of them may still succeed.
            return 1.0
        return 0.0

    def _entry(self, key: str, now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            self._purge(now)
            if len(self._entries) >= self.max_keys:
                return None
            entry = _Entry(deque(maxlen=self.attempts), 0, now)
            self._entries[key] = entry
        return entry

    def retry_after(self, *keys: str) -> float:
        """Seconds until another attempt is allowed for these keys (0 when allowed now)."""
        now = self._clock()
        wait = 0.0
        for key in keys:
            entry = self._entries.get(key)
            if entry is not None:
                wait = max(wait, self._wait(entry, now))
        return wait

    def reserve(self, *keys: str) -> Ticket:
        """Count an attempt for every key now, or refuse it; no await between check and count."""
        now = self._clock()
        wait = self.retry_after(*keys)
        if wait > 0:
            return Ticket(keys, False, wait)
        created: list[str] = []
        for key in keys:
            known = key in self._entries
            entry = self._entry(key, now)
            if entry is None:
                # Full of active entries: refuse rather than forget one of them.
                for new in created:
                    del self._entries[new]
                oldest = next(iter(self._entries.values()))
                return Ticket(keys, False, max(1.0, self.window - (now - oldest.touched)))
            if not known:
                created.append(key)
        for key in keys:
            entry = self._entries[key]
            entry.inflight += 1
            entry.touched = now
            self._entries.move_to_end(key)
        return Ticket(keys, True)

    def release(self, ticket: Ticket, *, failed: bool) -> None:
        """End a granted attempt: a failure counts against its keys for ``window`` seconds."""
        if not ticket.granted:
            return
        now = self._clock()
        for key in ticket.keys:
            entry = self._entries.get(key)
            if entry is None:
                continue
            entry.inflight = max(0, entry.inflight - 1)
            if failed:
                entry.failures.append(now)
                entry.touched = now
                self._entries.move_to_end(key)
            elif not entry.inflight and not entry.failures:
                del self._entries[key]

    def failed(self, *keys: str) -> None:
        """Record a failure for each key (a key that finds no room is not tracked)."""
        now = self._clock()
        for key in keys:
            entry = self._entry(key, now)
            if entry is not None:
                entry.failures.append(now)
                entry.touched = now
                self._entries.move_to_end(key)

    def succeeded(self, *keys: str) -> None:
        """Forget the failures of these keys (a right password was given)."""
        for key in keys:
            entry = self._entries.get(key)
            if entry is None:
                continue
            entry.failures.clear()
            if not entry.inflight:
                del self._entries[key]
