"""The worker: composition root of the runtime services, and the process's lifecycle.

A worker builds a ``Runtime`` (chancy.runtime.context) and its services: a heartbeat, the
set of served queues (one producer and one executor per queue), one completer for all
outcomes, and each plugin's services (leader-only ones only while it leads); it shares the
process's LISTEN connection. It owns no step of a job's route (see ``Runtime``); it starts
and stops things. It stops gracefully on SIGTERM or SIGINT: it stops claiming, waits for
running jobs up to ``shutdown_timeout``, writes every outcome, and gives unfinished jobs back
to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import re
import secrets
import signal
import socket
import uuid
from typing import Any

from chancy import events
from chancy import progress as progress_sinks
from chancy.app import Chancy
from chancy.errors import ConfigurationError
from chancy.executors.base import Executor
from chancy.hub import Hub
from chancy.job import QueuedJob
from chancy.outcome import Outcome
from chancy.plugin import Plugin, PluginScope
from chancy.queue import Queue
from chancy.runtime import collector
from chancy.runtime.compat import TaskManager, WorkerCompat
from chancy.runtime.completer import Completer
from chancy.runtime.context import Runtime
from chancy.runtime.heartbeat import Heartbeat
from chancy.runtime.producer import fetch_claim
from chancy.runtime.progress import ProgressWriter
from chancy.runtime.queues import QueueSet
from chancy.runtime.service import supervise
from chancy.store import Spec
from chancy.store.store import Claim

log = logging.getLogger("chancy.worker")


class Worker(WorkerCompat):
    """A long-running process that claims and runs jobs; ``async with Worker(chancy):``.

    Beyond Chancy 0.26's options: ``completer_batch_size`` and ``completer_interval`` (the
    outcomes written per statement, and how often), ``progress_interval`` (how often the
    jobs' progress reports are written) and ``tune_gc`` (True: tune Python's garbage
    collector for the process while workers run, see ``chancy.runtime.collector``).
    """

    def __init__(
        self,
        chancy: Chancy,
        *,
        worker_id: str | None = None,
        heartbeat_poll_interval: float = 30,
        heartbeat_timeout: float = 90,
        queue_change_poll_interval: float = 10,
        shutdown_timeout: float = 30,
        tags: set[str] | None = None,
        register_signal_handlers: bool = True,
        backoff_initial: float = 0.05,
        backoff_max: float = 5,
        backoff_max_retries: int = 5,
        completer_batch_size: int = 1000,
        completer_interval: float = 0.005,
        progress_interval: float = 0.5,
        tune_gc: bool = True,
    ) -> None:
        if heartbeat_timeout <= heartbeat_poll_interval:
            raise ConfigurationError(
                f"heartbeat_timeout ({heartbeat_timeout}s) must be longer than"
                f" heartbeat_poll_interval ({heartbeat_poll_interval}s), or every worker would"
                " look dead between two heartbeats; a timeout of 3 intervals is typical"
            )
        if (
            isinstance(progress_interval, bool)
            or not isinstance(progress_interval, int | float)
            or not progress_interval >= 0
        ):
            raise ConfigurationError(
                f"progress_interval must be a number of seconds >= 0, got {progress_interval!r};"
                " 0.5 writes the jobs' progress reports at most twice a second"
            )
        self.chancy = chancy
        self.worker_id = worker_id or str(uuid.uuid4())
        self.heartbeat_poll_interval = heartbeat_poll_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.queue_change_poll_interval = queue_change_poll_interval
        self.shutdown_timeout = shutdown_timeout
        self.tags = set(tags or ())
        self.register_signal_handlers = register_signal_handlers
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.backoff_max_retries = backoff_max_retries
        #: Tune Python's garbage collector while this worker runs (chancy.runtime.collector).
        self.tune_gc = tune_gc
        self._gc_counted = False

        self.hub = Hub()
        self.is_leader = asyncio.Event()
        self.shutdown_event = asyncio.Event()
        self.fatal_error: BaseException | None = None
        #: The leadership term this worker holds, set by the leadership plugin while it
        #: leads; leader-only writes carry it so they apply only while the lease is current.
        self.leader_term: int | None = None

        self.runtime = runtime = Runtime(self, chancy, self.hub)
        self.heartbeat = runtime.heartbeat = Heartbeat(
            runtime, interval=heartbeat_poll_interval, timeout=heartbeat_timeout
        )
        self.completer = runtime.completer = Completer(
            runtime, batch_size=completer_batch_size, interval=completer_interval
        )
        #: Writes the jobs' progress reports, at most once per ``progress_interval`` seconds.
        self.progress = runtime.progress = ProgressWriter(runtime, interval=progress_interval)
        self._supervision: dict[str, Any] = {
            "backoff_initial": backoff_initial,
            "backoff_max": backoff_max,
            "max_crashes": backoff_max_retries,
        }
        self.served = runtime.queues = QueueSet(
            runtime,
            serves=self.serves,
            poll_interval=queue_change_poll_interval,
            on_fatal=self._on_fatal,
            supervision=self._supervision,
        )
        #: Chancy 0.26's task manager: ``worker.manager.add(name, coroutine)`` runs a task
        #: supervised like the worker's own services, cancelled when the worker stops.
        self.manager = TaskManager(self)
        self._tasks: list[asyncio.Task[None]] = []
        self._leader_tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._stopping = False
        self._warmup: Spec[None] | None = None
        self._stopped = asyncio.Event()
        self._force = asyncio.Event()
        self._unsubscribe: Any = None
        self._notifier: Any = None
        self._liveness_key: int | None = None
        self._signals: list[int] = []

    def __repr__(self) -> str:
        return f"<Worker {self.worker_id}>"

    # -- identity and what it serves ----------------------------------------------------

    def worker_tags(self) -> set[str]:
        """Tags matched against each queue's tag regexes to choose what this worker serves."""
        return {
            "*",
            f"hostname={socket.gethostname()}",
            f"worker_id={self.worker_id}",
            f"python={platform.python_version()}",
            f"os={platform.system()}",
            f"arch={platform.machine()}",
            *self.tags,
        }

    def serves(self, queue: Queue) -> bool:
        tags = self.worker_tags()
        return any(re.match(pattern, tag) for pattern in queue.tags for tag in tags)

    @property
    def queues(self) -> dict[str, Queue]:
        """The queues served now, by name."""
        return self.served.queues

    @property
    def executors(self) -> dict[str, Executor]:
        """The executor of each served queue, by queue name."""
        return self.served.executors

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _check_plugins(self) -> None:
        plugins = self.chancy.plugins
        for plugin in plugins.values():
            missing = [d for d in plugin.get_dependencies() if d not in plugins]
            if missing:
                raise ConfigurationError(
                    f"plugin {plugin.get_identifier()} needs {missing}, which are not installed;"
                    " add them to Chancy(plugins=[...])"
                )
        has_leadership = any(p.provides_leadership for p in plugins.values())
        has_recovery = any(p.provides_recovery for p in plugins.values())
        leader_only = [p.get_identifier() for p in self._leader_plugins()]
        if leader_only and not has_leadership:
            # Chancy 0.26 runs them anyway; so does chancy (their writes are guarded in SQL
            # so that several such workers still fire each cron slot and advance each
            # workflow step once), with a warning.
            log.warning(
                "plugins %s run on the leader only, but no leadership plugin is installed:"
                " they run on every worker. Add chancy.plugins.leadership.Leadership() to run"
                " them on one worker at a time.",
                leader_only,
            )
        if not has_leadership or not has_recovery:
            log.error(
                "no %s plugin is installed: jobs of a crashed worker will not be recovered, so"
                " at-least-once delivery does not hold. Add Leadership() and Recovery().",
                "leadership" if not has_leadership else "recovery",
            )

    def _leader_plugins(self) -> list[Plugin]:
        return [
            p
            for p in self.chancy.plugins.values()
            if p.get_scope() is PluginScope.LEADER and p.has_service()
        ]

    async def start(self) -> None:
        """Connect, check the schema, and start every service; returns once running."""
        if self._started:
            return
        chancy = self.chancy
        await chancy.open()
        await chancy.check_migrations()
        self._check_plugins()
        # Each pool connection loads the claim function before its first claim, not during it.
        self._warmup = chancy.store.claim_warmup()
        chancy.db.warmups.append(self._warmup)
        await chancy.db.warm()
        # As in Chancy 0.26: before any queue is served or plugin runs, so handlers a plugin
        # registers here see every event (worker.queue.started for each queue, the first
        # claims) and resources it prepares are ready for the others.
        await self.runtime.hooks.worker_started(self)
        self._started = True
        loop = asyncio.get_running_loop()
        if chancy.listening:
            self._notifier = await chancy.notifier()
            self._unsubscribe = self._notifier.subscribe(self.runtime.route)
            await self._hold_liveness_lock()
        elif chancy.notifications:
            log.warning(
                "worker %s: the DSN is pooled (pooled=True) and no listen_dsn is given, so"
                " there is no LISTEN session: queues are polled (each queue's"
                " polling_interval) instead of woken by NOTIFY, and a crashed worker's jobs"
                " are recovered once its heartbeat expires (%ss). To fix, pass"
                " Chancy(..., listen_dsn=<a DSN straight to PostgreSQL, not the pooler>).",
                self.worker_id,
                self.heartbeat_timeout,
            )
        else:
            log.info(
                "session liveness is off (notifications=False, no LISTEN session): a crashed"
                " worker's jobs are recovered once its heartbeat expires (%ss)",
                self.heartbeat_timeout,
            )
        await chancy.declare(Queue("default"))
        await self.heartbeat.beat()
        self.heartbeat.alive.set()

        self._spawn("heartbeat", self.heartbeat.run)
        self._spawn("completer", self.completer.run)
        self._spawn("progress", self.progress.run)
        progress_sinks.register(self.progress)
        self._spawn("queues", self.served.run)
        if self.tune_gc:
            self._spawn("collector", collector.sweep)
        await self.served.sync()

        has_leadership = any(p.provides_leadership for p in chancy.plugins.values())
        self.hub.on(events.LEADERSHIP_GAINED, self._on_leadership_gained)
        self.hub.on(events.LEADERSHIP_LOST, self._on_leadership_lost)
        for plugin in chancy.plugins.values():
            if not plugin.has_service():
                continue
            if plugin.get_scope() is PluginScope.WORKER or not has_leadership:
                self._spawn_plugin(plugin, self._tasks)

        if self.register_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, self._on_signal, sig)
                    self._signals.append(sig)
        if self.tune_gc:
            collector.worker_started()
            self._gc_counted = True
        log.info("worker %s started", self.worker_id)
        self.hub.emit(events.WORKER_STARTED, {"worker": self, "worker_id": self.worker_id})

    async def _hold_liveness_lock(self) -> None:
        """Hold this worker's liveness lock on the LISTEN session (see chancy.runtime)."""
        key = secrets.randbits(63)
        self._liveness_key = key

        def locked(again: bool) -> None:
            self.runtime.liveness_key = key
            if again:
                task = asyncio.get_running_loop().create_task(self.runtime.liveness_restored())
                self.manager.tasks.append(task)

        if not await self._notifier.hold(key, locked, timeout=self.chancy.connect_timeout):
            log.warning(
                "worker %s could not take its liveness lock yet; until it does, its jobs are"
                " recovered only once its heartbeat expires",
                self.worker_id,
            )

    def _spawn(self, name: str, body: Any, into: list[asyncio.Task[None]] | None = None) -> None:
        task = asyncio.create_task(
            supervise(name, body, on_fatal=self._on_fatal, **self._supervision),
            name=f"chancy-{name}",
        )
        (self._tasks if into is None else into).append(task)

    def _spawn_plugin(self, plugin: Plugin, into: list[asyncio.Task[None]]) -> None:
        async def body() -> None:
            await plugin.run(self, self.chancy)

        self._spawn(f"plugin {plugin.get_identifier()}", body, into)

    def _on_leadership_gained(self, event: Any) -> None:
        if self._stopping or self._leader_tasks:
            return
        for plugin in self._leader_plugins():
            self._spawn_plugin(plugin, self._leader_tasks)

    def _on_leadership_lost(self, event: Any) -> None:
        tasks, self._leader_tasks = self._leader_tasks, []
        for task in tasks:
            task.cancel()

    def _on_fatal(self, name: str, exc: BaseException) -> None:
        self.fatal_error = exc
        if not self._stopping:
            asyncio.get_running_loop().create_task(self.stop())

    def _on_signal(self, sig: int) -> None:
        asyncio.get_running_loop().create_task(self.on_signal(sig))

    async def on_signal(self, signum: int) -> None:
        """SIGTERM or SIGINT: stop gracefully; a second one stops at once (Chancy 0.26's)."""
        if self._stopping:
            log.warning("second signal %s: stopping now", signal.Signals(signum).name)
            self._force.set()
            return
        log.info("signal %s: stopping gracefully", signal.Signals(signum).name)
        await self.stop()

    async def wait_for_shutdown(self) -> None:
        """Wait until the worker has stopped."""
        await self._stopped.wait()

    async def stop(self, *, timeout: float | None = None) -> bool:
        """Stop gracefully; True when every running job finished within the timeout."""
        ledger = self.runtime.ledger
        if not self._started:
            return True
        if self._stopping:
            if timeout == 0:
                self._force.set()
            await self._stopped.wait()
            return not len(ledger)
        self._stopping = self.runtime.stopping = True
        self.shutdown_event.set()
        timeout = self.shutdown_timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        # Keep a second signal meaning "now" while we wait.
        if self.register_signal_handlers:
            for sig in self._signals:
                with contextlib.suppress(Exception):
                    loop.add_signal_handler(sig, self._force.set)
        try:
            # 1. Stop claiming; a claim in flight finishes so no claimed job is lost track of.
            await self.served.stop_claiming()
            # 2. Wait for running jobs.
            if len(ledger) and timeout > 0:
                waiter = asyncio.ensure_future(ledger.all_done.wait())
                forced = asyncio.ensure_future(self._force.wait())
                await asyncio.wait(
                    [waiter, forced], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                waiter.cancel()
                forced.cancel()
            clean = not len(ledger)
            # 3. Write every outcome we have, then give unfinished jobs back (their last
            # progress first: giving a job back ends its claim, which fences progress out).
            await self._flush_quietly()
            if len(ledger):
                await self._flush_progress()
                await self._release_running()
            await self.served.stop_executors()
            await self._flush_quietly()
            # 4. Stop services and plugins, then tell the plugins. As in Chancy 0.26, their
            # background tasks have stopped when on_worker_stopped runs, so what a plugin
            # saves there (the Metrics plugin's last flush) is not raced by its own loop.
            leader_tasks = list(self._leader_tasks)
            self._on_leadership_lost(None)
            tasks = [*leader_tasks, *self._tasks, *self.served.all_tasks(), *self.manager.tasks]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.runtime.hooks.worker_stopped(self)
            with contextlib.suppress(Exception):
                await self.chancy.db.run(self.chancy.store.worker_delete(self.worker_id))
            if self._unsubscribe is not None:
                self._unsubscribe()
            if self._notifier is not None:
                if self._liveness_key is not None:
                    self._notifier.release_lock(self._liveness_key)
                await self._notifier.release()
            name = events.WORKER_STOPPED if clean else events.WORKER_SHUTDOWN_TIMEOUT
            self.hub.emit(name, {"worker": self, "worker_id": self.worker_id, "clean": clean})
            if not clean:
                # Listeners of worker.stopped hear of every stop (chancy's own contract).
                self.hub.emit(
                    events.WORKER_STOPPED,
                    {"worker": self, "worker_id": self.worker_id, "clean": clean},
                )
            log.info("worker %s stopped (%s)", self.worker_id, "clean" if clean else "timed out")
            return clean
        finally:
            if self._gc_counted:
                self._gc_counted = False
                collector.worker_stopped()
            progress_sinks.unregister(self.progress)
            if self._warmup is not None:
                with contextlib.suppress(ValueError):
                    self.chancy.db.warmups.remove(self._warmup)
            for sig in self._signals:
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
            self._stopped.set()

    async def _flush_quietly(self) -> None:
        try:
            await asyncio.wait_for(self.completer.flush(), 30)
        except Exception:
            log.exception("could not write %d outcome(s) at shutdown", len(self.completer))

    async def _flush_progress(self) -> None:
        try:
            await asyncio.wait_for(self.progress.flush(), 10)
        except Exception:
            log.exception("could not write the progress of running jobs at shutdown")

    async def _release_running(self) -> None:
        claims = self.runtime.ledger.claims()
        try:
            released = await self.runtime.write_joined(
                self.chancy.store.job_release_many(claims), len(claims)
            )
            log.warning("gave %d unfinished job(s) back to their queues at shutdown", len(released))
        except Exception:
            log.exception(
                "could not give %d running job(s) back; recovery will return them", len(claims)
            )

    async def flush(self) -> None:
        """Write every buffered outcome now."""
        await self.completer.flush()

    # -- for plugins, executors and tests (Chancy 0.26's members among them) -------------

    async def fetch_jobs(self, queue: Queue, conn: Any, *, up_to: int = 1) -> list[QueuedJob]:
        """Claim up to ``up_to`` jobs of ``queue`` on ``conn`` for this worker (one statement,
        or a short transaction within the limits of a queue that has them)."""
        return (await fetch_claim(self.chancy, self.worker_id, queue, conn, up_to=up_to)).jobs

    async def fetch_claim(self, queue: Queue, conn: Any, *, up_to: int = 1) -> Claim:
        """Like ``fetch_jobs``, and also what held the rest back on a queue with limits."""
        return await fetch_claim(self.chancy, self.worker_id, queue, conn, up_to=up_to)

    async def queue_update(self, update: Outcome | QueuedJob) -> bool:
        """Hand a run's result to be written (Chancy 0.26's executors call this): an
        ``Outcome``, or a ``QueuedJob`` in its next state. False once the worker stopped."""
        if self._stopped.is_set():
            return False
        self.runtime.accept(update if isinstance(update, Outcome) else Outcome(update))
        return True

    def on_liveness_lost(self) -> None:
        """Our heartbeat lease lapsed (see ``Runtime.liveness_lost``)."""
        self.runtime.liveness_lost()

    def can_claim(self) -> bool:
        return self.runtime.can_claim()
