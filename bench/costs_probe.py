"""The instruments of bench/costs.py: statements by phase, and server processes' CPU time.

- :class:`Statements` names each ``pg_stat_statements`` row after the chancy query it is (the
  named queries of every ``.sql`` folder of chancy, matched on their text with constants and
  parameters blanked out) and puts it in a phase: ``push``, ``claim``, ``complete``,
  ``cleanup`` or ``other`` (the worker's periodic work: heartbeat, leadership, metrics, queue
  polls, the workflow leader's passes).
- :class:`CpuSampler` reads the CPU time of every process of a local server (the postmaster
  and its children) from ``/proc/<pid>/schedstat`` (nanoseconds; ``/proc/<pid>/stat``'s
  ``utime + stime`` ticks where schedstat is missing), every 0.1 s, and sums it per group: a
  client backend's ``application_name``, else the process's backend type. A process that
  exits keeps the last value read.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import os
import re
from collections.abc import Iterable
from importlib import resources
from typing import Any

import psycopg

from bench.db import queries
from chancy.store.loader import Queries

#: The phase of each chancy statement (by its name in chancy's .sql files).
PHASES: dict[str, str] = {
    # push: the producer's insert (multi-row or COPY), the unique-key look-up, a workflow's
    # rows; the workflow leader's inserts of step jobs count here too.
    "job_insert_many": "push",
    "job_insert_many_lean": "push",
    "job_insert_many_plain": "push",
    "job_copy": "push",
    "job_copy_lean": "push",
    "job_copy_unique": "push",
    "job_copy_lean_unique": "push",
    "job_copy_prepare": "push",
    "job_live_by_unique_keys": "push",
    "workflow_push": "push",
    # claim: the claim statement, the limits' lock and counting, a workflow step's
    # dependency results read as its batch starts.
    "job_fetch": "claim",
    "job_fetch_limited": "claim",
    "job_fetch_keyed": "claim",
    "limit_lock": "claim",
    "claim_settings": "claim",
    "workflow_results": "claim",
    # complete: the completer's batch write (with its NOTIFY).
    "job_complete_many": "complete",
    # advance: the workflow leader's pass that records finished steps and queues ready ones
    # (its job inserts are job_insert_many, under push).
    "workflow_sync_jobs": "advance",
    "workflow_sync_workflows": "advance",
    "workflow_settle": "advance",
    "workflow_ready": "advance",
    "workflow_queued": "advance",
    "workflow_lease": "advance",
    "workflow_has_pending_jobs": "advance",
    # cleanup: the pruner's delete (and VACUUM, matched below).
    "pruner_delete": "cleanup",
}

PHASE_ORDER = ("push", "claim", "complete", "advance", "cleanup", "other")
#: The phases every job goes through (the projection's sum).
PER_JOB = ("push", "claim", "complete", "advance")

_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_PARAM = re.compile(r"%\(\w+\)s|%s|\$\d+|'(?:[^']|'')*'|(?<![\w.$])-?\d+(?:\.\d+)?\b")
_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """A statement's text with comments, constants and parameters blanked, lower case."""
    text = _COMMENT.sub(" ", text)
    text = _PARAM.sub("?", text)
    return _SPACE.sub(" ", text).strip().rstrip(";").strip().lower()


def _sql_packages() -> list[str]:
    """Every package of chancy that holds named queries (migrations aside)."""
    import chancy

    root = resources.files(chancy)
    found: list[str] = []

    def walk(node: Any, dotted: str) -> None:
        entries = list(node.iterdir())
        if any(e.name.endswith(".sql") for e in entries):
            found.append(dotted)
        for entry in entries:
            if entry.is_dir() and entry.name not in ("migrations", "__pycache__"):
                walk(entry, f"{dotted}.{entry.name}")

    walk(root, "chancy")
    return found


class Statements:
    """Names and phases of ``pg_stat_statements`` rows for one installation's prefix."""

    def __init__(self, prefix: str) -> None:
        self.by_text: dict[str, str] = {}
        for package in _sql_packages():
            try:
                named = Queries(package, prefix)
            except (ValueError, KeyError):
                continue
            for name in named.names():
                self.by_text.setdefault(normalize(named[name]), name)
        own = queries(prefix)
        for name in own.names():
            self.by_text.setdefault(normalize(own[name]), f"bench:{name}")
        self._cache: dict[str, str] = {}

    def name(self, text: str) -> str:
        """The named query ``text`` is, else a short form of the text itself."""
        if text in self._cache:
            return self._cache[text]
        key = normalize(text)
        found = self.by_text.get(key)
        if found is None:
            # Constants the server blanks differently (a negative number, a cast): the
            # closest named query, if it is close.
            best, score = None, 0.0
            for candidate, name in self.by_text.items():
                matcher = difflib.SequenceMatcher(None, key, candidate, autojunk=False)
                if matcher.real_quick_ratio() < 0.9 or matcher.quick_ratio() < 0.9:
                    continue
                ratio = matcher.ratio()
                if ratio > score:
                    best, score = name, ratio
            found = best if best is not None and score >= 0.9 else key[:60]
        self._cache[text] = found
        return found

    @staticmethod
    def phase(name: str, window: str) -> str:
        """The phase of a statement named ``name`` run during ``window``.

        In the cleanup window a statement that is no named query is the pruner's delete (its
        text is composed from the rule) or the ``VACUUM``.
        """
        if name in PHASES:
            return PHASES[name]
        if window == "cleanup" and (" " in name or name.startswith("vacuum")):
            return "cleanup"
        return "other"

    @staticmethod
    def by_pusher(phase: str, name: str, window: str, workflows: bool) -> bool:
        """Whether the benchmark's pushing app (not the worker) ran this statement: the push
        statements of the push window (of a workflow path only ``workflow_push``: the
        leader, in the worker, inserts the steps' jobs) and the cleanup of the cleanup window.
        """
        if window == "push":
            return name == "workflow_push" if workflows else phase == "push"
        return window == "cleanup" and phase == "cleanup"


