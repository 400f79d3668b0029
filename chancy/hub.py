"""In-process events: a tiny pub/sub that workers, plugins and tests wait on.

The API is Chancy 0.26's: ``on``/``remove`` for one event, ``on_any``/``remove_on_any`` for
all of them, ``await hub.emit(name, body)``, and ``wait_for(names, timeout)`` returning the
events that arrived (an empty list on timeout). ``emit`` does its work at once, so the hot
path may also call it without awaiting; awaiting it waits for the async handlers it started.
``wait_one`` is the strict form: one event, ``TimeoutError`` on timeout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Generator, Iterable
from typing import Any

log = logging.getLogger("chancy.hub")

Handler = Callable[["Event"], Awaitable[None] | None]
EventCallbackT = Handler


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One emitted event: its name and a body of details."""

    name: str
    body: dict[str, Any] = dataclasses.field(default_factory=dict)


class Emitted:
    """What ``emit`` returns: awaiting it waits for the async handlers the event started."""

    __slots__ = ("_tasks",)

    def __init__(self, tasks: list[asyncio.Future[Any]] | None) -> None:
        self._tasks = tasks

    def __await__(self) -> Generator[Any, None, None]:
        if self._tasks:
            yield from asyncio.gather(*self._tasks, return_exceptions=True).__await__()


_NOTHING = Emitted(None)


class Hub:
    """Named events with sync or async handlers.

    Handlers run in the order they were added; an async handler is started as a task (awaited
    by whoever awaits ``emit``). A handler that raises is logged and does not stop the others.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._any: list[Handler] = []
        self._tasks: set[asyncio.Future[Any]] = set()

    def on(self, name: str, handler: Handler) -> None:
        """Call ``handler`` for every event named ``name``."""
        if name == "*":
            self._any.append(handler)
            return
        self._handlers[name].append(handler)

    def on_any(self, handler: Handler) -> None:
        """Call ``handler`` for every event."""
        self._any.append(handler)

    def remove(self, name: str, handler: Handler) -> None:
        handlers = self._any if name == "*" else self._handlers.get(name, [])
        try:
            handlers.remove(handler)
        except ValueError:
            pass

    def remove_on_any(self, handler: Handler) -> None:
        try:
            self._any.remove(handler)
        except ValueError:
            pass

    def emit(self, name: str, body: dict[str, Any] | None = None) -> Emitted:
        """Call every handler of ``name`` (and every ``on_any`` handler) now."""
        handlers = self._handlers.get(name)
        if not handlers and not self._any:
            return _NOTHING
        event = Event(name, body if body is not None else {})
        started: list[asyncio.Future[Any]] | None = None
        for handler in [*(handlers or ()), *self._any]:
            try:
                outcome = handler(event)
            except Exception:
                log.exception("hub handler %r for %r failed", handler, name)
                continue
            if inspect.isawaitable(outcome):
                task = asyncio.ensure_future(outcome)
                self._tasks.add(task)
                task.add_done_callback(self._task_done)
                if started is None:
                    started = []
                started.append(task)
        return Emitted(started) if started else _NOTHING

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("async hub handler failed", exc_info=task.exception())

    async def wait_for(
        self,
        names: str | Iterable[str],
        timeout: float | None = None,
        *,
        predicate: Callable[[Event], bool] | None = None,
    ) -> list[Event]:
        """Wait for the next event with one of ``names``; return it in a list, or ``[]`` when
        ``timeout`` seconds pass first (Chancy 0.26's contract)."""
        try:
            return [await self.wait_one(names, timeout, predicate=predicate)]
        except TimeoutError:
            return []

    async def wait_one(
        self,
        names: str | Iterable[str],
        timeout: float | None = None,
        *,
        predicate: Callable[[Event], bool] | None = None,
    ) -> Event:
        """Wait for the next event with one of ``names`` (and matching ``predicate``).

        Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        wanted = [names] if isinstance(names, str) else list(names)
        if not wanted:
            raise ValueError("wait for at least one event name")
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
        self._any.clear()
