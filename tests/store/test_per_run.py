"""Statements marked ``-- plan: per run`` are never server-prepared, on every runner path.

psycopg prepares a statement after a few runs, and the server may then keep one generic plan
for it. A lookup by id planned while the jobs table was tiny reads the whole table (the
cheapest plan there); kept as the generic plan, it would go on reading the table once it is
big (tests/store/test_plans.py, the ``tiny`` state). These tests run statements on
connections that prepare everything at once and look at what the server holds prepared.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from chancy import Chancy
from chancy.store.loader import Queries, per_run
from chancy.store.runner import Spec, run, run_pipelined_transaction, run_sync
from tests.conftest import drop_prefix
from tests.plans import positional

#: The statements whose plan on a tiny table scans it (test_plans.py's ``tiny`` state); the
#: completion write is the function complete_jobs instead (its SET clauses hold for every
#: plan it caches, migration v0020).
PER_RUN = {
    "chancy.store.sql": {
        "job_get_many",
        "job_progress_many",
        "job_purge_many",
        "job_release_many",
        "job_retry_many",
        "job_states",
    },
    "chancy.plugins.sql": {"recovery_recover"},
    "chancy.plugins.workflow.sql": {
        "workflow_has_pending_jobs",
        "workflow_settle",
        "workflow_sync_jobs",
        "workflow_sync_workflows",
    },
}


@pytest.fixture
def app(dsn: str, prefix: str) -> Iterator[Chancy]:
    chancy = Chancy(dsn, prefix=prefix, no_default_plugins=True)
    try:
        chancy.sync_migrate()
        yield chancy
    finally:
        drop_prefix(dsn, prefix)


def _held(query: str, prepared: list[str]) -> bool:
    """Whether the server holds ``query`` (as psycopg sends it, ``$n`` placeholders)."""
    return positional(query)[0] in prepared


#: What the server holds prepared on this session (itself never prepared).
PREPARED = "SELECT statement FROM pg_prepared_statements"


def _prepared(conn: Any) -> list[str]:
    cur = conn.cursor()
    cur.execute(PREPARED, prepare=False)
    return [row[0] for row in cur.fetchall()]


async def _prepared_async(conn: Any) -> list[str]:
    cur = conn.cursor()
    await cur.execute(PREPARED, prepare=False)
    return [row[0] for row in await cur.fetchall()]


def test_the_marked_statements_are_the_ones_planned_per_run(prefix: str) -> None:
    for package, names in PER_RUN.items():
        q = Queries(package, prefix)
        marked = {name for name in q.names() if per_run(q[name])}
        assert marked == names, package
    # Only a loaded query's exact text counts, not a copy with another prefix or an edit.
    q = Queries("chancy.store.sql", prefix)
    assert not per_run(q["job_states"] + " ")
    assert not per_run(q["job_get"])


def test_sync_runner_never_prepares_a_per_run_statement(app: Chancy, dsn: str) -> None:
    store = app.store
    ids = [uuid.uuid4()]
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=0) as conn:
        with conn.cursor(row_factory=dict_row) as cur:
            for _ in range(3):
                assert run_sync(cur, store.job_states(ids)) == {}
                assert run_sync(cur, store.job_get(ids[0])) is None
        prepared = _prepared(conn)
    assert _held(store.q["job_get"], prepared), prepared
    assert not _held(store.q["job_states"], prepared), prepared


async def test_async_runners_never_prepare_a_per_run_statement(app: Chancy, dsn: str) -> None:
    store = app.store
    ids = [uuid.uuid4()]
    async with await psycopg.AsyncConnection.connect(
        dsn, autocommit=True, prepare_threshold=0
    ) as conn:
        async with conn.cursor(row_factory=dict_row) as cur:
            for _ in range(3):
                assert await run(cur, store.job_get_many(ids)) == []
                assert await run(cur, store.job_get(ids[0])) is None
        for _ in range(3):
            begin, commit = Spec(store.q["tx_begin"]), Spec(store.q["tx_commit"])
            found = await run_pipelined_transaction(
                conn, begin, [store.job_states(ids)], store.job_get_many(ids), commit
            )
            assert found == []
        prepared = await _prepared_async(conn)
    assert _held(store.q["job_get"], prepared), prepared
    for name in ("job_get_many", "job_states"):
        assert not _held(store.q[name], prepared), (name, prepared)
