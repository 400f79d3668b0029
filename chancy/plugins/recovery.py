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
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from chancy.errors import ConfigurationError
from chancy.plugin import Plugin, PluginScope
from chancy.plugins import plugin_queries
from chancy.plugins.leadership import lease_params
from chancy.store import Spec

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
    """

    provides_recovery = True

    def __init__(
        self,
        poll_interval: float = 60,
        max_recoveries: int = 3,
        *,
        batch_size: int = 1000,
        forget_workers_after: float | None = 3600,
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

    @classmethod
    def get_identifier(cls) -> str:
        return "chancy.recovery"

    @classmethod
    def get_scope(cls) -> PluginScope:
        return PluginScope.LEADER

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        while True:
            await self.recover(chancy, lease=lease_params(worker))
            await self.sleep(self.poll_interval)

    async def recover(
        self, chancy: Chancy, *, lease: dict[str, Any] | None = None
    ) -> tuple[int, int]:
        """One pass: recover every abandoned job in batches; return (recovered, failed).

        ``lease`` is the fence from :func:`~chancy.plugins.leadership.lease_params`; None
        (an operator calling this by hand) writes without one.
        """
        fence = lease if lease is not None else {"leader": None, "term": None, "fenced": False}
        q = plugin_queries(chancy.prefix)
        recovered = failed = 0
        while True:
            params = {
                **fence,
                "limit": self.batch_size,
                "max_recoveries": self.max_recoveries,
                "notify": chancy.notifications,
            }
            row: dict[str, Any] = await chancy._run(Spec(q["recovery_recover"], params, "one"))
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
            params = {**fence, "after": float(self.forget_workers_after)}
            await chancy._run(Spec(q["recovery_forget_workers"], params, "one"))
        return recovered, failed
