"""One LISTEN connection per process on ``{prefix}events``, shared by every listener.

Notifications are hints that make things fast (a pushed job starts at once, a waiter wakes at
once); polling keeps everything correct while the connection is down. The connection is
checked when idle, so a silently dead link is noticed, and reconnects with full-jitter backoff
(chancy.backoff), for as long as it takes.

The same session holds each worker's liveness lock (a session-level advisory lock, see
``hold``): PostgreSQL releases it the moment the session ends, which is how the leader learns
in seconds that a worker died. After a reconnect every held lock is taken again (retried
while the server still attributes it to the dead session), and its owner is told.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any, LiteralString

import psycopg

from chancy import events
from chancy.backoff import RECONNECT_INITIAL, RECONNECT_MAX, Backoff

log = logging.getLogger("chancy.notifier")

Listener = Callable[[dict[str, Any]], None]

#: How long one wait for notifications lasts before the loop looks at wanted locks again.
_TURN = 0.25

#: Events the notifier itself emits to its listeners.
CONNECTED = events.NOTIFIER_CONNECTED
DISCONNECTED = events.NOTIFIER_DISCONNECTED


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
        backoff_initial: float = RECONNECT_INITIAL,
        backoff_max: float = RECONNECT_MAX,
        lock_query: LiteralString | None = None,
        unlock_query: LiteralString | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.channel = channel
        self.listen_query = listen_query
        self.ping_query = ping_query
        self.connect_timeout = connect_timeout
        self.idle_check = idle_check
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.connected = asyncio.Event()
        self.lock_query = lock_query
        self.unlock_query = unlock_query
        #: Liveness locks wanted: key -> called with True each time it is (re)taken.
        self._locks: dict[int, Callable[[bool], None]] = {}
        self._locked: set[int] = set()
        self._unlocks: set[int] = set()
        #: Set when a lock is wanted or given up: ends the current turn early.
        self._lock_changed = asyncio.Event()
        #: A lock could not be taken yet: try again after the next turn.
        self._lock_retry = False
        #: Set each time a lock is taken (``hold`` waits for it).
        self._lock_taken = asyncio.Event()
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self._ever_locked: set[int] = set()
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._users = 0

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(payload)`` for every event; returns a function that unsubscribes."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe

    async def hold(
        self, key: int, on_locked: Callable[[bool], None], *, timeout: float = 5
    ) -> bool:
        """Hold the session-level advisory lock ``key`` for as long as this session lives.

        ``on_locked(again)`` is called each time it is taken (``again`` after a reconnect).
        Returns whether it was taken within ``timeout`` (it keeps being tried after that).
        """
        if self.lock_query is None:
            return False
        self._locks[key] = on_locked
        self._unlocks.discard(key)
        self._lock_changed.set()
        deadline = asyncio.get_running_loop().time() + timeout
        while key not in self._locked:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            self._lock_taken.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lock_taken.wait(), remaining)
        return True

    def release_lock(self, key: int) -> None:
        """Stop holding ``key`` (unlocked on the session soon, or by its end)."""
        if self._locks.pop(key, None) is not None:
            self._unlocks.add(key)
            self._lock_changed.set()

    def holds(self, key: int) -> bool:
        return key in self._locked

    async def _sync_locks(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._lock_changed.clear()
        for key in list(self._unlocks):
            self._unlocks.discard(key)
            if key in self._locked and self.unlock_query is not None:
                await conn.execute(self.unlock_query, {"key": key})
                self._locked.discard(key)
        for key, on_locked in list(self._locks.items()):
            if key in self._locked:
                continue
            cur = await conn.execute(self.lock_query or "", {"key": key})
            row = await cur.fetchone()
            if row and row[0]:
                again = key in self._ever_locked
                self._locked.add(key)
                self._ever_locked.add(key)
                self._lock_taken.set()
                try:
                    on_locked(again)
                except Exception:
                    log.exception("liveness lock callback %r failed", on_locked)
            else:
                # Still held by our previous (dead) session, which the server has not
                # noticed yet: try again at the end of the next turn (not at once).
                self._lock_retry = True

    async def _turn(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        """Dispatch notifications for up to ``_TURN`` seconds; return whether any came.

        A lock wanted or given up meanwhile ends the turn at once: a starting worker waits
        for its liveness lock (``hold``) before it serves, and waited up to a whole turn
        (250 ms) for it. Stopping the wait for notifications is safe: the session runs no
        statement then, and a notification already received stays queued on the connection.
        """
        got = False

        async def read() -> None:
            nonlocal got
            async for note in conn.notifies(timeout=_TURN):
                got = True
                try:
                    payload = json.loads(note.payload)
                except ValueError:
                    log.warning("ignoring a non-JSON notification: %r", note.payload)
                    continue
                if isinstance(payload, dict):
                    self._dispatch(payload)

        reading = asyncio.ensure_future(read())
        wanted = asyncio.ensure_future(self._lock_changed.wait())
        try:
            await asyncio.wait((reading, wanted), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reading, wanted):
                task.cancel()
            # The reading task gives the connection back only once it has ended.
            await asyncio.gather(reading, wanted, return_exceptions=True)
        if not reading.cancelled() and (exc := reading.exception()) is not None:
            raise exc
        return got

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
        backoff = Backoff(self.backoff_initial, self.backoff_max)
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.conninfo,
                    autocommit=True,
                    connect_timeout=max(1, int(self.connect_timeout)),
                )
            except (psycopg.Error, OSError) as exc:
                delay = backoff.next()
                log.warning("LISTEN connection failed (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            self._conn = conn
            try:
                await conn.execute(self.listen_query)
                await self._sync_locks(conn)
                backoff.reset()
                self.connected.set()
                self._dispatch({"t": CONNECTED})
                quiet_since = time.monotonic()
                while True:
                    if self._lock_changed.is_set() or self._lock_retry:
                        self._lock_retry = False
                        await self._sync_locks(conn)
                    got = await self._turn(conn)
                    now = time.monotonic()
                    if got:
                        quiet_since = now
                    elif now - quiet_since >= self.idle_check:
                        # Idle: make sure the link is still alive.
                        await conn.execute(self.ping_query)
                        quiet_since = now
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await conn.close()
                raise
            except (psycopg.Error, OSError) as exc:
                log.warning("LISTEN connection lost (%s); reconnecting", exc)
            finally:
                self._conn = None
                self._locked.clear()  # the session's locks ended with it
                if self._locks:
                    self._lock_changed.set()
                if self.connected.is_set():
                    self.connected.clear()
                    self._dispatch({"t": DISCONNECTED})
            with contextlib.suppress(Exception):
                await conn.close()
            await asyncio.sleep(backoff.next())
