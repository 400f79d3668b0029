"""The cron and workflow migration lines: round trips, and continuing a Chancy 0.26 database."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg.rows import dict_row

from chancy import Chancy
from chancy.migrate import Migrator
from chancy.plugins.cron import Cron
from chancy.plugins.leadership import ImmediateLeadership
from chancy.plugins.workflow import Workflow, WorkflowPlugin
from chancy.store import Spec
from tests.test_migrate import catalog, head, versions


async def sql(app: Chancy, query: str, params: Any = None, fetch: str = "none") -> Any:
    return await app.db.run(Spec(query, params, fetch))  # type: ignore[arg-type]


def make(dsn: str, prefix: str) -> Chancy:
    return Chancy(
        dsn,
        prefix=prefix,
        plugins=[ImmediateLeadership(), Cron(), WorkflowPlugin()],
        no_default_plugins=True,
        max_connection_pool_size=2,
    )


async def test_up_down_up_round_trips(dsn: str, prefix: str) -> None:
    async with make(dsn, prefix) as app:
        try:
            await app.migrate()
            found = await versions(dsn, prefix)
            assert (found["cron"], found["workflow"]) == (head("cron"), head("workflow"))
            assert await app.is_up_to_date()
            first = await catalog(dsn, prefix)
            names = {name for _, name, _ in first}
            for column in (
                "cron.unique_key",
                "cron.next_run",
                "cron.timezone",
                "cron.paused_at",
                "workflows.state",
                "workflow_steps.dependencies",
                "workflow_steps.state",
            ):
                assert f"{prefix}{column}" in names, column
            await app.migrate(to_version=0)
            assert await catalog(dsn, prefix) == []
            await app.migrate()
            assert await catalog(dsn, prefix) == first
        finally:
            await app.migrate(to_version=0)
    assert await catalog(dsn, prefix) == []


async def test_a_chancy_026_database_continues_in_place(dsn: str, prefix: str) -> None:
    """Tables made by Chancy (workflow line at 3, no step state) are upgraded and advance."""
    app = make(dsn, prefix)
    async with app:
        try:
            # The core line, then the workflow line at Chancy's version 3 only.
            core = app.migrators()[0]
            pool = await app.open()
            async with pool.connection() as conn, conn.transaction():
                async with conn.cursor(row_factory=dict_row) as cur:
                    await cur.execute(app.store.q_migrate("schema_version_create"))
                    await core.migrate(cur)
                    line = Migrator("workflow", "chancy.plugins.workflow.migrations", prefix=prefix)
                    await line.migrate(cur, 3)
            assert (await versions(dsn, prefix))["workflow"] == 3

            # Rows as Chancy wrote them: a running workflow whose first step succeeded and
            # whose second is pending, and an old completed one whose jobs were pruned.
            done_job = uuid.uuid4()
            waiting_job = uuid.uuid4()
            for job_id, state in ((done_job, "succeeded"), (waiting_job, "pending")):
                await sql(
                    app,
                    f"INSERT INTO {prefix}jobs (id, queue, func, state, result)"
                    " VALUES (%(id)s, 'wf', 'tests.workflow.jobs.noop', %(state)s, '41')",
                    {"id": job_id, "state": state},
                )
            running, old = uuid.uuid4(), uuid.uuid4()
            await sql(
                app,
                f"INSERT INTO {prefix}workflows (id, name, state) VALUES"
                " (%(r)s, 'running', 'running'), (%(o)s, 'old', 'completed')",
                {"r": running, "o": old},
            )
            noop = '{"f": "tests.workflow.jobs.noop", "q": "wf"}'
            for workflow_id, step_id, deps, job_id in (
                (running, "pruned", "[]", uuid.uuid4()),
                (running, "one", "[]", done_job),
                (running, "two", '["one"]', waiting_job),
                (running, "three", '["two"]', None),
                (old, "only", "[]", uuid.uuid4()),
            ):
                await sql(
                    app,
                    f"INSERT INTO {prefix}workflow_steps"
                    " (workflow_id, step_id, job_data, dependencies, job_id)"
                    " VALUES (%(w)s, %(s)s, %(j)s, %(d)s, %(job)s)",
                    {"w": workflow_id, "s": step_id, "j": noop, "d": deps, "job": job_id},
                )

            await app.migrate()
            assert (await versions(dsn, prefix))["workflow"] == head("workflow")
            rows = await sql(app, f"SELECT step_id, state FROM {prefix}workflow_steps", None, "all")
            assert {r["step_id"]: r["state"] for r in rows} == {
                "pruned": "succeeded",  # its job is gone: Chancy pruned only finished jobs
                "one": "succeeded",
                "two": "pending",
                "three": None,
                "only": "succeeded",
            }

            # The leader carries on: once "two" finishes, "three" is queued, then it completes.
            plugin = app.plugins["chancy.workflow_plugin"]
            assert isinstance(plugin, WorkflowPlugin)
            await sql(
                app,
                f"UPDATE {prefix}jobs SET state = 'succeeded' WHERE id = %(id)s",
                {"id": waiting_job},
            )
            result = await plugin.advance_all(app)
            assert result.queued == 1
            fetched = await WorkflowPlugin.fetch_workflow(app, running)
            assert fetched is not None and fetched["three"].job_id is not None
            await sql(
                app,
                f"UPDATE {prefix}jobs SET state = 'succeeded' WHERE id = %(id)s",
                {"id": uuid.UUID(fetched["three"].job_id)},
            )
            await plugin.advance_all(app)
            fetched = await WorkflowPlugin.fetch_workflow(app, running)
            assert fetched is not None and fetched.state is Workflow.State.COMPLETED
        finally:
            await app.migrate(to_version=0)
    assert await catalog(dsn, prefix) == []
