"""The trigger plugin's store: one function per named query of ``sql/trigger.sql``.

Registration runs these in one transaction (a savepoint inside the caller's), so a failed
registration leaves nothing behind; the database triggers themselves are created and dropped
by the plugin's SQL functions (``trigger_install``/``trigger_uninstall``, see migrations).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from chancy.plugins.trigger.config import TriggerConfig, config_from_row
from chancy.store import Spec
from chancy.store.loader import Queries, queries

Row = dict[str, Any]


def _q(prefix: str) -> Queries:
    return queries("chancy.plugins.trigger.sql", prefix)


def table_info(prefix: str, schema: str, table: str) -> Spec[Row | None]:
    """The table's kind, quoted name, columns and primary key (None when absent)."""
    return Spec(_q(prefix)["trigger_table_info"], {"schema": schema, "table": table}, "one")


def queue_declared(prefix: str, queue: str) -> Spec[Row]:
    """Whether ``queue`` is declared (a template's queue must be)."""
    return Spec(_q(prefix)["trigger_queue_declared"], {"queue": queue}, "one")


def insert(prefix: str, params: Mapping[str, Any]) -> Spec[None]:
    """Register a trigger (its row; the database triggers are installed separately)."""
    return Spec(_q(prefix)["trigger_insert"], dict(params))


def install(prefix: str, trigger_id: uuid.UUID) -> Spec[Row | None]:
    """Create a registered trigger's database triggers."""
    return Spec(_q(prefix)["trigger_install"], {"id": trigger_id}, "one")


def uninstall(prefix: str, trigger_id: uuid.UUID) -> Spec[Row | None]:
    """Drop a registered trigger's database triggers (its registration stays)."""
    return Spec(_q(prefix)["trigger_uninstall"], {"id": trigger_id}, "one")


def lock(prefix: str, trigger_id: uuid.UUID) -> Spec[Row | None]:
    """Lock a registration for a change; None when there is no such trigger."""
    return Spec(_q(prefix)["trigger_lock"], {"id": trigger_id}, "one")


def set_enabled(prefix: str, trigger_id: uuid.UUID, enabled: bool) -> Spec[None]:
    """Record whether a trigger is enabled."""
    return Spec(_q(prefix)["trigger_set_enabled"], {"id": trigger_id, "enabled": enabled})


def delete(prefix: str, trigger_id: uuid.UUID) -> Spec[None]:
    """Remove a registration (its database triggers must be dropped first)."""
    return Spec(_q(prefix)["trigger_delete"], {"id": trigger_id})


def get(prefix: str, ids: Sequence[uuid.UUID] | None) -> Spec[list[TriggerConfig]]:
    """Registered triggers, newest first; all of them when ``ids`` is None."""

    def decode(rows: list[Row]) -> list[TriggerConfig]:
        return [config_from_row(row) for row in rows]

    params = {"ids": None if ids is None else list(ids)}
    return Spec(_q(prefix)["trigger_get"], params, "all", decode)
