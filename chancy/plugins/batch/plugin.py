"""BatchPlugin: on the leader, records the outcomes of batch jobs and pushes the callbacks.

How batches are kept (read before changing it):

* **Membership.** ``{prefix}batch_jobs`` holds one row per job of an open batch whose outcome
  has not been recorded yet, keyed by job id. The pusher fills it with one ``INSERT ...
  SELECT unnest`` in the transaction that pushes the jobs, so a batch of 100,000 jobs costs
  one extra statement, not one per job. The jobs themselves are not changed.
* **Recording.** The leader deletes the member rows of finished jobs and adds their outcomes
  (succeeded, failed; a job that vanished counts as failed) to the batch row's counters,
  in one statement. A batch whose ``remaining`` reaches 0 is closed in the same transaction:
  ``finished_at`` is set by a conditional ``UPDATE ... WHERE finished_at IS NULL RETURNING``
  and the callbacks are pushed before it commits. Whatever happens (two passes at once, a
  leader killed half-way, a job recovered and rerun), a batch is closed, and its callbacks
  pushed, once: the transaction that closes it is the one that pushes them. Passes of one
  prefix also take a transaction-level advisory lock, so they never count concurrently.
* **What wakes a pass.** ``job.finished`` notifications name the finished jobs: a pass
  records those of them that are members (primary key look-ups; a job that is no member costs
  one index probe). ``batch.created`` tells the leader that batches are open. Every
  ``poll_interval`` a full pass walks the unrecorded members (page by page) and the open
  batches, so nothing depends on a notification arriving; its cost is the batches' remaining
  jobs, not the jobs table.
* **A killed worker.** A job whose worker dies is recovered and rerun; it is recorded when
  its rerun finishes (``job.finished``), so the callback still comes once.
* **Pruning.** The pruner keeps every job not recorded yet (``prune_guard``); closed batches
  are deleted ``retention`` seconds after they closed by ``cleanup``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, LiteralString

from chancy import events
from chancy.errors import ConfigurationError
from chancy.plugin import Plugin, PluginScope
from chancy.plugins.batch import store
from chancy.plugins.batch.closing import PassResult, pass_plan
from chancy.plugins.leadership import lease_params
from chancy.plugins.store import UNFENCED

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.worker import Worker

log = logging.getLogger("chancy.batch")

#: More finished-job ids than this waiting for a pass turn it into a full pass.
_MAX_TRACKED_IDS = 20_000

_ZERO = uuid.UUID(int=0)


def _seconds(name: str, value: Any, *, allow_none: bool = False, allow_zero: bool = False) -> Any:
    if value is None and allow_none:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        bound = ">= 0" if allow_zero else "> 0"
        extra = " or None" if allow_none else ""
        raise ConfigurationError(f"BatchPlugin({name}={value!r}) must be seconds {bound}{extra}")
    return float(value)


class BatchPlugin(Plugin):
    """Leader-only: closes batches and pushes their callbacks (see :class:`Batch`).

    :param poll_interval: seconds between full passes over every open batch (passes also run
        at once on ``job.finished`` notifications, so this bounds the delay without them);
        default 10.
    :param retention: seconds a closed batch is kept before the pruner's cleanup deletes it;
        None keeps them for ever; default 86400.
    :param page_size: members and batches per statement (and per transaction) of a full pass;
        default 5000.
    """

    def __init__(
        self,
        *,
        poll_interval: float = 10,
        retention: float | None = 86400,
        page_size: int = 5000,
    ) -> None:
        super().__init__()
        self.poll_interval = _seconds("poll_interval", poll_interval)
        self.retention = _seconds("retention", retention, allow_none=True, allow_zero=True)
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise ConfigurationError(f"BatchPlugin(page_size={page_size!r}) must be an int >= 1")
        self.page_size = page_size
        self._wakers: set[asyncio.Event] = set()

    @classmethod
    def get_identifier(cls) -> str:
        return "chancy.batch"

    @classmethod
    def get_scope(cls) -> PluginScope:
        return PluginScope.LEADER

    def migrate_key(self) -> str | None:
        return "batch"

    def migrate_package(self) -> str | None:
        return "chancy.plugins.batch.migrations"

    def api_plugin(self) -> str | None:
        """The dashboard's routes and page for batches."""
        return "chancy.plugins.batch.api.BatchApiPlugin"

    def get_tables(self) -> list[str]:
        return ["batches", "batch_jobs"]

    def wake_up(self) -> None:
        super().wake_up()
        for event in self._wakers:
            event.set()

    # -- the leader's service -------------------------------------------------------------

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        wake = asyncio.Event()
        finished_ids: set[uuid.UUID] = set()
        # Whether open batches may exist: when the last full pass found none and none was
        # created since, finished jobs cannot be members and cost no query at all. A batch is
        # announced in the transaction that pushes its jobs, so before any of them finishes.
        state = {"open": True, "created": False}
        self._wakers.add(wake)

        def on_finished(event: Any) -> None:
            if not state["open"]:
                return
            for raw in event.body.get("ids") or ():
                with contextlib.suppress(ValueError):
                    finished_ids.add(uuid.UUID(str(raw)))
            wake.set()

        def on_created(_: Any) -> None:
            state["open"] = state["created"] = True

        worker.hub.on(events.JOB_FINISHED, on_finished)
        worker.hub.on(events.BATCH_CREATED, on_created)
        next_full = 0.0
        try:
            while True:
                wake.clear()
                lease = lease_params(worker)
                if time.monotonic() >= next_full or len(finished_ids) > _MAX_TRACKED_IDS:
                    finished_ids.clear()
                    state["created"] = False
                    next_full = time.monotonic() + self.poll_interval
                    still_open = await self.process(chancy, lease=lease)
                    state["open"] = still_open or state["created"]
                elif finished_ids:
                    jobs, finished_ids = sorted(finished_ids), set()
                    await self.process_jobs(chancy, jobs, lease=lease)
                timeout = max(0.0, next_full - time.monotonic())
                if timeout > 0 and not wake.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), timeout)
        finally:
            worker.hub.remove(events.JOB_FINISHED, on_finished)
            worker.hub.remove(events.BATCH_CREATED, on_created)
            self._wakers.discard(wake)

    async def process_jobs(
        self, chancy: Chancy, job_ids: list[uuid.UUID], *, lease: dict[str, Any] | None = None
    ) -> PassResult:
        """Record the finished ones of ``job_ids`` and close the batches they complete, in one
        transaction. ``lease`` is the fence from
        :func:`~chancy.plugins.leadership.lease_params`; without it nothing is fenced."""
        fence = lease if lease is not None else UNFENCED
        return await chancy.db.run(pass_plan(chancy, fence, job_ids=job_ids), transaction=True)

    async def process(self, chancy: Chancy, *, lease: dict[str, Any] | None = None) -> bool:
        """A full pass: every unrecorded member and every open batch, a page per transaction.
        Returns whether open batches remain."""
        fence = lease if lease is not None else UNFENCED
        after = _ZERO
        while True:
            rows = await chancy.db.run(store.member_page(chancy.prefix, after, self.page_size))
            if rows:
                ids = [row["job_id"] for row in rows]
                plan = pass_plan(chancy, fence, job_ids=ids)
                result = await chancy.db.run(plan, transaction=True)
                if not result.leader:
                    return True
                after = ids[-1]
            if len(rows) < self.page_size:
                break
        after = _ZERO
        still_open = False
        while True:
            rows = await chancy.db.run(store.open_page(chancy.prefix, after, self.page_size))
            if rows:
                ids = [row["id"] for row in rows]
                plan = pass_plan(chancy, fence, batch_ids=ids)
                result = await chancy.db.run(plan, transaction=True)
                if not result.leader:
                    return True
                still_open = still_open or result.closed < len(ids)
                after = ids[-1]
            if len(rows) < self.page_size:
                return still_open

    # -- the pruner's hooks ---------------------------------------------------------------

    def prune_guard(self, prefix: str) -> LiteralString | None:
        """Jobs whose outcome no batch has recorded yet stay (deleted, they would count as
        failed)."""
        return store.prune_guard(prefix)

    async def cleanup(self, chancy: Chancy) -> int | None:
        """Delete batches closed more than ``retention`` seconds ago; return how many."""
        if self.retention is None:
            return 0
        total = 0
        while True:
            spec = store.cleanup(chancy.prefix, self.retention, self.page_size)
            row = await chancy.db.run(spec)
            deleted = int(row["deleted"])
            total += deleted
            if deleted < self.page_size:
                return total
