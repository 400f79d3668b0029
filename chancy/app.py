"""The app object: configuration, connection pools, and the job and queue API.

``Chancy`` holds no job state. It owns lazily opened pools (async and sync), the shared
notification listener for waiters, and the plugins; every database operation is a store
spec run on a pool connection or inside the caller's transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from chancy.errors import (
    ConfigurationError,
    ConnectionFailedError,
    MigrationsNeededError,
    PushError,
)
from chancy.job import Job, QueuedJob, Reference, as_job
from chancy.migrate import Migrator, current_versions
from chancy.plugin import Plugin, plugins_with
from chancy.queue import EXECUTORS, Queue
from chancy.runtime.notifier import Notifier
from chancy.store import Plan, Spec, Store, run, run_sync
from chancy.store.loader import check_prefix
from chancy.store.runner import dict_cursor
from chancy.utils import import_string

T = TypeVar("T")

CORE_MIGRATIONS = ("chancy", "chancy.migrations.core")
TERMINAL = frozenset({QueuedJob.State.SUCCEEDED, QueuedJob.State.FAILED})
#: push_many encodes the next batch in a thread while the current one is written, for
#: batches at least this large (below it, the hand-off costs more than it saves).
_ENCODE_AHEAD_MIN = 500

JobLike = Job | Any  # a Job, or a function decorated with @job


_as_job = as_job


def _dsn_from(dsn: str | Mapping[str, Any]) -> str:
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


def _where(conninfo: str) -> str:
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "the configured server"
    host = params.get("host") or "the default socket directory"
    port = params.get("port") or "5432"
    if str(host).startswith("/"):
        return f"socket directory {host} (port {port})"
    return f"host {host} port {port}"


@contextlib.contextmanager
def _elapsed() -> Any:
    start = time.monotonic()
    yield lambda: time.monotonic() - start


class Chancy:
    """A job queue on one PostgreSQL database; use as ``async with Chancy(dsn) as chancy``."""

    class Executor(enum.StrEnum):
        Process = EXECUTORS["process"]
        Threaded = EXECUTORS["threaded"]
        Async = EXECUTORS["async"]
        SubInterpreter = EXECUTORS["sub_interpreter"]

    def __init__(
        self,
        dsn: str | Mapping[str, Any],
        *,
        plugins: Iterable[Plugin] | None = None,
        prefix: str = "chancy_",
        min_connection_pool_size: int = 1,
        max_connection_pool_size: int = 10,
        poll_reconnect_timeout: int = 300,
        notifications: bool = True,
        log: logging.Logger | None = None,
        no_default_plugins: bool = False,
        connect_timeout: float = 10,
        max_result_size: int = 1024 * 1024,
    ) -> None:
        self.dsn = _dsn_from(dsn)
        self.prefix = check_prefix(prefix)
        if min_connection_pool_size < 0 or max_connection_pool_size < max(
            1, min_connection_pool_size
        ):
            raise ConfigurationError(
                "pool sizes must satisfy 0 <= min_connection_pool_size <="
                f" max_connection_pool_size and max >= 1; got {min_connection_pool_size},"
                f" {max_connection_pool_size}"
            )
        self.min_connection_pool_size = min_connection_pool_size
        self.max_connection_pool_size = max_connection_pool_size
        self.poll_reconnect_timeout = poll_reconnect_timeout
        self.notifications = notifications
        self.log = log or logging.getLogger("chancy")
        self.connect_timeout = connect_timeout
        self.max_result_size = max_result_size
        self.store = Store(self.prefix)
        self.plugins: dict[str, Plugin] = {}
        for plugin in plugins or ():
            identifier = plugin.get_identifier()
            if identifier in self.plugins:
                raise ConfigurationError(
                    f"two plugins share the identifier {identifier!r}; give each plugin once"
                )
            self.plugins[identifier] = plugin
        if not no_default_plugins:
            for plugin in _default_plugins():
                self.plugins.setdefault(plugin.get_identifier(), plugin)
        self._pool: AsyncConnectionPool[Any] | None = None
        self._pool_loop: asyncio.AbstractEventLoop | None = None
        self._pool_lock: asyncio.Lock | None = None
        self._sync_pool: ConnectionPool[Any] | None = None
        self._notifier: Notifier | None = None
        self._waiters: dict[uuid.UUID, set[asyncio.Future[None]]] = {}
        self._unsubscribe_waiters: Any = None

    def __repr__(self) -> str:
        return f"<Chancy {_where(self.dsn)} prefix={self.prefix!r}>"

    # -- pools --------------------------------------------------------------------------

    def _connection_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"autocommit": True}
        if not self.notifications:
            # Transaction-pooling proxies cannot keep prepared statements.
            kwargs["prepare_threshold"] = None
        return kwargs

    def _conninfo(self) -> str:
        params = conninfo_to_dict(self.dsn)
        params.setdefault("connect_timeout", str(max(1, int(self.connect_timeout))))
        params.setdefault("application_name", "chancy")
        return make_conninfo("", **params)

    async def _probe(self) -> None:
        """Fail fast, naming the server, when the database cannot be reached."""
        try:
            conn = await asyncio.wait_for(
                psycopg.AsyncConnection.connect(self._conninfo()), self.connect_timeout + 1
            )
        except (psycopg.OperationalError, OSError, TimeoutError) as exc:
            raise self._unreachable(exc) from exc
        await conn.close()

    def _unreachable(self, exc: BaseException) -> ConnectionFailedError:
        """The error for a server that could not be reached, naming it and the fix."""
        return ConnectionFailedError(
            f"could not connect to PostgreSQL at {_where(self.dsn)} within"
            f" {self.connect_timeout:g}s: {str(exc).strip() or type(exc).__name__}. Check"
            " that the server is running and the DSN (host, port, user, database) is right."
        )

    @property
    def pool(self) -> AsyncConnectionPool[Any]:
        """The async pool (opened by ``async with chancy`` or by the first async call)."""
        if self._pool is None:
            self._pool = AsyncConnectionPool(
                self._conninfo(),
                min_size=self.min_connection_pool_size,
                max_size=self.max_connection_pool_size,
                kwargs=self._connection_kwargs(),
                open=False,
                timeout=max(30.0, self.connect_timeout),
                name=f"chancy-{self.prefix}",
                reconnect_timeout=self.poll_reconnect_timeout,
                configure=_configure_async,
            )
        return self._pool

    async def open(self) -> AsyncConnectionPool[Any]:
        """Open the async pool if needed, failing clearly when the server is unreachable."""
        loop = asyncio.get_running_loop()
        if self._pool_loop is not None and self._pool_loop is not loop:
            # A pool belongs to the loop that opened it (e.g. asyncio.run called twice); the
            # old loop is gone, so its pool and listener are dropped, not awaited.
            self._forget_loop()
        if self._pool_lock is None:
            self._pool_lock = asyncio.Lock()
        async with self._pool_lock:
            pool = self.pool
            if self._pool_loop is not loop or pool.closed:
                if pool.closed and self._pool_loop is not None:
                    self._pool = None
                    pool = self.pool
                await self._probe()
                await pool.open(wait=self.min_connection_pool_size > 0)
                self._pool_loop = loop
        return pool

    @property
    def sync_pool(self) -> ConnectionPool[Any]:
        """The sync pool, opened on first use."""
        if self._sync_pool is None:
            pool: ConnectionPool[Any] = ConnectionPool(
                self._conninfo(),
                min_size=self.min_connection_pool_size,
                max_size=self.max_connection_pool_size,
                kwargs=self._connection_kwargs(),
                open=False,
                timeout=max(30.0, self.connect_timeout),
                name=f"chancy-sync-{self.prefix}",
                configure=_configure_sync,
            )
            try:
                with psycopg.connect(self._conninfo()):
                    pass
            except psycopg.OperationalError as exc:
                raise self._unreachable(exc) from exc
            pool.open(wait=self.min_connection_pool_size > 0)
            self._sync_pool = pool
        return self._sync_pool

    def _forget_loop(self) -> None:
        self._pool = None
        self._pool_loop = None
        self._notifier = None
        self._unsubscribe_waiters = None
        self._pool_lock = None

    async def close(self) -> None:
        if self._pool_loop is not None and self._pool_loop is not asyncio.get_running_loop():
            self._forget_loop()
        if self._notifier is not None:
            await self._notifier.stop()
            self._notifier = None
        if self._pool is not None:
            pool, self._pool, self._pool_loop = self._pool, None, None
            await pool.close()
        self.sync_close()

    def sync_close(self) -> None:
        if self._sync_pool is not None:
            pool, self._sync_pool = self._sync_pool, None
            pool.close()

    async def __aenter__(self) -> Chancy:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __enter__(self) -> Chancy:
        _ = self.sync_pool
        return self

    def __exit__(self, *exc: object) -> None:
        self.sync_close()

    # -- running specs ------------------------------------------------------------------

    async def _run(self, work: Spec[T] | Plan[T], *, transaction: bool = False) -> T:
        pool = await self.open()
        async with pool.connection() as conn:
            if transaction:
                async with conn.transaction():
                    async with conn.cursor(row_factory=dict_row) as cur:
                        return await run(cur, work)
            async with conn.cursor(row_factory=dict_row) as cur:
                return await run(cur, work)

    def _run_sync(self, work: Spec[T] | Plan[T], *, transaction: bool = False) -> T:
        with self.sync_pool.connection() as conn:
            if transaction:
                with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                    return run_sync(cur, work)
            with conn.cursor(row_factory=dict_row) as cur:
                return run_sync(cur, work)

    @staticmethod
    async def _run_ex(cursor: psycopg.AsyncCursor[Any], work: Spec[T] | Plan[T]) -> T:
        async with dict_cursor(cursor) as cur:
            return await run(cur, work)

    @staticmethod
    def _run_ex_sync(cursor: psycopg.Cursor[Any], work: Spec[T] | Plan[T]) -> T:
        with dict_cursor(cursor) as cur:
            return run_sync(cur, work)

    # -- migrations ---------------------------------------------------------------------

    def migrators(self) -> list[Migrator]:
        """The core migration line, then each plugin's, in plugin order."""
        found = [Migrator(*CORE_MIGRATIONS, prefix=self.prefix)]
        for plugin in self.plugins.values():
            key, package = plugin.migrate_key(), plugin.migrate_package()
            if key and package:
                found.append(Migrator(key, package, prefix=self.prefix))
        return found

    async def migrate(self, *, to_version: int | None = None) -> None:
        """Bring the schema to head (or the core line to ``to_version``; 0 removes all).

        Runs in one transaction under an advisory lock, so concurrent calls apply each
        version once.
        """
        pool = await self.open()
        async with pool.connection() as conn:
            await self._migrate_on(conn, to_version)

    async def _migrate_on(self, conn: psycopg.AsyncConnection[Any], to_version: int | None) -> None:
        migrators = self.migrators()
        async with conn.transaction():
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(self.store.q_migrate("migrate_lock"))
                await cur.execute(self.store.q_migrate("schema_version_create"))
                if to_version == 0:
                    for migrator in reversed(migrators):
                        await migrator.migrate(cur, 0)
                    await cur.execute(self.store.q_migrate("schema_version_drop_if_empty"))
                else:
                    for i, migrator in enumerate(migrators):
                        await migrator.migrate(cur, to_version if i == 0 else None)

    async def is_up_to_date(self) -> bool:
        pool = await self.open()
        async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            versions = await current_versions(cur, self.prefix)
        return all(versions.get(m.key, 0) == m.head for m in self.migrators())

    async def check_migrations(self) -> None:
        """Raise MigrationsNeededError when any migration line is behind."""
        pool = await self.open()
        async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            versions = await current_versions(cur, self.prefix)
        behind = [
            f"{m.key} at {versions.get(m.key, 0)} (needs {m.head})"
            for m in self.migrators()
            if versions.get(m.key, 0) < m.head
        ]
        if behind:
            raise MigrationsNeededError(
                f"the database schema for prefix {self.prefix!r} is out of date: "
                + ", ".join(behind)
                + ". Run `await chancy.migrate()` (or `chancy misc migrate`) first."
            )

    # -- queues -------------------------------------------------------------------------

    @staticmethod
    def _check_executor(queue: Queue) -> None:
        from chancy.executors.base import Executor

        if queue.executor in EXECUTORS.values():
            return
        try:
            cls = import_string(queue.executor)
        except Exception:
            cls = None
        if not (isinstance(cls, type) and issubclass(cls, Executor)):
            choices = ", ".join(sorted(EXECUTORS.values()))
            raise ConfigurationError(
                f"queue {queue.name!r} names executor {queue.executor!r}, which is not an"
                f" importable Executor subclass; valid built-in choices: {choices}"
            )

    async def declare(self, queue: Queue, *, upsert: bool = False) -> Queue:
        """Store a queue (or overwrite its settings with ``upsert``) and tell the workers."""
        self._check_executor(queue)
        pool = await self.open()
        async with pool.connection() as conn, conn.transaction():
            async with conn.cursor(row_factory=dict_row) as cur:
                return await self._declare(cur, queue, upsert)

    async def _declare(self, cur: Any, queue: Queue, upsert: bool) -> Queue:
        stored = await run(cur, self.store.queue_declare(queue, upsert=upsert))
        if self.notifications:
            await run(cur, self.store.notify("queue.declared", {"q": queue.name}))
        return stored

    async def declare_ex(
        self, cursor: psycopg.AsyncCursor[Any], queue: Queue, *, upsert: bool = False
    ) -> Queue:
        self._check_executor(queue)
        async with dict_cursor(cursor) as cur:
            return await self._declare(cur, queue, upsert)

    def sync_declare(self, queue: Queue, *, upsert: bool = False) -> Queue:
        self._check_executor(queue)
        return self._run_sync(self._declare_plan(queue, upsert), transaction=True)

    def sync_declare_ex(
        self, cursor: psycopg.Cursor[Any], queue: Queue, *, upsert: bool = False
    ) -> Queue:
        self._check_executor(queue)
        return self._run_ex_sync(cursor, self._declare_plan(queue, upsert))

    def _declare_plan(self, queue: Queue, upsert: bool) -> Plan[Queue]:
        stored = yield from self.store.queue_declare(queue, upsert=upsert)
        if self.notifications:
            yield self.store.notify("queue.declared", {"q": queue.name})
        return stored

    async def get_queue(self, name: str) -> Queue:
        queue = await self._run(self.store.queue_get(name))
        if queue is None:
            raise KeyError(f"no queue named {name!r}; declare it with chancy.declare(Queue(...))")
        return queue

    async def get_all_queues(self) -> list[Queue]:
        return await self._run(self.store.queue_get_all())

    async def get_limit_usage(self, name: str) -> dict[str, Any]:
        """What a queue's limits use now: running jobs and starts in the current window.

        Returns ``{"running", "started_in_window", "partitions": {key: {"running",
        "started_in_window"}}}`` for the queue and for each partition key with running jobs or
        starts in its window; ``started_in_window`` is None without a rate limit. Running jobs
        of a crashed worker count until they are recovered. Raises KeyError for an unknown
        queue.
        """
        usage = await self._run(self.store.limit_usage(name))
        if usage is None:
            raise KeyError(f"no queue named {name!r}; declare it with chancy.declare(Queue(...))")
        return usage

    async def delete_queue(self, name: str, *, purge_jobs: bool = True) -> bool:
        return await self._run(self._delete_queue_plan(name, purge_jobs), transaction=True)

    async def delete_queue_ex(
        self, cursor: psycopg.AsyncCursor[Any], name: str, *, purge_jobs: bool = True
    ) -> bool:
        return await self._run_ex(cursor, self._delete_queue_plan(name, purge_jobs))

    def _delete_queue_plan(self, name: str, purge_jobs: bool) -> Plan[bool]:
        deleted = yield from self.store.queue_delete(name, purge_jobs=purge_jobs)
        if self.notifications:
            yield self.store.notify("queue.declared", {"q": name, "deleted": True})
        return deleted

    def _pause_plan(self, name: str, resume_at: datetime | timedelta | None) -> Plan[Queue]:
        if isinstance(resume_at, timedelta):
            spec = self.store.queue_set_state(
                name, Queue.State.PAUSED, resume_in=resume_at.total_seconds()
            )
        else:
            if resume_at is not None and (
                not isinstance(resume_at, datetime) or resume_at.tzinfo is None
            ):
                raise ConfigurationError(
                    "resume_at must be a timezone-aware datetime or a timedelta"
                )
            spec = self.store.queue_set_state(name, Queue.State.PAUSED, resume_at=resume_at)
        queue = yield spec
        if queue is None:
            raise KeyError(f"no queue named {name!r}")
        if self.notifications:
            yield self.store.notify("queue.paused", {"q": name})
        return queue

    async def pause_queue(
        self, name: str, *, resume_at: datetime | timedelta | None = None
    ) -> Queue:
        """Stop workers claiming from ``name``; resume it at ``resume_at`` if given."""
        return await self._run(self._pause_plan(name, resume_at), transaction=True)

    async def pause_queue_ex(
        self,
        cursor: psycopg.AsyncCursor[Any],
        name: str,
        *,
        resume_at: datetime | timedelta | None = None,
    ) -> Queue:
        return await self._run_ex(cursor, self._pause_plan(name, resume_at))

    def _resume_plan(self, name: str) -> Plan[Queue]:
        queue = yield self.store.queue_set_state(name, Queue.State.ACTIVE)
        if queue is None:
            raise KeyError(f"no queue named {name!r}")
        if self.notifications:
            yield self.store.notify("queue.resumed", {"q": name})
        return queue

    async def resume_queue(self, name: str) -> Queue:
        return await self._run(self._resume_plan(name), transaction=True)

    async def resume_queue_ex(self, cursor: psycopg.AsyncCursor[Any], name: str) -> Queue:
        return await self._run_ex(cursor, self._resume_plan(name))

    # -- workers ------------------------------------------------------------------------

    async def get_all_workers(self) -> list[dict[str, Any]]:
        return await self._run(self.store.worker_get_all())

    # -- push ---------------------------------------------------------------------------

    async def push(self, job: JobLike) -> Reference:
        """Store one job and wake the workers of its queue; return its reference."""
        refs = await self._run(self._job_push([_as_job(job)]))
        return refs[0]

    async def push_ex(self, cursor: psycopg.AsyncCursor[Any], job: JobLike) -> Reference:
        """Push inside the caller's transaction: the job exists only if it commits."""
        refs = await self._run_ex(cursor, self._job_push([_as_job(job)]))
        return refs[0]

    def sync_push(self, job: JobLike) -> Reference:
        refs = self._run_sync(self._job_push([_as_job(job)]))
        return refs[0]

    def sync_push_ex(self, cursor: psycopg.Cursor[Any], job: JobLike) -> Reference:
        refs = self._run_ex_sync(cursor, self._job_push([_as_job(job)]))
        return refs[0]

    async def push_many(
        self, jobs: Iterable[JobLike], *, batch_size: int = 1000
    ) -> AsyncIterator[list[Reference]]:
        """Push in batches, one transaction each; yield each batch's references in order.

        While a batch is written, the next one is read from ``jobs`` and encoded in a thread,
        so encoding overlaps the database's work (a batch is checked and encoded in full
        before any of it is written, as always).
        """
        if batch_size < 1:
            raise ConfigurationError("batch_size must be at least 1")
        committed_batches = committed_jobs = 0
        iterator = iter(jobs)

        def take() -> list[Job]:
            return [_as_job(j) for _, j in zip(range(batch_size), iterator, strict=False)]

        batch = take()
        if not batch:
            return
        plan = self._job_push(batch)
        loop = asyncio.get_running_loop()
        while True:
            following = take()
            encoding: asyncio.Future[Plan[list[Reference]]] | None = None
            if len(following) >= _ENCODE_AHEAD_MIN:
                following = self._push_hooks(following)
                encoding = loop.run_in_executor(None, self._encode_push, following)
                # Retrieved even when nobody awaits it (the caller stopped iterating).
                encoding.add_done_callback(_retrieve)
            try:
                refs = await self._run(plan, transaction=True)
            except Exception as exc:
                if committed_batches == 0:
                    raise
                raise self._push_error(exc, committed_batches, committed_jobs) from exc
            committed_batches += 1
            committed_jobs += len(refs)
            yield refs
            if not following:
                return
            try:
                if encoding is not None:
                    plan = await encoding
                else:
                    plan = self._job_push(following)
            except Exception as exc:
                raise self._push_error(exc, committed_batches, committed_jobs) from exc

    @staticmethod
    def _push_error(exc: Exception, committed_batches: int, committed_jobs: int) -> PushError:
        return PushError(
            f"batch {committed_batches + 1} failed ({exc}); the {committed_batches}"
            f" earlier batches ({committed_jobs} jobs) were committed",
            committed_batches=committed_batches,
            committed_jobs=committed_jobs,
        )

    def _encode_push(self, batch: list[Job]) -> Plan[list[Reference]]:
        # Hooks already ran in the caller's thread (push_many).
        return self.store.job_push(batch, notify=self.notifications)

    def _job_push(self, jobs: list[Job]) -> Plan[list[Reference]]:
        """The plan that pushes ``jobs``, after the plugins' ``on_push`` hooks."""
        return self.store.job_push(self._push_hooks(jobs), notify=self.notifications)

    def _push_hooks(self, jobs: list[Job]) -> list[Job]:
        for plugin in plugins_with(self.plugins.values(), "on_push"):
            try:
                jobs = plugin.on_push(jobs, chancy=self)
            except NotImplementedError:
                continue
        return jobs

    async def push_many_ex(
        self, cursor: psycopg.AsyncCursor[Any], jobs: Iterable[JobLike], *, batch_size: int = 1000
    ) -> list[Reference]:
        """Push many inside the caller's transaction; return every reference in order."""
        out: list[Reference] = []
        for batch in _batches(jobs, batch_size):
            out.extend(await self._run_ex(cursor, self._job_push(batch)))
        return out

    def sync_push_many(self, jobs: Iterable[JobLike], *, batch_size: int = 1000) -> list[Reference]:
        out: list[Reference] = []
        for n, batch in enumerate(_batches(jobs, batch_size)):
            try:
                out.extend(self._run_sync(self._job_push(batch), transaction=True))
            except Exception as exc:
                if n == 0:
                    raise
                raise self._push_error(exc, n, len(out)) from exc
        return out

    def sync_push_many_ex(
        self, cursor: psycopg.Cursor[Any], jobs: Iterable[JobLike], *, batch_size: int = 1000
    ) -> list[Reference]:
        out: list[Reference] = []
        for batch in _batches(jobs, batch_size):
            out.extend(self._run_ex_sync(cursor, self._job_push(batch)))
        return out

    # -- read and wait ------------------------------------------------------------------

    async def get_job(self, ref: Reference | uuid.UUID | str) -> QueuedJob | None:
        return await self._run(self.store.job_get(ref))

    def sync_get_job(self, ref: Reference | uuid.UUID | str) -> QueuedJob | None:
        return self._run_sync(self.store.job_get(ref))

    async def get_jobs(self, refs: Sequence[Reference | uuid.UUID | str]) -> list[QueuedJob]:
        if not refs:
            return []
        return await self._run(self.store.job_get_many(refs))

    async def _ensure_listener(self) -> None:
        if not self.notifications:
            return
        notifier = await self.notifier()
        if self._unsubscribe_waiters is None:
            self._unsubscribe_waiters = notifier.subscribe(self._on_event)

    async def notifier(self) -> Notifier:
        """The process's shared LISTEN connection, started on first use."""
        await self.open()
        if self._notifier is None:
            q = self.store.q
            self._notifier = Notifier(
                self._conninfo(),
                self.store.channel,
                listen_query=q["events_listen"],
                ping_query=q["events_ping"],
                connect_timeout=self.connect_timeout,
            )
            self._unsubscribe_waiters = None
        if not self._notifier.running:
            await self._notifier.start()
        return self._notifier

    def _on_event(self, payload: dict[str, Any]) -> None:
        if payload.get("t") != "job.finished" or not self._waiters:
            return
        for raw in payload.get("ids") or ():
            try:
                job_id = uuid.UUID(str(raw))
            except ValueError:
                continue
            for future in self._waiters.get(job_id, ()):
                if not future.done():
                    future.set_result(None)

    async def wait_for_job(
        self,
        ref: Reference | uuid.UUID | str,
        *,
        interval: float = 1,
        timeout: float | None = None,
        states: Iterable[str] | None = None,
    ) -> QueuedJob | None:
        """Wait until the job reaches one of ``states`` (default: succeeded or failed).

        Woken by NOTIFY when notifications are on; polls every ``interval`` seconds either
        way. Raises ``asyncio.TimeoutError`` after ``timeout``; returns None if the job no
        longer exists.
        """
        jobs = await self.wait_for_jobs([ref], interval=interval, timeout=timeout, states=states)
        return jobs[0] if jobs else None

    async def wait_for_jobs(
        self,
        refs: Sequence[Reference | uuid.UUID | str],
        *,
        interval: float = 1,
        timeout: float | None = None,
        states: Iterable[str] | None = None,
    ) -> list[QueuedJob]:
        """Wait for every job in ``refs``; return those that still exist, in order."""
        wanted = {str(s) for s in states} if states is not None else {str(s) for s in TERMINAL}
        ids = [Reference(r).identifier for r in refs]
        deadline = None if timeout is None else time.monotonic() + timeout
        await self._ensure_listener()
        loop = asyncio.get_running_loop()
        futures: dict[uuid.UUID, asyncio.Future[None]] = {}

        def arm(job_id: uuid.UUID) -> asyncio.Future[None]:
            old = futures.get(job_id)
            if old is not None:
                self._waiters.get(job_id, set()).discard(old)
            future = futures[job_id] = loop.create_future()
            self._waiters.setdefault(job_id, set()).add(future)
            return future

        for job_id in ids:
            arm(job_id)
        found: dict[uuid.UUID, QueuedJob] = {}
        pending = set(ids)
        to_read = list(ids)
        try:
            while True:
                # Read only what may have changed: the jobs a notification named, or all
                # pending ones when polling.
                jobs = await self.get_jobs(to_read)
                seen = set()
                for job in jobs:
                    seen.add(job.id)
                    if str(job.state) in wanted:
                        found[job.id] = job
                        pending.discard(job.id)
                for job_id in to_read:
                    if job_id not in seen:
                        pending.discard(job_id)  # the job no longer exists
                if not pending:
                    return [found[i] for i in ids if i in found]
                for job_id in to_read:
                    if job_id in pending and futures[job_id].done():
                        arm(job_id)
                budget = interval
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError(
                            f"{len(pending)} job(s) did not reach {sorted(wanted)} within"
                            f" {timeout}s"
                        )
                    budget = min(budget, remaining)
                await asyncio.wait(
                    [futures[i] for i in pending],
                    timeout=budget,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                woken = [i for i in pending if futures[i].done()]
                to_read = woken or list(pending)
        finally:
            for job_id, future in futures.items():
                waiting = self._waiters.get(job_id)
                if waiting is not None:
                    waiting.discard(future)
                    if not waiting:
                        del self._waiters[job_id]

    # -- operator actions ---------------------------------------------------------------

    async def cancel_job(self, ref: Reference | uuid.UUID | str) -> bool:
        """Cancel a job that has not finished; True if it was cancelled.

        The job ends ``failed`` with ``meta["cancelled"] = true``; a pending job never runs
        and a running one is interrupted by its worker.
        """
        return await self._run(self.store.job_cancel(ref, notify=self.notifications))

    async def cancel_job_ex(
        self, cursor: psycopg.AsyncCursor[Any], ref: Reference | uuid.UUID | str
    ) -> bool:
        return await self._run_ex(cursor, self.store.job_cancel(ref, notify=self.notifications))

    async def retry_jobs(self, refs: Sequence[Reference | uuid.UUID | str]) -> RetryResult:
        """Put finished jobs back to be run again, attempts reset and errors kept."""
        retried, skipped = await self._run(
            self.store.job_retry_many(refs, notify=self.notifications)
        )
        return self._retry_result(retried, skipped)

    async def retry_jobs_ex(
        self, cursor: psycopg.AsyncCursor[Any], refs: Sequence[Reference | uuid.UUID | str]
    ) -> RetryResult:
        retried, skipped = await self._run_ex(
            cursor, self.store.job_retry_many(refs, notify=self.notifications)
        )
        return self._retry_result(retried, skipped)

    # -- sync forms (scripts, WSGI apps): the same plans on the sync pool ----------------

    def sync_migrate(self, *, to_version: int | None = None) -> None:
        """:meth:`migrate` for sync code (migrations may be async Python, so this runs them
        on a private event loop in a helper thread, over a connection of its own)."""
        _run_private(self._migrate_private(to_version))

    async def _migrate_private(self, to_version: int | None) -> None:
        conn = await psycopg.AsyncConnection.connect(self.dsn)
        async with conn:
            await self._migrate_on(conn, to_version)

    def sync_is_up_to_date(self) -> bool:
        versions = self._sync_versions()
        return all(versions.get(m.key, 0) == m.head for m in self.migrators())

    def _sync_versions(self) -> dict[str, int]:
        async def read() -> dict[str, int]:
            conn = await psycopg.AsyncConnection.connect(self.dsn)
            async with conn, conn.cursor(row_factory=dict_row) as cur:
                return await current_versions(cur, self.prefix)

        return _run_private(read())

    def sync_check_migrations(self) -> None:
        """:meth:`check_migrations` for sync code."""
        versions = self._sync_versions()
        behind = [m.key for m in self.migrators() if versions.get(m.key, 0) < m.head]
        if behind:
            raise MigrationsNeededError(
                f"the database schema for prefix {self.prefix!r} is out of date"
                f" ({', '.join(behind)}). Run `chancy.sync_migrate()` (or `chancy misc"
                " migrate`) first."
            )

    def sync_get_jobs(self, refs: Sequence[Reference | uuid.UUID | str]) -> list[QueuedJob]:
        return self._run_sync(self.store.job_get_many(refs)) if refs else []

    def sync_get_queue(self, name: str) -> Queue:
        queue = self._run_sync(self.store.queue_get(name))
        if queue is None:
            raise KeyError(f"no queue named {name!r}; declare it with chancy.declare(Queue(...))")
        return queue

    def sync_get_all_queues(self) -> list[Queue]:
        return self._run_sync(self.store.queue_get_all())

    def sync_get_limit_usage(self, name: str) -> dict[str, Any]:
        usage = self._run_sync(self.store.limit_usage(name))
        if usage is None:
            raise KeyError(f"no queue named {name!r}; declare it with chancy.declare(Queue(...))")
        return usage

    def sync_delete_queue(self, name: str, *, purge_jobs: bool = True) -> bool:
        return self._run_sync(self._delete_queue_plan(name, purge_jobs), transaction=True)

    def sync_delete_queue_ex(
        self, cursor: psycopg.Cursor[Any], name: str, *, purge_jobs: bool = True
    ) -> bool:
        return self._run_ex_sync(cursor, self._delete_queue_plan(name, purge_jobs))

    def sync_pause_queue(
        self, name: str, *, resume_at: datetime | timedelta | None = None
    ) -> Queue:
        return self._run_sync(self._pause_plan(name, resume_at), transaction=True)

    def sync_pause_queue_ex(
        self,
        cursor: psycopg.Cursor[Any],
        name: str,
        *,
        resume_at: datetime | timedelta | None = None,
    ) -> Queue:
        return self._run_ex_sync(cursor, self._pause_plan(name, resume_at))

    def sync_resume_queue(self, name: str) -> Queue:
        return self._run_sync(self._resume_plan(name), transaction=True)

    def sync_resume_queue_ex(self, cursor: psycopg.Cursor[Any], name: str) -> Queue:
        return self._run_ex_sync(cursor, self._resume_plan(name))

    def sync_get_all_workers(self) -> list[dict[str, Any]]:
        return self._run_sync(self.store.worker_get_all())

    def sync_cancel_job(self, ref: Reference | uuid.UUID | str) -> bool:
        return self._run_sync(self.store.job_cancel(ref, notify=self.notifications))

    def sync_cancel_job_ex(
        self, cursor: psycopg.Cursor[Any], ref: Reference | uuid.UUID | str
    ) -> bool:
        return self._run_ex_sync(cursor, self.store.job_cancel(ref, notify=self.notifications))

    def sync_retry_jobs(self, refs: Sequence[Reference | uuid.UUID | str]) -> RetryResult:
        retried, skipped = self._run_sync(
            self.store.job_retry_many(refs, notify=self.notifications)
        )
        return self._retry_result(retried, skipped)

    def sync_retry_jobs_ex(
        self, cursor: psycopg.Cursor[Any], refs: Sequence[Reference | uuid.UUID | str]
    ) -> RetryResult:
        retried, skipped = self._run_ex_sync(
            cursor, self.store.job_retry_many(refs, notify=self.notifications)
        )
        return self._retry_result(retried, skipped)

    def sync_purge_jobs(self, refs: Sequence[Reference | uuid.UUID | str]) -> int:
        return len(self._run_sync(self.store.job_purge_many(refs, notify=self.notifications)))

    def sync_purge_jobs_ex(
        self, cursor: psycopg.Cursor[Any], refs: Sequence[Reference | uuid.UUID | str]
    ) -> int:
        return len(
            self._run_ex_sync(cursor, self.store.job_purge_many(refs, notify=self.notifications))
        )

    def sync_wait_for_job(
        self,
        ref: Reference | uuid.UUID | str,
        *,
        interval: float = 1,
        timeout: float | None = None,
        states: Iterable[str] | None = None,
    ) -> QueuedJob | None:
        """:meth:`wait_for_job` for sync code (polls every ``interval`` seconds)."""
        found = self.sync_wait_for_jobs([ref], interval=interval, timeout=timeout, states=states)
        return found[0] if found else None

    def sync_wait_for_jobs(
        self,
        refs: Sequence[Reference | uuid.UUID | str],
        *,
        interval: float = 1,
        timeout: float | None = None,
        states: Iterable[str] | None = None,
    ) -> list[QueuedJob]:
        """:meth:`wait_for_jobs` for sync code (polls every ``interval`` seconds)."""
        wanted = {str(s) for s in states} if states is not None else {str(s) for s in TERMINAL}
        ids = [Reference(r).identifier for r in refs]
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            current = self._run_sync(self.store.job_states(ids))
            if all(current.get(i) in wanted for i in ids if i in current):
                return self.sync_get_jobs(ids)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"jobs not finished within {timeout}s")
            time.sleep(max(0.0, min(interval, (deadline or float("inf")) - time.monotonic())))

    def _retry_result(self, retried: list[uuid.UUID], skipped: list[uuid.UUID]) -> RetryResult:
        if skipped:
            self.log.warning(
                "not retrying %d job(s) whose unique key is live in another job: %s",
                len(skipped),
                ", ".join(map(str, skipped)),
            )
        return RetryResult([Reference(i) for i in retried], [Reference(i) for i in skipped])

    async def purge_jobs(self, refs: Sequence[Reference | uuid.UUID | str]) -> int:
        """Delete jobs whatever their state; return how many were deleted."""
        purged: list[uuid.UUID] = await self._run(
            self.store.job_purge_many(refs, notify=self.notifications)
        )
        return len(purged)

    async def purge_jobs_ex(
        self, cursor: psycopg.AsyncCursor[Any], refs: Sequence[Reference | uuid.UUID | str]
    ) -> int:
        purged: list[uuid.UUID] = await self._run_ex(
            cursor, self.store.job_purge_many(refs, notify=self.notifications)
        )
        return len(purged)

    async def notify(
        self, cursor: psycopg.AsyncCursor[Any], event: str, payload: dict[str, Any]
    ) -> None:
        """Send ``{"t": event, **payload}`` on the installation's channel (at commit)."""
        await self._run_ex(cursor, self.store.notify(event, payload))

    def sync_notify(self, cursor: psycopg.Cursor[Any], event: str, payload: dict[str, Any]) -> None:
        self._run_ex_sync(cursor, self.store.notify(event, payload))

    async def notify_many(
        self, cursor: psycopg.AsyncCursor[Any], events: Iterable[tuple[str, dict[str, Any]]]
    ) -> None:
        for event, payload in events:
            await self.notify(cursor, event, payload)

    def sync_notify_many(
        self, cursor: psycopg.Cursor[Any], events: Iterable[tuple[str, dict[str, Any]]]
    ) -> None:
        for event, payload in events:
            self.sync_notify(cursor, event, payload)


