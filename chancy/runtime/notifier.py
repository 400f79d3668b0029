"""One LISTEN connection per process on ``{prefix}events``, shared by every listener.

Notifications are hints that make things fast (a pushed job starts at once, a waiter wakes at
once); polling keeps everything correct while the connection is down. The connection is
checked when idle, so a silently dead link is noticed, and reconnects with jittered backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Callable
from typing import Any, LiteralString

import psycopg

log = logging.getLogger("chancy.notifier")

Listener = Callable[[dict[str, Any]], None]

#: Events the notifier itself emits to its listeners.
CONNECTED = "notifier.connected"
DISCONNECTED = "notifier.disconnected"


class Notifier:
    """Listens on one channel and fans each JSON payload out to the subscribed callbacks."""

    def __init__(
        self,
        conninfo: str,
        channel: str,
        *,
        listen_query: LiteralString,
        ping_query: LiteralString,
        connect_timeout: float = 10,
        idle_check: float = 15,
        backoff_max: float = 5,
    ) -> None:
        self.conninfo = conninfo
        self.channel = channel
        self.listen_query = listen_query
        self.ping_query = ping_query
        self.connect_timeout = connect_timeout
        self.idle_check = idle_check
        self.backoff_max = backoff_max
        self.connected = asyncio.Event()
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._users = 0

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(payload)`` for every event; returns a function that unsubscribes."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start listening (idempotent); waits briefly for the first connection."""
        self._users += 1
        if self.running:
            return
        self._task = asyncio.create_task(self._run(), name=f"chancy-notifier-{self.channel}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), self.connect_timeout)

    async def release(self) -> None:
        """One user is done; stop when the last one is."""
        self._users = max(0, self._users - 1)
        if self._users == 0:
            await self.stop()

    async def stop(self) -> None:
        self._users = 0
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.connected.clear()

    async def reconnect(self) -> None:
        """Drop the connection (tests and chaos use this); the loop reconnects."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()

    def _dispatch(self, payload: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(payload)
            except Exception:
                log.exception("notification listener %r failed", listener)

    async def _run(self) -> None:
        delay = 0.05
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.conninfo,
                    autocommit=True,
                    connect_timeout=max(1, int(self.connect_timeout)),
                )
            except (psycopg.Error, OSError) as exc:
                log.warning("LISTEN connection failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(self.backoff_max, delay * 2)
                continue
            self._conn = conn
            try:
                await conn.execute(self.listen_query)
                delay = 0.05
                self.connected.set()
                self._dispatch({"t": CONNECTED})
                while True:
                    got = False
                    async for note in conn.notifies(timeout=self.idle_check):
                        got = True
                        try:
                            payload = json.loads(note.payload)
                        except ValueError:
                            log.warning("ignoring a non-JSON notification: %r", note.payload)
                            continue
                        if isinstance(payload, dict):
                            self._dispatch(payload)
                    if not got:
                        # Idle: make sure the link is still alive.
                        await conn.execute(self.ping_query)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await conn.close()
                raise
            except (psycopg.Error, OSError) as exc:
                log.warning("LISTEN connection lost (%s); reconnecting", exc)
            finally:
                self._conn = None
                if self.connected.is_set():
                    self.connected.clear()
                    self._dispatch({"t": DISCONNECTED})
            with contextlib.suppress(Exception):
                await conn.close()
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(self.backoff_max, delay * 2)
