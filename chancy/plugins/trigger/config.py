"""A registered trigger as the API returns it, and the small rules about ids and names."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Any

import psycopg

from chancy.job import Job
from chancy.plugins.trigger.checks import TriggerError

#: PostgreSQL truncates identifiers longer than this (in bytes).
_MAX_IDENTIFIER = 63


@dataclasses.dataclass
class TriggerConfig:
    """A registered trigger, as :meth:`Trigger.get_triggers` returns it.

    The first eight fields are Chancy 0.26's; the others describe row-level triggers.
    """

    id: uuid.UUID
    table_name: str
    schema_name: str
    trigger_name: str
    operations: list[str]
    job_template: Job
    enabled: bool
    created_at: datetime
    #: 'statement' (one job per statement) or 'row' (one push per changed row).
    level: str = "statement"
    #: The WHEN condition of a row-level trigger (SQL over NEW and OLD), if any.
    when: str | None = None
    #: Columns of the changed row copied into the job's kwargs (row level).
    kwargs_columns: list[str] | None = None
    #: The unique key template (``'user-sync:{id}'``); None keeps the job template's key.
    unique_key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the CLI's ``--json`` and the dashboard's routes)."""
        job = self.job_template
        return {
            "id": str(self.id),
            "table_name": self.table_name,
            "schema_name": self.schema_name,
            "trigger_name": self.trigger_name,
            "operations": list(self.operations),
            "level": self.level,
            "when": self.when,
            "kwargs_columns": self.kwargs_columns,
            "unique_key": self.unique_key,
            "enabled": self.enabled,
            "created_at": self.created_at.isoformat(),
            "job": {
                "func": job.func,
                "queue": job.queue,
                "kwargs": job.kwargs,
                "priority": job.priority,
                "max_attempts": job.max_attempts,
                "unique_key": job.unique_key,
            },
        }


def config_from_row(row: Any) -> TriggerConfig:
    columns = row["kwargs_columns"]
    return TriggerConfig(
        id=row["id"],
        table_name=row["table_name"],
        schema_name=row["schema_name"],
        trigger_name=row["trigger_name"],
        operations=list(row["operations"]),
        # Due when pushed, whatever time the stored template carries.
        job_template=Job.unpack({**row["job_template"], "s": None}),
        enabled=row["enabled"],
        created_at=row["created_at"],
        level=row["level"],
        when=row["condition"],
        kwargs_columns=list(columns) if columns is not None else None,
        unique_key=row["unique_key"],
    )


def parse_trigger_id(value: uuid.UUID | str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        raise TriggerError(
            f"{value!r} is not a trigger id; trigger ids are UUIDs (see `chancy trigger list`)"
        ) from None


def not_found(trigger_id: uuid.UUID) -> TriggerError:
    return TriggerError(
        f"Trigger {trigger_id} not found; list the registered triggers with"
        " Trigger.get_triggers(chancy) or `chancy trigger list`"
    )


def base_name(prefix: str, trigger_id: uuid.UUID) -> str:
    """The base name of a trigger's database triggers (0.26's form when it fits).

    Each operation's trigger is this plus ``_insert``, ``_update`` or ``_delete``; with a
    long table prefix 0.26's form would be truncated by PostgreSQL (and the three names could
    collide), so a shorter form is used then.
    """
    name = f"{prefix}trigger_{str(trigger_id).replace('-', '_')}"
    if len(name.encode()) + len("_insert") > _MAX_IDENTIFIER:
        name = f"trigger_{trigger_id.hex}"
    return name


def database_error(exc: psycopg.Error, doing: str) -> TriggerError:
    diag = exc.diag
    message = diag.message_primary or str(exc)
    hint = f" ({diag.message_hint})" if diag.message_hint else ""
    return TriggerError(f"cannot {doing}: {message}{hint}")
