"""The database handle: lazily opened connection pools and the runners of store specs.

``Chancy`` owns one ``Db`` (``chancy.db``) and hands it to whatever talks to the database:
plugins run their store specs with ``db.run(spec)`` (a pool connection), ``db.run_sync``
(the sync pool), or ``Db.run_ex(cursor, spec)`` inside the caller's transaction. Pools open
on first use; the first connection fails within the connect timeout with a message naming
the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, ConnectionPool
from psycopg_pool.base import AttemptWithBackoff

from chancy.backoff import RECONNECT_INITIAL, RECONNECT_MAX, Backoff
from chancy.errors import ConfigurationError, ConnectionFailedError
from chancy.store import Plan, Spec, run, run_sync
from chancy.store.runner import dict_cursor

__all__ = ["Db", "dsn_from", "fast_json_loads", "where"]

T = TypeVar("T")

log = logging.getLogger("chancy.db")


def where(conninfo: str) -> str:
    """Where a DSN points, for messages: ``host h port p`` or the socket directory."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "the configured server"
    host = params.get("host") or "the default socket directory"
    port = params.get("port") or "5432"
    if str(host).startswith("/"):
        return f"socket directory {host} (port {port})"
    return f"host {host} port {port}"


def dsn_from(dsn: str | Mapping[str, Any]) -> str:
    """A libpq DSN from a DSN or a Django ``DATABASES`` entry."""
    if isinstance(dsn, str):
        return dsn
    if isinstance(dsn, Mapping):
        # A Django DATABASES entry.
        params: dict[str, Any] = {}
        for src, dst in (
            ("NAME", "dbname"),
            ("USER", "user"),
            ("PASSWORD", "password"),
            ("HOST", "host"),
            ("PORT", "port"),
        ):
            value = dsn.get(src)
            if value not in (None, ""):
                params[dst] = str(value)
        options = dsn.get("OPTIONS") or {}
        for key, value in options.items():
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                params[key] = str(value)
        return make_conninfo("", **params)
    raise ConfigurationError(
        f"dsn must be a libpq connection string or a Django DATABASES dict, not {type(dsn)}"
    )


#: libpq's client-side TCP keepalives: first probe after 10 s idle, then every 5 s, 3 tries.
_KEEPALIVES = {
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
}
#: The same asked of the server (session settings sent at connection start).
_SERVER_KEEPALIVES = (
    "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3"
)


#: What a server says while it cannot take connections yet, though it will (SQLSTATE 57P03;
#: a failed connection attempt carries no SQLSTATE, so the message is matched too).
_NOT_READY = (
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "the database system is not accepting connections",
)


class _NotReady:
    """A probe's patience with a server that is not ready yet (see ``Db.probe``)."""

    def __init__(self, db: Db) -> None:
        self.db = db
        self.deadline = time.monotonic() + db.reconnect_timeout
        self.backoff = Backoff(0.1, 2.0)

    def retry_in(self, exc: BaseException) -> float | None:
        """How long to wait before trying again, or None to give up with ``exc``."""
        text = str(exc)
        not_ready = getattr(exc, "sqlstate", None) == "57P03" or any(
            phrase in text for phrase in _NOT_READY
        )
        if not not_ready or time.monotonic() >= self.deadline:
            return None
        delay = self.backoff.next()
        log.warning(
            "PostgreSQL at %s is not ready (%s); trying again in %.2fs",
            where(self.db.dsn),
            text.strip().splitlines()[-1] if text.strip() else type(exc).__name__,
            delay,
        )
        return delay


