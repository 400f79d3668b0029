"""The app object: configuration and the job and queue API, as one-line methods.

``Chancy`` holds no job state. Its parts do the work: ``db`` (chancy.db: lazily opened
pools and the runners of store specs), ``store`` (the named queries), ``hooks`` (the one
plugin-hook dispatcher), the waiters (chancy.waiters: the shared LISTEN connection), and the
push machinery (chancy.push). Every operation is a store spec or plan, run on a pool
connection, on the sync pool (``sync_*``) or inside the caller's transaction (``*_ex``).
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from chancy import migrate, push
from chancy.app_jobs import JobActions
from chancy.app_queues import QueueOperations
from chancy.db import Db, dsn_from, fast_json_loads, where
from chancy.errors import ConfigurationError
from chancy.hooks import Hooks
from chancy.job import Job, QueuedJob, Reference, as_job
from chancy.migrate import Migrator, current_versions, sync_current_versions
from chancy.plugin import Plugin
from chancy.queue import EXECUTORS
from chancy.runtime.notifier import Notifier
from chancy.store import Spec, Store
from chancy.store.loader import check_prefix
from chancy.utils import import_string
from chancy.waiters import TERMINAL, Waiters

__all__ = ["Chancy", "RetryResult", "default_logger", "fast_json_loads"]

T = TypeVar("T")
JobLike = Job | Any  # a Job, or a function decorated with @job
Ref = Reference | uuid.UUID | str
CORE_MIGRATIONS = migrate.CORE
_ = TERMINAL  # re-exported for callers of chancy.app.TERMINAL


def default_logger() -> logging.Logger:
    """The ``chancy`` logger; given a console handler at INFO when nothing logs anywhere yet.

    As in Chancy 0.26, a plain script shows what its workers do without configuring logging;
    an application that configured logging (a handler on the root or on ``chancy``) keeps
    its own setup untouched.
    """
    logger = logging.getLogger("chancy")
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s", "%Y-%m-%d %H:%M:%S")
        )
        logger.addHandler(handler)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
    return logger


class Chancy(JobActions, QueueOperations):
    """A job queue on one PostgreSQL database; use as ``async with Chancy(dsn) as chancy``.

    Behind a transaction pooler (PgBouncer's ``pool_mode = transaction``) pass ``pooled=True``:
    pool connections then never prepare statements. Sessions (LISTEN, worker liveness locks)
    need a direct link: ``listen_dsn``; without one a pooled app polls (docs/pgbouncer.md).
    """

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
        listen_dsn: str | Mapping[str, Any] | None = None,
        pooled: bool = False,
    ) -> None:
        self.dsn = dsn_from(dsn)
        #: The DSN of session connections (LISTEN, liveness locks); None: ``dsn``.
        self.listen_dsn = None if listen_dsn is None else dsn_from(listen_dsn)
        #: ``dsn`` goes through a transaction pooler: no prepared statements, no sessions.
        self.pooled = pooled
        self.prefix = check_prefix(prefix)
        self.db = Db(
            self.dsn,
            prefix=self.prefix,
            min_size=min_connection_pool_size,
            max_size=max_connection_pool_size,
            reconnect_timeout=poll_reconnect_timeout,
            connect_timeout=connect_timeout,
            # Transaction-pooling proxies (also the old reason to turn notifications off)
            # cannot keep prepared statements.
            prepare=notifications and not pooled,
            listen_dsn=self.listen_dsn,
        )
        self.min_connection_pool_size = min_connection_pool_size
        self.max_connection_pool_size = max_connection_pool_size
        self.poll_reconnect_timeout = poll_reconnect_timeout
        self.notifications = notifications
        self.log = log or default_logger()
        self.connect_timeout = connect_timeout
        self.max_result_size = max_result_size
        self.store = Store(self.prefix)
        if self.db.prepare:  # connections keep session state (no transaction pooler)
            self.db.on_connect.append(self.store.session_utc())
        #: push_many's guess that the unique keys of its next batch are new: what its last
        #: batch with keys found (chancy/push.py, FRESH_KEYS_MIN). Not job state: a hint.
        self.keys_seen_new = True
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
        #: The one dispatcher of plugin hooks (chancy.hooks), shared by workers.
        self.hooks = Hooks(self.plugins)
        self.waiters = Waiters(self.db, self.store, notifications=self.listening)
        self.db.on_forget = self.waiters.forget

    def __repr__(self) -> str:
        return f"<Chancy {where(self.dsn)} prefix={self.prefix!r}>"

    @property
    def listening(self) -> bool:
        """Whether this app opens a LISTEN session (notifications on, and a session-capable
        DSN: ``listen_dsn``, or ``dsn`` when it is not pooled). NOTIFY is sent either way."""
        return self.notifications and (self.listen_dsn is not None or not self.pooled)

    # -- pools (chancy.db) ------------------------------------------------------------------

    @property
    def pool(self) -> AsyncConnectionPool[Any]:
        """The async pool (opened by ``async with chancy`` or by the first async call)."""
        return self.db.pool

    @property
    def sync_pool(self) -> ConnectionPool[Any]:
        """The sync pool, opened on first use."""
        return self.db.sync_pool

    async def open(self) -> AsyncConnectionPool[Any]:
        """Open the async pool if needed, failing clearly when the server is unreachable."""
        return await self.db.open()

    async def close(self) -> None:
        if self.db.owned_by_another_loop():
            self.db.forget_loop()
        await self.waiters.close()
        await self.db.close()

    def sync_close(self) -> None:
        self.db.sync_close()

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

    async def notifier(self) -> Notifier:
        """The process's shared LISTEN connection, started on first use."""
        if self.pooled and self.listen_dsn is None:
            raise ConfigurationError(
                "a LISTEN session cannot go through a transaction pooler (pooled=True):"
                " pass Chancy(..., listen_dsn=<a DSN straight to PostgreSQL>)"
            )
        return await self.waiters.notifier()

    # -- migrations (chancy.migrate) ----------------------------------------------------------

    def migrators(self) -> list[Migrator]:
        """The core migration line, then each plugin's, in plugin order."""
        return migrate.migrators(self.prefix, self.plugins.values())

    async def migrate(self, *, to_version: int | None = None) -> None:
        """Bring the schema to head (or the core line to ``to_version``; 0 removes all).

        Runs in one transaction under an advisory lock, so concurrent calls apply each
        version once.
        """
        pool = await self.open()
        async with pool.connection() as conn:
            await migrate.migrate_all(conn, self.prefix, self.plugins.values(), to_version)

    def sync_migrate(self, *, to_version: int | None = None) -> None:
        """:meth:`migrate` for sync code, on the sync pool (Python migration steps need a
        sync form; see ``Migrator.migrate_sync``)."""
        with self.sync_pool.connection() as conn:
            migrate.sync_migrate_all(conn, self.prefix, self.plugins.values(), to_version)

    async def _versions(self) -> dict[str, int]:
        pool = await self.open()
        async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return await current_versions(cur, self.prefix)

    def _sync_versions(self) -> dict[str, int]:
        with self.sync_pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return sync_current_versions(cur, self.prefix)

    async def is_up_to_date(self) -> bool:
        return not migrate.out_of_date(await self._versions(), self.prefix, self.plugins.values())

    def sync_is_up_to_date(self) -> bool:
        return not migrate.out_of_date(self._sync_versions(), self.prefix, self.plugins.values())

    async def check_migrations(self) -> None:
        """Raise MigrationsNeededError when any migration line is behind."""
        behind = migrate.out_of_date(await self._versions(), self.prefix, self.plugins.values())
        if behind:
            raise migrate.migrations_needed(self.prefix, behind)

    def sync_check_migrations(self) -> None:
        """:meth:`check_migrations` for sync code."""
        behind = migrate.out_of_date(self._sync_versions(), self.prefix, self.plugins.values())
        if behind:
            raise migrate.migrations_needed(self.prefix, behind, sync=True)

    # -- push (chancy.push) ---------------------------------------------------------------

    async def push(self, job: JobLike) -> Reference:
        """Store one job and wake the workers of its queue; return its reference."""
        return (await self.db.run(push.plan(self, [as_job(job)])))[0]

    async def push_ex(self, cursor: psycopg.AsyncCursor[Any], job: JobLike) -> Reference:
        """Push inside the caller's transaction: the job exists only if it commits."""
        return (await self.db.run_ex(cursor, push.plan(self, [as_job(job)])))[0]

    def sync_push(self, job: JobLike) -> Reference:
        return self.db.run_sync(push.plan(self, [as_job(job)]))[0]

    def sync_push_ex(self, cursor: psycopg.Cursor[Any], job: JobLike) -> Reference:
        return self.db.run_ex_sync(cursor, push.plan(self, [as_job(job)]))[0]

    def push_many(
        self, jobs: Iterable[JobLike], *, batch_size: int = 1000
    ) -> AsyncIterator[list[Reference]]:
        """Push in batches, one transaction each; yield each batch's references in order.

        While a batch is written, the next one is read from ``jobs`` and encoded on the event
        loop, a few hundred jobs at a time between the write's steps, so encoding overlaps the
        database's work (a batch is checked and encoded in full before any of it is written;
        a first batch big enough for COPY is encoded as COPY sends it, and a bad job in it
        rolls the whole batch back: nothing of a bad batch is stored). Once a batch's
        statements have run, the next one is written on a second pool connection while the
        first commits; it commits only after the batch before it and only when the
        iteration asks for it, so a loop that stops early (``break``, ``aclose``) leaves
        nothing of the next batch.
        """
        if batch_size < 1:
            raise ConfigurationError("batch_size must be at least 1")
        return push.push_many(self, jobs, batch_size)

    async def push_many_ex(
        self, cursor: psycopg.AsyncCursor[Any], jobs: Iterable[JobLike], *, batch_size: int = 1000
    ) -> list[Reference]:
        """Push many inside the caller's transaction; return every reference in order."""
        return await push.push_many_ex(self, cursor, jobs, batch_size)

    def sync_push_many(
        self, jobs: Iterable[JobLike], *, batch_size: int = 1000
    ) -> Iterator[list[Reference]]:
        """Push in batches, each in its own transaction; yield each batch's references.

        A generator, as in Chancy 0.26 (and like ``push_many``): a batch is pushed when the
        iteration reaches it, so iterate to the end (``for refs in ...``, or ``list(...)``).
        """
        return push.sync_push_many(self, jobs, batch_size)

    def sync_push_many_ex(
        self, cursor: psycopg.Cursor[Any], jobs: Iterable[JobLike], *, batch_size: int = 1000
    ) -> list[Reference]:
        return push.sync_push_many_ex(self, cursor, jobs, batch_size)

    # -- read and wait (chancy.waiters) ---------------------------------------------------

    async def get_job(self, ref: Ref) -> QueuedJob | None:
        return await self.db.run(self.store.job_get(ref))

    def sync_get_job(self, ref: Ref) -> QueuedJob | None:
        return self.db.run_sync(self.store.job_get(ref))

    async def get_jobs(self, refs: Sequence[Ref]) -> list[QueuedJob]:
        return await self.db.run(self.store.job_get_many(refs)) if refs else []

    def sync_get_jobs(self, refs: Sequence[Ref]) -> list[QueuedJob]:
        return self.db.run_sync(self.store.job_get_many(refs)) if refs else []

    async def wait_for_job(
        self,
        ref: Ref,
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
        refs: Sequence[Ref],
        *,
        interval: float = 1,
        timeout: float | None = None,
        states: Iterable[str] | None = None,
    ) -> list[QueuedJob]:
        """Wait for every job in ``refs``; return those that still exist, in order."""
        return await self.waiters.wait_for_jobs(
            refs, interval=interval, timeout=timeout, states=states
        )

    def sync_wait_for_job(
        self,
        ref: Ref,
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
        refs: Sequence[Ref],
        *,
        interval: float = 1,
        timeout: float | None = None,
        states: Iterable[str] | None = None,
    ) -> list[QueuedJob]:
        """:meth:`wait_for_jobs` for sync code (polls every ``interval`` seconds)."""
        return self.waiters.sync_wait_for_jobs(
            refs, interval=interval, timeout=timeout, states=states
        )

    # -- operator actions -----------------------------------------------------------------

    def _retry(self, refs: Sequence[Ref]) -> Spec[Any]:
        return self.store.job_retry_many(refs, notify=self.notifications)

    async def retry_jobs(self, refs: Sequence[Ref]) -> RetryResult:
        """Put finished jobs back to be run again, attempts reset and errors kept."""
        return self._retry_result(*await self.db.run(self._retry(refs)))

    async def retry_jobs_ex(
        self, cursor: psycopg.AsyncCursor[Any], refs: Sequence[Ref]
    ) -> RetryResult:
        return self._retry_result(*await self.db.run_ex(cursor, self._retry(refs)))

    def sync_retry_jobs(self, refs: Sequence[Ref]) -> RetryResult:
        return self._retry_result(*self.db.run_sync(self._retry(refs)))

    def sync_retry_jobs_ex(self, cursor: psycopg.Cursor[Any], refs: Sequence[Ref]) -> RetryResult:
        return self._retry_result(*self.db.run_ex_sync(cursor, self._retry(refs)))

    def _retry_result(self, retried: list[uuid.UUID], skipped: list[uuid.UUID]) -> RetryResult:
        if skipped:
            self.log.warning(
                "not retrying %d job(s) whose unique key is live in another job: %s",
                len(skipped),
                ", ".join(map(str, skipped)),
            )
        return RetryResult([Reference(i) for i in retried], [Reference(i) for i in skipped])

    def _purge(self, refs: Sequence[Ref]) -> Spec[list[uuid.UUID]]:
        return self.store.job_purge_many(refs, notify=self.notifications)

    async def purge_jobs(self, refs: Sequence[Ref]) -> int:
        """Delete jobs whatever their state; return how many were deleted."""
        purged: list[uuid.UUID] = await self.db.run(self._purge(refs))
        return len(purged)

    async def purge_jobs_ex(self, cursor: psycopg.AsyncCursor[Any], refs: Sequence[Ref]) -> int:
        purged: list[uuid.UUID] = await self.db.run_ex(cursor, self._purge(refs))
        return len(purged)

    def sync_purge_jobs(self, refs: Sequence[Ref]) -> int:
        return len(self.db.run_sync(self._purge(refs)))

    def sync_purge_jobs_ex(self, cursor: psycopg.Cursor[Any], refs: Sequence[Ref]) -> int:
        return len(self.db.run_ex_sync(cursor, self._purge(refs)))

    # -- notifications --------------------------------------------------------------------

    async def notify(
        self, cursor: psycopg.AsyncCursor[Any], event: str, payload: dict[str, Any]
    ) -> None:
        """Send ``{"t": event, **payload}`` on the installation's channel (at commit).

        Nothing is sent when the app was made with ``notifications=False``.
        """
        if self.notifications:
            await self.db.run_ex(cursor, self.store.notify(event, payload))

    def sync_notify(self, cursor: psycopg.Cursor[Any], event: str, payload: dict[str, Any]) -> None:
        if self.notifications:
            self.db.run_ex_sync(cursor, self.store.notify(event, payload))

    async def notify_many(
        self, cursor: psycopg.AsyncCursor[Any], events: Iterable[tuple[str, dict[str, Any]]]
    ) -> None:
        """Send several events in one statement (nothing with ``notifications=False``)."""
        if self.notifications:
            await self.db.run_ex(cursor, self.store.notify_many(events))

    def sync_notify_many(
        self, cursor: psycopg.Cursor[Any], events: Iterable[tuple[str, dict[str, Any]]]
    ) -> None:
        if self.notifications:
            self.db.run_ex_sync(cursor, self.store.notify_many(events))


class RetryResult(list[Reference]):
    """The references that were retried; ``skipped`` lists those left alone.

    A job is skipped when its unique key is live again in another job.
    """

    def __init__(self, retried: list[Reference], skipped: list[Reference]) -> None:
        super().__init__(retried)
        self.skipped = skipped


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
