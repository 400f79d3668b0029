"""In-process events: a tiny pub/sub that workers, plugins and tests wait on."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

log = logging.getLogger("chancy.hub")

Handler = Callable[["Event"], Awaitable[None] | None]


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One emitted event: its name and a body of details."""

    name: str
    body: dict[str, Any] = dataclasses.field(default_factory=dict)


class Hub:
    """Named events with sync or async handlers, and ``wait_for`` for whoever must wait.

    Handlers run in the order they were added; an async handler is scheduled as a task. A
    handler that raises is logged and does not stop the others.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._tasks: set[asyncio.Task[None]] = set()

    def on(self, name: str, handler: Handler) -> None:
        self._handlers[name].append(handler)

    def remove(self, name: str, handler: Handler) -> None:
        try:
            self._handlers[name].remove(handler)
        except ValueError:
            pass

    def emit(self, name: str, body: dict[str, Any] | None = None) -> None:
        event = Event(name, body or {})
        for handler in list(self._handlers.get(name, ())) + list(self._handlers.get("*", ())):
            try:
                outcome = handler(event)
            except Exception:
                log.exception("hub handler %r for %r failed", handler, name)
                continue
            if inspect.isawaitable(outcome):
                task = asyncio.ensure_future(outcome)
                self._tasks.add(task)
                task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("async hub handler failed", exc_info=task.exception())

    async def wait_for(
        self,
        names: str | Iterable[str],
        timeout: float | None = None,
        *,
        predicate: Callable[[Event], bool] | None = None,
    ) -> Event:
        """Wait for the next event with one of ``names`` (and matching ``predicate``).

        Raises ``asyncio.TimeoutError`` after ``timeout`` seconds.
        """
        wanted = [names] if isinstance(names, str) else list(names)
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()

        def handler(event: Event) -> None:
            if not future.done() and (predicate is None or predicate(event)):
                future.set_result(event)

        for name in wanted:
            self.on(name, handler)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            for name in wanted:
                self.remove(name, handler)

    def clear(self) -> None:
        self._handlers.clear()
