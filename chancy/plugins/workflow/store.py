"""The workflow plugin's store: one function per named query of ``sql/workflow.sql``, and the
decoding of a stored workflow.

Each returns a ``Spec`` that ``chancy.db`` runs on a pool connection, on the sync pool or in
the caller's transaction; the leader's pass (``advance.py``) yields them from a plan.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, LiteralString

from chancy.job import Job, QueuedJob
from chancy.plugins.workflow.workflow import Workflow, WorkflowStep
from chancy.store import Spec
from chancy.store.loader import Queries, queries

Row = dict[str, Any]


def q(prefix: str) -> Queries:
    return queries("chancy.plugins.workflow.sql", prefix)


def workflow_id(value: Any) -> uuid.UUID:
    """A workflow id from a Workflow, a UUID or its text; ``KeyError`` for anything else."""
    if isinstance(value, Workflow):
        value = value.id
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise KeyError(f"{value!r} is not a workflow id (a UUID)") from None


def from_row(row: Mapping[str, Any]) -> Workflow:
    """The stored workflow of a ``workflow_get_many``/``workflow_list`` row, with its steps."""
    steps: dict[str, WorkflowStep] = {}
    for step in row["steps"] or ():
        state = step.get("state")
        if state is not None:
            with contextlib.suppress(ValueError):
                state = QueuedJob.State(state)
        steps[step["step_id"]] = WorkflowStep(
            job=Job.unpack(step["job_data"]),
            step_id=step["step_id"],
            dependencies=list(step["dependencies"] or ()),
            job_id=step["job_id"],
            state=state,
        )
    try:
        state = Workflow.State(row["state"])
    except ValueError:
        state = row["state"]
    return Workflow(
        name=row["name"],
        steps=steps,
        state=state,
        id=str(row["id"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


# -- pushing and reading ----------------------------------------------------------------------


def push(prefix: str, params: Mapping[str, Any]) -> Spec[Row]:
    """Insert or update a workflow and its steps (see workflow.sql for what a push keeps)."""
    return Spec(q(prefix)["workflow_push"], dict(params), "one")


def fetch(
    prefix: str,
    states: Iterable[str] | None,
    ids: Iterable[Any] | None,
    name: str | None,
    limit: int,
    offset: int,
) -> Spec[list[Workflow]]:
    """Workflows matching every given filter, newest first (by id: primary key lookups)."""

    def decode(rows: list[Row]) -> list[Workflow]:
        return [from_row(row) for row in rows]

    if ids is not None:
        wanted = [workflow_id(i) for i in ids]
        by_id = {"ids": wanted}
        if states is None and name is None and offset == 0 and limit >= len(wanted):
            return Spec(q(prefix)["workflow_get_many"], by_id, "all", decode)
        allowed = None if states is None else {str(s) for s in states}

        def narrow(rows: list[Row]) -> list[Workflow]:
            kept = [
                r
                for r in rows
                if (allowed is None or r["state"] in allowed)
                and (name is None or r["name"] == name)
            ]
            return decode(kept[offset : offset + limit])

        return Spec(q(prefix)["workflow_get_many"], by_id, "all", narrow)
    params = {
        "states": None if states is None else [str(s) for s in states],
        "name": name,
        "limit": limit,
        "offset": offset,
    }
    return Spec(q(prefix)["workflow_list"], params, "all", decode)


def state(prefix: str, id_: uuid.UUID) -> Spec[Row | None]:
    """A workflow's state alone (the cheap read ``wait_for_workflow`` polls)."""
    return Spec(q(prefix)["workflow_state"], {"id": id_}, "one")


def results(
    prefix: str, workflow_ids: Sequence[uuid.UUID], step_ids: Sequence[str]
) -> Spec[list[Row]]:
    """The results of the (workflow, step) pairs given, with their job's state and size."""
    params = {"workflow_ids": list(workflow_ids), "step_ids": list(step_ids)}
    return Spec(q(prefix)["workflow_results"], params, "all")


# -- the leader's pass ------------------------------------------------------------------------


def lease(prefix: str, fence: Mapping[str, Any]) -> Spec[Row | None]:
    """A row while the lease in ``fence`` is current (share-locked until commit)."""
    return Spec(q(prefix)["workflow_lease"], dict(fence), "one")


def has_pending_jobs(prefix: str, job_ids: Sequence[uuid.UUID]) -> Spec[Row]:
    """Whether any of these jobs is the unfinished job of a step."""
    return Spec(q(prefix)["workflow_has_pending_jobs"], {"job_ids": list(job_ids)}, "one")


def active_ids(prefix: str, after: uuid.UUID, limit: int) -> Spec[list[Row]]:
    """One page of unfinished workflows, in id order after ``after``."""
    return Spec(q(prefix)["workflow_active_ids"], {"after": after, "limit": limit}, "all")


def sync_jobs(prefix: str, job_ids: Sequence[uuid.UUID]) -> Spec[list[Row]]:
    """Record these finished jobs on their steps; the workflows whose steps changed."""
    return Spec(q(prefix)["workflow_sync_jobs"], {"job_ids": list(job_ids)}, "all")


def sync_workflows(prefix: str, workflow_ids: Sequence[uuid.UUID]) -> Spec[list[Row]]:
    """The same for every unfinished step of these workflows (the full pass)."""
    params = {"workflow_ids": list(workflow_ids)}
    return Spec(q(prefix)["workflow_sync_workflows"], params, "all")


def settle(prefix: str, ids: Sequence[uuid.UUID], *, notify: bool) -> Spec[list[Row]]:
    """Lock these workflows and finish those that are done; each one's state."""
    return Spec(q(prefix)["workflow_settle"], {"ids": list(ids), "notify": notify}, "all")


def ready(prefix: str, ids: Sequence[uuid.UUID], limit: int) -> Spec[list[Row]]:
    """Steps of these workflows whose dependencies all succeeded, locked."""
    return Spec(q(prefix)["workflow_ready"], {"ids": list(ids), "limit": limit}, "all")


def queued(prefix: str, step_ids: Sequence[int], job_ids: Sequence[uuid.UUID]) -> Spec[Row]:
    """Record the jobs just pushed for ready steps; mark their workflows running."""
    params = {"ids": list(step_ids), "job_ids": list(job_ids)}
    return Spec(q(prefix)["workflow_queued"], params, "one")


# -- cleanup ----------------------------------------------------------------------------------


def cleanup(prefix: str, retention: float, limit: int) -> Spec[Row]:
    """Delete one batch of workflows finished longer than ``retention`` seconds ago."""
    params = {"retention": retention, "limit": limit}
    return Spec(q(prefix)["workflow_cleanup"], params, "one")


def prune_guard(prefix: str) -> LiteralString:
    """The predicate that keeps the jobs of a running workflow's steps from the pruner."""
    return q(prefix)["workflow_prune_guard"]
