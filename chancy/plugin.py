"""The plugin contract: services, job hooks, migrations and cleanup, all optional.

Nearly everything beyond basic queue handling is a plugin. A plugin contributes any of:
long-running services (every worker, or the leader only: the runtime starts and stops them),
job and worker hooks, its own migration line, cleanup for the pruner, and dashboard routes.
Plugins use the app (``chancy``), its store and the worker's hub, never worker internals.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, LiteralString

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.job import Job, QueuedJob
    from chancy.migrate import Migrator
    from chancy.worker import Worker


class PluginScope(enum.Enum):
    """Where a plugin's ``run`` service runs: on every worker, or only on the leader."""

    WORKER = "worker"
    LEADER = "leader"


class Plugin:
    """Base class for plugins; override only what the plugin needs."""

    #: Whether the last ``sleep`` was ended early by ``wake_up``.
    woken: bool = False
    #: Declared by the plugin that elects the leader (at most one per installation).
    provides_leadership: bool = False
    #: Whether the leadership provider's writes carry the lease fence (False: every worker
    #: leads without a lease, as ``ImmediateLeadership``).
    fence_leader_writes: bool = True
    #: Declared by the plugin that recovers the jobs of dead workers.
    provides_recovery: bool = False
    #: Declared by a plugin that calls every plugin's ``cleanup`` (the pruner); without one,
    #: plugins with tables to trim do it themselves.
    calls_cleanup: bool = False

    def __init__(self) -> None:
        self._wake: asyncio.Event | None = None

    @property
    def wakeup_signal(self) -> asyncio.Event:
        """The event that ends a ``sleep`` early (Chancy 0.26's attribute); see ``wake_up``."""
        return self._event()

    # -- identity and wiring ------------------------------------------------------------

    @classmethod
    def get_identifier(cls) -> str:
        """A unique name; the app keys plugins by it (two with one identifier is an error)."""
        return f"{cls.__module__}.{cls.__qualname__}"

    @classmethod
    def get_scope(cls) -> PluginScope:
        return PluginScope.WORKER

    def get_dependencies(self) -> list[str]:
        """Identifiers of plugins this one needs; a missing one is an error at start."""
        return []

    def migrate_key(self) -> str | None:
        """The name of this plugin's migration line, or None when it has no tables."""
        return None

    def migrate_package(self) -> str | None:
        """The package holding this plugin's migration files."""
        return None

    def api_plugin(self) -> str | None:
        """Import path of this plugin's dashboard extension, if any."""
        return None

    def get_tables(self) -> list[str]:
        """Tables this plugin owns (without the prefix), as Chancy 0.26 listed them."""
        return []

    def migrator(self, chancy: Chancy) -> Migrator | None:
        """The migrator of this plugin's migration line, or None when it has none."""
        key, package = self.migrate_key(), self.migrate_package()
        if key is None or package is None:
            return None
        from chancy.migrate import Migrator

        return Migrator(key, package, prefix=chancy.prefix)

    async def migrate(self, chancy: Chancy, *, to_version: int | None = None) -> None:
        """Migrate this plugin's line alone, up or down to ``to_version`` (head by default)."""
        migrator = self.migrator(chancy)
        if migrator is None:
            return
        pool = await chancy.open()
        async with pool.connection() as conn:
            await migrator.migrate(conn, to_version=to_version)

    # -- the service --------------------------------------------------------------------

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        """The plugin's long-running service; plugins without one leave this alone.

        With scope LEADER it runs only while this worker leads and is cancelled when
        leadership is lost.
        """
        raise NotImplementedError

    def has_service(self) -> bool:
        return type(self).run is not Plugin.run

    async def cleanup(self, chancy: Chancy) -> int | None:
        """Remove this plugin's stale rows; called by the pruner. Return rows removed."""
        raise NotImplementedError

    def prune_guard(self, prefix: str) -> LiteralString | None:
        """A SQL predicate over a finished job ``j`` that must hold for the pruner to delete
        it (this plugin still needs the others), or None. It comes from the plugin's own
        ``.sql`` file; the pruner ANDs the guards of all installed plugins into its delete."""
        return None

    # -- hooks --------------------------------------------------------------------------

    def on_push(self, jobs: list[Job], *, chancy: Chancy) -> list[Job]:
        """Called with every batch about to be pushed (any push form), before it is encoded;
        return the jobs to push (e.g. with tracing context added to their ``meta``). Runs
        in the pusher's thread, so context variables of the caller are visible."""
        raise NotImplementedError

    async def on_job_starting(self, *, job: QueuedJob, worker: Worker) -> QueuedJob:
        raise NotImplementedError

    async def on_jobs_starting(self, *, jobs: list[QueuedJob], worker: Worker) -> list[QueuedJob]:
        """A claimed batch about to run, at once: return the jobs to run, in the same order.

        A plugin that needs the database for its jobs implements this form, so a batch costs
        one statement instead of one per job; when it does, ``on_job_starting`` is not called
        for the batch's jobs.
        """
        raise NotImplementedError

    async def on_job_completed(
        self, *, worker: Worker, job: QueuedJob, exc: BaseException | None, result: Any
    ) -> QueuedJob:
        raise NotImplementedError

    async def on_job_updated(self, *, worker: Worker, job: QueuedJob) -> None:
        raise NotImplementedError

    async def on_worker_started(self, worker: Worker) -> None:
        raise NotImplementedError

    async def on_worker_stopped(self, worker: Worker) -> None:
        raise NotImplementedError

    async def on_jobs_updated_in_transaction(
        self, *, worker: Worker, cursor: Any, jobs: list[QueuedJob]
    ) -> None:
        """Called inside the completer's transaction, after a batch of outcomes is written."""
        raise NotImplementedError

    # -- helpers for services -----------------------------------------------------------

    def _event(self) -> asyncio.Event:
        if self._wake is None:
            self._wake = asyncio.Event()
        return self._wake

    async def sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, or until ``wake_up``; always return True.

        True either way, as in Chancy 0.26, so a service can loop ``while await
        self.sleep(n):``. ``woken`` tells whether the last sleep ended early.
        """
        event = self._event()
        try:
            await asyncio.wait_for(event.wait(), seconds)
            self.woken = True
        except TimeoutError:
            self.woken = False
        finally:
            event.clear()
        return True

    def wake_up(self) -> None:
        """End the current ``sleep`` at once."""
        self._event().set()

    @staticmethod
    async def wait_for_leader(worker: Worker) -> None:
        """Wait until ``worker`` is the leader."""
        await worker.is_leader.wait()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.get_identifier()}>"


_OVERRIDES: dict[tuple[type, str], bool] = {}


def _overrides(cls: type, hook: str) -> bool:
    key = (cls, hook)
    found = _OVERRIDES.get(key)
    if found is None:
        found = _OVERRIDES[key] = getattr(cls, hook) is not getattr(Plugin, hook)
    return found


def plugins_with(plugins: Iterable[Any], hook: str) -> list[Any]:
    """The plugins whose class overrides ``hook`` (so hot paths skip the rest)."""
    found = []
    for plugin in plugins:
        if not isinstance(plugin, Plugin) or _overrides(type(plugin), hook):
            found.append(plugin)
    return found