class Db:
    """Pools and runners for one DSN and table prefix."""

    def __init__(
        self,
        dsn: str,
        *,
        prefix: str,
        min_size: int = 1,
        max_size: int = 10,
        reconnect_timeout: float = 300,
        connect_timeout: float = 10,
        prepare: bool = True,
        listen_dsn: str | None = None,
    ) -> None:
        if min_size < 0 or max_size < max(1, min_size):
            raise ConfigurationError(
                "pool sizes must satisfy 0 <= min_connection_pool_size <="
                f" max_connection_pool_size and max >= 1; got {min_size}, {max_size}"
            )
        self.dsn = dsn
        #: Where session connections (LISTEN, liveness locks) go; ``dsn`` when None.
        self.listen_dsn = listen_dsn
        self.prefix = prefix
        self.min_size = min_size
        self.max_size = max_size
        self.reconnect_timeout = reconnect_timeout
        self.connect_timeout = connect_timeout
        #: False for transaction-pooling proxies, which cannot keep prepared statements
        #: (a statement prepared on one server connection is unknown on the next).
        self.prepare = prepare
        self._pool: AsyncConnectionPool[Any] | None = None
        self._pool_loop: asyncio.AbstractEventLoop | None = None
        self._pool_lock: asyncio.Lock | None = None
        self._sync_pool: ConnectionPool[Any] | None = None
        #: Called when the pool is dropped because its event loop is gone.
        self.on_forget: Callable[[], None] | None = None
        #: Statements each new connection of the async pool runs before its first use (a
        #: running worker's claim warm-up, see ``claim_warmup`` in jobs.sql).
        self.warmups: list[Spec[Any]] = []
        #: Statements each new connection of either pool runs first (session settings, set
        #: by the app: ``session_utc`` in jobs.sql).
        self.on_connect: list[Spec[Any]] = []

    def __repr__(self) -> str:
        return f"<Db {where(self.dsn)} prefix={self.prefix!r}>"

    # -- connecting -----------------------------------------------------------------------

    def connection_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"autocommit": True}
        if not self.prepare:
            kwargs["prepare_threshold"] = None
        return kwargs

    def conninfo(self, dsn: str | None = None) -> str:
        """The DSN (``dsn``, else the pool's) with a connect timeout, an application name and
        TCP keepalives (each unless the DSN sets it): a worker notices a vanished server in
        tens of seconds, not the kernel's two hours."""
        params = conninfo_to_dict(self.dsn if dsn is None else dsn)
        params.setdefault("connect_timeout", str(max(1, int(self.connect_timeout))))
        params.setdefault("application_name", "chancy")
        for name, value in _KEEPALIVES.items():
            params.setdefault(name, value)
        return make_conninfo("", **params)

    def session_conninfo(self) -> str:
        """``conninfo`` for the worker's session connection (LISTEN, liveness locks): the
        ``listen_dsn`` when one is set (a direct link past a transaction pooler). It also
        asks the server for TCP keepalives, so a vanished worker host ends its session (and
        frees its liveness lock) within about half a minute."""
        params = conninfo_to_dict(self.conninfo(self.listen_dsn))
        if "options" not in params:
            params["options"] = _SERVER_KEEPALIVES
        return make_conninfo("", **params)

    async def probe(self) -> None:
        """Fail fast, naming the server, when the database cannot be reached.

        A server that answers but is not ready yet (starting up, shutting down for a restart,
        recovering from a crash) is waited for, up to ``reconnect_timeout``: a worker started
        while its database restarts serves once it is back instead of exiting.
        """
        waiting = _NotReady(self)
        while True:
            try:
                conn = await asyncio.wait_for(
                    psycopg.AsyncConnection.connect(self.conninfo()), self.connect_timeout + 1
                )
            except (psycopg.OperationalError, OSError, TimeoutError) as exc:
                delay = waiting.retry_in(exc)
                if delay is None:
                    raise self.unreachable(exc) from exc
                await asyncio.sleep(delay)
                continue
            await conn.close()
            return

    def probe_sync(self) -> None:
        """``probe`` for the sync pool."""
        waiting = _NotReady(self)
        while True:
            try:
                with psycopg.connect(self.conninfo()):
                    return
            except psycopg.OperationalError as exc:
                delay = waiting.retry_in(exc)
                if delay is None:
                    raise self.unreachable(exc) from exc
                time.sleep(delay)

    def unreachable(self, exc: BaseException) -> ConnectionFailedError:
        """The error for a server that could not be reached, naming it and the fix."""
        return ConnectionFailedError(
            f"could not connect to PostgreSQL at {where(self.dsn)} within"
            f" {self.connect_timeout:g}s: {str(exc).strip() or type(exc).__name__}. Check"
            " that the server is running and the DSN (host, port, user, database) is right."
        )

    # -- pools ----------------------------------------------------------------------------

    @property
    def pool(self) -> AsyncConnectionPool[Any]:
        """The async pool (opened by ``open()`` or by the first async call)."""
        if self._pool is None:
            self._pool = _AsyncPool(
                self.conninfo(),
                min_size=self.min_size,
                max_size=self.max_size,
                kwargs=self.connection_kwargs(),
                open=False,
                timeout=max(30.0, self.connect_timeout),
                name=f"chancy-{self.prefix}",
                reconnect_timeout=self.reconnect_timeout,
                configure=self._configure_async,
            )
        return self._pool

    async def _configure_async(self, conn: psycopg.AsyncConnection[Any]) -> None:
        set_json_loads(fast_json_loads, conn)
        for spec in self.on_connect:
            async with conn.cursor(row_factory=dict_row) as cur:
                await run(cur, spec)
        await self._warm(conn)

    def _configure_sync(self, conn: psycopg.Connection[Any]) -> None:
        set_json_loads(fast_json_loads, conn)
        for spec in self.on_connect:
            with conn.cursor(row_factory=dict_row) as cur:
                run_sync(cur, spec)

    async def _warm(self, conn: psycopg.AsyncConnection[Any]) -> None:
        for spec in list(self.warmups):
            try:
                async with conn.cursor(row_factory=dict_row) as cur:
                    await run(cur, spec)
            except psycopg.OperationalError:
                raise  # a broken connection: the pool discards it
            except psycopg.Error as exc:
                # A warm-up only saves time; the statement it prepares for reports its own
                # errors (a schema migrated away under a running worker, say).
                log.debug("connection warm-up failed: %s", exc)

    async def warm(self) -> None:
        """Run the warm-ups on the async pool's idle connections (those opened before they
        were registered); connections opened later run them as they open."""
        pool = await self.open()
        idle = pool.get_stats().get("pool_available", 0)
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(idle):
                conn = await stack.enter_async_context(pool.connection())
                await self._warm(conn)

    async def open(self) -> AsyncConnectionPool[Any]:
        """Open the async pool if needed, failing clearly when the server is unreachable."""
        loop = asyncio.get_running_loop()
        if self._pool_loop is not None and self._pool_loop is not loop:
            # A pool belongs to the loop that opened it (e.g. asyncio.run called twice); the
            # old loop is gone, so its pool is dropped, not awaited.
            self.forget_loop()
        if self._pool_lock is None:
            self._pool_lock = asyncio.Lock()
        async with self._pool_lock:
            pool = self.pool
            if self._pool_loop is not loop or pool.closed:
                if pool.closed and self._pool_loop is not None:
                    self._pool = None
                    pool = self.pool
                await self.probe()
                await pool.open(wait=self.min_size > 0)
                self._pool_loop = loop
        return pool

    @property
    def sync_pool(self) -> ConnectionPool[Any]:
        """The sync pool, opened on first use."""
        if self._sync_pool is None:
            pool: ConnectionPool[Any] = _SyncPool(
                self.conninfo(),
                min_size=self.min_size,
                max_size=self.max_size,
                kwargs=self.connection_kwargs(),
                open=False,
                timeout=max(30.0, self.connect_timeout),
                name=f"chancy-sync-{self.prefix}",
                configure=self._configure_sync,
            )
            self.probe_sync()
            pool.open(wait=self.min_size > 0)
            self._sync_pool = pool
        return self._sync_pool

    def forget_loop(self) -> None:
        self._pool = None
        self._pool_loop = None
        self._pool_lock = None
        if self.on_forget is not None:
            self.on_forget()

    def owned_by_another_loop(self) -> bool:
        return self._pool_loop is not None and self._pool_loop is not asyncio.get_running_loop()

    async def close(self) -> None:
        if self.owned_by_another_loop():
            self.forget_loop()
        if self._pool is not None:
            pool, self._pool, self._pool_loop = self._pool, None, None
            await pool.close()
        self.sync_close()

    def sync_close(self) -> None:
        if self._sync_pool is not None:
            pool, self._sync_pool = self._sync_pool, None
            pool.close()

    # -- running store specs ----------------------------------------------------------------

    async def run(self, work: Spec[T] | Plan[T], *, transaction: bool = False) -> T:
        """Run a spec or plan on a pool connection (in one transaction if asked)."""
        pool = await self.open()
        async with pool.connection() as conn:
            if transaction:
                async with conn.transaction():
                    async with conn.cursor(row_factory=dict_row) as cur:
                        return await run(cur, work)
            async with conn.cursor(row_factory=dict_row) as cur:
                return await run(cur, work)

    def run_sync(self, work: Spec[T] | Plan[T], *, transaction: bool = False) -> T:
        """``run`` on the sync pool."""
        with self.sync_pool.connection() as conn:
            if transaction:
                with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                    return run_sync(cur, work)
            with conn.cursor(row_factory=dict_row) as cur:
                return run_sync(cur, work)

    @staticmethod
    async def run_ex(cursor: psycopg.AsyncCursor[Any], work: Spec[T] | Plan[T]) -> T:
        """Run a spec or plan on the caller's cursor, inside the caller's transaction."""
        async with dict_cursor(cursor) as cur:
            return await run(cur, work)

    @staticmethod
    def run_ex_sync(cursor: psycopg.Cursor[Any], work: Spec[T] | Plan[T]) -> T:
        with dict_cursor(cursor) as cur:
            return run_sync(cur, work)


