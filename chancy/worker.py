"""The worker: composition root of the runtime services, and the process's lifecycle.

A worker runs a heartbeat, shares the process's LISTEN connection, runs one producer per
queue it serves (each with the executor its queue names), one completer for all outcomes,
and each plugin's services (leader-only ones only while it leads). It stops gracefully on
SIGTERM or SIGINT: it stops claiming, waits for running jobs up to ``shutdown_timeout``,
writes every outcome, and gives unfinished jobs back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import platform
import re
import signal
import socket
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from psycopg.rows import dict_row

from chancy.app import Chancy
from chancy.errors import ConfigurationError
from chancy.executors.base import Executor, Outcome
from chancy.hub import Hub
from chancy.job import QueuedJob, Reference
from chancy.plugin import Plugin, PluginScope, plugins_with
from chancy.queue import Queue
from chancy.runtime.completer import Completer
from chancy.runtime.heartbeat import Heartbeat
from chancy.runtime.notifier import CONNECTED
from chancy.runtime.producer import Producer
from chancy.runtime.service import supervise
from chancy.store import run
from chancy.store.store import Claim
from chancy.utils import import_string

log = logging.getLogger("chancy.worker")


class Worker:
    """A long-running process that claims and runs jobs; ``async with Worker(chancy):``."""

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
    ) -> None:
        if heartbeat_timeout <= heartbeat_poll_interval:
            raise ConfigurationError(
                f"heartbeat_timeout ({heartbeat_timeout}s) must be longer than"
                f" heartbeat_poll_interval ({heartbeat_poll_interval}s), or every worker would"
                " look dead between two heartbeats; a timeout of 3 intervals is typical"
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

        self.hub = Hub()
        self.is_leader = asyncio.Event()
        self.shutdown_event = asyncio.Event()
        self.executors: dict[str, Executor] = {}
        self.queues: dict[str, Queue] = {}
        self.fatal_error: BaseException | None = None
        #: The leadership term this worker holds, set by the leadership plugin while it
        #: leads; leader-only writes carry it so they apply only while the lease is current.
        self.leader_term: int | None = None

        self.heartbeat = Heartbeat(
            self, interval=heartbeat_poll_interval, timeout=heartbeat_timeout
        )
        self.completer = Completer(
            self,
            batch_size=completer_batch_size,
            interval=completer_interval,
            on_written=self._on_outcomes_written,
        )
        self._producers: dict[str, Producer] = {}
        self._producer_tasks: dict[str, asyncio.Task[None]] = {}
        self._running: dict[uuid.UUID, QueuedJob] = {}
        #: Jobs interrupted because our heartbeat lease lapsed: their runs are given back
        #: (pending, no attempt used), not failed; see on_liveness_lost.
        self._abandoned: set[uuid.UUID] = set()
        self._all_done = asyncio.Event()
        self._all_done.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._leader_tasks: list[asyncio.Task[None]] = []
        self._queues_changed = asyncio.Event()
        self._started = False
        self._stopping = False
        self._stopped = asyncio.Event()
        self._force = asyncio.Event()
        self._unsubscribe: Any = None
        self._notifier: Any = None
        self._signals: list[int] = []
        self._retiring: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"<Worker {self.worker_id}>"

    # -- identity -----------------------------------------------------------------------

    def worker_tags(self) -> set[str]:
        """Tags matched against each queue's tag regexes to choose what this worker serves."""
        return {
            "*",
            f"hostname={socket.gethostname()}",
            f"worker_id={self.worker_id}",
            f"python={platform.python_version()}",
            f"os={sys.platform}",
            f"arch={platform.machine()}",
            *self.tags,
        }

    def serves(self, queue: Queue) -> bool:
        tags = self.worker_tags()
        return any(re.match(pattern, tag) for pattern in queue.tags for tag in tags)

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
        has_leadership = any(getattr(p, "provides_leadership", False) for p in plugins.values())
        has_recovery = any(getattr(p, "provides_recovery", False) for p in plugins.values())
        leader_only = [
            p.get_identifier()
            for p in plugins.values()
            if p.get_scope() is PluginScope.LEADER and p.has_service()
        ]
        if leader_only and not has_leadership:
            raise ConfigurationError(
                f"plugins {leader_only} run on the leader only, but no leadership plugin is"
                " installed; add chancy.plugins.leadership.Leadership()"
            )
        if not has_leadership or not has_recovery:
            log.error(
                "no %s plugin is installed: jobs of a crashed worker will not be recovered, so"
                " at-least-once delivery does not hold. Add Leadership() and Recovery().",
                "leadership" if not has_leadership else "recovery",
            )

    async def start(self) -> None:
        """Connect, check the schema, and start every service; returns once running."""
        if self._started:
            return
        chancy = self.chancy
        await chancy.open()
        await chancy.check_migrations()
        self._check_plugins()
        self._started = True
        loop = asyncio.get_running_loop()
        if chancy.notifications:
            self._notifier = await chancy.notifier()
            self._unsubscribe = self._notifier.subscribe(self._on_notification)
        await chancy.declare(Queue("default"))
        await self.heartbeat.beat()
        self.heartbeat.alive.set()

        self._spawn("heartbeat", self.heartbeat.run)
        self._spawn("completer", self.completer.run)
        self._spawn("queues", self._manage_queues)
        await self._sync_queues()

        for plugin in plugins_with(chancy.plugins.values(), "on_worker_started"):
            with contextlib.suppress(NotImplementedError):
                await plugin.on_worker_started(self)
        self.hub.on("leadership.gained", self._on_leadership_gained)
        self.hub.on("leadership.lost", self._on_leadership_lost)
        for plugin in chancy.plugins.values():
            if plugin.has_service() and plugin.get_scope() is PluginScope.WORKER:
                self._spawn_plugin(plugin, self._tasks)

        if self.register_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, self._on_signal, sig)
                    self._signals.append(sig)
        log.info("worker %s started", self.worker_id)
        self.hub.emit("worker.started", {"worker_id": self.worker_id})

    def _spawn(self, name: str, body: Any, into: list[asyncio.Task[None]] | None = None) -> None:
        task = asyncio.create_task(
            supervise(
                name,
                body,
                on_fatal=self._on_fatal,
                backoff_initial=self.backoff_initial,
                backoff_max=self.backoff_max,
                max_crashes=self.backoff_max_retries,
            ),
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
        for plugin in self.chancy.plugins.values():
            if plugin.has_service() and plugin.get_scope() is PluginScope.LEADER:
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
        if self._stopping:
            log.warning("second signal %s: stopping now", signal.Signals(sig).name)
            self._force.set()
            return
        log.info("signal %s: stopping gracefully", signal.Signals(sig).name)
        asyncio.get_running_loop().create_task(self.stop())

    async def wait_for_shutdown(self) -> None:
        """Wait until the worker has stopped."""
        await self._stopped.wait()

    async def stop(self, *, timeout: float | None = None) -> bool:
        """Stop gracefully; True when every running job finished within the timeout."""
        if not self._started:
            return True
        if self._stopping:
            if timeout == 0:
                self._force.set()
            await self._stopped.wait()
            return not self._running
        self._stopping = True
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
            for producer in self._producers.values():
                producer.drain()
            if self._producer_tasks:
                await asyncio.wait(list(self._producer_tasks.values()), timeout=10)
            # 2. Wait for running jobs.
            if self._running and timeout > 0:
                waiter = asyncio.ensure_future(self._all_done.wait())
                forced = asyncio.ensure_future(self._force.wait())
                await asyncio.wait(
                    [waiter, forced], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                waiter.cancel()
                forced.cancel()
            clean = not self._running
            # 3. Write every outcome we have, then give unfinished jobs back.
            await self._flush_quietly()
            if self._running:
                await self._release_running()
            for executor in list(self.executors.values()):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(executor.stop(), 10)
            await self._flush_quietly()
            # 4. Stop services and plugins.
            self._on_leadership_lost(None)
            for plugin in plugins_with(self.chancy.plugins.values(), "on_worker_stopped"):
                with contextlib.suppress(NotImplementedError, Exception):
                    await plugin.on_worker_stopped(self)
            tasks = [*self._tasks, *self._producer_tasks.values(), *self._retiring]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.chancy._run(self.chancy.store.worker_delete(self.worker_id))
            if self._unsubscribe is not None:
                self._unsubscribe()
            if self._notifier is not None:
                await self._notifier.release()
            self.hub.emit("worker.stopped", {"worker_id": self.worker_id, "clean": clean})
            log.info("worker %s stopped (%s)", self.worker_id, "clean" if clean else "timed out")
            return clean
        finally:
            for sig in self._signals:
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
            self._stopped.set()

    async def _flush_quietly(self) -> None:
        try:
            await asyncio.wait_for(self.completer.flush(), 30)
        except Exception:
            log.exception("could not write %d outcome(s) at shutdown", len(self.completer))

    async def _release_running(self) -> None:
        claims = [(job.id, job.claim_id) for job in self._running.values()]
        try:
            released = await self.chancy._run(self.chancy.store.job_release_many(claims))
            log.warning("gave %d unfinished job(s) back to their queues at shutdown", len(released))
        except Exception:
            log.exception(
                "could not give %d running job(s) back; recovery will return them", len(claims)
            )

    async def flush(self) -> None:
        """Write every buffered outcome now."""
        await self.completer.flush()

    # -- notifications ------------------------------------------------------------------

    def _on_notification(self, payload: dict[str, Any]) -> None:
        event = payload.get("t")
        if not isinstance(event, str):
            return
        if event == "queue.pushed":
            producer = self._producers.get(str(payload.get("q")))
            if producer is not None:
                producer.wake()
        elif event in ("queue.declared", "queue.paused", "queue.resumed"):
            self._queues_changed.set()
        elif event == "job.cancelled":
            self._cancel_local(payload.get("j"))
        elif event == CONNECTED:
            # Pushes may have been missed while the connection was down.
            for producer in self._producers.values():
                producer.wake()
        self.hub.emit(event, payload)

    def _cancel_local(self, raw_id: Any) -> None:
        try:
            job_id = uuid.UUID(str(raw_id))
        except ValueError:
            return
        job = self._running.get(job_id)
        if job is None:
            return
        executor = self.executors.get(job.queue)
        if executor is not None:
            log.info("interrupting cancelled job %s", job_id)
            asyncio.get_running_loop().create_task(executor.cancel(Reference(job_id)))

    def on_liveness_lost(self) -> None:
        """Our heartbeat lease lapsed: our jobs are being recovered elsewhere; interrupt them.

        The interruption is not the job's fault (the database may only have restarted), so
        each interrupted run is given back like a run cut short at shutdown: pending again,
        no attempt used. The write is fenced by the claim, so a job that Recovery already
        returned (or another worker already runs) is left alone.
        """
        self.hub.emit("worker.heartbeat.lost", {"running": len(self._running)})
        self._abandoned.update(self._running)
        for job_id in list(self._running):
            self._cancel_local(job_id)

    # -- claiming and completing --------------------------------------------------------

    def can_claim(self) -> bool:
        return not self._stopping and self.heartbeat.trusted()

    async def fetch_jobs(self, queue: Queue, conn: Any, *, up_to: int = 1) -> list[QueuedJob]:
        """Claim up to ``up_to`` jobs of ``queue`` on ``conn`` (one statement).

        A queue with limits claims within them instead: a short transaction that takes the
        queue's claim lock first (see limits.sql).
        """
        return (await self.fetch_claim(queue, conn, up_to=up_to)).jobs

    async def fetch_claim(self, queue: Queue, conn: Any, *, up_to: int = 1) -> Claim:
        """Like ``fetch_jobs``, and also what held the rest back on a queue with limits."""
        store = self.chancy.store
        if not queue.has_limits:
            async with conn.cursor(row_factory=dict_row) as cur:
                return Claim(await run(cur, store.job_fetch(queue.name, up_to, self.worker_id)))
        # Pipelined: BEGIN, the lock and the claim go in one round trip, COMMIT in another.
        async with (
            conn.pipeline(),
            conn.transaction(),
            conn.cursor(row_factory=dict_row) as cur,
        ):
            return await run(cur, store.job_fetch_limited(queue, up_to, self.worker_id))

    async def claim(self, queue: Queue, up_to: int) -> Claim:
        pool = await self.chancy.open()
        async with pool.connection() as conn:
            claim = await self.fetch_claim(queue, conn, up_to=up_to)
        jobs = claim.jobs
        if jobs:
            self._all_done.clear()
            for job in jobs:
                self._running[job.id] = job
        return claim

    def _on_outcomes_written(self, batch: list[Outcome]) -> None:
        self._wake_due_again(batch)
        # Producers held by a concurrency limit wait for the database to show a job ended.
        held = [p for p in self._producers.values() if p.held]
        if held:
            ids = [o.job.id for o in batch]
            for producer in held:
                producer.jobs_finished(ids)

    async def queue_update(self, update: Outcome | QueuedJob) -> None:
        """Take a job's outcome from an executor: buffer it for the completer."""
        outcome = update if isinstance(update, Outcome) else Outcome(update)
        job = outcome.job
        claimed = self._running.pop(job.id, None)
        if self._abandoned and job.id in self._abandoned:
            self._abandoned.discard(job.id)
            if claimed is not None and job.state in (
                QueuedJob.State.FAILED,
                QueuedJob.State.RETRYING,
            ):
                outcome = Outcome(dataclasses.replace(claimed, state=QueuedJob.State.PENDING))
                job = outcome.job
        if not self._running:
            self._all_done.set()
        self.completer.add(outcome)
        producer = self._producers.get(job.queue)
        if producer is not None:
            producer.slot_freed()
        if self._retiring:
            self.hub.emit("worker.job.done", {"queue": job.queue})

    def _wake_due_again(self, batch: list[Outcome]) -> None:
        """Jobs written back as retrying or snoozed are due again: wake their producers then.

        Without this a retry with no delay would wait for the queue's next poll.
        """
        soonest: dict[str, float] = {}
        for outcome in batch:
            if outcome.job.state in (QueuedJob.State.RETRYING, QueuedJob.State.PENDING):
                delay = outcome.delay or 0.0
                queue = outcome.job.queue
                soonest[queue] = min(delay, soonest.get(queue, delay))
        if not soonest:
            return
        loop = asyncio.get_running_loop()
        for queue, delay in soonest.items():
            producer = self._producers.get(queue)
            if producer is None or delay >= producer.queue.polling_interval:
                continue  # the poll comes first anyway
            if delay <= 0:
                producer.wake()
            else:
                # A little after the delay: the database decides with its own clock.
                loop.call_later(delay + 0.01, producer.wake)

    # -- queues -------------------------------------------------------------------------

    async def _manage_queues(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queues_changed.wait(), self._next_queue_check())
            self._queues_changed.clear()
            await self._sync_queues()

    def _next_queue_check(self) -> float:
        wait = self.queue_change_poll_interval
        now = _utcnow()
        for queue in self.queues.values():
            if queue.state == Queue.State.PAUSED and queue.resume_at is not None:
                wait = min(wait, max(0.05, (queue.resume_at - now).total_seconds() + 0.05))
        return wait

    async def _sync_queues(self) -> None:
        chancy = self.chancy
        resumed = await chancy._run(chancy.store.queue_resume_due())
        if resumed and chancy.notifications:
            for name in resumed:
                await chancy._run(chancy.store.notify("queue.resumed", {"q": name}))
        wanted = {q.name: q for q in await chancy.get_all_queues() if self.serves(q)}
        for name in list(self.queues):
            if name not in wanted:
                self._retire(name, reason="removed")
        for name, queue in wanted.items():
            current = self.queues.get(name)
            if current == queue:
                continue
            if current is not None and _same_executor(current, queue):
                # Settings a producer reads live (state, polling) change in place.
                self.queues[name] = queue
                self._producers[name].queue = queue
                self._producers[name].wake()
                continue
            if current is not None:
                self._retire(name, reason="changed")
            if name in self._retiring_names():
                continue  # rebuilt once the old executor drains
            self._serve(queue)

    def _retiring_names(self) -> set[str]:
        return {t.get_name().removeprefix("chancy-retire-") for t in self._retiring}

    def _serve(self, queue: Queue) -> None:
        try:
            cls = import_string(queue.executor)
            executor = cls(self, queue, **queue.executor_options)
        except Exception as exc:
            log.error("cannot serve queue %r: its executor could not start: %s", queue.name, exc)
            return
        self.queues[queue.name] = queue
        self.executors[queue.name] = executor
        producer = Producer(self, queue, executor)
        self._producers[queue.name] = producer

        async def body() -> None:
            await producer.run()

        task = asyncio.create_task(
            supervise(
                f"producer {queue.name}",
                body,
                on_fatal=self._on_fatal,
                backoff_initial=self.backoff_initial,
                backoff_max=self.backoff_max,
                max_crashes=self.backoff_max_retries,
            ),
            name=f"chancy-producer-{queue.name}",
        )
        self._producer_tasks[queue.name] = task
        log.info("serving queue %r with %s", queue.name, type(executor).__name__)
        self.hub.emit("worker.queue.started", {"queue": queue.name})

    def _retire(self, name: str, *, reason: str) -> None:
        """Stop claiming from a queue; stop its executor once its running jobs are done."""
        producer = self._producers.pop(name, None)
        executor = self.executors.get(name)
        task = self._producer_tasks.pop(name, None)
        self.queues.pop(name, None)
        if producer is not None:
            producer.drain()

        async def retire() -> None:
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)
            if executor is not None:
                while len(executor):
                    with contextlib.suppress(TimeoutError):
                        await self.hub.wait_for("worker.job.done", timeout=1.0)
                await executor.stop()
            if self.executors.get(name) is executor:
                del self.executors[name]
            self.hub.emit("worker.queue.removed", {"queue": name, "reason": reason})
            self._queues_changed.set()

        retiring = asyncio.create_task(_quiet(retire()), name=f"chancy-retire-{name}")
        self._retiring.add(retiring)
        retiring.add_done_callback(self._retiring.discard)


def _same_executor(a: Queue, b: Queue) -> bool:
    return (a.executor, a.executor_options, a.concurrency) == (
        b.executor,
        b.executor_options,
        b.concurrency,
    )


async def _quiet(coro: Any) -> None:
    try:
        await coro
    except (asyncio.CancelledError, TimeoutError):
        pass
    except Exception:
        log.exception("retiring a queue failed")


def _utcnow() -> datetime:
    return datetime.now(UTC)
