"""Job actions of ``Chancy`` (a mixin of the app facade): cancellation with a reason, and a
job finishing itself inside the caller's transaction (``complete_job_ex``).

Each is one store spec, run on a pool connection, on the sync pool or in the caller's
transaction (the ``_ex`` forms).
"""

from __future__ import annotations

import getpass
import socket
import uuid
from typing import TYPE_CHECKING, Any

import psycopg

from chancy.errors import InvalidJobError, JobNoLongerOwned
from chancy.job import QueuedJob, Reference
from chancy.outcome import encode_result
from chancy.store import Spec
from chancy.utils import check_text, jsonb_dumps

if TYPE_CHECKING:
    from chancy.db import Db
    from chancy.store import Store

Ref = Reference | uuid.UUID | str
#: The longest cancellation reason (or ``by``) stored; longer text is refused.
MAX_REASON = 2000


def default_canceller() -> str:
    """Who cancels when the caller does not say: ``user@host`` of this process."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry (some containers)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _check_reason(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidJobError(f"{what} must be a string or None, got {type(value).__name__}")
    if len(value) > MAX_REASON:
        raise InvalidJobError(
            f"{what} is {len(value)} characters long; keep it under {MAX_REASON} (a sentence,"
            " not a log)"
        )
    try:
        check_text(value, what)
    except ValueError as exc:
        raise InvalidJobError(str(exc)) from None
    return value


class JobActions:
    """Cancelling jobs and completing them transactionally, for ``Chancy``."""

    db: Db
    store: Store
    notifications: bool
    max_result_size: int

    # -- cancellation -----------------------------------------------------------------------

    def _cancel(self, ref: Ref, reason: str | None, by: str | None) -> Spec[bool]:
        reason = _check_reason(reason, "reason")
        by = _check_reason(by, "by") or default_canceller()
        return self.store.job_cancel(ref, reason=reason, by=by, notify=self.notifications)

    async def cancel_job(
        self, ref: Ref, reason: str | None = None, *, by: str | None = None
    ) -> bool:
        """Cancel a job that has not finished; True if it was cancelled.

        The job ends ``failed`` with ``meta["cancelled"] = true``; a pending job never runs
        and a running one is interrupted by its worker. ``reason`` (why) and ``by`` (who;
        ``user@host`` of this process by default) are stored in the job's meta
        (``cancel_reason``, ``cancelled_by``) and in its error entry, and read back as
        ``QueuedJob.cancel_reason`` and ``QueuedJob.cancelled_by``.
        """
        return await self.db.run(self._cancel(ref, reason, by))

    async def cancel_job_ex(
        self,
        cursor: psycopg.AsyncCursor[Any],
        ref: Ref,
        reason: str | None = None,
        *,
        by: str | None = None,
    ) -> bool:
        return await self.db.run_ex(cursor, self._cancel(ref, reason, by))

    def sync_cancel_job(
        self, ref: Ref, reason: str | None = None, *, by: str | None = None
    ) -> bool:
        return self.db.run_sync(self._cancel(ref, reason, by))

    def sync_cancel_job_ex(
        self,
        cursor: psycopg.Cursor[Any],
        ref: Ref,
        reason: str | None = None,
        *,
        by: str | None = None,
    ) -> bool:
        return self.db.run_ex_sync(cursor, self._cancel(ref, reason, by))

    # -- transactional completion -----------------------------------------------------------

    def _complete(self, job: QueuedJob, result: Any) -> Spec[bool]:
        if not isinstance(job, QueuedJob):
            raise TypeError(
                f"complete_job_ex takes the running QueuedJob your job function received (a"
                f" keyword-only parameter annotated QueuedJob), not {type(job).__name__}"
            )
        if job.claim_id is None:
            raise InvalidJobError(
                f"job {job.id} carries no claim: pass the QueuedJob your job function received"
                " while it runs, not one read back with get_job()"
            )
        result_json, problem = encode_result(result, self.max_result_size)
        if problem is not None:
            raise InvalidJobError(f"complete_job_ex: {problem}")
        try:
            meta_json = jsonb_dumps(job.meta) if job.meta else None
        except (TypeError, ValueError) as exc:
            raise InvalidJobError(
                f"complete_job_ex: the job's meta cannot be stored as JSON ({exc}); keep only"
                " JSON values in job.meta"
            ) from None
        return self.store.job_complete_tx(job, result_json, meta_json, notify=self.notifications)

    @staticmethod
    def _owned(job: QueuedJob, written: bool) -> None:
        if not written:
            raise JobNoLongerOwned(
                f"job {job.id} is no longer running under this run's claim (it was recovered"
                " elsewhere, cancelled, given back or already finished), so it was not"
                " completed; let this error propagate so your transaction rolls back, and"
                " its writes are not committed"
            )

    async def complete_job_ex(
        self, cursor: psycopg.AsyncCursor[Any], job: QueuedJob, *, result: Any = None
    ) -> None:
        """Mark the running ``job`` succeeded, with ``result``, inside the caller's transaction.

        The job's success, its result and the transaction's own writes commit together, or
        not at all. The write is fenced by the job's claim: if the job is no longer running
        under it (recovered elsewhere, cancelled...), ``JobNoLongerOwned`` is raised and
        nothing is written for the job. Call it early in the transaction: it locks the
        job's row, so Recovery waits for the transaction instead of racing it. After the
        commit, the worker's own completion of the run writes nothing (the job's return
        value and any exception it raises later are ignored).
        """
        self._owned(job, await self.db.run_ex(cursor, self._complete(job, result)))

    def sync_complete_job_ex(
        self, cursor: psycopg.Cursor[Any], job: QueuedJob, *, result: Any = None
    ) -> None:
        """:meth:`complete_job_ex` for sync job code (thread and process executors)."""
        self._owned(job, self.db.run_ex_sync(cursor, self._complete(job, result)))
