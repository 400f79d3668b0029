"""The leader's pass over workflows: record finished steps, finish workflows, queue ready steps.

One pass is a plan (a generator of store specs) run in one transaction, so the leader,
``process_workflow`` and its sync twin run the same statements. See the notes at the top of
``chancy.plugins.workflow.plugin`` for the design.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from chancy import events
from chancy.job import Job
from chancy.plugins.workflow import store
from chancy.plugins.workflow.workflow import Workflow
from chancy.push import plan as push_plan
from chancy.store import Plan

if TYPE_CHECKING:
    from chancy.app import Chancy

log = logging.getLogger("chancy.workflow")

#: Jobs pushed per statement by a pass.
_PUSH_BATCH = 1000


@dataclasses.dataclass(slots=True)
class PassResult:
    """What one advancing pass did."""

    leader: bool = True
    queued: int = 0
    finished: int = 0
    #: Unfinished workflows a full pass looked at.
    active: int = 0
    #: True when the pass stopped at its step limit: run another one at once.
    more: bool = False
    #: Steps whose finished job the pass recorded.
    synced: int = 0


def pass_plan(
    chancy: Chancy,
    fence: dict[str, Any],
    *,
    job_ids: Iterable[uuid.UUID],
    workflow_ids: Iterable[uuid.UUID],
    full: bool,
    limit: int,
) -> Plan[PassResult]:
    """One advancing pass, as statements to run in one transaction (see the module's notes).

    A plan rather than a coroutine so that the leader, ``process_workflow`` and its sync
    twin all run the same statements.
    """
    explicit = list(workflow_ids)
    jobs = list(job_ids)
    result = PassResult()
    if fence["fenced"]:
        held: Any = yield store.lease(chancy.prefix, fence)
        if held is None:
            result.leader = False
            return result
    changed: Any = []
    if full:
        changed = yield store.sync_workflows(chancy.prefix, explicit)
    elif jobs:
        changed = yield store.sync_jobs(chancy.prefix, jobs)
    result.synced = len(changed)
    if changed and chancy.notifications:
        # Chancy 0.26 announced each workflow whose step jobs finished.
        stepped = sorted({str(row["workflow_id"]) for row in changed})
        yield chancy.store.notify_many(
            (events.WORKFLOW_STEP_COMPLETED, {"workflow_id": w}) for w in stepped
        )
    ids = sorted({row["workflow_id"] for row in changed} | set(explicit))
    if not ids:
        return result
    settled: Any = yield store.settle(chancy.prefix, ids, notify=chancy.notifications)
    result.finished = sum(1 for row in settled if row["finished"])
    for row in settled:
        if row["finished"]:
            log.info("workflow %s %s", row["id"], row["state"])
    active = [row["id"] for row in settled if row["state"] in ("pending", "running")]
    if not active:
        return result
    ready: Any = yield store.ready(chancy.prefix, active, limit)
    if not ready:
        return result
    to_push = [step_job(row) for row in ready]
    job_refs: list[Any] = []
    for start in range(0, len(to_push), _PUSH_BATCH):
        job_refs.extend((yield from push_plan(chancy, to_push[start : start + _PUSH_BATCH])))
    yield store.queued(
        chancy.prefix, [row["id"] for row in ready], [ref.identifier for ref in job_refs]
    )
    result.queued = len(ready)
    result.more = len(ready) >= limit
    return result


def refresh(workflow: Workflow, stored: Workflow) -> None:
    """Bring ``workflow`` up to date with ``stored`` (the same workflow, as just read)."""
    workflow.state = stored.state
    workflow.created_at = stored.created_at
    workflow.updated_at = stored.updated_at
    for key, step in stored.steps.items():
        mine = workflow.steps.get(key)
        if mine is None:
            workflow.steps[key] = step
        else:
            mine.job_id = step.job_id
            mine.state = step.state


def step_job(row: dict[str, Any]) -> Job:
    job = Job.unpack(row["job_data"])
    marker = {
        "id": str(row["workflow_id"]),
        "step": row["step_id"],
        "dependencies": list(row["dependencies"] or ()),
    }
    return dataclasses.replace(job, meta={**job.meta, "workflow": marker})
