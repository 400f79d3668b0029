"""The batch plugin's statements are planned by primary key or index, whatever the planner's
statistics say (see tests/store/test_plans.py for why and tests/plans.py for the checks).

States (each on its own prefix, autovacuum off): ``never_analysed`` (no statistics at all),
``analysed`` (statistics of the full tables), ``empty_then_filled`` (statistics of empty
tables, then the rows). Each holds 60,000 jobs (most finished), 20,000 closed batches and a
few open batches with 20,000 unrecorded members, half of their jobs finished. No statement
may scan the jobs or batch tables sequentially or read a whole index.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from chancy import Chancy
from chancy.plugins.batch import BatchPlugin
from chancy.plugins.leadership import Leadership
from chancy.plugins.pruner import Pruner
from chancy.plugins.workflow import WorkflowPlugin
from chancy.store.loader import Queries
from tests.conftest import drop_prefix, new_prefix
from tests.plans import describe, explain, unbounded_scans

LEADER = "plans-leader"


@dataclasses.dataclass
class State:
    name: str
    prefix: str
    open_batches: list[uuid.UUID]
    members: list[uuid.UUID]
    others: list[uuid.UUID]


def _sql(conn: psycopg.Connection[Any], text: str, params: Any = None) -> list[Any]:
    cur = conn.execute(text, params)  # type: ignore[arg-type]
    return cur.fetchall() if cur.description else []


def _fill(conn: psycopg.Connection[Any], p: str) -> None:
    _sql(
        conn,
        f"""INSERT INTO {p}jobs (id, queue, func, state, completed_at)
        SELECT gen_random_uuid(), 'q', 'app.jobs.work',
               CASE WHEN i %% 4 = 0 THEN 'pending' ELSE 'succeeded' END,
               CASE WHEN i %% 4 = 0 THEN NULL ELSE now() - interval '2 days' END
        FROM generate_series(1, 60000) AS i""",
        (),
    )
    _sql(
        conn,
        f"""INSERT INTO {p}batches (id, total, remaining, succeeded, created_at, finished_at)
        SELECT gen_random_uuid(), 3, 0, 3, now() - interval '3 days',
               now() - interval '2 days' - i * interval '1 second'
        FROM generate_series(1, 20000) AS i""",
        (),
    )
    _sql(
        conn,
        f"""INSERT INTO {p}batches (id, total, remaining)
        SELECT gen_random_uuid(), 2000, 2000 FROM generate_series(1, 10)""",
        (),
    )
    # 20,000 members of the open batches: jobs of every state.
    _sql(
        conn,
        f"""INSERT INTO {p}batch_jobs (job_id, batch_id)
        SELECT j.id, b.id
        FROM (SELECT id, row_number() OVER () AS n FROM {p}jobs LIMIT 20000) AS j
        JOIN (SELECT id, row_number() OVER () - 1 AS n FROM {p}batches
              WHERE finished_at IS NULL) AS b ON b.n = j.n %% 10""",
        (),
    )


def _build(conn: psycopg.Connection[Any], name: str, p: str) -> None:
    tables = [f"{p}jobs", f"{p}batches", f"{p}batch_jobs"]
    for table in tables:
        _sql(conn, f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    if name == "empty_then_filled":
        for table in tables:
            _sql(conn, f"VACUUM ANALYZE {table}")
    _fill(conn, p)
    if name == "analysed":
        for table in tables:
            _sql(conn, f"VACUUM ANALYZE {table}")
    _sql(
        conn,
        f"""INSERT INTO {p}leader (id, worker_id, last_seen, expires_at, term)
        VALUES (1, %s, now(), now() + interval '1 minute', 7)
        ON CONFLICT (id) DO UPDATE SET worker_id = EXCLUDED.worker_id,
            expires_at = EXCLUDED.expires_at, term = EXCLUDED.term""",
        (LEADER,),
    )


@pytest.fixture(scope="module")
def module_dsn(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("dsn"))


@pytest.fixture(scope="module", params=["never_analysed", "analysed", "empty_then_filled"])
def state(request: pytest.FixtureRequest, module_dsn: str) -> Iterator[State]:
    p = new_prefix()
    plugins = [Leadership(), WorkflowPlugin(), BatchPlugin()]
    app = Chancy(module_dsn, prefix=p, plugins=plugins, no_default_plugins=True)
    try:
        app.sync_migrate()
        with psycopg.connect(module_dsn, autocommit=True) as conn:
            _build(conn, request.param, p)
            opened = [
                r[0] for r in _sql(conn, f"SELECT id FROM {p}batches WHERE finished_at IS NULL")
            ]
            members = [r[0] for r in _sql(conn, f"SELECT job_id FROM {p}batch_jobs LIMIT 500")]
            others = [
                r[0]
                for r in _sql(
                    conn,
                    f"SELECT id FROM {p}jobs WHERE id NOT IN (SELECT job_id FROM {p}batch_jobs)"
                    " LIMIT 500",
                )
            ]
        yield State(request.param, p, opened, members, others)
    finally:
        drop_prefix(module_dsn, p)


Case = Callable[[State], tuple[Any, dict[str, Any]]]


def _q(name: str, s: State) -> str:
    return Queries("chancy.plugins.batch.sql", s.prefix)[name]


def _fence() -> dict[str, Any]:
    return {"fenced": True, "leader": LEADER, "term": 7}


def _pruner(s: State) -> tuple[Any, dict[str, Any]]:
    guards = [BatchPlugin().prune_guard(s.prefix), WorkflowPlugin().prune_guard(s.prefix)]
    query, params = Pruner().delete_statement(s.prefix, [g for g in guards if g])
    return query, {**params, **_fence(), "limit": 1000}


CASES: dict[str, Case] = {
    "batch_add_jobs": lambda s: (
        _q("batch_add_jobs", s),
        {
            "id": s.open_batches[0],
            "job_ids": [uuid.uuid4() for _ in range(1000)],
            "keyed_ids": s.members[:100],
            "notify": True,
        },
    ),
    "batch_get": lambda s: (_q("batch_get", s), {"id": s.open_batches[0]}),
    "batch_pass_lock": lambda s: (_q("batch_pass_lock", s), _fence()),
    "batch_record": lambda s: (_q("batch_record", s), {"job_ids": s.members + s.others}),
    "batch_finish": lambda s: (_q("batch_finish", s), {"ids": s.open_batches}),
    "batch_callbacks": lambda s: (
        _q("batch_callbacks", s),
        {
            "ids": s.open_batches,
            "callbacks": ['{"on_finish": "x"}'] * len(s.open_batches),
            "notify": True,
        },
    ),
    "batch_member_page": lambda s: (
        _q("batch_member_page", s),
        {"after": uuid.UUID(int=0), "limit": 5000},
    ),
    "batch_open_page": lambda s: (
        _q("batch_open_page", s),
        {"after": uuid.UUID(int=0), "limit": 5000},
    ),
    "batch_cleanup": lambda s: (_q("batch_cleanup", s), {"retention": 86400.0, "limit": 5000}),
    "batch_list": lambda s: (
        _q("batch_list", s),
        {"before": uuid.UUID(int=(1 << 128) - 1), "open": None, "limit": 100},
    ),
    "pruner_delete_with_batch_guard": _pruner,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_batch_statements_never_scan_whole_tables_or_indexes(
    state: State, case: str, module_dsn: str
) -> None:
    query, params = CASES[case](state)
    with psycopg.connect(module_dsn, autocommit=True) as conn:
        if isinstance(query, sql.Composable):
            query = query.as_string(conn)
        tables = {f"{state.prefix}{t}" for t in ("jobs", "batches", "batch_jobs")}
        indexes = {
            r[0]
            for r in _sql(
                conn,
                "SELECT indexname FROM pg_indexes WHERE tablename = ANY(%s)",
                (sorted(tables),),
            )
        }
        for generic in (False, True):
            plan = explain(conn, query, params, generic=generic)
            kind = "generic" if generic else "custom"
            bad = unbounded_scans(plan, tables, indexes)
            assert not bad, f"{case} ({state.name}, {kind} plan): {bad}\n{describe(plan)}"
