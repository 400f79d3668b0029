"""The worker's heartbeat: its row in ``{prefix}workers``, renewed in database time.

The row's ``expires_at`` is the worker's lease on life: once it passes, the leader's recovery
treats the worker's running jobs as abandoned. The worker itself stops trusting its lease a
margin before that, on its own monotonic clock, and then stops claiming and interrupts its
jobs, since they are being recovered elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import TYPE_CHECKING

from chancy import events
from chancy.runtime.service import Backoff, is_transient
from chancy.version import VERSION

if TYPE_CHECKING:
    from chancy.runtime.context import Runtime

log = logging.getLogger("chancy.heartbeat")


class Heartbeat:
    """Renews the worker's row every ``interval`` seconds; tracks whether it is still alive."""

    def __init__(self, runtime: Runtime, *, interval: float, timeout: float) -> None:
        self.runtime = runtime
        self.interval = interval
        self.timeout = timeout
        #: Monotonic time of the last successful renewal.
        self.last_ok: float | None = None
        self.alive = asyncio.Event()
        self.hostname = socket.gethostname()

    @property
    def margin(self) -> float:
        return min(5.0, self.timeout / 10)

    def trusted(self) -> bool:
        """True while the last renewal is recent enough that nobody has recovered our jobs."""
        if self.last_ok is None:
            return False
        return time.monotonic() - self.last_ok < self.timeout - self.margin

    async def beat(self) -> None:
        sent = time.monotonic()
        runtime = self.runtime
        chancy = runtime.chancy
        await chancy.db.run(
            chancy.store.worker_heartbeat(
                runtime.worker_id,
                tags=sorted(runtime.worker.worker_tags()),
                queues=sorted(runtime.queues.executors),
                timeout=self.timeout,
                hostname=self.hostname,
                pid=os.getpid(),
                version=VERSION,
                first=self.last_ok is None,
                liveness_key=runtime.liveness_key,
                notify=chancy.notifications,
            )
        )
        # Count from when the request was sent: the lease started no earlier than that.
        self.last_ok = sent
        if not self.alive.is_set():
            self.alive.set()
            runtime.hub.emit(events.WORKER_HEARTBEAT_RESTORED, {})

    async def run(self) -> None:
        backoff = Backoff(0.1, max(1.0, self.interval / 4))
        while True:
            try:
                await self.beat()
                backoff.reset()
                wait = self.interval
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_transient(exc):
                    raise
                wait = backoff.next()
                log.warning("heartbeat failed (%s); retrying in %.2fs", exc, wait)
            deadline = time.monotonic() + wait
            while True:
                # Check liveness while waiting, so a lost lease is acted on in time.
                if self.alive.is_set() and not self.trusted():
                    self.alive.clear()
                    log.error(
                        "heartbeat not renewed for %.0fs (timeout %.0fs): this worker stops"
                        " claiming and interrupts its jobs, which are being recovered elsewhere",
                        time.monotonic() - (self.last_ok or 0),
                        self.timeout,
                    )
                    self.runtime.liveness_lost()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                await asyncio.sleep(min(remaining, 1.0))
