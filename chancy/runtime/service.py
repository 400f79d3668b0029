"""Supervision of long-running services: retry transient database errors, stop on repeats.

A service that loses its connection (server restarting, network cut) retries with capped,
jittered backoff for as long as that lasts. A service that crashes on anything else is
restarted a few times; past ``max_crashes`` in ``window`` seconds the worker stops loudly
rather than limping on.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

import psycopg
import psycopg_pool

log = logging.getLogger("chancy.worker")

TRANSIENT = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg_pool.PoolTimeout,
    psycopg.errors.AdminShutdown,
    psycopg.errors.CannotConnectNow,
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
    ConnectionError,
    OSError,
)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT)


class Backoff:
    """Capped exponential backoff with full jitter."""

    def __init__(self, initial: float = 0.05, maximum: float = 5.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self.current = initial

    def reset(self) -> None:
        self.current = self.initial

    def next(self) -> float:
        value = self.current * (0.5 + random.random() / 2)
        self.current = min(self.maximum, self.current * 2)
        return value


async def supervise(
    name: str,
    body: Callable[[], Awaitable[None]],
    *,
    on_fatal: Callable[[str, BaseException], None],
    backoff_initial: float = 0.05,
    backoff_max: float = 5.0,
    max_crashes: int = 5,
    window: float = 60.0,
) -> None:
    """Run ``body`` until it returns; retry transient errors forever, crashes a few times."""
    backoff = Backoff(backoff_initial, backoff_max)
    crashes: list[float] = []
    while True:
        try:
            await body()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if is_transient(exc):
                delay = backoff.next()
                log.warning("%s: database unavailable (%s); retrying in %.2fs", name, exc, delay)
                await asyncio.sleep(delay)
                continue
            now = time.monotonic()
            crashes = [t for t in crashes if now - t < window] + [now]
            if len(crashes) > max_crashes:
                log.critical(
                    "%s crashed %d times in %.0fs; stopping the worker",
                    name,
                    len(crashes),
                    window,
                    exc_info=exc,
                )
                on_fatal(name, exc)
                return
            delay = backoff.next()
            log.exception("%s crashed; restarting in %.2fs", name, delay)
            await asyncio.sleep(delay)