async def statements(conn: psycopg.AsyncConnection[Any]) -> dict[int, dict[str, Any]]:
    """A snapshot of ``pg_stat_statements`` for this database, by query id."""
    cur = await conn.execute(queries("bench_")["costs_statements"])
    return {int(r["queryid"]): dict(r) for r in await cur.fetchall() if r["queryid"] is not None}


def statement_delta(
    before: dict[int, dict[str, Any]], after: dict[int, dict[str, Any]]
) -> list[dict[str, Any]]:
    """What each statement did between two snapshots (calls, µs, WAL bytes)."""
    rows = []
    for qid, row in after.items():
        old = before.get(qid, {})
        calls = int(row["calls"]) - int(old.get("calls", 0))
        if calls <= 0:
            continue
        ms = (float(row["total_exec_time"]) + float(row["total_plan_time"])) - (
            float(old.get("total_exec_time", 0)) + float(old.get("total_plan_time", 0))
        )
        rows.append(
            {
                "query": row["query"],
                "calls": calls,
                "us": ms * 1000.0,
                "rows": int(row["rows"]) - int(old.get("rows", 0)),
                "wal_bytes": int(row["wal_bytes"]) - int(old.get("wal_bytes", 0)),
                "wal_fpi": int(row["wal_fpi"]) - int(old.get("wal_fpi", 0)),
            }
        )
    return rows


# -- CPU of the server's processes --------------------------------------------------------

_TICK_NS = 1e9 / os.sysconf("SC_CLK_TCK")


def process_cpu_ns(pid: int) -> int | None:
    """CPU time of process ``pid`` so far, in nanoseconds (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int((int(fields[11]) + int(fields[12])) * _TICK_NS)
    except (OSError, ValueError, IndexError):
        return None


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _children(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _parent(int(entry)) == parent:
            found.append(int(entry))
    return found


def is_local_backend(pid: int) -> bool:
    """Whether ``pid`` is a PostgreSQL process this machine can read (a local server)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"postgres" in f.read()
    except OSError:
        return False


class CpuSampler:
    """CPU time of a local server's processes, grouped, sampled in the background.

    ``mark()`` returns the totals so far per process; the difference of two marks, summed
    per group, is each group's CPU time between them.
    """

    def __init__(self, dsn: str, backend_pid: int, exclude: Iterable[int] = ()) -> None:
        self.dsn = dsn
        self.postmaster = _parent(backend_pid) or backend_pid
        self.exclude = set(exclude)
        #: pid -> last CPU nanoseconds read; pid -> group.
        self.cpu: dict[int, int] = {}
        self.group: dict[int, str] = {}
        self._task: asyncio.Task[None] | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def __aenter__(self) -> CpuSampler:
        from bench.db import connect

        self._conn = await connect(self.dsn)
        cur = await self._conn.execute(queries("bench_")["costs_backend_pid"])
        row = await cur.fetchone()
        assert row is not None
        self.exclude.add(int(row["pid"]))
        await self.sample()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None:
            await self._conn.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            await self.sample()

    async def sample(self) -> None:
        assert self._conn is not None
        cur = await self._conn.execute(queries("bench_")["costs_processes"])
        for row in await cur.fetchall():
            pid = int(row["pid"])
            # A process first seen in /proc before pg_stat_activity named it is "server"
            # until it does.
            if self.group.get(pid, "server") == "server":
                self.group[pid] = str(row["what"])
        pids = [self.postmaster, *_children(self.postmaster)]
        for pid in pids:
            value = process_cpu_ns(pid)
            if value is not None:
                self.cpu[pid] = value
                self.group.setdefault(pid, "postmaster" if pid == self.postmaster else "server")

    async def mark(self) -> dict[int, int]:
        await self.sample()
        return dict(self.cpu)

    def between(self, start: dict[int, int], end: dict[int, int]) -> dict[str, float]:
        """CPU microseconds per group between two marks (``all`` sums every process but the
        measuring sessions)."""
        out: dict[str, float] = {"all": 0.0}
        for pid, value in end.items():
            if pid in self.exclude:
                continue
            spent = (value - start.get(pid, 0)) / 1000.0
            group = self.group.get(pid, "server")
            out[group] = out.get(group, 0.0) + spent
            out["all"] += spent
        return out
