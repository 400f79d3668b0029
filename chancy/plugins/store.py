"""The store of the built-in leader plugins: leadership, recovery, pruner and reprioritize.

One function per named query of ``chancy/plugins/sql``; each returns a ``Spec`` that
``chancy.db`` runs on a pool connection (``db.run``) or inside a caller's transaction
(``Db.run_ex``). Leader-only statements take the lease fence (:data:`UNFENCED` when there is
none to carry) and put it in front of their own parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, LiteralString

from psycopg import sql

from chancy.store import Spec
from chancy.store.loader import Queries, queries

#: The fence of a write made without a lease (an operator's call, ImmediateLeadership).
UNFENCED: dict[str, Any] = {"leader": None, "term": None, "fenced": False}

Row = dict[str, Any]


def _q(prefix: str) -> Queries:
    return queries("chancy.plugins.sql", prefix)


# -- leadership -------------------------------------------------------------------------------


def leader_elect(prefix: str, params: Mapping[str, Any]) -> Spec[Row | None]:
    """Take the lease if it is free, expired or already ours (a new term); else report the
    holder and the seconds its lease has left."""
    return Spec(_q(prefix)["leader_elect"], dict(params), "one")


def leader_probe(prefix: str, params: Mapping[str, Any]) -> Spec[Row | None]:
    """Check the leader's session lock; ``takeover`` once it has been gone past the grace."""
    return Spec(_q(prefix)["leader_probe"], dict(params), "one")


def leader_renew(prefix: str, params: Mapping[str, Any]) -> Spec[Row | None]:
    """Extend the lease of ``(worker_id, term)``; no row when it is no longer ours."""
    return Spec(_q(prefix)["leader_renew"], dict(params), "one")


def leader_resign(prefix: str, worker_id: str, *, notify: bool) -> Spec[Row | None]:
    """Expire this worker's lease and (with ``notify``) tell the followers."""
    return Spec(_q(prefix)["leader_resign"], {"worker_id": worker_id, "notify": notify}, "one")


# -- recovery ---------------------------------------------------------------------------------


def recovery_probe(prefix: str, fence: Mapping[str, Any], *, grace: float) -> Spec[Row]:
    """Mark workers whose session lock is free as lost; count those gone past ``grace``."""
    return Spec(_q(prefix)["recovery_probe"], {**fence, "grace": grace}, "one")


def recovery_recover(
    prefix: str,
    fence: Mapping[str, Any],
    *,
    limit: int,
    max_recoveries: int,
    notify: bool,
    grace: float,
) -> Spec[Row]:
    """One batch of abandoned jobs back to the queue (or failed past ``max_recoveries``)."""
    params = {
        **fence,
        "limit": limit,
        "max_recoveries": max_recoveries,
        "notify": notify,
        "grace": grace,
    }
    return Spec(_q(prefix)["recovery_recover"], params, "one")


def recovery_forget_workers(prefix: str, fence: Mapping[str, Any], *, after: float) -> Spec[Row]:
    """Delete the rows of workers silent for ``after`` seconds."""
    return Spec(_q(prefix)["recovery_forget_workers"], {**fence, "after": after}, "one")


# -- pruner -----------------------------------------------------------------------------------


def pruner_delete_statement(
    prefix: str, where: sql.Composable, guards: Sequence[LiteralString] = ()
) -> sql.Composed:
    """The statement that deletes one batch of finished jobs matching ``where`` (a compiled
    rule over ``j``), kept back by every guard (see ``Plugin.prune_guard``)."""
    keep = sql.SQL(" ").join(sql.SQL(_q(prefix)["pruner_guard"]).format(sql.SQL(g)) for g in guards)
    return sql.SQL(_q(prefix)["pruner_delete"]).format(where=where, keep=keep)


def pruner_delete(
    statement: sql.Composed, rule_params: Mapping[str, Any], fence: Mapping[str, Any], limit: int
) -> Spec[Row | None]:
    """Run one batch of :func:`pruner_delete_statement`; ``deleted`` counts the rows."""
    return Spec(statement, {**rule_params, **fence, "limit": limit}, "one")


# -- reprioritize -----------------------------------------------------------------------------


def reprioritize_statement(prefix: str, where: sql.Composable) -> sql.Composed:
    """The statement that raises the priority of one batch of waiting jobs matching
    ``where`` (a compiled rule over ``j``), in id order after ``%(after)s``."""
    return sql.SQL(_q(prefix)["reprioritize_bump"]).format(where=where)


def reprioritize_bump(
    statement: sql.Composed, params: Mapping[str, Any], fence: Mapping[str, Any]
) -> Spec[Row | None]:
    """Run one batch of :func:`reprioritize_statement`."""
    return Spec(statement, {**params, **fence}, "one")
