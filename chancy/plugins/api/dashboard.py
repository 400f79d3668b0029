"""The dashboard's shell: its pool, who is asking, the route wrapper, and the route table.

Every route but ``/health``, ``POST /api/v1/login`` and the UI's static files needs a bearer
token (``Authorization: Bearer ...``) from the login route; actions are POSTs and need the
admin role. The routes come from the core modules in :mod:`chancy.plugins.api.routes` and
from every installed plugin whose :meth:`~chancy.plugin.Plugin.api_plugin` names an
:class:`~chancy.plugins.api.ApiPlugin`: the dashboard knows plugins only by what they
contribute.

Why the dashboard has its own connection pool: it may run inside a worker, and a slow filter
of one user must never hold the connections the worker claims and completes jobs with. Each
user also gets at most ``user_concurrency`` database requests at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from chancy.app import Chancy
from chancy.errors import ConfigurationError
from chancy.plugins.api.api_plugin import ApiPlugin
from chancy.plugins.api.auth import (
    DEFAULT_TOKEN_TTL,
    Claims,
    LoginLimiter,
    Revocations,
    TokenSigner,
    User,
    random_secret,
)
from chancy.plugins.api.compat import as_auth_backend
from chancy.plugins.api.counts import Counter
from chancy.plugins.api.extensions import extension_route, load_extensions
from chancy.plugins.api.http import (
    JSON,
    ApiError,
    Gate,
    GetCache,
    check_request_text,
    client_key,
    dumps,
    error_response,
    read_object,
)
from chancy.plugins.api.routes.ui import UiRoutes
from chancy.store.loader import Queries

if TYPE_CHECKING:
    from chancy.worker import Worker

__all__ = ["Dashboard"]

log = logging.getLogger("chancy.api")


def _own_chancy(chancy: Chancy, pool_size: int) -> Chancy:
    """A Chancy on the same database, prefix and plugins, with a small pool of its own.

    Why: every dashboard statement then runs on this pool, never on the worker's, so a slow
    dashboard read cannot delay a worker's claims, completions or heartbeats. The pool opens
    on first use and holds no idle connection (min size 0).
    """
    own = Chancy(
        chancy.dsn,
        prefix=chancy.prefix,
        no_default_plugins=True,
        min_connection_pool_size=0,
        max_connection_pool_size=pool_size,
        notifications=chancy.notifications,
        listen_dsn=chancy.listen_dsn,
        pooled=chancy.pooled,
        connect_timeout=chancy.connect_timeout,
        max_result_size=chancy.max_result_size,
        log=chancy.log,
    )
    # The same plugin objects (not copies): push hooks run, and plugins added later are seen.
    own.plugins = chancy.plugins
    return own


class Dashboard:
    """The API's state and handlers for one Chancy installation.

    ``worker`` is the worker serving the dashboard (passed to plugin endpoints; None when
    the app is mounted in another). ``debug`` logs every request and the extensions loaded at
    DEBUG on the ``chancy.api`` logger; answers never carry tracebacks either way.
    """

    def __init__(
        self,
        chancy: Chancy,
        *,
        authentication_backend: Any,
        secret_key: str | None = None,
        token_ttl: float = DEFAULT_TOKEN_TTL,
        login_attempts: int = 5,
        login_window: float = 300,
        client_login_attempts: int = 20,
        statement_timeout: float = 5.0,
        count_threshold: int = 10000,
        max_page_size: int = 200,
        max_bulk: int = 1000,
        cache_ttl: float = 1.0,
        throughput_ttl: float = 10.0,
        metrics_token: str | None = None,
        pool_size: int = 3,
        user_concurrency: int = 2,
        busy_wait: float = 1.0,
        health_ttl: float = 1.0,
        worker: Worker | None = None,
        debug: bool = False,
    ) -> None:
        self.auth = as_auth_backend(authentication_backend)
        for name, value in (("pool_size", pool_size), ("user_concurrency", user_concurrency)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
                raise ConfigurationError(f"{name} must be an integer from 1 to 100, got {value!r}")
        if metrics_token is not None and (
            not isinstance(metrics_token, str) or len(metrics_token) < 16
        ):
            raise ConfigurationError(
                "metrics_token must be a string of at least 16 characters; make one with"
                " `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        self.debug = bool(debug)
        if self.debug:
            log.setLevel(logging.DEBUG)
        self.chancy = chancy
        self.worker = worker
        #: The dashboard's own Chancy: same database and plugins, its own small pool.
        self.db = _own_chancy(chancy, pool_size)
        if secret_key is None:
            secret_key = random_secret()
            log.warning(
                "the API has no secret_key: using a random one, so tokens end when this"
                " process stops; pass Api(secret_key=...) to keep logins across restarts"
            )
        self.signer = TokenSigner(secret_key, ttl=token_ttl)
        self.revoked = Revocations()
        #: A fixed bearer token that only opens ``/metrics``, for Prometheus (which cannot log
        #: in); None: ``/metrics`` takes the login tokens only.
        self.metrics_token = metrics_token
        #: Failed logins per (client address, username) and, more loosely, per address; never
        #: per username alone, so nobody can lock a user out from elsewhere.
        self.limiter = LoginLimiter(login_attempts, login_window)
        self.address_limiter = LoginLimiter(client_login_attempts, login_window)
        self.statement_timeout = statement_timeout
        self.count_threshold = count_threshold
        self.max_page_size = max_page_size
        self.max_bulk = max_bulk
        self.cache_ttl = cache_ttl
        self.throughput_ttl = throughput_ttl
        self.pool_size = pool_size
        self.user_concurrency = user_concurrency
        self.busy_wait = busy_wait
        self.health_ttl = health_ttl
        self.q = Queries("chancy.plugins.api.sql", chancy.prefix)
        self.counter = Counter(self.q, chancy.prefix, count_threshold)
        self.cache = GetCache(cache_ttl)
        self.ui = UiRoutes()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._user_gate = Gate(user_concurrency, busy_wait)
        self._pool_gate = Gate(pool_size, statement_timeout + busy_wait)
        self._health: tuple[float, bool, str] | None = None
        self._health_task: asyncio.Task[tuple[bool, str]] | None = None
        #: The extensions of the installed plugins (their ``api_plugin()``), built once.
        self.extensions: list[ApiPlugin] = load_extensions(self)

    async def close(self) -> None:
        """Close the dashboard's own connection pool (it reopens on the next request)."""
        await self.db.close()

    # -- plumbing -----------------------------------------------------------------------

    def _gates_for_this_loop(self) -> None:
        # Semaphores belong to the loop that first waits on them; a dashboard reused under
        # another loop (asyncio.run twice) starts with fresh ones.
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._user_gate = Gate(self.user_concurrency, self.busy_wait)
            self._pool_gate = Gate(self.pool_size, self.statement_timeout + self.busy_wait)
            self._health_task = None

    @contextlib.asynccontextmanager
    async def cursor(self, *, timeout: bool = True) -> AsyncIterator[psycopg.AsyncCursor[Any]]:
        """A cursor in a transaction whose statements are bounded by the statement timeout.

        The same statement turns JIT compilation off for the transaction. ``timeout=False``
        skips it, for requests whose statements are cheap and bounded by construction (one
        less round trip on the most polled route, the unfiltered jobs list).
        """
        pool = await self.db.open()
        async with pool.connection() as conn, conn.transaction():
            async with conn.cursor(row_factory=dict_row) as cur:
                if timeout:
                    await cur.execute(
                        self.q["api_statement_timeout"],
                        {"ms": int(self.statement_timeout * 1000)},
                    )
                yield cur

    async def fetch_all(self, name: str, params: Any = None) -> list[dict[str, Any]]:
        async with self.cursor() as cur:
            await cur.execute(self.q[name], params)
            return await cur.fetchall()

    async def fetch_one(self, name: str, params: Any = None) -> dict[str, Any] | None:
        async with self.cursor() as cur:
            await cur.execute(self.q[name], params)
            return await cur.fetchone()

    def invalidate(self) -> None:
        """Forget cached answers (after an action changed what they show)."""
        self.cache.clear()

    # -- who is asking ------------------------------------------------------------------

    def claims(self, request: HTTPConnection) -> Claims | None:
        """The claims of the request's bearer token when it is valid and not revoked."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        claims = self.signer.claims(token.strip())
        if claims is None or claims.token_id in self.revoked:
            return None
        return claims

    def user(self, request: HTTPConnection) -> User | None:
        claims = self.claims(request)
        return claims.user if claims is not None else None

    async def current_user(self, claims: Claims) -> User:
        """The token's user as the backend knows them now, when it can tell."""
        if not self.auth.looks_users_up:
            return claims.user
        try:
            current = await self.auth.get_user(claims.user.username)
        except Exception:
            log.exception("the authentication backend failed to look a user up")
            raise ApiError(503, "the authentication backend is unavailable; try again") from None
        if current is None:
            raise ApiError(
                401, f"user {claims.user.username!r} no longer exists; log in as another user"
            )
        return User(claims.user.username, current.role)

    async def require_user(self, request: HTTPConnection) -> tuple[User, Claims]:
        """The logged-in user of ``request`` (401 without a valid token)."""
        claims = self.claims(request)
        if claims is None:
            raise ApiError(
                401,
                "log in first: send the token from POST /api/v1/login as"
                " 'Authorization: Bearer <token>'",
            )
        return await self.current_user(claims), claims

    def _metrics_token_ok(self, request: Request) -> bool:
        expected = self.metrics_token
        if expected is None:
            return False
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode("utf-8"), expected.encode("utf-8")
        )

    # -- the route wrapper --------------------------------------------------------------

    def route(
        self,
        handler: Callable[[Request], Awaitable[Any]],
        *,
        auth: str = "read",
        cache: bool = True,
        database: bool = True,
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a handler with authentication, limits, caching of GETs and error mapping.

        ``auth`` is ``"none"``, ``"read"`` (any logged-in user), ``"act"`` (admins only) or
        ``"metrics"`` (a logged-in user, or the fixed ``metrics_token``). ``cache=False``
        keeps a GET out of the cache (answers that differ per token). ``database=False``
        marks a route that reads no table, so it takes no slot of the per-user limit.
        """

        async def endpoint(request: Request) -> Response:
            started = time.monotonic()
            try:
                response = await self._answer(request, handler, auth, cache, database)
            except Exception as exc:
                response = error_response(request, exc, statement_timeout=self.statement_timeout)
            if self.debug:
                log.debug(
                    "%s %s -> %s in %.1f ms",
                    request.method,
                    request.url.path,
                    response.status_code,
                    (time.monotonic() - started) * 1000,
                )
            return response

        return endpoint

    async def _answer(
        self,
        request: Request,
        handler: Callable[[Request], Awaitable[Any]],
        auth: str,
        cache: bool,
        database: bool,
    ) -> Response:
        self._gates_for_this_loop()
        who = cache_who = "anonymous"
        if auth == "metrics" and self._metrics_token_ok(request):
            who = cache_who = "metrics-token"
        elif auth != "none":
            user, claims = await self.require_user(request)
            if auth == "act" and not user.can_act:
                raise ApiError(403, f"user {user.username!r} is read-only")
            request.state.user = user
            request.state.claims = claims
            who = f"user:{user.username}"
            # The cache is keyed by user and role: nobody is answered with what another
            # user (or the same one with another role) was shown.
            cache_who = f"{who}\x00{user.role}"
        check_request_text(request)
        cacheable = cache and request.method == "GET" and self.cache_ttl > 0 and auth != "none"
        key = (cache_who, request.url.path, str(request.url.query))
        if cacheable:
            hit = self.cache.get(key)
            if hit is not None:
                return Response(hit, 200, media_type="application/json")
        if database and auth != "none":
            async with (
                self._user_gate.slot(who, self._too_many),
                self._pool_gate.slot("all", self._busy),
            ):
                result = await handler(request)
        else:
            result = await handler(request)
        if isinstance(result, Response):
            return result
        body = dumps(result)
        if cacheable:
            self.cache.put(key, body)
        elif request.method == "POST":
            self.invalidate()
        return Response(body, 200, media_type="application/json")

    def _too_many(self) -> ApiError:
        return ApiError(
            429,
            f"at most {self.user_concurrency} requests per user at once; wait for the ones"
            " in flight (narrower filters answer sooner)",
            headers={"Retry-After": "1"},
        )

    def _busy(self) -> ApiError:
        return ApiError(
            503,
            "the dashboard's database connections are all busy; try again shortly",
            headers={"Retry-After": "2"},
        )

    # -- public routes ------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        """Whether the database answers, checked on chancy's own pool, never the dashboard's.

        One check runs at a time and its answer serves every request for ``health_ttl``
        seconds, so a flood of (unauthenticated) health checks costs one query a second.
        """
        self._gates_for_this_loop()
        cached = self._health
        if cached is None or cached[0] <= time.monotonic():
            task = self._health_task
            if task is None or task.done():
                task = self._health_task = asyncio.ensure_future(self._ping())
            ok, error = await asyncio.shield(task)
            self._health = (time.monotonic() + self.health_ttl, ok, error)
        else:
            ok, error = cached[1], cached[2]
        if not ok:
            return JSON({"status": "unavailable", "error": error}, status_code=503)
        return JSON({"status": "ok"})

    async def _ping(self) -> tuple[bool, str]:
        try:
            pool = await asyncio.wait_for(self.chancy.open(), 5)
            async with asyncio.timeout(5), pool.connection() as conn:
                await conn.execute(self.q["api_ping"])
        except Exception as exc:
            return False, type(exc).__name__
        return True, ""

    async def login(self, request: Request) -> Any:
        data = await read_object(request)
        username, password = data.get("username"), data.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise ApiError(400, "send {'username': ..., 'password': ...} as strings")
        if len(username) > 200 or len(password) > 1000:
            raise ApiError(400, "username or password too long")
        address = client_key(request)
        # Reserved before the backend is awaited, so parallel attempts cannot all pass the
        # check first; counted per address and per (address, username), never per username,
        # so nobody can lock a user out from another address.
        by_address = self.address_limiter.reserve(f"address:{address}")
        if not by_address.granted:
            return self._locked(by_address.retry_after)
        by_pair = self.limiter.reserve(f"login:{address}\x00{username}")
        if not by_pair.granted:
            self.address_limiter.release(by_address, failed=False)
            return self._locked(by_pair.retry_after)
        failed = False
        try:
            user = await self.auth.authenticate_request(request, username, password)
            failed = user is None
        finally:
            self.address_limiter.release(by_address, failed=failed)
            self.limiter.release(by_pair, failed=failed)
        if user is None:
            raise ApiError(401, "wrong username or password")
        self.limiter.succeeded(*by_pair.keys)
        token, expires = self.signer.issue(user)
        return {
            "token": token,
            "expires_at": datetime.fromtimestamp(expires, UTC),
            "user": {"username": user.username, "role": user.role},
        }

    @staticmethod
    def _locked(wait: float) -> Response:
        seconds = max(1, math.ceil(wait))
        return JSON(
            {"error": f"too many failed logins from your address; try again in {seconds} s"},
            status_code=429,
            headers={"Retry-After": str(seconds)},
        )

    async def logout(self, request: Request) -> Any:
        """Revoke the token of this request (until it would have expired)."""
        claims: Claims = request.state.claims
        self.revoked.add(claims.token_id, claims.expires)
        await self.auth.logout_request(request)
        return {"logged_out": True}

    async def me(self, request: Request) -> Any:
        user: User = request.state.user
        return {"username": user.username, "role": user.role, "can_act": user.can_act}

    async def index(self, request: Request) -> Response:
        """The UI's page (see :class:`~chancy.plugins.api.routes.ui.UiRoutes`)."""
        return await self.ui.index(request)

    # -- the route table ----------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """Every route: the shell's, the core modules', then each extension's."""
        from chancy.plugins.api.routes import CORE_ROUTES

        r = self.route
        get, post = ["GET"], ["POST"]
        table: list[BaseRoute] = [
            *self.ui.routes(),
            Route("/health", self.health, methods=get),
            Route("/api/v1/login", r(self.login, auth="none"), methods=post),
            Route("/api/v1/logout", r(self.logout, database=False), methods=post),
            Route("/api/v1/me", r(self.me, cache=False, database=False), methods=get),
        ]
        for module in CORE_ROUTES:
            table.extend(module(self).routes())
        for extension in self.extensions:
            table.extend(extension_route(self, spec) for spec in extension.routes())
        return table
