"""The runtime's shared context: what a worker's services need, and the route of an outcome.

The Worker builds one ``Runtime`` and hands it to its services (producers, the completer,
the heartbeat, the set of served queues) instead of itself, so each service sees only what
it uses. The public ``Worker`` object travels along only to be given to plugins and
executors, whose APIs take it.

A job's route through a worker is a straight line:

1. a ``Producer`` claims a batch (``producer.fetch_claim``), records it in the ``Ledger``,
   runs the starting hooks once for the batch and pushes each job to its executor;
2. the executor runs it and reports ``(job, exc, result)`` to ``Runtime.report``;
3. ``report`` builds the ``Outcome`` (``chancy.outcome``), runs ``on_job_completed``, takes
   the job off the ledger and gives the outcome to the ``Completer`` (and frees the slot);
4. the completer writes a batch in one fenced statement, runs the transaction and update
   hooks, and tells the served queues what was written (retries due again, limits freed).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any, TypeVar

from chancy import events
from chancy.hooks import Hooks
from chancy.job import COMPLETED_STATES, QueuedJob, Reference
from chancy.outcome import Outcome, build_outcome, evolve
from chancy.runtime.ledger import Ledger
from chancy.store.jobs import LINEAR_JOIN_FROM

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.executors.base import Executor
    from chancy.hub import Hub
    from chancy.runtime.completer import Completer
    from chancy.runtime.heartbeat import Heartbeat
    from chancy.runtime.progress import ProgressWriter
    from chancy.runtime.queues import QueueSet
    from chancy.store import Spec
    from chancy.worker import Worker

log = logging.getLogger("chancy.worker")

T = TypeVar("T")


class Runtime:
    """One worker's services and the state they share."""

    def __init__(self, worker: Worker, chancy: Chancy, hub: Hub) -> None:
        #: The public worker, handed to plugin hooks and executors (their APIs take it).
        self.worker = worker
        self.chancy = chancy
        self.hub = hub
        self.hooks: Hooks = chancy.hooks
        self.ledger = Ledger()
        #: Starts of claims that waited for an earlier run (``_start_waited``), referenced
        #: until done.
        self._starts: set[asyncio.Task[None]] = set()
        self.max_result_size: int = chancy.max_result_size
        self.stopping = False
        #: This worker's liveness lock key, once its session holds the lock (None otherwise:
        #: no LISTEN session, e.g. behind a transaction pooler; heartbeats alone then).
        self.liveness_key: int | None = None
        # Set by the worker once built (they need the runtime themselves).
        self.completer: Completer
        self.queues: QueueSet
        self.heartbeat: Heartbeat
        self.progress: ProgressWriter

    @property
    def worker_id(self) -> str:
        return self.worker.worker_id

    def held_ids(self) -> set[Any]:
        """Ids of the jobs this worker holds: running, or ended with the outcome unwritten."""
        held = set(self.ledger)
        held.update(outcome.job.id for outcome in self.completer.pending())
        return held

    def can_claim(self) -> bool:
        return not self.stopping and self.heartbeat.trusted()

    async def write_joined(self, spec: Spec[T], size: int) -> T:
        """Run ``spec``, a write joining a batch of ``size`` rows to the jobs table (progress
        reports, given-back claims): a big batch runs in a transaction under the completion's
        planner settings (``Store.linear_join``)."""
        chancy = self.chancy
        return await chancy.db.run(
            chancy.store.linear_join(spec, size), transaction=size >= LINEAR_JOIN_FROM
        )

    # -- the route of an outcome --------------------------------------------------------

    async def claimed(self, jobs: list[QueuedJob]) -> list[QueuedJob]:
        """A claim returned ``jobs``: record them and run the starting hooks, once per batch.

        Returns the jobs to run; a job a plugin already finished is reported at once. A job
        whose earlier run is still here (taken back while this worker was unreachable, and
        claimed by it again) waits for that run to end: its claim is gone, so it is
        interrupted, and the new run starts once it has settled (see ``Ledger``).
        """
        waiting = self.ledger.add(jobs)
        if waiting:
            log.warning(
                "claimed %d job(s) again while an earlier run of each was still here (taken"
                " back while this worker was unreachable); the earlier runs are interrupted"
                " and the new ones start when they end: %s",
                len(waiting),
                ", ".join(str(job.id) for job in waiting[:20]),
            )
            ids = {job.id for job in waiting}
            self.ledger.abandon(ids)
            for job_id in ids:
                self.cancel_local(job_id)
            jobs = [job for job in jobs if job.id not in ids]
        return await self._starting(jobs)

    async def _starting(self, jobs: list[QueuedJob]) -> list[QueuedJob]:
        """Run the starting hooks for jobs about to run; return those to run. A job whose
        starting hook raised does not run: its attempt fails with the plugin's error."""
        if self.hooks.any("on_job_starting") or self.hooks.any("on_jobs_starting"):
            failed: list[tuple[QueuedJob, BaseException]] = []
            jobs = await self.hooks.starting(jobs, self.worker, failed)
            for job, exc in failed:
                await self.report(job, exc)
        runnable = []
        for job in jobs:
            if job.state in COMPLETED_STATES:
                # Finished before it ran: a plugin did it, or the stored row was invalid.
                self.accept(Outcome(job))
            else:
                runnable.append(job)
        return runnable

    async def report(
        self, job: QueuedJob, exc: BaseException | None = None, result: Any = None
    ) -> None:
        """An executor finished running ``job``: compute its next state and have it written.

        ``job`` is the job as the run left it (its ``meta`` may have been changed by the job).
        """
        outcome = build_outcome(job, exc, result, max_result_size=self.max_result_size)
        if exc is not None and log.isEnabledFor(logging.DEBUG):
            log.debug("job %s (%s) failed", job.id, job.func, exc_info=exc)
        plugins = self.hooks.implementing("on_job_completed")
        if plugins:
            new_job, delay, changed = await self.hooks.completed(
                outcome.job, exc, result, self.worker, plugins
            )
            if delay is not None:
                outcome.delay = delay
            if changed:
                if delay is None and new_job.scheduled_at != outcome.job.scheduled_at:
                    # A plugin chose an absolute time; it overrides any relative delay.
                    outcome.delay = None
                outcome.job = new_job
        self.accept(outcome)

    def accept(self, outcome: Outcome) -> None:
        """Take a finished run off the ledger and hand its outcome to the completer."""
        outcome = self.ledger.settle(outcome)
        self.completer.add(outcome)
        self.queues.slot_freed(outcome.job.queue)
        waited = self.ledger.promote(outcome.job.id)
        if waited is not None:
            task = asyncio.get_running_loop().create_task(self._start_waited(waited))
            self._starts.add(task)
            task.add_done_callback(self._starts.discard)

    async def _start_waited(self, job: QueuedJob) -> None:
        """Start a new claim that waited for its job's earlier run here to end."""
        executor = self.queues.executors.get(job.queue)
        if executor is None:
            log.warning("queue %r is no longer served here; giving job %s back", job.queue, job.id)
            self.give_back(job)
            return
        try:
            runnable = await self._starting([job])
        except Exception:
            log.exception("could not start job %s; giving it back to its queue", job.id)
            self.give_back(job)
            return
        await self.start(executor, runnable)

    async def start(self, executor: Executor, jobs: list[QueuedJob]) -> None:
        """Hand claimed jobs to ``executor``, in order; one it refuses (stopped under the
        claim, say) is given back, not left running here unseen."""
        for job in jobs:
            try:
                if not executor.start_now(job):
                    await executor.push(job)
            except Exception:
                log.exception("queue %r: could not start job %s; giving it back", job.queue, job.id)
                self.give_back(job)

    def give_back(self, job: QueuedJob) -> None:
        """A claimed job that will not run here: pending again, no attempt used (written
        fenced by its claim)."""
        self.accept(Outcome(evolve(job, state=QueuedJob.State.PENDING)))

    # -- notifications ------------------------------------------------------------------

    def route(self, payload: dict[str, Any]) -> None:
        """A NOTIFY from another process (or the notifier itself): act, then emit it."""
        event = payload.get("t")
        if not isinstance(event, str):
            return
        if event == events.QUEUE_PUSHED:
            self.queues.wake(str(payload.get("q")))
        elif event in (events.QUEUE_DECLARED, events.QUEUE_PAUSED, events.QUEUE_RESUMED):
            self.queues.changed()
        elif event == events.JOB_CANCELLED:
            self.cancel_local(payload.get("j"))
        elif event == events.NOTIFIER_CONNECTED:
            # Pushes may have been missed while the connection was down.
            self.queues.wake_all()
        self.hub.emit(event, payload)

    def cancel_local(self, raw_id: Any) -> None:
        """Interrupt the job ``raw_id`` if it runs here (its terminal write is already made)."""
        try:
            job_id = uuid.UUID(str(raw_id))
        except ValueError:
            return
        job = self.ledger.get(job_id)
        if job is None:
            return
        executor = self.queues.executors.get(job.queue)
        if executor is not None:
            log.info("interrupting cancelled job %s", job_id)
            asyncio.get_running_loop().create_task(executor.cancel(Reference(job_id)))

    async def liveness_restored(self) -> None:
        """Our session's liveness lock was taken back after a reconnect: if the leader saw
        it free meanwhile, clear that, and give up any job recovered elsewhere meanwhile."""
        key = self.liveness_key
        if key is None:
            return
        row = await self.chancy.db.run(
            self.chancy.store.worker_liveness_restored(self.worker_id, key)
        )
        if row and row["lost_at"] is not None:
            log.warning(
                "worker %s was seen lost at %s (its session ended); it is back",
                self.worker_id,
                row["lost_at"],
            )
        claims = self.ledger.claims()
        if not claims:
            return
        lost = await self.chancy.db.run(self.chancy.store.job_claims_lost(claims))
        if lost:
            log.warning(
                "%d job(s) of worker %s were recovered (or cancelled) elsewhere while it was"
                " unreachable; their runs here are interrupted and their writes ignored",
                len(lost),
                self.worker_id,
            )
            self.ledger.abandon(lost)
            for job_id in lost:
                self.cancel_local(job_id)

    def liveness_lost(self) -> None:
        """Our heartbeat lease lapsed: our jobs are being recovered elsewhere; interrupt them.

        Each interrupted run is given back (see ``Ledger.settle``); the write is fenced by
        the claim, so a job that Recovery already returned is left alone.
        """
        self.hub.emit(events.WORKER_HEARTBEAT_LOST, {"running": len(self.ledger)})
        for job_id in self.ledger.abandon_all():
            self.cancel_local(job_id)