class RetryResult(list[Reference]):
    """The references that were retried; ``skipped`` lists those left alone.

    A job is skipped when its unique key is live again in another job.
    """

    def __init__(self, retried: list[Reference], skipped: list[Reference]) -> None:
        super().__init__(retried)
        self.skipped = skipped


def _batches(jobs: Iterable[JobLike], size: int) -> Iterable[list[Job]]:
    if size < 1:
        raise ConfigurationError("batch_size must be at least 1")
    iterator = iter(jobs)
    while True:
        batch = [_as_job(j) for _, j in zip(range(size), iterator, strict=False)]
        if not batch:
            return
        yield batch


def fast_json_loads(data: bytes | str) -> Any:
    """``json.loads`` with a shortcut for the empty objects and lists most job rows hold."""
    if len(data) == 2:
        if data == b"{}" or data == "{}":
            return {}
        if data == b"[]" or data == "[]":
            return []
    return json.loads(data)


async def _configure_async(conn: psycopg.AsyncConnection[Any]) -> None:
    set_json_loads(fast_json_loads, conn)


def _configure_sync(conn: psycopg.Connection[Any]) -> None:
    set_json_loads(fast_json_loads, conn)


def _default_plugins() -> list[Plugin]:
    """The plugins every Chancy gets unless ``no_default_plugins`` (those that exist)."""
    found: list[Plugin] = []
    for path in (
        "chancy.plugins.leadership.Leadership",
        "chancy.plugins.pruner.Pruner",
        "chancy.plugins.recovery.Recovery",
        "chancy.plugins.metrics.Metrics",
        "chancy.plugins.workflow.WorkflowPlugin",
    ):
        try:
            cls = import_string(path)
        except ImportError:
            continue
        found.append(cls())
    return found


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a future's outcome as seen, so an unawaited failure is not logged at exit."""
    if not future.cancelled():
        future.exception()


def _run_private(coro: Any) -> Any:
    """Run ``coro`` to completion on a new event loop in a helper thread; return its result.

    Works whether or not the calling thread already runs an event loop.
    """
    result: list[Any] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name="chancy-sync")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]
