"""Supervision of long-running services: retry transient database errors, stop on repeats.

A service that loses its connection (server restarting, network cut) retries with capped,
full-jitter backoff (chancy.backoff) for as long as that lasts, never giving up. A service
that crashes on anything else is restarted a few times; past ``max_crashes`` in ``window``
seconds the worker stops loudly rather than limping on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import psycopg
import psycopg_pool

from chancy.backoff import Backoff

__all__ = ["TRANSIENT", "Backoff", "is_transient", "supervise"]

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
