"""The dashboard's HTTP API (Starlette) and the routes that serve its web UI.

Every route but ``/health``, ``POST /api/v1/login`` and the UI's static files needs a bearer
token (``Authorization: Bearer ...``) from the login route; actions are POSTs and need the
admin role. Inputs are validated before anything reaches the database: job filters are built
with :mod:`chancy.rule` (values become parameters), and a bad value is a 4xx with a message.

Why the counts are capped or estimated: an open dashboard polls, and on a table of millions of
jobs an exact ``count(*)`` per poll would cost more than the workers' own work. Counts are
exact up to ``count_threshold`` and come from the planner's estimate above it; every statement
runs under a ``statement_timeout``; identical GETs within ``cache_ttl`` seconds share one
answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import json
import logging
import math
import platform
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from importlib import metadata, resources
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from chancy.app import Chancy
from chancy.errors import ConfigurationError
from chancy.job import QueuedJob
from chancy.plugins.api.auth import (
    AuthBackend,
    LoginLimiter,
    TokenSigner,
    User,
    random_secret,
)
from chancy.plugins.metrics.metrics import (
    METRICS,
    RESOLUTIONS,
    Metrics,
    metrics_queries,
    prometheus_text,
)
from chancy.queue import EXECUTORS, Queue
from chancy.rule import (
    AndCondition,
    InvalidRuleError,
    JobRules,
    SQLAble,
    compile_rule_named,
)
from chancy.store.loader import Queries
from chancy.store.store import queue_from_row

log = logging.getLogger("chancy.api")

#: A queue's page lists the usage of at most this many partition keys (the busiest).
_MAX_LIMIT_KEYS = 100

__all__ = ["ApiError", "Dashboard", "build_starlette_app"]

STATES = tuple(s.value for s in QueuedJob.State)
_JOB_FILTER_PARAMS = frozenset(
    {"state", "queue", "func", "func_contains", "since", "until", "filter"}
)
_UI_FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_MAX_BODY = 256 * 1024


class ApiError(Exception):
    """A client error: its status and a message that says what to fix."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def dumps(data: Any) -> bytes:
    return json.dumps(data, default=_default, separators=(",", ":"), allow_nan=False).encode()


class JSON(JSONResponse):
    """JSON with datetimes, UUIDs and sets encoded."""

    def render(self, content: Any) -> bytes:
        return dumps(content)


def _parse_uuid(text: Any, what: str = "job id") -> uuid.UUID:
    if not isinstance(text, str) or len(text) > 64:
        raise ApiError(400, f"malformed {what}: expected a UUID")
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        raise ApiError(400, f"malformed {what} {text[:64]!r}: expected a UUID") from None


def _parse_time(text: str, what: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            400, f"{what} must be an ISO 8601 time such as 2024-05-01T12:00:00Z, got {text!r}"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def _parse_int(text: str | None, what: str, default: int, lo: int, hi: int) -> int:
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"{what} must be an integer, got {text[:40]!r}") from None
    if not lo <= value <= hi:
        raise ApiError(400, f"{what} must be between {lo} and {hi}, got {value}")
    return value


def _plan_rows(row: Any) -> int:
    try:
        document = row["QUERY PLAN"]
        if isinstance(document, str):
            document = json.loads(document)
        return int(document[0]["Plan"]["Plan Rows"])
    except (KeyError, IndexError, TypeError, ValueError):
        return 0


def _job_summary(row: Mapping[str, Any]) -> dict[str, Any]:
    return dict(row)


def _job_detail(job: Mapping[str, Any]) -> dict[str, Any]:
    data = dict(job)
    data["cancelled"] = bool((data.get("meta") or {}).get("cancelled"))
    return data


@dataclasses.dataclass
class _Cached:
    expires: float
    body: bytes
    status: int


