"""Typed store methods over the named queries of ``chancy/store/sql``.

Each method returns a ``Spec`` or a ``Plan`` that either runner executes, on a pool
connection or inside the caller's transaction. Encoding happens here, once per job. The
methods live in one module per concern (jobs, claims, queues and workers) and meet in
``Store``.
"""

from __future__ import annotations

from typing import LiteralString

import psycopg

from chancy.store.claims import Claim, ClaimSpecs
from chancy.store.encode import COPY_THRESHOLD, EncodedJob, encode_job
from chancy.store.jobs import JobSpecs
from chancy.store.loader import queries
from chancy.store.queues import QueueSpecs, queue_from_row

__all__ = [
    "COPY_THRESHOLD",
    "Claim",
    "EncodedJob",
    "Store",
    "encode_job",
    "queue_from_row",
]


class Store(JobSpecs, ClaimSpecs, QueueSpecs):
    """Query specs for one installation (table prefix)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.q = queries("chancy.store.sql", prefix)
        self.channel = f"{prefix}events"

    def live_key_conflict(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a push's unique violation on the live unique keys' index: what
        ``job_push_encoded(..., fresh_keys=True)`` raises when a key it bet on is live."""
        return (
            isinstance(exc, psycopg.errors.UniqueViolation)
            and exc.diag.constraint_name == f"{self.prefix}jobs_unique_key"
        )

    def q_migrate(self, name: str) -> LiteralString:
        """A query of the migration machinery (migrate.sql)."""
        return self.q[name]
