"""Every statement on a hot or periodic path is planned by primary key or partial index,
whatever the planner's statistics say.

A drain ran at 20,000 jobs/s on a fresh table and at 1,700 jobs/s after an ordinary
``VACUUM ANALYZE``: with statistics taken while nothing was running, the completion write
scanned the whole index of running jobs (dead entries included) on every flush. These tests
put the tables in the states that mislead a planner, EXPLAIN each statement with the values a
worker or the leader sends, as a custom and as a generic plan, and fail on any plan that
scans the jobs or workflow tables sequentially, reads a whole index, or sorts a whole queue.

States (each on its own table prefix, autovacuum off so that it stays as built):
- ``never_analysed``: a backlog, running and finished jobs, no statistics at all;
- ``analysed_backlog``: statistics taken with a full backlog and nothing running, then a
  churn through ``running`` (the index of running jobs full of dead entries);
- ``empty_then_filled``: statistics of empty tables, then the same rows as never_analysed;
- ``dead_running``: statistics taken during a busy drain (a tenth of the jobs running), then
  20,000 jobs through ``running`` to finished (its index full of dead entries);
- ``never_analysed_large`` (slow): a million finished jobs and a backlog of 100,000, never
  analysed (default selectivities: the planner believes the backlog holds a few rows);
- ``million_finished`` (slow): a million finished jobs, analysed, beside a small backlog.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from chancy import Chancy, Queue
from chancy.plugins.cron import Cron
from chancy.plugins.leadership import Leadership
from chancy.plugins.metrics import Metrics
from chancy.plugins.workflow import WorkflowPlugin
from chancy.store.loader import Queries, per_run
from tests.conftest import drop_prefix, new_prefix
from tests.plans import describe, explain, nodes, quadratic_joins, unbounded_scans

#: Workflows in each state (four steps each): enough that reading them all costs.
WORKFLOWS = 20_000
QUEUE = "plans"
KEYED = "plans_keyed"
LIMITED = "plans_limited"
WORKER = "plans-worker"
DEAD_WORKER = "plans-dead-worker"
LEADER = "plans-leader"


@dataclasses.dataclass
class State:
    name: str
    prefix: str
    running: list[tuple[uuid.UUID, uuid.UUID]]
    pending: list[uuid.UUID]
    finished: list[uuid.UUID]
    workflows: list[uuid.UUID]
    step_jobs: list[uuid.UUID]

    def table(self, name: str) -> str:
        return f"{self.prefix}{name}"


def _sql(conn: psycopg.Connection[Any], text: str, params: Any = None) -> list[Any]:
    cur = conn.execute(text, params)  # type: ignore[arg-type]
    return cur.fetchall() if cur.description else []


def _fill(
    conn: psycopg.Connection[Any], p: str, *, pending: int, running: int, finished: int
) -> None:
    """Jobs in every state, in three queues (one with per-key limits), plus heartbeats."""
    jobs = f"{p}jobs"
    _sql(
        conn,
        f"""INSERT INTO {jobs} (id, queue, func, state, priority, scheduled_at, unique_key)
        SELECT gen_random_uuid(), %s, 'app.jobs.work', 'pending', i %% 3, now() - interval '1s',
               CASE WHEN i %% 10 = 0 THEN 'key-' || i END
        FROM generate_series(1, %s) AS i""",
        (QUEUE, pending),
    )
    _sql(
        conn,
        f"""INSERT INTO {jobs} (id, queue, func, state, partition_key, scheduled_at)
        SELECT gen_random_uuid(), %s, 'app.jobs.work', 'pending', 'tenant-' || (i %% 50),
               now() - interval '1s'
        FROM generate_series(1, %s) AS i""",
        (KEYED, max(1, pending // 10)),
    )
    _sql(
        conn,
        f"""INSERT INTO {jobs} (id, queue, func, state)
        SELECT gen_random_uuid(), %s, 'app.jobs.work', 'pending'
        FROM generate_series(1, %s) AS i""",
        (LIMITED, max(1, pending // 10)),
    )
    _sql(
        conn,
        f"""INSERT INTO {jobs} (id, queue, func, state, taken_by, started_at, claim_id,
                                partition_key)
        SELECT gen_random_uuid(), CASE WHEN i %% 2 = 0 THEN %s ELSE %s END, 'app.jobs.work',
               'running', CASE WHEN i %% 5 = 0 THEN %s ELSE %s END, now() - interval '1h',
               gen_random_uuid(), CASE WHEN i %% 2 = 0 THEN 'tenant-' || (i %% 50) END
        FROM generate_series(1, %s) AS i""",
        (KEYED, QUEUE, DEAD_WORKER, WORKER, running),
    )
    _sql(
        conn,
        f"""INSERT INTO {jobs} (id, queue, func, state, attempts, started_at, completed_at)
        SELECT gen_random_uuid(), %s, 'app.jobs.work', CASE WHEN i %% 7 = 0 THEN 'failed'
               ELSE 'succeeded' END, 1, now() - interval '3 days', now() - interval '2 days'
        FROM generate_series(1, %s) AS i""",
        (QUEUE, finished),
    )


def _churn(conn: psycopg.Connection[Any], p: str, n: int) -> None:
    """Pass ``n`` waiting jobs through running to succeeded: dead entries in jobs_running."""
    jobs = f"{p}jobs"
    _sql(
        conn,
        f"""UPDATE {jobs} SET state = 'running', taken_by = %s, claim_id = gen_random_uuid(),
            started_at = now()
        WHERE id IN (SELECT id FROM {jobs} WHERE state = 'pending' AND queue = %s
                     ORDER BY id LIMIT %s)""",
        (WORKER, QUEUE, n),
    )
    _sql(
        conn,
        f"""UPDATE {jobs} SET state = 'succeeded', claim_id = NULL, completed_at = now()
        WHERE id IN (SELECT id FROM {jobs} WHERE state = 'running' AND taken_by = %s
                     AND started_at > now() - interval '1 minute' ORDER BY id LIMIT %s)""",
        (WORKER, n),
    )


def _workflows(conn: psycopg.Connection[Any], p: str, count: int) -> None:
    """Finished workflows of four steps each, and a few running ones on running jobs."""
    _sql(
        conn,
        f"""INSERT INTO {p}workflows (id, name, state, created_at, updated_at)
        SELECT gen_random_uuid(), 'flow', CASE WHEN i <= 10 THEN 'running' ELSE 'completed'
               END, now(), now() - interval '30 days'
        FROM generate_series(1, %s) AS i""",
        (count,),
    )
    _sql(
        conn,
        f"""INSERT INTO {p}workflow_steps (workflow_id, step_id, job_data, dependencies, state,
                                          job_id)
        SELECT w.id, 's' || n, '{{"f": "app.jobs.work"}}'::jsonb,
               CASE WHEN n = 1 THEN '[]'::jsonb ELSE jsonb_build_array('s' || (n - 1)) END,
               CASE WHEN w.state = 'completed' THEN 'succeeded' END, NULL
        FROM {p}workflows AS w, generate_series(1, 4) AS n""",
    )
    # The first step of each running workflow is the job of a running job.
    _sql(
        conn,
        f"""UPDATE {p}workflow_steps AS s SET state = 'pending', job_id = r.id
        FROM (SELECT w.id AS wid, row_number() OVER () AS rn FROM {p}workflows AS w
              WHERE w.state = 'running') AS ws,
             (SELECT id, row_number() OVER () AS rn FROM {p}jobs WHERE state = 'running'
              LIMIT 10) AS r
        WHERE s.workflow_id = ws.wid AND ws.rn = r.rn AND s.step_id = 's1'""",
    )


def _build(conn: psycopg.Connection[Any], name: str, p: str) -> None:
    tables = [f"{p}jobs", f"{p}workflows", f"{p}workflow_steps"]
    for table in tables:
        _sql(conn, f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    if name == "never_analysed":
        _fill(conn, p, pending=20_000, running=200, finished=5_000)
        _workflows(conn, p, WORKFLOWS)
    elif name == "analysed_backlog":
        _fill(conn, p, pending=25_000, running=0, finished=0)
        _workflows(conn, p, WORKFLOWS)
        for table in tables:
            _sql(conn, f"VACUUM ANALYZE {table}")
        _churn(conn, p, 5_000)
        _fill(conn, p, pending=0, running=200, finished=0)
    elif name == "empty_then_filled":
        for table in tables:
            _sql(conn, f"VACUUM ANALYZE {table}")
        _fill(conn, p, pending=20_000, running=200, finished=5_000)
        _workflows(conn, p, WORKFLOWS)
    elif name == "dead_running":
        _fill(conn, p, pending=25_000, running=2_500, finished=0)
        _workflows(conn, p, WORKFLOWS)
        for table in tables:
            _sql(conn, f"ANALYZE {table}")
        _sql(
            conn,
            f"""UPDATE {p}jobs SET state = 'succeeded', claim_id = NULL, completed_at = now()
            WHERE id IN (SELECT id FROM {p}jobs WHERE state = 'running' ORDER BY id
                         OFFSET 200)""",
        )
        _churn(conn, p, 20_000)
    elif name == "tiny":
        # A table that has only just started (a new installation, a test, the first jobs
        # of a benchmark): a generic plan cached now (a prepared statement, a PL/pgSQL
        # function) outlives it and serves the table once it is big. The claim's UPDATE
        # found its rows with a scan of the whole table this way until migration v0018.
        _fill(conn, p, pending=60, running=20, finished=30)
        _workflows(conn, p, 20)
    elif name == "never_analysed_large":
        # A big table nobody analysed yet (a restore, a bulk load, autovacuum off or not yet
        # run): the planner falls back to default selectivities and believes the backlog
        # holds a handful of rows.
        _fill(conn, p, pending=100_000, running=200, finished=1_000_000)
        _workflows(conn, p, 5_000)
    elif name == "million_finished":
        _fill(conn, p, pending=2_000, running=200, finished=1_000_000)
        _workflows(conn, p, 5_000)
        for table in tables:
            _sql(conn, f"VACUUM ANALYZE {table}")
    else:
        raise AssertionError(name)
    # Heartbeats: the worker is alive, the dead worker's lease ran out long ago.
    _sql(
        conn,
        f"""INSERT INTO {p}workers (worker_id, tags, queues, last_seen, expires_at)
        VALUES (%s, '{{}}', '{{}}', now(), now() + interval '1 minute'),
               (%s, '{{}}', '{{}}', now() - interval '1h', now() - interval '59 minutes')""",
        (WORKER, DEAD_WORKER),
    )
    _sql(
        conn,
        f"""INSERT INTO {p}leader (id, worker_id, last_seen, expires_at, term)
        VALUES (1, %s, now(), now() + interval '1 minute', 7)
        ON CONFLICT (id) DO UPDATE SET worker_id = EXCLUDED.worker_id,
            expires_at = EXCLUDED.expires_at, term = EXCLUDED.term""",
        (LEADER,),
    )


STATES = [
    "never_analysed",
    "analysed_backlog",
    "empty_then_filled",
    "dead_running",
    "tiny",
    pytest.param("never_analysed_large", marks=pytest.mark.slow),
    pytest.param("million_finished", marks=pytest.mark.slow),
]


@pytest.fixture(scope="module")
def module_dsn(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("dsn"))


@pytest.fixture(scope="module", params=STATES)
def state(request: pytest.FixtureRequest, module_dsn: str) -> Iterator[State]:
    name = request.param
    p = new_prefix()
    plugins = [Leadership(), WorkflowPlugin(), Cron(), Metrics()]
    app = Chancy(module_dsn, prefix=p, plugins=plugins, no_default_plugins=True)
    try:
        app.sync_migrate()
        app.sync_declare(Queue(QUEUE))
        app.sync_declare(
            Queue(
                KEYED,
                partition_concurrency=2,
                partition_rate_limit=100,
                partition_rate_limit_window=60,
            )
        )
        app.sync_declare(
            Queue(LIMITED, rate_limit=1000, rate_limit_window=60, global_concurrency=50)
        )
        with psycopg.connect(module_dsn, autocommit=True) as conn:
            _build(conn, name, p)
            ids = {
                state: [
                    r[0]
                    for r in _sql(
                        conn,
                        f"SELECT id FROM {p}jobs WHERE state = %s ORDER BY random() LIMIT 100",
                        (state,),
                    )
                ]
                for state in ("pending", "succeeded")
            }
            running = [
                (r[0], r[1])
                for r in _sql(
                    conn,
                    f"SELECT id, claim_id FROM {p}jobs WHERE state = 'running' AND taken_by = %s"
                    " LIMIT 100",
                    (WORKER,),
                )
            ]
            flows = [r[0] for r in _sql(conn, f"SELECT id FROM {p}workflows LIMIT 50")]
            steps = [
                r[0]
                for r in _sql(
                    conn, f"SELECT job_id FROM {p}workflow_steps WHERE job_id IS NOT NULL"
                )
            ]
        yield State(name, p, running, ids["pending"], ids["succeeded"], flows, steps)
    finally:
        drop_prefix(module_dsn, p)


# --- the statements, with the values a worker or the leader sends ---------------------------

Case = Callable[[State], tuple[Any, dict[str, Any]]]


def _q(package: str, name: str, s: State) -> str:
    return Queries(package, s.prefix)[name]


def _core(name: str) -> Callable[[Callable[[State], dict[str, Any]]], Case]:
    def wrap(params: Callable[[State], dict[str, Any]]) -> Case:
        return lambda s: (_q("chancy.store.sql", name, s), params(s))

    return wrap


def _fence() -> dict[str, Any]:
    return {"fenced": True, "leader": LEADER, "term": 7, "notify": True}


def _outcomes(s: State) -> dict[str, Any]:
    n = len(s.running)
    return {
        "ids": [r[0] for r in s.running],
        "claim_ids": [r[1] for r in s.running],
        "states": ["succeeded"] * n,
        "attempts": [1] * n,
        "errors": [None] * n,
        "metas": [None] * n,
        "results": [None] * n,
        "delays": [None] * n,
        "progresses": None,
        "notify": True,
    }


PROGRESS = '{"fraction": 0.5, "message": "half way", "data": {"offset": 5}}'


def _push(
    unique: bool, lean: bool = False, plain: bool = False
) -> Callable[[State], dict[str, Any]]:
    omits = ("limits", "metas", "scheduled_ats", "partition_keys", "deadlines")
    omits = omits if lean or plain else ()

    def params(s: State) -> dict[str, Any]:
        n = 500
        every = {
            "ids": [uuid.uuid4() for _ in range(n)],
            "queues": [QUEUE] * n,
            "funcs": ["app.jobs.work"] * n,
            "kwargs": ["{}"] * n,
            "limits": ["[]"] * n,
            "metas": ["{}"] * n,
            "priorities": [0] * n,
            "max_attempts": [1] * n,
            "scheduled_ats": [None] * n,
            "unique_keys": (
                [f"key-{i * 10}" for i in range(n)] if unique else None if plain else [None] * n
            ),
            "partition_keys": [None] * n,
            "deadlines": [None] * n,
            "notify": True,
            "n": n,
        }
        return {k: v for k, v in every.items() if k not in omits}

    return params


CASES: dict[str, Case] = {
    # After a lost claim: this worker's running jobs of one queue, through the taken_by index.
    "job_give_back_unseen": _core("job_give_back_unseen")(
        lambda s: {"queue": QUEUE, "worker_id": WORKER, "known": [uuid.uuid4()]}
    ),
    "job_fetch": _core("job_fetch")(lambda s: {"queue": QUEUE, "limit": 100, "worker_id": WORKER}),
    "job_fetch_limited": _core("job_fetch_limited")(
        lambda s: {
            "queue": LIMITED,
            "limit": 100,
            "worker_id": WORKER,
            "margin": 0.05,
            "max_wake": 1000,
        }
    ),
    "job_fetch_keyed": _core("job_fetch_keyed")(
        lambda s: {
            "queue": KEYED,
            "limit": 100,
            "worker_id": WORKER,
            "margin": 0.05,
            "max_wake": 1000,
            "front": 50,
        }
    ),
    # The fair claim reads the keyed queue's jobs (its weights are read from the queue row).
    "job_fetch_fair": _core("job_fetch_fair")(
        lambda s: {
            "queue": KEYED,
            "limit": 100,
            "worker_id": WORKER,
            "margin": 0.05,
            "max_wake": 1000,
            "front": 50,
        }
    ),
    "job_fetch_ordered": _core("job_fetch_ordered")(
        lambda s: {
            "queue": KEYED,
            "limit": 100,
            "worker_id": WORKER,
            "margin": 0.05,
            "max_wake": 1000,
            "front": 50,
        }
    ),
    "job_complete_many": _core("job_complete_many")(_outcomes),
    "job_complete_many_progress": _core("job_complete_many")(
        lambda s: {**_outcomes(s), "progresses": [PROGRESS] * len(s.running)}
    ),
    "job_progress_many": _core("job_progress_many")(
        lambda s: {
            "ids": [r[0] for r in s.running],
            "claim_ids": [r[1] for r in s.running],
            "progresses": [PROGRESS] * len(s.running),
        }
    ),
    "job_release_many": _core("job_release_many")(
        lambda s: {"ids": [r[0] for r in s.running], "claim_ids": [r[1] for r in s.running]}
    ),
    "job_insert_many": _core("job_insert_many")(_push(unique=False)),
    "job_insert_many_unique": _core("job_insert_many")(_push(unique=True)),
    "job_insert_many_lean": _core("job_insert_many_lean")(_push(unique=False, lean=True)),
    "job_insert_many_lean_unique": _core("job_insert_many_lean")(_push(unique=True, lean=True)),
    "job_insert_many_plain": _core("job_insert_many_plain")(_push(unique=False, plain=True)),
    "job_insert_many_plain_unique": _core("job_insert_many_plain")(_push(unique=True, plain=True)),
    "job_live_by_unique_keys": _core("job_live_by_unique_keys")(
        lambda s: {"keys": [f"key-{i * 10}" for i in range(500)]}
    ),
    "job_get": _core("job_get")(lambda s: {"id": s.finished[0]}),
    "job_get_many": _core("job_get_many")(lambda s: {"ids": s.finished + s.pending}),
    "job_states": _core("job_states")(lambda s: {"ids": s.finished + s.pending}),
    "job_cancel": _core("job_cancel")(
        lambda s: {"id": s.pending[0], "notify": True, "reason": "why", "by": "me"}
    ),
    "job_complete_tx": _core("job_complete_tx")(
        lambda s: {
            "id": s.running[0][0],
            "claim_id": s.running[0][1],
            "result": "{}",
            "meta": None,
            "notify": True,
        }
    ),
    "job_settled_by_claim": _core("job_settled_by_claim")(
        lambda s: {"ids": [r[0] for r in s.running], "claim_ids": [r[1] for r in s.running]}
    ),
    "job_retry_many": _core("job_retry_many")(lambda s: {"ids": s.finished, "notify": True}),
    "job_purge_many": _core("job_purge_many")(lambda s: {"ids": s.finished, "notify": True}),
    "limit_usage": _core("limit_usage")(lambda s: {"queue": KEYED}),
    "recovery_recover": lambda s: (
        _q("chancy.plugins.sql", "recovery_recover", s),
        {**_fence(), "limit": 1000, "max_recoveries": 3, "grace": 2.0},
    ),
    "recovery_probe": lambda s: (
        _q("chancy.plugins.sql", "recovery_probe", s),
        {**_fence(), "grace": 2.0},
    ),
    "job_claims_lost": _core("job_claims_lost")(
        lambda s: {"ids": [r[0] for r in s.running], "claim_ids": [r[1] for r in s.running]}
    ),
    "workflow_results": lambda s: (
        _q("chancy.plugins.workflow.sql", "workflow_results", s),
        {"workflow_ids": [s.workflows[0]] * 2, "step_ids": ["s1", "s2"]},
    ),
    "workflow_has_pending_jobs": lambda s: (
        _q("chancy.plugins.workflow.sql", "workflow_has_pending_jobs", s),
        {"job_ids": [r[0] for r in s.running] + s.finished},
    ),
    "workflow_active_ids": lambda s: (
        _q("chancy.plugins.workflow.sql", "workflow_active_ids", s),
        {"after": uuid.UUID(int=0), "limit": 500},
    ),
    "workflow_sync_jobs": lambda s: (
        _q("chancy.plugins.workflow.sql", "workflow_sync_jobs", s),
        {"job_ids": s.step_jobs + s.finished},
    ),
    "workflow_sync_workflows": lambda s: (
        _q("chancy.plugins.workflow.sql", "workflow_sync_workflows", s),
        {"workflow_ids": s.workflows},
    ),
    "workflow_settle": lambda s: (
        _q("chancy.plugins.workflow.sql", "workflow_settle", s),
        {"ids": s.workflows, "notify": True},
    ),
    "workflow_ready": lambda s: (
        _q("chancy.plugins.workflow.sql", "workflow_ready", s),
        {"ids": s.workflows, "limit": 1000},
    ),
    "workflow_get_many": lambda s: (
        _q("chancy.plugins.workflow.sql", "workflow_get_many", s),
        {"ids": s.workflows[:1], "states": None, "name": None, "limit": 1, "offset": 0},
    ),
    "workflow_cleanup": lambda s: (
        _q("chancy.plugins.workflow.sql", "workflow_cleanup", s),
        {"retention": 7 * 86400, "limit": 1000},
    ),
    "api_job_get": lambda s: (_q("chancy.plugins.api.sql", "api_job_get", s), {"id": s.pending[0]}),
    # /metrics (and the queues pages): per queue, capped waiting, running, oldest due job.
    "api_queue_depths": lambda s: (
        _q("chancy.plugins.api.sql", "api_queue_depths", s),
        {"cap": 10001, "priorities": 32},
    ),
    "api_overview": lambda s: (
        _q("chancy.plugins.api.sql", "api_overview", s),
        {"cap": 10001, "stuck": 20},
    ),
}


def _pruner(s: State) -> tuple[Any, dict[str, Any]]:
    from chancy.plugins.pruner import Pruner

    guard = WorkflowPlugin().prune_guard(s.prefix)
    assert guard is not None
    query, params = Pruner().delete_statement(s.prefix, [guard])
    return query, {**params, **_fence(), "limit": 1000}


CASES["pruner_delete"] = _pruner

#: Claims walk a queue's waiting jobs in claim order and must never sort them (a LIMIT over
#: an ordered index scan reads only what it takes; a sort reads the whole backlog).
ORDERED = {
    "job_fetch",
    "job_fetch_limited",
    "job_fetch_keyed",
    "job_fetch_fair",
    "job_fetch_ordered",
}


#: Writes joining a batch to the table (outcomes, progress reports, given-back claims): big
#: batches run under complete_settings (jobs.sql), outcomes in a function with the same
#: setting (complete_jobs, migration v0020), and must never join the batch to the rows
#: with a nested loop that reads the batch again per row (quadratic in the batch size).
LINEAR_JOINS = {
    "job_complete_many",
    "job_complete_many_progress",
    "job_progress_many",
    "job_release_many",
}
#: Statements whose plan must not re-read a batch for every row (with their settings, if any).
BATCHES = LINEAR_JOINS | {"job_retry_many"}

#: Statements that call a plpgsql function of one RETURN QUERY: the plans checked are those
#: of the function's query, under the function's own SET clauses, as the server runs it.
FUNCTIONS = {
    "job_fetch": "claim_jobs",
    "job_complete_many": "complete_jobs",
    "job_complete_many_progress": "complete_jobs",
}


def _function_query(conn: psycopg.Connection[Any], name: str) -> tuple[str, str | None]:
    """The query of function ``name`` with its arguments as named placeholders (``p_queue``
    becomes ``%(queue)s``), and its SET clauses as one statement to run before it."""
    rows = _sql(
        conn,
        "SELECT prosrc, proconfig, proargnames, proargmodes FROM pg_proc WHERE proname = %s",
        (name,),
    )
    assert len(rows) == 1, f"function {name}: {rows}"
    source, config, names, modes = rows[0]
    # Its input arguments (the columns of a RETURNS TABLE are arguments of mode 't').
    args = [a for a, m in zip(names, modes or ["i"] * len(names), strict=True) if m == "i"]
    match = re.search(r"RETURN QUERY(.*?);\s*END", source, re.DOTALL)
    assert match, f"{name} is not one RETURN QUERY:\n{source}"
    query = match.group(1)
    for arg in args:
        query = re.sub(rf"\b{arg}\b", f"%({arg.removeprefix('p_')})s", query)
    settings = None
    if config:
        pairs = [item.split("=", 1) for item in config]
        settings = "SELECT " + ", ".join(f"set_config('{k}', '{v}', true)" for k, v in pairs)
    return query, settings


def _checked(conn: psycopg.Connection[Any], s: State) -> tuple[set[str], set[str]]:
    tables = {s.table("jobs"), s.table("workflows"), s.table("workflow_steps")}
    indexes = {
        r[0]
        for r in _sql(
            conn,
            "SELECT indexname FROM pg_indexes WHERE tablename = ANY(%s)",
            (sorted(tables),),
        )
    }
    return tables, indexes


#: On a tiny table (a new installation, a test, the first jobs of a benchmark) the cheapest
#: plan of a lookup by id reads the whole table. A generic plan made then (a prepared
#: statement after a few runs, a PL/pgSQL function) would outlive it and serve the table once
#: it is big, so in this state a statement must either never scan, or be planned on every run
#: (``-- plan: per run``, chancy/store/loader.py): its plan is then made for the table as it
#: is, and it has no generic plan. The claims never scan (migration v0018, claim_settings).
TINY = "tiny"


@pytest.mark.parametrize("case", sorted(CASES))
def test_statement_plans_never_scan_whole_tables_or_indexes(
    state: State, case: str, module_dsn: str
) -> None:
    query, params = CASES[case](state)
    planned_per_run = per_run(query)
    with psycopg.connect(module_dsn, autocommit=True) as conn:
        if isinstance(query, sql.Composable):
            query = query.as_string(conn)
        tables, indexes = _checked(conn, state)
        # Claims run under the claim's planner settings, in their transaction (jobs.sql).
        settings = _q("chancy.store.sql", "claim_settings", state) if case in ORDERED else None
        if case in LINEAR_JOINS:
            settings = _q("chancy.store.sql", "complete_settings", state)
        if case in FUNCTIONS:
            function = state.prefix + FUNCTIONS[case]
            assert f"{function}(" in query, query
            query, settings = _function_query(conn, function)
            assert settings is not None, function
            for setting in ("enable_bitmapscan", "enable_seqscan"):
                assert f"{setting}', 'off'" in settings, settings
            if case in LINEAR_JOINS:
                assert "enable_nestloop', 'off'" in settings, settings
        for generic in (False, True):
            if generic and planned_per_run:
                continue  # never prepared: the server makes no generic plan of it
            plan = explain(conn, query, params, generic=generic, settings=settings)
            kind = "generic" if generic else "custom"
            # Planned per run on a tiny table, reading all of it is the cheapest plan there.
            tiny_per_run = state.name == TINY and planned_per_run
            bad = [] if tiny_per_run else unbounded_scans(plan, tables, indexes)
            if case in BATCHES:
                bad += quadratic_joins(plan)
            waiting = {state.table("jobs_claim"), state.table("jobs_claim_key")}
            # Whether a waiting job is due is checked in the index (its last key column,
            # migration v0021), never on the row: jobs scheduled for later cost no row visit.
            bad += [
                f"due check on the row: {n['Filter']}"
                for n in nodes(plan)
                if n.get("Index Name") in waiting and "scheduled_at" in n.get("Filter", "")
            ]
            if case in ORDERED:
                # The claim updates the rows it picked and locked by their versions (a TID
                # scan, migration v0022), not by a second lookup of their ids.
                updates = [
                    n
                    for n in nodes(plan)
                    if n["Node Type"] == "ModifyTable" and n.get("Operation") == "Update"
                ]
                read = [
                    c["Node Type"]
                    for n in updates
                    for c in n["Plans"]
                    if c.get("Parent Relationship") == "Outer"
                ]
                bad += [
                    f"claim's UPDATE reads {r}, not the picked rows"
                    for r in read
                    if r != "Tid Scan"
                ]
                if not updates:
                    bad.append("no UPDATE in the claim's plan")
                bad += [
                    f"{n['Node Type']} of waiting jobs"
                    for n in nodes(plan)
                    if n["Node Type"] in ("Sort", "Incremental Sort")
                    and any(m.get("Index Name") in waiting for m in nodes(n))
                ]
            assert not bad, f"{case} ({state.name}, {kind} plan): {bad}\n{describe(plan)}"