class Dashboard:
    """The API's state and handlers for one Chancy installation."""

    def __init__(
        self,
        chancy: Chancy,
        *,
        authentication_backend: AuthBackend,
        secret_key: str | None = None,
        token_ttl: float = 12 * 3600,
        login_attempts: int = 5,
        login_window: float = 300,
        statement_timeout: float = 5.0,
        count_threshold: int = 10000,
        max_page_size: int = 200,
        max_bulk: int = 1000,
        cache_ttl: float = 1.0,
        throughput_ttl: float = 10.0,
        metrics_token: str | None = None,
    ) -> None:
        if not isinstance(authentication_backend, AuthBackend):
            raise ConfigurationError(
                "authentication_backend must be an AuthBackend, e.g."
                " SimpleAuthBackend({'admin': 'a long password'})"
            )
        self.chancy = chancy
        self.auth = authentication_backend
        if secret_key is None:
            secret_key = random_secret()
            log.warning(
                "the API has no secret_key: using a random one, so tokens end when this"
                " process stops; pass Api(secret_key=...) to keep logins across restarts"
            )
        self.signer = TokenSigner(secret_key, ttl=token_ttl)
        if metrics_token is not None and (
            not isinstance(metrics_token, str) or len(metrics_token) < 16
        ):
            raise ConfigurationError(
                "metrics_token must be a string of at least 16 characters; make one with"
                " `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        #: A fixed bearer token that only opens ``/metrics``, for Prometheus (which cannot log
        #: in); None: ``/metrics`` takes the login tokens only.
        self.metrics_token = metrics_token
        self.limiter = LoginLimiter(login_attempts, login_window)
        self.statement_timeout = statement_timeout
        self.count_threshold = count_threshold
        self.max_page_size = max_page_size
        self.max_bulk = max_bulk
        self.cache_ttl = cache_ttl
        self.q = Queries("chancy.plugins.api.sql", chancy.prefix)
        self._cache: dict[tuple[str, str], _Cached] = {}
        self._ui: dict[str, bytes] = {}
        self.throughput_ttl = throughput_ttl
        self._throughput_cache: tuple[float, list[dict[str, Any]]] | None = None

    # -- plumbing -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def cursor(self, *, timeout: bool = True) -> AsyncIterator[psycopg.AsyncCursor[Any]]:
        """A cursor in a transaction whose statements are bounded by the statement timeout.

        The same statement turns JIT compilation off for the transaction. ``timeout=False``
        skips it, for requests whose statements are cheap and bounded by construction (one
        less round trip on the most polled route, the unfiltered jobs list).
        """
        pool = await self.chancy.open()
        async with pool.connection() as conn, conn.transaction():
            async with conn.cursor(row_factory=dict_row) as cur:
                if timeout:
                    await cur.execute(
                        self.q["api_statement_timeout"],
                        {"ms": int(self.statement_timeout * 1000)},
                    )
                yield cur

    async def _throughput(self, cur: psycopg.AsyncCursor[Any]) -> list[dict[str, Any]]:
        """Last hour's 1-minute outcome counters, cached for ``throughput_ttl`` seconds."""
        if not self._metrics_installed():
            return []
        cached = self._throughput_cache
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        now = datetime.now(UTC)
        await cur.execute(
            metrics_queries(self.chancy.prefix)["metrics_series"],
            {
                "names": ["jobs.succeeded", "jobs.failed", "jobs.retried"],
                "resolution": "1min",
                "since": now - timedelta(hours=1),
                "until": now + timedelta(minutes=5),
                "queue": None,
                "func": None,
                "limit": 20000,
            },
        )
        rows = await cur.fetchall()
        self._throughput_cache = (time.monotonic() + self.throughput_ttl, rows)
        return rows

    async def fetch_all(self, name: str, params: Any = None) -> list[dict[str, Any]]:
        async with self.cursor() as cur:
            await cur.execute(self.q[name], params)
            return await cur.fetchall()

    async def fetch_one(self, name: str, params: Any = None) -> dict[str, Any] | None:
        async with self.cursor() as cur:
            await cur.execute(self.q[name], params)
            return await cur.fetchone()

    def plugin(self, identifier: str) -> Any:
        return self.chancy.plugins.get(identifier)

    def user(self, request: Request) -> User | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        return self.signer.verify(token.strip())

    def _metrics_token_ok(self, request: Request) -> bool:
        expected = self.metrics_token
        if expected is None:
            return False
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode("utf-8"), expected.encode("utf-8")
        )

    @staticmethod
    async def body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > _MAX_BODY:
            raise ApiError(413, f"request body over {_MAX_BODY} bytes")
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            raise ApiError(400, "the request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return data

    def invalidate(self) -> None:
        self._cache.clear()
        self._throughput_cache = None

    # -- the route wrapper --------------------------------------------------------------

    def route(
        self,
        handler: Callable[[Request], Awaitable[Any]],
        *,
        auth: str = "read",
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a handler with authentication, caching of GETs and error mapping.

        ``auth`` is ``"none"``, ``"read"`` (any logged-in user), ``"act"`` (admins only) or
        ``"metrics"`` (a logged-in user, or the fixed ``metrics_token``).
        """

        async def endpoint(request: Request) -> Response:
            try:
                if auth == "metrics" and self._metrics_token_ok(request):
                    pass
                elif auth != "none":
                    user = self.user(request)
                    if user is None:
                        raise ApiError(
                            401,
                            "log in first: send the token from POST /api/v1/login as"
                            " 'Authorization: Bearer <token>'",
                        )
                    if auth == "act" and not user.can_act:
                        raise ApiError(403, f"user {user.username!r} is read-only")
                    request.state.user = user
                cacheable = request.method == "GET" and self.cache_ttl > 0 and auth != "none"
                key = (request.url.path, str(request.url.query))
                if cacheable:
                    hit = self._cache.get(key)
                    if hit is not None and hit.expires > time.monotonic():
                        return Response(hit.body, hit.status, media_type="application/json")
                result = await handler(request)
                if isinstance(result, Response):
                    return result
                body = dumps(result)
                if cacheable:
                    if len(self._cache) > 1000:
                        self._cache.clear()
                    self._cache[key] = _Cached(time.monotonic() + self.cache_ttl, body, 200)
                elif request.method == "POST":
                    self.invalidate()
                return Response(body, 200, media_type="application/json")
            except ApiError as exc:
                return JSON({"error": exc.message, **exc.extra}, status_code=exc.status)
            except InvalidRuleError as exc:
                return JSON({"error": f"invalid filter: {exc}"}, status_code=400)
            except ConfigurationError as exc:
                return JSON({"error": str(exc)}, status_code=400)
            except psycopg.errors.QueryCanceled:
                return JSON(
                    {
                        "error": "the query took longer than the dashboard allows"
                        f" ({self.statement_timeout:g}s); narrow the filter (a queue, a state"
                        " or a time range)"
                    },
                    status_code=503,
                )
            except psycopg.OperationalError as exc:
                log.warning("dashboard request failed: %s", exc)
                return JSON({"error": "the database is unavailable"}, status_code=503)
            except Exception:
                log.exception("dashboard request %s %s failed", request.method, request.url.path)
                return JSON({"error": "internal error; see the server log"}, status_code=500)

        return endpoint

    # -- public routes ------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        try:
            await asyncio.wait_for(self.fetch_one("api_ping"), 5)
        except Exception as exc:
            return JSON({"status": "unavailable", "error": type(exc).__name__}, status_code=503)
        return JSON({"status": "ok"})

    async def login(self, request: Request) -> Any:
        data = await self.body(request)
        username, password = data.get("username"), data.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise ApiError(400, "send {'username': ..., 'password': ...} as strings")
        if len(username) > 200 or len(password) > 1000:
            raise ApiError(400, "username or password too long")
        client = request.client.host if request.client else "unknown"
        keys = (f"ip:{client}", f"user:{username}")
        wait = self.limiter.retry_after(*keys)
        if wait > 0:
            return JSON(
                {"error": f"too many failed logins; try again in {math.ceil(wait)} s"},
                status_code=429,
                headers={"Retry-After": str(math.ceil(wait))},
            )
        user = await self.auth.authenticate(username, password)
        if user is None:
            self.limiter.failed(*keys)
            raise ApiError(401, "wrong username or password")
        self.limiter.succeeded(f"user:{username}")
        token, expires = self.signer.issue(user)
        return {
            "token": token,
            "expires_at": datetime.fromtimestamp(expires, UTC),
            "user": {"username": user.username, "role": user.role},
        }

    async def me(self, request: Request) -> Any:
        user: User = request.state.user
        return {"username": user.username, "role": user.role, "can_act": user.can_act}

    # -- configuration and system -------------------------------------------------------

    async def configuration(self, request: Request) -> Any:
        chancy = self.chancy
        return {
            "prefix": chancy.prefix,
            "notifications": chancy.notifications,
            "min_connection_pool_size": chancy.min_connection_pool_size,
            "max_connection_pool_size": chancy.max_connection_pool_size,
            "plugins": [
                {
                    "identifier": identifier,
                    "class": f"{type(p).__module__}.{type(p).__qualname__}",
                    "scope": p.get_scope().value,
                    "migrate_key": p.migrate_key(),
                }
                for identifier, p in chancy.plugins.items()
            ],
            "features": {
                "metrics": self._metrics_installed(),
                "cron": self._cron() is not None,
                "workflows": self._workflow() is not None,
            },
            "executors": EXECUTORS,
            "states": STATES,
            "resolutions": list(RESOLUTIONS),
            "limits": {
                "max_page_size": self.max_page_size,
                "max_bulk": self.max_bulk,
                "count_threshold": self.count_threshold,
            },
        }

    async def system(self, request: Request) -> Any:
        jobs = f"{self.chancy.prefix}jobs"
        row = await self.fetch_one("api_system", {"jobs": jobs}) or {}
        versions = await self.fetch_all("api_schema_versions")
        try:
            version = metadata.version("chancy")
        except metadata.PackageNotFoundError:
            version = None
        return {
            "chancy_version": version,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "server": row,
            "schema_versions": {r["version_of"]: r["version"] for r in versions},
        }

    # -- queues -------------------------------------------------------------------------

    async def _depths(self) -> dict[str, dict[str, Any]]:
        async with self.cursor() as cur:
            return await self._depths_on(cur)

    async def _depths_on(self, cur: psycopg.AsyncCursor[Any]) -> dict[str, dict[str, Any]]:
        """Waiting and running jobs per queue: exact up to the threshold, estimated above."""
        q = metrics_queries(self.chancy.prefix)
        out: dict[str, dict[str, Any]] = {}
        await cur.execute(q["metrics_queue_depth"], {"cap": self.count_threshold})
        for row in await cur.fetchall():
            waiting, estimated = int(row["waiting"]), False
            if waiting >= self.count_threshold:
                await cur.execute(q["metrics_queue_waiting_estimate"], {"queue": row["queue"]})
                waiting = max(waiting, _plan_rows(await cur.fetchone()))
                estimated = True
            out[row["queue"]] = {
                "waiting": waiting,
                "running": int(row["running"]),
                "estimated": estimated,
            }
        return out

    async def queues(self, request: Request) -> Any:
        queues = await self.chancy.get_all_queues()
        depths = await self._depths()
        empty = {"waiting": 0, "running": 0, "estimated": False}
        return {"queues": [{**q.pack(), **depths.get(q.name, empty)} for q in queues]}

    async def _queue(self, name: str) -> Queue:
        try:
            return await self.chancy.get_queue(name)
        except KeyError:
            raise ApiError(404, f"no queue named {name[:200]!r}") from None

    async def queue(self, request: Request) -> Any:
        queue = await self._queue(request.path_params["name"])
        depths = await self._depths()
        workers = await self.fetch_all("api_workers")
        serving = [w["worker_id"] for w in workers if queue.name in (w["queues"] or [])]
        empty = {"waiting": 0, "running": 0, "estimated": False}
        limits = None
        if queue.has_limits:
            limits = await self.chancy.get_limit_usage(queue.name)
            keys = limits["partitions"]
            if len(keys) > _MAX_LIMIT_KEYS:
                busiest = sorted(keys, key=lambda k: (-keys[k]["running"], k))[:_MAX_LIMIT_KEYS]
                limits["partitions"] = {k: keys[k] for k in busiest}
                limits["partitions_truncated"] = True
        return {
            **queue.pack(),
            **depths.get(queue.name, empty),
            "workers": serving,
            "limits": limits,
        }

    @staticmethod
    def _queue_from(data: Mapping[str, Any], base: Queue | None) -> Queue:
        allowed = {
            "name",
            "concurrency",
            "tags",
            "executor",
            "executor_options",
            "polling_interval",
            "rate_limit",
            "rate_limit_window",
            "global_concurrency",
            "partition_concurrency",
            "partition_rate_limit",
            "partition_rate_limit_window",
            "eager_polling",
        }
        unknown = set(data) - allowed
        if unknown:
            raise ApiError(
                400, f"unknown queue fields {sorted(unknown)}; editable: {sorted(allowed)}"
            )
        fields = base.pack() if base is not None else {"name": data.get("name")}
        fields.update({k: v for k, v in data.items() if k != "name"})
        executor = fields.get("executor") or EXECUTORS["process"]
        executor = EXECUTORS.get(executor, executor)
        if executor not in EXECUTORS.values():
            # Workers import the executor: only the known ones may be set from the web.
            raise ApiError(
                400, f"unknown executor {executor!r}; valid: {', '.join(sorted(EXECUTORS))}"
            )
        fields["executor"] = executor
        tags = fields.get("tags")
        if tags is not None and (
            not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)
        ):
            raise ApiError(400, "tags must be a list of regular expressions (strings)")
        if not isinstance(fields.get("executor_options") or {}, dict):
            raise ApiError(400, "executor_options must be an object")
        if len(dumps(fields.get("executor_options") or {})) > 10000:
            raise ApiError(400, "executor_options is too large")
        if not isinstance(fields.get("eager_polling", False), bool):
            raise ApiError(400, "eager_polling must be true or false")
        try:
            queue = Queue.unpack(fields)
        except (TypeError, ValueError) as exc:
            raise ApiError(400, f"invalid queue: {exc}") from None
        if base is not None:
            queue = dataclasses.replace(queue, state=base.state, resume_at=base.resume_at)
        return queue

    async def queue_create(self, request: Request) -> Any:
        data = await self.body(request)
        queue = self._queue_from(data, None)
        existing = await self.chancy.get_all_queues()
        if any(q.name == queue.name for q in existing):
            raise ApiError(409, f"queue {queue.name!r} exists; update it instead")
        stored = await self.chancy.declare(queue)
        return {"queue": stored.pack()}

    async def queue_update(self, request: Request) -> Any:
        current = await self._queue(request.path_params["name"])
        data = await self.body(request)
        data.pop("name", None)
        queue = self._queue_from(data, current)
        stored = await self.chancy.declare(queue, upsert=True)
        return {"queue": stored.pack()}

    async def queue_pause(self, request: Request) -> Any:
        name = request.path_params["name"]
        data = await self.body(request)
        resume_in = data.get("resume_in")
        resume_at: timedelta | None = None
        if resume_in is not None:
            if (
                isinstance(resume_in, bool)
                or not isinstance(resume_in, int | float)
                or not 0 < resume_in <= 366 * 86400
            ):
                raise ApiError(400, "resume_in must be a number of seconds (up to a year)")
            resume_at = timedelta(seconds=resume_in)
        await self._queue(name)
        stored = await self.chancy.pause_queue(name, resume_at=resume_at)
        return {"queue": stored.pack()}

    async def queue_resume(self, request: Request) -> Any:
        name = request.path_params["name"]
        await self._queue(name)
        stored = await self.chancy.resume_queue(name)
        return {"queue": stored.pack()}

    async def queue_delete(self, request: Request) -> Any:
        name = request.path_params["name"]
        data = await self.body(request)
        purge = data.get("purge_jobs", False)
        if not isinstance(purge, bool):
            raise ApiError(400, "purge_jobs must be true or false")
        await self._queue(name)
        deleted = await self.chancy.delete_queue(name, purge_jobs=purge)
        return {"deleted": deleted}

    # -- workers ------------------------------------------------------------------------

    async def workers(self, request: Request) -> Any:
        return {"workers": await self.fetch_all("api_workers")}

    # -- jobs ---------------------------------------------------------------------------

    def job_rule(self, params: Mapping[str, Any], *, allow: Iterable[str] = ()) -> SQLAble:
        """Build the rule for job filters given as query parameters or a JSON object."""
        unknown = set(params) - _JOB_FILTER_PARAMS - set(allow)
        if unknown:
            raise ApiError(
                400,
                f"unknown parameters {sorted(unknown)[:10]}; valid:"
                f" {sorted(_JOB_FILTER_PARAMS | set(allow))}",
            )
        parts: list[SQLAble] = []

        def values(key: str) -> list[str]:
            raw = params.get(key)
            if raw is None or raw == "":
                return []
            items = raw if isinstance(raw, list) else str(raw).split(",")
            out = [str(v).strip() for v in items if str(v).strip()]
            if len(out) > 100:
                raise ApiError(400, f"{key} takes at most 100 values")
            return out

        states = values("state")
        if states:
            bad = [s for s in states if s not in STATES]
            if bad:
                raise ApiError(
                    400, f"unknown state {bad[0][:40]!r}; valid states are {', '.join(STATES)}"
                )
            parts.append(JobRules.State().is_in(states))
        queues = values("queue")
        if queues:
            parts.append(JobRules.Queue().is_in(queues))
        funcs = values("func")
        if funcs:
            parts.append(JobRules.Job().is_in(funcs))
        contains = params.get("func_contains")
        if contains:
            parts.append(JobRules.Job().contains(str(contains)))
        since, until = params.get("since"), params.get("until")
        if since:
            parts.append(JobRules.CreatedAt() >= _parse_time(str(since), "since"))
        if until:
            parts.append(JobRules.CreatedAt() <= _parse_time(str(until), "until"))
        raw_filter = params.get("filter")
        if raw_filter:
            if isinstance(raw_filter, str):
                if len(raw_filter) > 20000:
                    raise ApiError(400, "filter is too long")
                try:
                    raw_filter = json.loads(raw_filter)
                except ValueError:
                    raise ApiError(
                        400,
                        'filter must be JSON such as {"field": "queue", "op": "==", "value":'
                        ' "default"}',
                    ) from None
            if not isinstance(raw_filter, dict):
                raise ApiError(400, "filter must be a JSON object")
            parts.append(JobRules.from_dict(raw_filter))
        if not parts:
            return JobRules.All()
        rule = parts[0]
        for part in parts[1:]:
            rule = AndCondition(rule, part)
        return rule

    def _composed(self, name: str, rule: SQLAble) -> tuple[sql.Composed, dict[str, Any]]:
        where, params = compile_rule_named(rule, alias="j", prefix="f_")
        return sql.SQL(self.q[name]).format(where=where), params

    async def _count(
        self, cur: psycopg.AsyncCursor[Any], rule: SQLAble, *, big: bool
    ) -> dict[str, Any]:
        """Jobs matching ``rule``: exact up to the threshold, else the planner's estimate."""
        if not big:
            query, params = self._composed("api_jobs_count", rule)
            try:
                async with cur.connection.transaction():
                    await cur.execute(query, {**params, "cap": self.count_threshold + 1})
                    row = await cur.fetchone()
                n = int(row["n"]) if row else 0
                if n <= self.count_threshold:
                    return {"count": n, "estimated": False}
            except psycopg.errors.QueryCanceled:
                pass
        query, params = self._composed("api_jobs_estimate", rule)
        await cur.execute(query, params)
        estimate = _plan_rows(await cur.fetchone())
        return {"count": estimate, "estimated": True}

    async def _big_table(self, cur: psycopg.AsyncCursor[Any]) -> bool:
        await cur.execute(self.q["api_jobs_table_estimate"], {"table": f"{self.chancy.prefix}jobs"})
        row = await cur.fetchone()
        return bool(row) and int(row["estimate"] or 0) > self.count_threshold  # type: ignore[index]

    async def _whole_table_counts(
        self, cur: psycopg.AsyncCursor[Any], stats: Mapping[str, Any]
    ) -> dict[str, dict[str, Any]]:
        """Per-state counts of a big table without scanning its finished jobs.

        The waiting and running states are counted exactly (capped) through their small
        partial indexes; the finished ones are the live row count times the share of each
        state that the last ANALYZE saw (estimates).
        """
        counts: dict[str, dict[str, Any]] = {}
        cap = self.count_threshold + 1
        await cur.execute(self.q["api_jobs_active_counts"], {"cap": cap})
        row: Any = await cur.fetchone()
        for state in ("pending", "retrying", "running"):
            n = int(row[state])
            counts[state] = {"count": min(n, self.count_threshold), "estimated": n >= cap}
        total = int(stats.get("estimate") or 0)
        freqs = dict(zip(stats.get("states") or [], stats.get("freqs") or [], strict=False))
        if freqs:
            # As the planner reads the statistics: a state among the most common values has
            # its share; the others split what is left evenly.
            distinct = float(stats.get("n_distinct") or 0)
            if distinct < 0:
                distinct = -distinct * total
            rest = max(0.0, 1.0 - sum(float(f) for f in freqs.values()))
            others = max(1.0, distinct - len(freqs))
            for state in ("succeeded", "failed"):
                share = float(freqs[state]) if state in freqs else rest / others
                counts[state] = {"count": round(total * share), "estimated": True}
        else:
            # Never analyzed: whatever is not waiting or running counts as finished.
            finished = max(0, total - sum(c["count"] for c in counts.values()))
            counts["succeeded"] = {"count": finished, "estimated": True}
            counts["failed"] = {"count": 0, "estimated": True}
        return {st: counts[st] for st in STATES}

    async def jobs(self, request: Request) -> Any:
        params = dict(request.query_params)
        limit = _parse_int(params.pop("limit", None), "limit", 50, 1, self.max_page_size)
        cursor_raw = params.pop("cursor", None)
        cursor = _parse_uuid(cursor_raw, "cursor") if cursor_raw else None
        with_count = params.pop("count", "") in ("1", "true")
        rule = self.job_rule(params)
        query, qparams = self._composed("api_jobs_list", rule)
        # Unfiltered pages read the primary key backwards: bounded without a timeout.
        async with self.cursor(timeout=with_count or not isinstance(rule, JobRules.All)) as cur:
            await cur.execute(query, {**qparams, "cursor": cursor, "limit": limit + 1})
            rows = await cur.fetchall()
            more = len(rows) > limit
            rows = rows[:limit]
            total = (
                await self._count(cur, rule, big=await self._big_table(cur)) if with_count else None
            )
        return {
            "jobs": [_job_summary(r) for r in rows],
            "next_cursor": str(rows[-1]["id"]) if more and rows else None,
            "limit": limit,
            "total": total,
        }

    async def job_counts(self, request: Request) -> Any:
        params = dict(request.query_params)
        params.pop("state", None)
        base = self.job_rule(params)
        async with self.cursor() as cur:
            await cur.execute(
                self.q["api_jobs_state_stats"], {"table": f"{self.chancy.prefix}jobs"}
            )
            stats = await cur.fetchone() or {}
            big = int(stats.get("estimate") or 0) > self.count_threshold
            if big and isinstance(base, JobRules.All):
                return {"counts": await self._whole_table_counts(cur, stats)}
            if big:
                counts = {}
                for state in STATES:
                    rule = AndCondition(base, JobRules.State() == state)
                    counts[state] = await self._count(cur, rule, big=True)
                return {"counts": counts}
            query, qparams = self._composed("api_jobs_count_by_state", base)
            cap = self.count_threshold + 1
            try:
                async with cur.connection.transaction():
                    await cur.execute(query, {**qparams, "cap": cap, "states": list(STATES)})
                    rows = await cur.fetchall()
            except psycopg.errors.QueryCanceled:
                rows = [{"state": st, "n": cap} for st in STATES]
            counts = {}
            for row in rows:
                n = int(row["n"])
                if n < cap:
                    counts[row["state"]] = {"count": n, "estimated": False}
                else:
                    rule = AndCondition(base, JobRules.State() == row["state"])
                    counts[row["state"]] = await self._count(cur, rule, big=True)
        return {"counts": counts}

    async def job(self, request: Request) -> Any:
        job_id = _parse_uuid(request.path_params["id"])
        row = await self.fetch_one("api_job_get", {"id": job_id})
        if row is None:
            raise ApiError(404, f"no job {job_id}")
        return {"job": _job_detail(row)}

    async def _bulk_ids(self, data: Mapping[str, Any]) -> tuple[list[uuid.UUID], bool]:
        """The ids a bulk action applies to: given, or selected by a filter (bounded)."""
        unknown = set(data) - {"ids", "filter"}
        if unknown:
            raise ApiError(400, f"unknown fields {sorted(unknown)}; send 'ids' or 'filter'")
        if ("ids" in data) == ("filter" in data):
            raise ApiError(400, "send either 'ids' (a list of job ids) or 'filter' (an object)")
        if "ids" in data:
            ids = data["ids"]
            if not isinstance(ids, list) or not ids:
                raise ApiError(400, "ids must be a non-empty list of job ids")
            if len(ids) > self.max_bulk:
                raise ApiError(400, f"at most {self.max_bulk} ids per request")
            return [_parse_uuid(i) for i in ids], False
        criteria = data["filter"]
        if not isinstance(criteria, dict) or not criteria:
            raise ApiError(
                400,
                "filter must be a non-empty object of job filters (state, queue, func,"
                " func_contains, since, until, filter)",
            )
        rule = self.job_rule(criteria)
        query, params = self._composed("api_jobs_ids", rule)
        async with self.cursor() as cur:
            await cur.execute(query, {**params, "limit": self.max_bulk + 1})
            rows = await cur.fetchall()
        more = len(rows) > self.max_bulk
        return [r["id"] for r in rows[: self.max_bulk]], more

    async def jobs_retry(self, request: Request) -> Any:
        ids, more = await self._bulk_ids(await self.body(request))
        result = await self.chancy.retry_jobs(ids)
        return {
            "matched": len(ids),
            "retried": [str(r) for r in result],
            "skipped": [str(r) for r in result.skipped],
            "more": more,
        }

    async def jobs_cancel(self, request: Request) -> Any:
        ids, more = await self._bulk_ids(await self.body(request))
        cancelled = [str(i) for i in ids if await self.chancy.cancel_job(i)]
        return {"matched": len(ids), "cancelled": cancelled, "more": more}

    async def jobs_purge(self, request: Request) -> Any:
        ids, more = await self._bulk_ids(await self.body(request))
        purged = await self.chancy.purge_jobs(ids)
        return {"matched": len(ids), "purged": purged, "more": more}

    async def functions(self, request: Request) -> Any:
        recent = await self.fetch_all("api_recent_functions", {"scan": 5000})
        by_func: dict[str, dict[str, Any]] = {
            r["func"]: {
                "func": r["func"],
                "recent": r["recent"],
                "recent_failed": r["failed"],
                "last_pushed": r["last_pushed"],
                "queues": sorted(r["queues"] or []),
            }
            for r in recent
        }
        if self._metrics_installed():
            for row in await Metrics.get_totals(self.chancy):
                if row["kind"] != "counter" or not row["func"]:
                    continue
                entry = by_func.setdefault(
                    row["func"],
                    {"func": row["func"], "recent": 0, "recent_failed": 0, "queues": []},
                )
                key = row["name"].split(".", 1)[-1]
                entry[key] = entry.get(key, 0) + int(row["count"])
                if row["queue"] and row["queue"] not in entry["queues"]:
                    entry["queues"] = sorted([*entry["queues"], row["queue"]])
        return {"functions": [by_func[k] for k in sorted(by_func)], "scanned": 5000}

    # -- crons and workflows ------------------------------------------------------------

    def _cron(self) -> Any:
        for plugin in self.chancy.plugins.values():
            if type(plugin).__name__ == "Cron" and hasattr(type(plugin), "get_schedules"):
                return type(plugin)
        return None

    def _workflow(self) -> Any:
        for plugin in self.chancy.plugins.values():
            if hasattr(type(plugin), "fetch_workflows"):
                return type(plugin)
        return None

    def _need(self, found: Any, what: str, plugin: str) -> Any:
        if found is None:
            raise ApiError(404, f"{what} need the {plugin} plugin, which is not installed")
        return found

    async def crons(self, request: Request) -> Any:
        cron = self._need(self._cron(), "crons", "Cron")
        schedules = await cron.get_schedules(self.chancy)
        out = []
        for key in sorted(schedules):
            item = dict(schedules[key])
            job = item.get("job")
            if job is not None and hasattr(job, "pack"):
                item["job"] = {
                    "func": job.func,
                    "queue": job.queue,
                    "kwargs": job.kwargs,
                    "priority": job.priority,
                    "max_attempts": job.max_attempts,
                }
            out.append(item)
        return {"crons": out}

    async def cron_run(self, request: Request) -> Any:
        cron = self._need(self._cron(), "crons", "Cron")
        key = request.path_params["key"]
        schedules = await cron.get_schedules(self.chancy, [key])
        if key not in schedules:
            raise ApiError(404, f"no cron schedule with key {key[:200]!r}")
        ref = await self.chancy.push(schedules[key]["job"])
        return {"job_id": str(ref.identifier)}

    async def cron_pause(self, request: Request) -> Any:
        return await self._cron_switch(request, pause=True)

    async def cron_resume(self, request: Request) -> Any:
        return await self._cron_switch(request, pause=False)

    async def _cron_switch(self, request: Request, *, pause: bool) -> Any:
        cron = self._need(self._cron(), "crons", "Cron")
        key = request.path_params["key"]
        if pause:
            if not await cron.pause(self.chancy, key):
                raise ApiError(404, f"no cron schedule with key {key[:200]!r}")
        elif not await cron.resume(self.chancy, key):
            if key not in await cron.get_schedules(self.chancy, [key]):
                raise ApiError(404, f"no cron schedule with key {key[:200]!r}")
            # Not paused: resuming it changes nothing.
        schedule = (await cron.get_schedules(self.chancy, [key]))[key]
        return {"unique_key": key, "paused_at": schedule["paused_at"]}

    async def cron_delete(self, request: Request) -> Any:
        cron = self._need(self._cron(), "crons", "Cron")
        key = request.path_params["key"]
        deleted = await cron.unschedule(self.chancy, key)
        if not deleted:
            raise ApiError(404, f"no cron schedule with key {key[:200]!r}")
        return {"deleted": deleted}

    @staticmethod
    def _workflow_dict(wf: Any, *, steps: bool) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(wf.id),
            "name": wf.name,
            "state": str(wf.state),
            "created_at": getattr(wf, "created_at", None),
            "updated_at": getattr(wf, "updated_at", None),
        }
        counts: dict[str, int] = {}
        step_list = []
        for step_id, step in wf.steps.items():
            state = str(step.state) if step.state is not None else "waiting"
            counts[state] = counts.get(state, 0) + 1
            if steps:
                step_list.append(
                    {
                        "step_id": step_id,
                        "func": step.job.func,
                        "queue": step.job.queue,
                        "dependencies": list(step.dependencies),
                        "job_id": str(step.job_id) if step.job_id else None,
                        "state": state,
                    }
                )
        data["step_counts"] = counts
        data["step_total"] = len(wf.steps)
        if steps:
            data["steps"] = step_list
        return data

    async def workflows(self, request: Request) -> Any:
        plugin = self._need(self._workflow(), "workflows", "WorkflowPlugin")
        params = dict(request.query_params)
        limit = _parse_int(params.pop("limit", None), "limit", 50, 1, self.max_page_size)
        offset = _parse_int(params.pop("offset", None), "offset", 0, 0, 1_000_000)
        states = [s for s in params.pop("state", "").split(",") if s]
        valid = ("pending", "running", "completed", "failed")
        if any(s not in valid for s in states):
            raise ApiError(400, f"unknown workflow state; valid: {', '.join(valid)}")
        name = params.pop("name", None) or None
        if params:
            raise ApiError(400, f"unknown parameters {sorted(params)[:10]}")
        found = await plugin.fetch_workflows(
            self.chancy, states=states or None, name=name, limit=limit, offset=offset
        )
        return {"workflows": [self._workflow_dict(wf, steps=False) for wf in found]}

    async def workflow(self, request: Request) -> Any:
        plugin = self._need(self._workflow(), "workflows", "WorkflowPlugin")
        raw = request.path_params["id"]
        _parse_uuid(raw, "workflow id")
        wf = await plugin.fetch_workflow(self.chancy, raw)
        if wf is None:
            raise ApiError(404, f"no workflow {raw}")
        return {"workflow": self._workflow_dict(wf, steps=True)}

    # -- metrics ------------------------------------------------------------------------

    def _metrics_installed(self) -> bool:
        return any(isinstance(p, Metrics) for p in self.chancy.plugins.values())

    async def metrics_index(self, request: Request) -> Any:
        if not self._metrics_installed():
            return {"installed": False, "metrics": [], "resolutions": list(RESOLUTIONS)}
        names = await Metrics.get_names(self.chancy)
        return {
            "installed": True,
            "resolutions": list(RESOLUTIONS),
            "known": METRICS,
            "metrics": names,
        }

    async def metric(self, request: Request) -> Any:
        name = request.path_params["name"]
        if name not in METRICS:
            raise ApiError(404, f"unknown metric {name[:100]!r}; known: {', '.join(METRICS)}")
        if not self._metrics_installed():
            raise ApiError(404, "metrics need the Metrics plugin, which is not installed")
        params = dict(request.query_params)
        resolution = params.pop("resolution", "1min")
        if resolution not in RESOLUTIONS:
            raise ApiError(400, f"resolution must be one of {', '.join(RESOLUTIONS)}")
        raw_since, raw_until = params.pop("since", None), params.pop("until", None)
        since = _parse_time(raw_since, "since") if raw_since else None
        until = _parse_time(raw_until, "until") if raw_until else None
        queue = params.pop("queue", None) or None
        func = params.pop("func", None) or None
        if params:
            raise ApiError(400, f"unknown parameters {sorted(params)[:10]}")
        if since is None:
            since = datetime.now(UTC) - timedelta(seconds=RESOLUTIONS[resolution] * 60)
        if until is not None and until < since:
            raise ApiError(400, "until must be after since")
        rows = await Metrics.get_series(
            self.chancy,
            [name],
            resolution=resolution,
            since=since,
            until=until,
            queue=queue,
            func=func,
            limit=20000,
        )
        return {
            "name": name,
            "kind": METRICS[name],
            "resolution": resolution,
            "since": since,
            "until": until,
            "points": rows,
        }

    async def prometheus(self, request: Request) -> Response:
        if not self._metrics_installed():
            return PlainTextResponse("\n", media_type="text/plain; version=0.0.4")
        totals = await Metrics.get_totals(self.chancy)
        gauges = await Metrics.get_latest_gauges(self.chancy)
        return PlainTextResponse(
            prometheus_text(totals, gauges), media_type="text/plain; version=0.0.4"
        )

    # -- the overview (one cheap request per poll) --------------------------------------

    async def overview(self, request: Request) -> Any:
        # One statement for the page (it is polled every few seconds), plus the throughput
        # series, which changes only when workers flush metrics and is cached for a while.
        async with self.cursor() as cur:
            await cur.execute(self.q["api_overview"], {"cap": self.count_threshold, "stuck": 20})
            row: Any = await cur.fetchone()
            queues = []
            for raw in row["queues"]:
                waiting, estimated = int(raw.pop("waiting")), False
                running = int(raw.pop("running"))
                if waiting >= self.count_threshold:
                    await cur.execute(
                        metrics_queries(self.chancy.prefix)["metrics_queue_waiting_estimate"],
                        {"queue": raw["name"]},
                    )
                    waiting = max(waiting, _plan_rows(await cur.fetchone()))
                    estimated = True
                if isinstance(raw.get("resume_at"), str):
                    raw["resume_at"] = datetime.fromisoformat(raw["resume_at"])
                queues.append(
                    {
                        **queue_from_row(raw).pack(),
                        "waiting": waiting,
                        "running": running,
                        "estimated": estimated,
                    }
                )
            workers, stuck = row["workers"], row["stuck"]
            series = await self._throughput(cur)
        alerts: list[dict[str, Any]] = []
        live = [w for w in workers if w["alive"]]
        if not live:
            alerts.append({"level": "error", "kind": "no_workers", "message": "no live workers"})
        elif not any(w["is_leader"] for w in live):
            alerts.append(
                {
                    "level": "warning",
                    "kind": "no_leader",
                    "message": "no worker holds leadership (recovery and cron are not running)",
                }
            )
        if stuck:
            alerts.append(
                {
                    "level": "error",
                    "kind": "jobs_on_dead_workers",
                    "message": f"{len(stuck)}{'+' if len(stuck) >= 20 else ''} running job(s)"
                    " on workers without a live heartbeat",
                    "jobs": [str(job_id) for job_id in stuck],
                }
            )
        for q in queues:
            if q["state"] == "paused":
                alerts.append(
                    {
                        "level": "warning",
                        "kind": "queue_paused",
                        "message": f"queue {q['name']} is paused",
                        "queue": q["name"],
                    }
                )
            elif q["waiting"] and not any(q["name"] in (w["queues"] or []) for w in live):
                alerts.append(
                    {
                        "level": "warning",
                        "kind": "queue_unserved",
                        "message": f"queue {q['name']} has waiting jobs and no live worker"
                        " serves it",
                        "queue": q["name"],
                    }
                )
        per_bucket: dict[str, dict[str, Any]] = {}
        for row in series:
            key = row["bucket"].isoformat()
            entry = per_bucket.setdefault(
                key, {"bucket": row["bucket"], "succeeded": 0, "failed": 0, "retried": 0}
            )
            entry[row["name"].split(".", 1)[1]] += int(row["count"])
        throughput = [per_bucket[k] for k in sorted(per_bucket)]
        return {
            "queues": queues,
            "workers": {
                "live": len(live),
                "total": len(workers),
                "leader": next((w["worker_id"] for w in live if w["is_leader"]), None),
            },
            "alerts": alerts,
            "throughput": throughput,
        }

    # -- the UI -------------------------------------------------------------------------

    def _ui_file(self, name: str) -> bytes:
        data = self._ui.get(name)
        if data is None:
            data = resources.files("chancy.plugins.api").joinpath("ui", name).read_bytes()
            self._ui[name] = data
        return data

    async def index(self, request: Request) -> Response:
        if not request.url.path.endswith("/"):
            # Relative URLs in the page resolve against the directory the app is mounted at.
            return RedirectResponse(str(request.url.replace(path=request.url.path + "/")))
        return Response(
            self._ui_file("index.html"),
            media_type="text/html; charset=utf-8",
            headers={
                **_SECURITY_HEADERS,
                "Content-Security-Policy": _CSP,
                "Cache-Control": "no-cache",
            },
        )

    async def ui_file(self, request: Request) -> Response:
        name = request.path_params["file"]
        media = _UI_FILES.get(name)
        if media is None:
            return JSON({"error": "not found"}, status_code=404)
        return Response(
            self._ui_file(name),
            media_type=media,
            headers={**_SECURITY_HEADERS, "Cache-Control": "no-cache"},
        )

    def routes(self) -> list[Route]:
        r = self.route
        get, post = ["GET"], ["POST"]
        return [
            Route("/", self.index, methods=get),
            Route("/ui/{file}", self.ui_file, methods=get),
            Route("/health", self.health, methods=get),
            Route("/metrics", r(self.prometheus, auth="metrics"), methods=get),
            Route("/api/v1/login", r(self.login, auth="none"), methods=post),
            Route("/api/v1/me", r(self.me), methods=get),
            Route("/api/v1/configuration", r(self.configuration), methods=get),
            Route("/api/v1/system", r(self.system), methods=get),
            Route("/api/v1/overview", r(self.overview), methods=get),
            Route("/api/v1/queues", r(self.queues), methods=get),
            Route("/api/v1/queues", r(self.queue_create, auth="act"), methods=post),
            Route("/api/v1/queues/{name}", r(self.queue), methods=get),
            Route("/api/v1/queues/{name}", r(self.queue_update, auth="act"), methods=post),
            Route("/api/v1/queues/{name}/pause", r(self.queue_pause, auth="act"), methods=post),
            Route("/api/v1/queues/{name}/resume", r(self.queue_resume, auth="act"), methods=post),
            Route("/api/v1/queues/{name}/delete", r(self.queue_delete, auth="act"), methods=post),
            Route("/api/v1/workers", r(self.workers), methods=get),
            Route("/api/v1/jobs", r(self.jobs), methods=get),
            Route("/api/v1/jobs/counts", r(self.job_counts), methods=get),
            Route("/api/v1/jobs/retry", r(self.jobs_retry, auth="act"), methods=post),
            Route("/api/v1/jobs/cancel", r(self.jobs_cancel, auth="act"), methods=post),
            Route("/api/v1/jobs/purge", r(self.jobs_purge, auth="act"), methods=post),
            Route("/api/v1/jobs/{id}", r(self.job), methods=get),
            Route("/api/v1/functions", r(self.functions), methods=get),
            Route("/api/v1/crons", r(self.crons), methods=get),
            Route("/api/v1/crons/{key}/run", r(self.cron_run, auth="act"), methods=post),
            Route("/api/v1/crons/{key}/delete", r(self.cron_delete, auth="act"), methods=post),
            Route("/api/v1/crons/{key}/pause", r(self.cron_pause, auth="act"), methods=post),
            Route("/api/v1/crons/{key}/resume", r(self.cron_resume, auth="act"), methods=post),
            Route("/api/v1/workflows", r(self.workflows), methods=get),
            Route("/api/v1/workflows/{id}", r(self.workflow), methods=get),
            Route("/api/v1/metrics", r(self.metrics_index), methods=get),
            Route("/api/v1/metrics/{name}", r(self.metric), methods=get),
        ]


def build_starlette_app(
    chancy: Chancy,
    *,
    authentication_backend: AuthBackend,
    secret_key: str | None = None,
    allow_origins: Iterable[str] = (),
    **options: Any,
) -> Starlette:
    """The dashboard as an ASGI app, to serve alone or mount in another app::

        app = Starlette(routes=[Mount("/chancy", build_starlette_app(chancy, ...))])

    ``options`` are :class:`Dashboard`'s tuning knobs (``statement_timeout``,
    ``count_threshold``, ``max_page_size``, ``max_bulk``, ``cache_ttl``, ``token_ttl``,
    ``login_attempts``, ``login_window``) and ``metrics_token``, a fixed bearer token that
    opens only ``/metrics``, for Prometheus.
    """
    dashboard = Dashboard(
        chancy,
        authentication_backend=authentication_backend,
        secret_key=secret_key,
        **options,
    )
    middleware = []
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
    app = Starlette(routes=dashboard.routes(), middleware=middleware)
    app.state.dashboard = dashboard
    return app
