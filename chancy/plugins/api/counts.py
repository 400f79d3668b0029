"""Counts the dashboard shows, capped or estimated so that polling them stays cheap.

Why: an open dashboard polls, and on a table of millions of jobs an exact ``count(*)`` per
poll would cost more than the workers' own work. Counts are exact up to ``threshold`` and
come from the planner's estimate above it; waiting and running jobs are read through their
small partial indexes, never through the finished jobs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import sql

from chancy.job import QueuedJob
from chancy.rule import SQLAble, compile_rule_named
from chancy.store.loader import Queries

__all__ = ["STATES", "Counter", "plan_rows"]

STATES = tuple(s.value for s in QueuedJob.State)
#: The age of a queue's oldest due job looks at this many distinct priorities at most.
PRIORITIES_SCANNED = 32


def plan_rows(row: Any) -> int:
    """The row count the planner expects, from an ``EXPLAIN (FORMAT JSON)`` row (0 if none)."""
    try:
        document = row["QUERY PLAN"]
        if isinstance(document, str):
            document = json.loads(document)
        return int(document[0]["Plan"]["Plan Rows"])
    except (KeyError, IndexError, TypeError, ValueError):
        return 0


class Counter:
    """The dashboard's counting statements for one table prefix."""

    def __init__(self, queries: Queries, prefix: str, threshold: int) -> None:
        self.q = queries
        self.prefix = prefix
        self.threshold = threshold

    def composed(self, name: str, rule: SQLAble) -> tuple[sql.Composed, dict[str, Any]]:
        """The named query ``name`` with its ``{where}`` filled by ``rule`` (values as
        parameters, never as text)."""
        where, params = compile_rule_named(rule, alias="j", prefix="f_")
        return sql.SQL(self.q[name]).format(where=where), params

    # -- queues ---------------------------------------------------------------------------

    async def waiting(
        self, cur: psycopg.AsyncCursor[Any], queue: str, counted: int
    ) -> tuple[int, bool]:
        """A queue's waiting jobs from a capped count: the count itself below the cap, the
        planner's estimate (never less than the count) at it. Returns (jobs, estimated)."""
        if counted < self.threshold:
            return counted, False
        await cur.execute(self.q["api_queue_waiting_estimate"], {"queue": queue})
        return max(counted, plan_rows(await cur.fetchone())), True

    async def depths(self, cur: psycopg.AsyncCursor[Any]) -> dict[str, dict[str, Any]]:
        """Per queue: ``waiting``, ``running``, ``estimated`` and ``oldest_due_seconds``
        (how long the job it would claim next has been due)."""
        await cur.execute(
            self.q["api_queue_depths"],
            {"cap": self.threshold, "priorities": PRIORITIES_SCANNED},
        )
        out: dict[str, dict[str, Any]] = {}
        for row in await cur.fetchall():
            waiting, estimated = await self.waiting(cur, row["queue"], int(row["waiting"]))
            out[row["queue"]] = {
                "waiting": waiting,
                "running": int(row["running"]),
                "estimated": estimated,
                "oldest_due_seconds": max(0.0, float(row["oldest_due_seconds"] or 0)),
            }
        return out

    # -- jobs -----------------------------------------------------------------------------

    async def jobs(
        self, cur: psycopg.AsyncCursor[Any], rule: SQLAble, *, big: bool
    ) -> dict[str, Any]:
        """Jobs matching ``rule``: exact up to the threshold, else the planner's estimate."""
        if not big:
            query, params = self.composed("api_jobs_count", rule)
            try:
                async with cur.connection.transaction():
                    await cur.execute(query, {**params, "cap": self.threshold + 1})
                    row = await cur.fetchone()
                n = int(row["n"]) if row else 0
                if n <= self.threshold:
                    return {"count": n, "estimated": False}
            except psycopg.errors.QueryCanceled:
                pass
        query, params = self.composed("api_jobs_estimate", rule)
        await cur.execute(query, params)
        return {"count": plan_rows(await cur.fetchone()), "estimated": True}

    async def big_table(self, cur: psycopg.AsyncCursor[Any]) -> bool:
        """Whether the jobs table holds more live rows than the threshold (no scan)."""
        await cur.execute(self.q["api_jobs_table_estimate"], {"table": f"{self.prefix}jobs"})
        row = await cur.fetchone()
        return bool(row) and int(row["estimate"] or 0) > self.threshold  # type: ignore[index]

    async def whole_table(
        self, cur: psycopg.AsyncCursor[Any], stats: Mapping[str, Any]
    ) -> dict[str, dict[str, Any]]:
        """Per-state counts of a big table without scanning its finished jobs.

        The waiting and running states are counted exactly (capped) through their small
        partial indexes; the finished ones are the live row count times the share of each
        state that the last ANALYZE saw (estimates).
        """
        counts: dict[str, dict[str, Any]] = {}
        cap = self.threshold + 1
        await cur.execute(self.q["api_jobs_active_counts"], {"cap": cap})
        row: Any = await cur.fetchone()
        for state in ("pending", "retrying", "running"):
            n = int(row[state])
            counts[state] = {"count": min(n, self.threshold), "estimated": n >= cap}
        total = int(stats.get("estimate") or 0)
        freqs = dict(zip(stats.get("states") or [], stats.get("freqs") or [], strict=False))
        if freqs:
            # As the planner reads the statistics: a state among the most common values has
            # its share; the others split what is left evenly.
            distinct = float(stats.get("n_distinct") or 0)
            if distinct < 0:
                distinct = -distinct * total
            rest = max(0.0, 1.0 - sum(float(f) for f in freqs.values()))
            others = max(1.0, distinct - len(freqs))
            for state in ("succeeded", "failed"):
                share = float(freqs[state]) if state in freqs else rest / others
                counts[state] = {"count": round(total * share), "estimated": True}
        else:
            # Never analyzed: whatever is not waiting or running counts as finished.
            finished = max(0, total - sum(c["count"] for c in counts.values()))
            counts["succeeded"] = {"count": finished, "estimated": True}
            counts["failed"] = {"count": 0, "estimated": True}
        return {st: counts[st] for st in STATES}