def fast_json_loads(data: bytes | str) -> Any:
    """``json.loads`` with a shortcut for the empty objects and lists most job rows hold."""
    if len(data) == 2:
        if data == b"{}" or data == "{}":
            return {}
        if data == b"[]" or data == "[]":
            return []
    return json.loads(data)


class _Reconnect(AttemptWithBackoff):
    """How a pool slot whose connection failed tries again: full jitter, never giving up.

    psycopg_pool's own attempt waits 1 s, 2 s, 4 s... with 10 % noise and gives the slot up
    after ``reconnect_timeout``: every worker of a fleet whose server restarted then retries in
    the same waves, and waits ever longer. Here each wait is random in
    ``[0, min(RECONNECT_MAX, RECONNECT_INITIAL * 2**n)]`` (chancy.backoff); past
    ``reconnect_timeout`` (``Chancy(poll_reconnect_timeout=...)``) an error is logged, once,
    and the slot keeps trying.
    """

    def __init__(self, pool: str, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.pool = pool
        self.backoff = Backoff(RECONNECT_INITIAL, RECONNECT_MAX)
        self.since: float | None = None
        self.warned = False

    def update_delay(self, now: float) -> None:
        if self.since is None:
            self.since = now
        elif not self.warned and now - self.since >= self.timeout:
            self.warned = True
            log.error(
                "pool %s: no connection for %.0fs; still retrying every %gs or less",
                self.pool,
                now - self.since,
                RECONNECT_MAX,
            )
        self.delay = self.backoff.next()

    def time_to_give_up(self, now: float) -> bool:
        return False


class _AsyncPool(AsyncConnectionPool[Any]):
    """An async pool whose slots reconnect as ``_Reconnect`` says."""

    async def _add_connection(
        self, attempt: AttemptWithBackoff | None, growing: bool = False
    ) -> None:
        if attempt is None:
            attempt = _Reconnect(self.name, self.reconnect_timeout)
        await super()._add_connection(attempt, growing=growing)


class _SyncPool(ConnectionPool[Any]):
    """The sync pool, reconnecting the same way."""

    def _add_connection(self, attempt: AttemptWithBackoff | None, growing: bool = False) -> None:
        if attempt is None:
            attempt = _Reconnect(self.name, self.reconnect_timeout)
        super()._add_connection(attempt, growing=growing)
