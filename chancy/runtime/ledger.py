"""The ledger of running jobs: what this worker claimed and has not reported yet.

A job enters when its claim returns and leaves when its outcome is reported. The ledger also
remembers the runs interrupted because the worker's heartbeat lease lapsed: their jobs are
being recovered elsewhere, and the interruption is not the job's fault (the database may only
have restarted), so such a run is given back like one cut short at shutdown (pending again,
no attempt used) instead of being written as a failure.
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

    __slots__ = ("_abandoned", "_running", "all_done")

    def __init__(self) -> None:
        self._running: dict[uuid.UUID, QueuedJob] = {}
        self._abandoned: set[uuid.UUID] = set()
        self.all_done = asyncio.Event()
        self.all_done.set()

    def __len__(self) -> int:
        return len(self._running)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._running

    def __iter__(self) -> Iterator[uuid.UUID]:
        return iter(list(self._running))

    def get(self, job_id: uuid.UUID) -> QueuedJob | None:
        return self._running.get(job_id)

    def jobs(self) -> list[QueuedJob]:
        return list(self._running.values())

    def add(self, jobs: Iterable[QueuedJob]) -> None:
        """Record a claim's jobs as running here."""
        running = self._running
        for job in jobs:
            running[job.id] = job
        if running:
            self.all_done.clear()

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
        if not self._running:
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
        """(id, claim id) of every running job, to give them back."""
        return [(job.id, job.claim_id) for job in self._running.values()]
