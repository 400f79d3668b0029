"""The dashboard's HTTP plumbing: errors, strict JSON, bounded bodies, parameters, the GET
cache, the per-user gates and the hardening middleware.

Nothing here knows a route or a table: it turns requests into checked values and failures into
JSON answers that say what to fix, without ever sending a traceback or SQL to a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chancy.errors import ConfigurationError
from chancy.rule import InvalidRuleError

__all__ = [
    "JSON",
    "ApiError",
    "Gate",
    "GetCache",
    "Hardened",
    "check_json",
    "dumps",
    "error_response",
    "parse_json",
]

log = logging.getLogger("chancy.api")

#: Set on every response (unless the route set them): nothing is sniffed into another type,
#: framed, sent as a referrer, or stored by a cache (API answers carry job data).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
API_HEADERS = {
    **SECURITY_HEADERS,
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}
#: Request bodies are read up to this size and no further.
MAX_BODY = 256 * 1024
#: JSON (bodies and filters) nested deeper than this is refused before it is used.
MAX_JSON_DEPTH = 40
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class ApiError(Exception):
    """A client error: its status and a message that says what to fix."""

    def __init__(
        self, status: int, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.extra = extra


# -- JSON out ---------------------------------------------------------------------------------


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


# -- JSON in ----------------------------------------------------------------------------------


class _BadJSON(ValueError):
    """JSON that parses in Python but is not JSON (NaN, Infinity) or not a finite number."""


def _no_constants(name: str) -> Any:
    raise _BadJSON(
        f"{name} is not JSON (JSON has no NaN or Infinity); send a finite number or null"
    )


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadJSON(f"the number {text[:40]} is too large to be finite; send a smaller one")
    return value


def _text_problem(text: str) -> str | None:
    """Why PostgreSQL cannot take this string, or None."""
    if "\x00" in text:
        return "a NUL character (\\x00), which PostgreSQL text cannot hold; remove it"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return (
                "a lone surrogate (such as \\ud800), which is not a character and cannot be"
                " encoded as UTF-8; send valid Unicode text"
            )
    return None


def check_json(value: Any, what: str) -> None:
    """Refuse decoded JSON nested too deeply, holding text PostgreSQL cannot store, or
    integers past 64 bits (no count, id or number of seconds here needs more)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, int) and not isinstance(item, bool):
            if not _INT64_MIN <= item <= _INT64_MAX:
                raise ApiError(400, f"{what} holds an integer past 64 bits; send a smaller one")
        elif isinstance(item, str):
            problem = _text_problem(item)
            if problem is not None:
                raise ApiError(400, f"{what} holds {problem}")
        elif isinstance(item, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise ApiError(
                    400, f"{what} is nested more than {MAX_JSON_DEPTH} levels deep; flatten it"
                )
            if isinstance(item, dict):
                stack.extend((k, depth + 1) for k in item)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)


def parse_json(raw: str | bytes, what: str) -> Any:
    """Decode JSON text strictly: no NaN or Infinity, bounded nesting, storable strings."""
    try:
        data = json.loads(raw, parse_constant=_no_constants, parse_float=_finite_float)
    except _BadJSON as exc:
        raise ApiError(400, f"{what}: {exc}") from None
    except RecursionError:
        raise ApiError(
            400, f"{what} is nested more than {MAX_JSON_DEPTH} levels deep; flatten it"
        ) from None
    except ValueError:
        raise ApiError(400, f"{what} is not valid JSON (UTF-8)") from None
    check_json(data, what)
    return data


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The request body, read as it streams and never past ``limit`` bytes.

    Why streamed: reading it whole first would let anybody (the login route needs no token)
    make the process hold any amount of memory before the size is checked.
    """
    announced = request.headers.get("content-length")
    if announced is not None:
        announced = announced.strip()
        if not announced.isascii() or not announced.isdigit() or len(announced) > 18:
            raise ApiError(400, "malformed Content-Length header; send a byte count")
        if int(announced) > limit:
            raise ApiError(413, f"the request body is over {limit // 1024} KiB; send less")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the request body is over {limit // 1024} KiB; send less")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object (``{}`` when empty), strictly parsed and bounded."""
    raw = await read_body(request)
    if not raw.strip():
        return {}
    data = parse_json(raw, "the request body")
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return data


# -- parameters -------------------------------------------------------------------------------


def check_request_text(request: HTTPConnection) -> None:
    """Refuse NUL characters in the path and query (PostgreSQL text cannot hold them)."""
    for key, value in request.path_params.items():
        if isinstance(value, str) and "\x00" in value:
            raise ApiError(400, f"the {key} in the path holds a NUL character (%00); remove it")
    for key, value in request.query_params.multi_items():
        if "\x00" in key or "\x00" in value:
            raise ApiError(
                400, f"query parameter {key[:40]!r} holds a NUL character (%00); remove it"
            )


def client_key(request: HTTPConnection) -> str:
    """The address failed logins count against: the client's IP, an IPv6 client's /64.

    Why the /64: one IPv6 host usually holds a whole /64, so counting single addresses would
    give it billions of fresh allowances.
    """
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def parse_uuid(text: Any, what: str = "job id") -> uuid.UUID:
    if not isinstance(text, str) or len(text) > 64:
        raise ApiError(400, f"malformed {what}: expected a UUID")
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        raise ApiError(400, f"malformed {what} {text[:64]!r}: expected a UUID") from None


