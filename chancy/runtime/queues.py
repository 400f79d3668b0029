"""The set of queues a worker serves: one producer and one executor per queue.

Queues live in the database and change while workers run. The set follows them: it re-reads
the queues on a change notification (declared, paused, resumed) and every
``queue_change_poll_interval`` seconds, starts serving queues whose tags match the worker's,
retires those that were removed or no longer match, and rebuilds a queue whose executor
settings changed once its running jobs have finished. It also routes the wake-ups that
concern a queue: a push, a freed slot, an outcome written as due again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from chancy import events
from chancy.errors import ConfigurationError
from chancy.executors.base import Executor
from chancy.job import QueuedJob
from chancy.outcome import Outcome
from chancy.queue import Queue
from chancy.runtime.producer import Producer
from chancy.runtime.service import supervise
from chancy.store.queues import queue_from_row
from chancy.utils import import_string

if TYPE_CHECKING:
    from chancy.runtime.context import Runtime

log = logging.getLogger("chancy.worker")

_DUE_AGAIN = (QueuedJob.State.RETRYING, QueuedJob.State.PENDING)


class QueueSet:
    """The served queues with their executors and producers."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        serves: Callable[[Queue], bool],
        poll_interval: float,
        on_fatal: Callable[[str, BaseException], None],
        supervision: dict[str, Any],
    ) -> None:
        self.runtime = runtime
        self.serves = serves
        self.poll_interval = poll_interval
        self.on_fatal = on_fatal
        self.supervision = supervision
        self.queues: dict[str, Queue] = {}
        self.executors: dict[str, Executor] = {}
        self.producers: dict[str, Producer] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.retiring: set[asyncio.Task[None]] = set()
        #: Queues whose stored row fails validation, with the problem last logged.
        self._bad: dict[str, str] = {}
        self._changed = asyncio.Event()

    # -- following the database ---------------------------------------------------------

    def changed(self) -> None:
        """The queues changed somewhere: re-read them now."""
        self._changed.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self._next_check())
            self._changed.clear()
            await self.sync()

    def _next_check(self) -> float:
        wait = self.poll_interval
        now = datetime.now(UTC)
        for queue in self.queues.values():
            if queue.state == Queue.State.PAUSED and queue.resume_at is not None:
                wait = min(wait, max(0.05, (queue.resume_at - now).total_seconds() + 0.05))
        return wait

    async def sync(self) -> None:
        chancy = self.runtime.chancy
        resumed = await chancy.db.run(chancy.store.queue_resume_due())
        if resumed and chancy.notifications:
            for name in resumed:
                await chancy.db.run(chancy.store.notify(events.QUEUE_RESUMED, {"q": name}))
        wanted = await self._read_queues()
        for name in list(self.queues):
            if name not in wanted:
                self.retire(name, reason="removed")
        for name, queue in wanted.items():
            current = self.queues.get(name)
            if current == queue:
                continue
            if current is not None and _same_executor(current, queue):
                # Settings a producer reads live (state, polling) change in place.
                self.queues[name] = queue
                self.producers[name].queue = queue
                self.producers[name].wake()
                self.runtime.hub.emit(events.WORKER_QUEUE_UPDATED, {"queue": queue, "name": name})
                continue
            if current is not None:
                self.retire(name, reason="changed")
            if name in self._retiring_names():
                continue  # rebuilt once the old executor drains
            self.serve(queue)

    async def _read_queues(self) -> dict[str, Queue]:
        """The stored queues this worker serves, read row by row.

        Why row by row: one row with invalid settings (edited by hand, or stored by an older
        version) must not stop the worker. Such a queue is not served, or keeps the settings
        this worker read before; the problem is logged once until the row changes.
        """
        chancy = self.runtime.chancy
        rows: list[dict[str, Any]] = await chancy.db.run(chancy.store.queue_rows())
        wanted: dict[str, Queue] = {}
        problems: dict[str, str] = {}
        for row in rows:
            name = str(row.get("name"))
            try:
                queue = queue_from_row(row)
            except (ConfigurationError, ValueError, TypeError, KeyError) as exc:
                problems[name] = str(exc) or type(exc).__name__
                current = self.queues.get(name)
                if current is not None:
                    wanted[name] = current
                continue
            if self.serves(queue):
                wanted[queue.name] = queue
        for name, problem in problems.items():
            if self._bad.get(name) == problem:
                continue
            if name in self.queues:
                log.error(
                    "queue %r has invalid stored settings (%s); it keeps the settings read"
                    " before until they are fixed (chancy.declare(Queue(...), upsert=True) or"
                    " the dashboard)",
                    name,
                    problem,
                )
            else:
                log.error(
                    "queue %r is not served: its stored settings are invalid (%s); fix them"
                    " with chancy.declare(Queue(...), upsert=True) or the dashboard",
                    name,
                    problem,
                )
        self._bad = problems
        return wanted

    def _retiring_names(self) -> set[str]:
        return {t.get_name().removeprefix("chancy-retire-") for t in self.retiring}

    def serve(self, queue: Queue) -> None:
        try:
            cls = import_string(queue.executor)
            executor = cls(self.runtime.worker, queue, **queue.executor_options)
        except Exception as exc:
            log.error("cannot serve queue %r: its executor could not start: %s", queue.name, exc)
            return
        self.queues[queue.name] = queue
        self.executors[queue.name] = executor
        producer = Producer(self.runtime, queue, executor)
        self.producers[queue.name] = producer
        self.tasks[queue.name] = asyncio.create_task(
            supervise(
                f"producer {queue.name}", producer.run, on_fatal=self.on_fatal, **self.supervision
            ),
            name=f"chancy-producer-{queue.name}",
        )
        log.info("serving queue %r with %s", queue.name, type(executor).__name__)
        self.runtime.hub.emit(events.WORKER_QUEUE_STARTED, {"queue": queue, "name": queue.name})

    def retire(self, name: str, *, reason: str) -> None:
        """Stop claiming from a queue; stop its executor once its running jobs are done."""
        producer = self.producers.pop(name, None)
        executor = self.executors.get(name)
        task = self.tasks.pop(name, None)
        queue = self.queues.pop(name, None)
        if producer is not None:
            producer.drain()
        hub = self.runtime.hub

        async def retire() -> None:
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)
            if executor is not None:
                while len(executor):
                    await hub.wait_for(events.WORKER_JOB_DONE, timeout=1.0)
                await executor.stop()
            if self.executors.get(name) is executor:
                del self.executors[name]
            hub.emit(
                events.WORKER_QUEUE_REMOVED,
                {
                    "queue": queue,
                    "name": name,
                    "reason": reason,
                    "executor": executor,
                    "worker": self.runtime.worker,
                },
            )
            self._changed.set()

        retiring = asyncio.create_task(_quiet(retire()), name=f"chancy-retire-{name}")
        self.retiring.add(retiring)
        retiring.add_done_callback(self.retiring.discard)

    # -- wake-ups -----------------------------------------------------------------------

    def wake(self, name: str) -> None:
        producer = self.producers.get(name)
        if producer is not None:
            producer.wake()

    def wake_all(self) -> None:
        for producer in self.producers.values():
            producer.wake()

    def slot_freed(self, name: str) -> None:
        producer = self.producers.get(name)
        if producer is not None:
            producer.slot_freed()
        if self.retiring:
            self.runtime.hub.emit(events.WORKER_JOB_DONE, {"queue": name})

    def outcomes_written(self, batch: list[Outcome]) -> None:
        """A batch of outcomes is in the database: wake whoever it concerns."""
        self._wake_due_again(batch)
        # Producers held by a concurrency limit wait for the database to show a job ended.
        held = [p for p in self.producers.values() if p.held]
        if held:
            ids = [o.job.id for o in batch]
            for producer in held:
                producer.jobs_finished(ids)

    def _wake_due_again(self, batch: list[Outcome]) -> None:
        """Jobs written back as retrying or snoozed are due again: wake their producers then.

        Without this a retry with no delay would wait for the queue's next poll.
        """
        soonest: dict[str, float] = {}
        for outcome in batch:
            if outcome.job.state in _DUE_AGAIN:
                delay = outcome.delay or 0.0
                queue = outcome.job.queue
                soonest[queue] = min(delay, soonest.get(queue, delay))
        if not soonest:
            return
        loop = asyncio.get_running_loop()
        for queue, delay in soonest.items():
            producer = self.producers.get(queue)
            if producer is None or delay >= producer.queue.polling_interval:
                continue  # the poll comes first anyway
            if delay <= 0:
                producer.wake()
            else:
                # A little after the delay: the database decides with its own clock.
                loop.call_later(delay + 0.01, producer.wake)

    # -- stopping -----------------------------------------------------------------------

    async def stop_claiming(self, timeout: float = 10) -> None:
        """Stop every producer; a claim in flight finishes so no claimed job is lost."""
        for producer in self.producers.values():
            producer.drain()
        if self.tasks:
            await asyncio.wait(list(self.tasks.values()), timeout=timeout)

    async def stop_executors(self) -> None:
        for name, executor in list(self.executors.items()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(executor.stop(), 10)
            # As in Chancy 0.26, a stopping worker's plugins hear that each queue went away.
            self.runtime.hub.emit(
                events.WORKER_QUEUE_REMOVED,
                {
                    "queue": executor.queue,
                    "name": name,
                    "reason": "the worker is stopping",
                    "executor": executor,
                    "worker": self.runtime.worker,
                },
            )

    def all_tasks(self) -> list[asyncio.Task[None]]:
        return [*self.tasks.values(), *self.retiring]


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
