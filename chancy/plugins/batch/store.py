"""The batch plugin's store: one function per named query of ``sql/batch.sql``.

Each returns a ``Spec`` that ``chancy.db`` runs on a pool connection, on the sync pool or in
the caller's transaction; pushes and the leader's passes yield them from plans.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, LiteralString

from chancy.store import Spec
from chancy.store.loader import Queries, queries

Row = dict[str, Any]


def _q(prefix: str) -> Queries:
    return queries("chancy.plugins.batch.sql", prefix)


# -- pushing and reading ----------------------------------------------------------------------


def insert(prefix: str, batch_id: uuid.UUID, callbacks: Mapping[str, str | None]) -> Spec[None]:
    """Store a new batch with its callbacks (packed jobs as JSON text, or None)."""
    params = {
        "id": batch_id,
        "on_success": callbacks.get("on_success"),
        "on_failure": callbacks.get("on_failure"),
        "on_finish": callbacks.get("on_finish"),
    }
    return Spec(_q(prefix)["batch_insert"], params)


def add_jobs(
    prefix: str,
    batch_id: uuid.UUID,
    job_ids: Sequence[uuid.UUID],
    keyed_ids: Sequence[uuid.UUID],
    *,
    notify: bool,
) -> Spec[Row]:
    """Make these jobs members of the batch (one statement): ``job_ids`` were pushed without a
    unique key (new ids), ``keyed_ids`` with one. Returns the batch's ``total``."""
    params = {
        "id": batch_id,
        "job_ids": list(job_ids),
        "keyed_ids": list(keyed_ids),
        "notify": notify,
    }
    return Spec(_q(prefix)["batch_add_jobs"], params, "one")


def get(prefix: str, batch_id: uuid.UUID) -> Spec[Row | None]:
    """A batch row with the live states of its unrecorded members (``unrecorded``)."""
    return Spec(_q(prefix)["batch_get"], {"id": batch_id}, "one")


def list_page(prefix: str, before: uuid.UUID, open_: bool | None, limit: int) -> Spec[list[Row]]:
    """Batches before ``before``, newest first; only open (True) or closed (False) ones."""
    params = {"before": before, "open": open_, "limit": limit}
    return Spec(_q(prefix)["batch_list"], params, "all")


# -- the leader's pass ------------------------------------------------------------------------


def pass_lock(prefix: str, fence: Mapping[str, Any]) -> Spec[Row | None]:
    """Start a pass: a row while the lease is current; passes of a prefix run one at a time."""
    return Spec(_q(prefix)["batch_pass_lock"], dict(fence), "one")


def record(prefix: str, job_ids: Sequence[uuid.UUID]) -> Spec[list[Row]]:
    """Count the finished ones of these jobs on their batches; each batch counted, with what
    remains of it."""
    return Spec(_q(prefix)["batch_record"], {"job_ids": list(job_ids)}, "all")


def finish(prefix: str, ids: Sequence[uuid.UUID]) -> Spec[list[Row]]:
    """Close the batches among ``ids`` with nothing remaining (each once); their rows."""
    return Spec(_q(prefix)["batch_finish"], {"ids": list(ids)}, "all")


def callbacks(
    prefix: str, ids: Sequence[uuid.UUID], pushed: Sequence[str], *, notify: bool
) -> Spec[Row]:
    """Record the callback jobs pushed for closed batches (JSON objects name -> job id)."""
    params = {"ids": list(ids), "callbacks": list(pushed), "notify": notify}
    return Spec(_q(prefix)["batch_callbacks"], params, "one")


def member_page(prefix: str, after: uuid.UUID, limit: int) -> Spec[list[Row]]:
    """Unrecorded members after ``after``, in job id order."""
    return Spec(_q(prefix)["batch_member_page"], {"after": after, "limit": limit}, "all")


def open_page(prefix: str, after: uuid.UUID, limit: int) -> Spec[list[Row]]:
    """Open batches after ``after``, in id order."""
    return Spec(_q(prefix)["batch_open_page"], {"after": after, "limit": limit}, "all")


# -- cleanup ----------------------------------------------------------------------------------


def cleanup(prefix: str, retention: float, limit: int) -> Spec[Row]:
    """Delete up to ``limit`` batches closed more than ``retention`` seconds ago."""
    return Spec(_q(prefix)["batch_cleanup"], {"retention": retention, "limit": limit}, "one")


def prune_guard(prefix: str) -> LiteralString:
    """The predicate that keeps jobs whose outcome no batch has recorded yet from the pruner."""
    return _q(prefix)["batch_prune_guard"]