def parse_time(text: str, what: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            400, f"{what} must be an ISO 8601 time such as 2024-05-01T12:00:00Z, got {text!r}"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def parse_int(text: str | None, what: str, default: int, lo: int, hi: int) -> int:
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"{what} must be an integer, got {text[:40]!r}") from None
    if not lo <= value <= hi:
        raise ApiError(400, f"{what} must be between {lo} and {hi}, got {value}")
    return value


# -- the GET cache and the gates --------------------------------------------------------------


class GetCache:
    """Answers of GETs, kept ``ttl`` seconds per key (user and role, path, query).

    Why: an open dashboard polls, and several tabs of one user then cost what one does. At
    most ``size`` answers are kept; past that the cache starts over (answers live a second).
    """

    def __init__(self, ttl: float, size: int = 1000) -> None:
        self.ttl = ttl
        self.size = size
        self._answers: dict[tuple[str, ...], tuple[float, bytes]] = {}

    def get(self, key: tuple[str, ...]) -> bytes | None:
        hit = self._answers.get(key)
        if hit is None or hit[0] <= time.monotonic():
            return None
        return hit[1]

    def put(self, key: tuple[str, ...], body: bytes) -> None:
        if len(self._answers) > self.size:
            self._answers.clear()
        self._answers[key] = (time.monotonic() + self.ttl, body)

    def clear(self) -> None:
        self._answers.clear()


class Gate:
    """At most ``limit`` requests at once per key; a request waits up to ``wait`` s for a slot.

    Why per key (per user): one user's expensive filters must not take every connection of
    the dashboard, let alone wait in line ahead of everybody else's.
    """

    def __init__(self, limit: int, wait: float) -> None:
        self.limit = limit
        self.wait = wait
        # key -> its semaphore and how many requests hold or wait for it (to drop idle keys).
        self._slots: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def slot(self, key: str, refuse: Callable[[], ApiError]) -> AsyncIterator[None]:
        entry = self._slots.get(key)
        if entry is None:
            entry = self._slots[key] = (asyncio.Semaphore(self.limit), [0])
        semaphore, users = entry
        users[0] += 1
        try:
            try:
                await asyncio.wait_for(semaphore.acquire(), self.wait)
            except TimeoutError:
                raise refuse() from None
            try:
                yield
            finally:
                semaphore.release()
        finally:
            users[0] -= 1
            if not users[0]:
                self._slots.pop(key, None)


# -- failures as answers ----------------------------------------------------------------------


def error_response(request: Request, exc: Exception, *, statement_timeout: float) -> Response:
    """The JSON answer for a failed request: a 4xx that says what to fix, a 503 when the
    database is busy or away, or a 500 that points at the server log (never a traceback)."""
    if isinstance(exc, ApiError):
        return JSON(
            {"error": exc.message, **exc.extra}, status_code=exc.status, headers=exc.headers or None
        )
    if isinstance(exc, HTTPException):
        # Raised by Starlette helpers in plugin endpoints (``@requires`` answers 403).
        messages = {401: "log in first", 403: "your role may not do this", 404: "not found"}
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail else None
        return JSON(
            {"error": messages.get(exc.status_code, detail or "request refused")},
            status_code=exc.status_code,
            headers=exc.headers,
        )
    if isinstance(exc, InvalidRuleError):
        return JSON({"error": f"invalid filter: {exc}"}, status_code=400)
    if isinstance(exc, ConfigurationError):
        return JSON({"error": str(exc)}, status_code=400)
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return JSON(
            {
                "error": "the query took longer than the dashboard allows"
                f" ({statement_timeout:g}s); narrow the filter (a queue, a state or a time"
                " range)"
            },
            status_code=503,
        )
    if isinstance(exc, psycopg.DataError):
        # A value the checks let through but PostgreSQL refused (a number or time out of its
        # range): the client's input, so a 400, without the SQL.
        log.warning(
            "dashboard request %s %s: the database refused a value: %s",
            request.method,
            request.url.path,
            type(exc).__name__,
        )
        return JSON(
            {
                "error": "a value in the request is out of range or invalid for the database"
                " (a number, time or text); check it"
            },
            status_code=400,
        )
    if isinstance(exc, RecursionError):
        return JSON({"error": "the request is nested too deeply"}, status_code=400)
    if isinstance(exc, OverflowError):
        return JSON({"error": "a number in the request is too large"}, status_code=400)
    if isinstance(exc, PoolTimeout):
        return JSON(
            {"error": "the dashboard's database connections are busy; try again"},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    if isinstance(exc, psycopg.OperationalError):
        log.warning("dashboard request failed: %s", exc)
        return JSON({"error": "the database is unavailable"}, status_code=503)
    log.error("dashboard request %s %s failed", request.method, request.url.path, exc_info=exc)
    return JSON({"error": "internal error; see the server log"}, status_code=500)


# -- the outermost middleware -----------------------------------------------------------------


class Hardened:
    """Outermost middleware: security headers on every response; no trailing-slash redirects.

    Why: Starlette redirects ``/path/`` to ``/path`` with an absolute URL built from the Host
    header, which a poisoned cache or proxy would hand to others; here ``/path/`` is simply
    served as ``/path``. Every response (the router's own 404 and 405 too) gets ``nosniff``,
    no framing, no referrer, and ``Cache-Control: no-store`` unless the route chose one.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        root: str = scope.get("root_path", "")
        inner = path[len(root) :] if root and path.startswith(root) else path
        if len(inner) > 1 and inner.endswith("/"):
            scope = {**scope, "path": path[: len(path) - len(inner)] + (inner.rstrip("/") or "/")}

        async def send_hardened(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in API_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_hardened)
