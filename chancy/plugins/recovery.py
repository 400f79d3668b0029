"""Recovery: the leader gives the jobs of dead workers back to their queues.

A running job whose worker has no live heartbeat row (the row is missing, or its
``expires_at`` has passed in database time) was cut short: the worker was killed, crashed, or
lost its connection long enough to stop trusting its own heartbeat (it then interrupts its
jobs itself). Recovery puts such jobs back to ``pending`` in batches (``FOR UPDATE SKIP
LOCKED``), clearing ``taken_by``, ``started_at`` and ``claim_id`` so a zombie's late write
matches nothing. The interruption does not use up one of the job's ``max_attempts``
(at-least-once holds even for ``max_attempts=1``), but it is counted in ``recoveries``; a job
interrupted more than ``max_recoveries`` times (it is probably what kills its workers) ends
``failed`` with an error that says so, instead of looping forever.

Session liveness makes that fast: every worker holds a session-level advisory lock, which
PostgreSQL releases the moment the worker's session ends. Every ``probe_interval`` seconds
the leader tries each live worker's lock (one cheap statement); a worker whose lock stays free
for ``session_grace`` seconds (time to reconnect after a brief drop) is dead, and its jobs
are recovered at once: within about ``session_grace + 2 * probe_interval`` of a SIGKILL
(about 4 s by default). Heartbeats stay the fallback for what a session cannot show: a
frozen process (SIGSTOP), a partition where TCP lingers, a pooler that hides sessions.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from chancy import events
from chancy.errors import ConfigurationError
from chancy.plugin import Plugin, PluginScope
from chancy.plugins import store
from chancy.plugins.leadership import lease_params

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.worker import Worker

log = logging.getLogger("chancy.recovery")


class Recovery(Plugin):
    """Leader-only: return jobs of workers without a live heartbeat to their queues.

    :param poll_interval: seconds between passes.
    :param max_recoveries: how many interruptions by a dying worker a job survives; the next
        one fails it.
    :param batch_size: jobs recovered per statement.
    :param forget_workers_after: heartbeat rows expired this many seconds ago are deleted
        (None keeps them).
    :param probe_interval: seconds between checks of the workers' sessions (liveness locks).
    :param session_grace: seconds a worker's session may be gone before its jobs are taken
        back (a worker that reconnects within it keeps them).
    """

    provides_recovery = True

    def __init__(
        self,
        poll_interval: float = 60,
        max_recoveries: int = 3,
        *,
        batch_size: int = 1000,
        forget_workers_after: float | None = 3600,
        probe_interval: float = 1.0,
        session_grace: float = 2.0,
    ) -> None:
        super().__init__()
        if isinstance(poll_interval, bool) or not isinstance(poll_interval, int | float):
            raise ConfigurationError(f"Recovery(poll_interval={poll_interval!r}) must be seconds")
        if poll_interval <= 0:
            raise ConfigurationError(f"Recovery(poll_interval={poll_interval!r}) must be > 0")
        if isinstance(max_recoveries, bool) or not isinstance(max_recoveries, int):
            raise ConfigurationError(
                f"Recovery(max_recoveries={max_recoveries!r}) must be an int >= 0"
            )
        if max_recoveries < 0:
            raise ConfigurationError(
                f"Recovery(max_recoveries={max_recoveries}) must be at least 0 (0 fails a job"
                " the first time its worker dies under it)"
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigurationError(f"Recovery(batch_size={batch_size!r}) must be at least 1")
        self.poll_interval = float(poll_interval)
        self.max_recoveries = max_recoveries
        self.batch_size = batch_size
        self.forget_workers_after = forget_workers_after
        for name, value in (("probe_interval", probe_interval), ("session_grace", session_grace)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigurationError(f"Recovery({name}={value!r}) must be seconds > 0")
        self.probe_interval = float(probe_interval)
        self.session_grace = float(session_grace)

    @classmethod
    def get_identifier(cls) -> str:
        return "chancy.recovery"

    @classmethod
    def get_scope(cls) -> PluginScope:
        return PluginScope.LEADER

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        loop = asyncio.get_running_loop()
        next_pass = 0.0
        while True:
            lease = lease_params(worker)
            dead = await self.probe(chancy, lease=lease)
            if dead or loop.time() >= next_pass:
                started = loop.time()
                recovered, failed = await self.recover(chancy, lease=lease)
                next_pass = loop.time() + self.poll_interval
                # Every pass is announced, as in Chancy 0.26 (hub and NOTIFY).
                body = {"elapsed": loop.time() - started, "rows_recovered": recovered + failed}
                pool = await chancy.open()
                async with pool.connection() as conn, conn.cursor() as cursor:
                    await chancy.notify(cursor, events.RECOVERY_RECOVERED, body)
            await self.sleep(min(self.probe_interval, self.poll_interval))

    async def probe(self, chancy: Chancy, *, lease: dict[str, Any] | None = None) -> int:
        """Check the workers' sessions; return how many have been gone past the grace."""
        fence = lease if lease is not None else store.UNFENCED
        spec = store.recovery_probe(chancy.prefix, fence, grace=self.session_grace)
        row = await chancy.db.run(spec)
        return int(row["dead"])

    async def recover(self, *args: Any, lease: dict[str, Any] | None = None) -> Any:
        """One pass: recover every abandoned job in batches; return (recovered, failed).

        ``recover(chancy, lease=...)``: ``lease`` is the fence from
        :func:`~chancy.plugins.leadership.lease_params`; None (an operator calling this by
        hand) writes without one. Chancy 0.26's form ``recover(worker, chancy, cursor)`` is
        accepted too (the worker's lease fences it) and returns the number of jobs handled.
        """
        if len(args) == 3:
            worker, chancy, _cursor = args
            recovered, failed = await self._recover(chancy, lease_params(worker))
            return recovered + failed
        (chancy,) = args
        return await self._recover(chancy, lease)

    async def _recover(self, chancy: Chancy, lease: dict[str, Any] | None) -> tuple[int, int]:
        fence = lease if lease is not None else store.UNFENCED
        spec = store.recovery_recover(
            chancy.prefix,
            fence,
            limit=self.batch_size,
            max_recoveries=self.max_recoveries,
            notify=chancy.notifications,
            grace=self.session_grace,
        )
        recovered = failed = 0
        while True:
            row = await chancy.db.run(spec)
            recovered += row["recovered"]
            failed_ids = list(row["failed_ids"] or ())
            failed += len(failed_ids)
            if failed_ids:
                log.error(
                    "%d job(s) failed after being interrupted more than %d times by their"
                    " worker dying: %s",
                    len(failed_ids),
                    self.max_recoveries,
                    ", ".join(map(str, failed_ids)),
                )
            if row["total"] < self.batch_size:
                break
            await asyncio.sleep(0)
        if recovered:
            log.warning("recovered %d job(s) from workers without a live heartbeat", recovered)
        if self.forget_workers_after is not None:
            after = float(self.forget_workers_after)
            await chancy.db.run(store.recovery_forget_workers(chancy.prefix, fence, after=after))
        return recovered, failed
