"""Typed store methods over the named queries of ``chancy/store/sql``.

Each method returns a ``Spec`` or a ``Plan`` that either runner executes, on a pool
connection or inside the caller's transaction. Encoding happens here, once per job. The
methods live in one module per concern (jobs, claims, queues and workers) and meet in
``Store``.
"""

from __future__ import annotations

from typing import LiteralString

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

    def q_migrate(self, name: str) -> LiteralString:
        """A query of the migration machinery (migrate.sql)."""
        return self.q[name]
