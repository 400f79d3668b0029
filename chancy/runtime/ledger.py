"""The ledger of running jobs: what this worker claimed and has not reported yet.

A job enters when its claim returns and leaves when its outcome is reported. The ledger also
remembers the runs interrupted because the worker's heartbeat lease lapsed: their jobs are
being recovered elsewhere, and the interruption is not the job's fault (the database may only
have restarted), so such a run is given back like one cut short at shutdown (pending again,
no attempt used) instead of being written as a failure.

A job taken back while its run here went on (recovered while the worker was unreachable) can
be claimed by this worker again before that run ends. The new claim waits in the ledger
(``deferred``) until the earlier run has settled, so a worker never runs two runs of one job
at once: the executors keep their runs by job id, and a second run of an id lost the first's
place (its outcome was never reported, and the job stayed running under a live worker).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Iterator

from chancy.job import QueuedJob
from chancy.outcome import Outcome, evolve

_GIVE_BACK = (QueuedJob.State.FAILED, QueuedJob.State.RETRYING)


class Ledger:
    """Running jobs by id, and whether any are left (``all_done``)."""

    __slots__ = ("_abandoned", "_deferred", "_running", "all_done")

    def __init__(self) -> None:
        self._running: dict[uuid.UUID, QueuedJob] = {}
        #: New claims of jobs whose earlier run here has not settled yet (see above).
        self._deferred: dict[uuid.UUID, QueuedJob] = {}
        self._abandoned: set[uuid.UUID] = set()
        self.all_done = asyncio.Event()
        self.all_done.set()

    def __len__(self) -> int:
        return len(self._running) + len(self._deferred)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._running or job_id in self._deferred

    def __iter__(self) -> Iterator[uuid.UUID]:
        return iter([*self._running, *self._deferred])

    def get(self, job_id: uuid.UUID) -> QueuedJob | None:
        return self._running.get(job_id)

    def jobs(self) -> list[QueuedJob]:
        return list(self._running.values())

    def add(self, jobs: Iterable[QueuedJob]) -> list[QueuedJob]:
        """Record a claim's jobs as running here; return those that must wait, since an
        earlier run of the same job is still here (``promote`` starts them)."""
        running = self._running
        waiting: list[QueuedJob] = []
        for job in jobs:
            if job.id in running or job.id in self._deferred:
                self._deferred[job.id] = job
                waiting.append(job)
            else:
                running[job.id] = job
        if running or self._deferred:
            self.all_done.clear()
        return waiting

    def promote(self, job_id: uuid.UUID) -> QueuedJob | None:
        """After a run of ``job_id`` settled: its new claim that waited, now running here."""
        job = self._deferred.pop(job_id, None)
        if job is not None:
            self._running[job_id] = job  # all_done stayed clear: this job was waiting
        return job

    def settle(self, outcome: Outcome) -> Outcome:
        """Take a run's outcome off the ledger; return what to write for it.

        An abandoned run that ended in an error (it was interrupted) is written as given
        back: the job as claimed, pending again, no attempt used.
        """
        job_id = outcome.job.id
        claimed = self._running.pop(job_id, None)
        if self._abandoned and job_id in self._abandoned:
            self._abandoned.discard(job_id)
            if claimed is not None and outcome.job.state in _GIVE_BACK:
                outcome = Outcome(evolve(claimed, state=QueuedJob.State.PENDING))
        if not self._running and not self._deferred:
            self.all_done.set()
        return outcome

    def abandon_all(self) -> list[uuid.UUID]:
        """The heartbeat lease lapsed: every running job is being recovered elsewhere."""
        ids = list(self._running)
        self._abandoned.update(ids)
        return ids

    def abandon(self, ids: Iterable[uuid.UUID]) -> None:
        """These jobs are no longer ours (recovered elsewhere): give their runs back."""
        self._abandoned.update(i for i in ids if i in self._running)

    def claims(self) -> list[tuple[uuid.UUID, uuid.UUID | None]]:
        """(id, claim id) of every running job and waiting claim, to give them back."""
        return [
            (job.id, job.claim_id) for job in (*self._running.values(), *self._deferred.values())
        ]
