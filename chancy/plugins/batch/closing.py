"""The leader's pass over batches: record finished members, close batches, push callbacks.

One pass is a plan (a generator of store specs) run in one transaction, so the leader and an
operator's ``Batch.process`` run the same statements. See the notes at the top of
``chancy.plugins.batch.plugin`` for the design.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from chancy.job import Job
from chancy.plugins.batch import store
from chancy.push import plan as push_plan
from chancy.store import Plan
from chancy.utils import json_dumps

if TYPE_CHECKING:
    from chancy.app import Chancy

log = logging.getLogger("chancy.batch")

#: The keyword arguments every callback receives (besides its own).
BATCH_ID_KWARG = "batch_id"
BATCH_COUNTS_KWARG = "batch_counts"

#: The callbacks, in the order they are pushed.
CALLBACKS = ("on_success", "on_failure", "on_finish")


@dataclasses.dataclass(slots=True)
class PassResult:
    """What one pass did."""

    leader: bool = True
    #: Batches the pass closed (their callbacks pushed).
    closed: int = 0
    #: Callback jobs pushed.
    pushed: int = 0


def due_callbacks(row: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The callbacks a closed batch gets: on_success when no job failed, on_failure when one
    did, on_finish either way; each a (name, packed job) pair."""
    wanted = ["on_success" if row["failed"] == 0 else "on_failure", "on_finish"]
    return [(name, row[name]) for name in CALLBACKS if name in wanted and row[name] is not None]


def callback_job(packed: dict[str, Any], row: dict[str, Any]) -> Job:
    """A callback's job, given the batch id and its counts as keyword arguments."""
    job = Job.unpack(packed)
    counts = {"total": row["total"], "succeeded": row["succeeded"], "failed": row["failed"]}
    return job.with_kwargs(
        **job.kwargs, **{BATCH_ID_KWARG: str(row["id"]), BATCH_COUNTS_KWARG: counts}
    )


def pass_plan(
    chancy: Chancy,
    fence: dict[str, Any],
    *,
    job_ids: Iterable[uuid.UUID] = (),
    batch_ids: Iterable[uuid.UUID] = (),
) -> Plan[PassResult]:
    """One pass in one transaction: record the finished ones of ``job_ids``, then close the
    batches they emptied and those of ``batch_ids`` with nothing remaining, pushing their
    callbacks."""
    result = PassResult()
    held = yield store.pass_lock(chancy.prefix, fence)
    if held is None:
        result.leader = False
        return result
    jobs = sorted(set(job_ids))
    emptied: list[uuid.UUID] = []
    if jobs:
        counted: Any = yield store.record(chancy.prefix, jobs)
        emptied = [row["id"] for row in counted if row["remaining"] <= 0]
    candidates = sorted(set(emptied) | set(batch_ids))
    if not candidates:
        return result
    closed: Any = yield store.finish(chancy.prefix, candidates)
    if not closed:
        return result
    names: list[list[str]] = []
    to_push: list[Job] = []
    for row in closed:
        mine: list[str] = []
        for name, packed in due_callbacks(row):
            try:
                to_push.append(callback_job(packed, row))
            except Exception:
                # Checked at push time; a row changed by hand since is logged, not retried for
                # ever (the batch still closes, so the others' callbacks are not held up).
                log.exception("batch %s: its %s callback cannot be read; skipped", row["id"], name)
                continue
            mine.append(name)
        names.append(mine)
    refs: list[Any] = (yield from push_plan(chancy, to_push)) if to_push else []
    pushed = iter(refs)
    recorded = [json_dumps({name: str(next(pushed)) for name in mine}) for mine in names]
    yield store.callbacks(
        chancy.prefix, [row["id"] for row in closed], recorded, notify=chancy.notifications
    )
    for row in closed:
        log.info(
            "batch %s closed: %d succeeded, %d failed",
            row["id"],
            row["succeeded"],
            row["failed"],
        )
    result.closed = len(closed)
    result.pushed = len(refs)
    return result
