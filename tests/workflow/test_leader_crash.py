"""A workflow survives its leader being SIGKILLed half-way (real worker processes)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chancy import Chancy, Queue
from chancy.plugins.leadership import Leadership
from chancy.plugins.recovery import Recovery
from chancy.plugins.workflow import Workflow, WorkflowPlugin
from chancy.store import Spec
from tests.conftest import drop_prefix, eventually
from tests.workflow.conftest import J
from tests.workflow.fleet import Fleet, leader


@pytest.fixture
async def app(dsn: str, prefix: str) -> AsyncIterator[Chancy]:
    """An app with the same plugin lines as the worker processes; removed at the end."""
    chancy = Chancy(
        dsn,
        prefix=prefix,
        plugins=[Leadership(), Recovery(), WorkflowPlugin()],
        no_default_plugins=True,
        max_connection_pool_size=3,
    )
    async with chancy:
        await chancy.migrate()
        try:
            yield chancy
        finally:
            try:
                await chancy.migrate(to_version=0)
            finally:
                drop_prefix(dsn, prefix)


async def sql(app: Chancy, query: str, params: Any = None, fetch: str = "none") -> Any:
    return await app.db.run(Spec(query, params, fetch))  # type: ignore[arg-type]


async def test_a_workflow_finishes_with_every_step_run_once_across_a_leader_crash(
    app: Chancy, dsn: str, prefix: str, tmp_path: Path
) -> None:
    runs = f"{prefix}runs"
    await sql(app, f"CREATE TABLE {runs} (step_id text NOT NULL, at timestamptz DEFAULT now())")
    # Workers declare "default"; declared first with tags nobody has, it starts no executor.
    await app.declare(Queue("default", tags={"^nobody$"}))
    await app.declare(
        Queue(
            "steps",
            tags={"role=runner"},
            executor=Chancy.Executor.Async,
            concurrency=8,
            polling_interval=0.5,
        )
    )
    fleet = Fleet(dsn, prefix, tmp_path, workflow={"poll_interval": 0.5})
    try:
        first = fleet.start("leader")  # serves no queue: only leads
        await eventually(lambda: leader(app), timeout=30, message="a leader is elected")
        assert await leader(app) == first.worker_id
        fleet.start("standby")
        runner = fleet.start("runner", tags=("role=runner",))
        await eventually(runner.started, timeout=30, message="the runner started")

        def step(step_id: str, seconds: float = 0.1) -> Any:
            return J(
                "record_run",
                queue="steps",
                kwargs={"dsn": dsn, "table": runs, "step_id": step_id, "seconds": seconds},
            )

        # A chain of 8, a fan-out of 12, a fan-in, and another chain of 8: 29 steps.
        wf = Workflow("crash")
        previous: list[str] = []
        for i in range(8):
            wf.add(f"a{i}", step(f"a{i}", 0.15), previous)
            previous = [f"a{i}"]
        wf.add_group([(f"f{i}", step(f"f{i}", 0.3)) for i in range(12)], previous)
        wf.add("join", step("join"), [f"f{i}" for i in range(12)])
        previous = ["join"]
        for i in range(8):
            wf.add(f"b{i}", step(f"b{i}", 0.15), previous)
            previous = [f"b{i}"]
        total = len(wf)
        workflow_id = await WorkflowPlugin.push(app, wf)

        async def ran() -> int:
            row = await sql(app, f"SELECT count(*) AS n FROM {runs}", None, "one")
            return int(row["n"])

        await eventually(lambda: _at_least(ran, total // 2), timeout=60, message="half ran")
        first.kill()
        killed_at = (await sql(app, "SELECT now() AS now", None, "one"))["now"]
        done = await WorkflowPlugin.wait_for_workflow(app, workflow_id, timeout=60)
        assert done.state is Workflow.State.COMPLETED, fleet.logs()
        new_leader = await leader(app)
        assert new_leader is not None and new_leader != first.worker_id

        rows = await sql(
            app, f"SELECT step_id, count(*) AS n FROM {runs} GROUP BY step_id", None, "all"
        )
        counts = {row["step_id"]: row["n"] for row in rows}
        assert set(counts) == set(wf.steps)
        assert all(n == 1 for n in counts.values()), counts
        jobs = await sql(
            app,
            f"SELECT meta->'workflow'->>'step' AS step, attempts, recoveries, state"
            f" FROM {prefix}jobs WHERE meta->'workflow'->>'id' = %(id)s",
            {"id": workflow_id},
            "all",
        )
        assert len(jobs) == total and len({j["step"] for j in jobs}) == total
        assert all(j["attempts"] == 1 and j["recoveries"] == 0 for j in jobs), jobs
        # The new leader did part of the work: steps were queued after the old one died.
        later = await sql(
            app,
            f"SELECT count(*) AS n FROM {prefix}jobs"
            f" WHERE meta->'workflow'->>'id' = %(id)s AND created_at > %(at)s",
            {"id": workflow_id, "at": killed_at},
            "one",
        )
        assert later["n"] > 0
    finally:
        fleet.close()
        print(fleet.logs())  # shown when the test fails


async def _at_least(check: Any, n: int) -> bool:
    return await check() >= n
