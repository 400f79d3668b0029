"""The Pruner keeps the finished steps of a running workflow: later steps read their results."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chancy import Chancy
from chancy.plugins.pruner import Pruner
from chancy.plugins.workflow import Workflow, WorkflowPlugin
from chancy.rule import JobRules
from tests.conftest import eventually
from tests.workflow.conftest import J


async def test_steps_of_a_running_workflow_survive_pruning(
    app: Chancy, start_worker: Callable[..., Any]
) -> None:
    pruner = Pruner(rule=JobRules.Age() >= 0)
    # Step "b" waits on a queue nobody serves yet, so the workflow stays running.
    wf = Workflow("keep").add("a", J("step")).add("b", J("step", queue="later"), ["a"])
    wf_id = await WorkflowPlugin.push(app, wf)
    await start_worker()

    async def b_queued() -> bool:
        got = await WorkflowPlugin.fetch_workflow(app, wf_id)
        return got is not None and got.steps["b"].job_id is not None

    await eventually(b_queued, timeout=15, message="step a finished and b was queued")
    fetched = await WorkflowPlugin.fetch_workflow(app, wf_id)
    assert fetched is not None
    a_job = fetched.steps["a"].job_id
    assert a_job is not None

    async with app.pool.connection() as conn, conn.cursor() as cur:
        assert await pruner.prune(app, cur) == 0
    assert await app.get_job(a_job) is not None

    # Once the workflow is over, its finished jobs are fair game.
    b_job = fetched.steps["b"].job_id
    assert b_job is not None
    assert await app.cancel_job(b_job)

    async def over() -> bool:
        got = await WorkflowPlugin.fetch_workflow(app, wf_id)
        return got is not None and str(got.state) == "failed"

    await eventually(over, timeout=15, message="the workflow failed")

    async def pruned() -> bool:
        async with app.pool.connection() as conn, conn.cursor() as cur:
            await pruner.prune(app, cur)
        return await app.get_job(a_job) is None

    await eventually(pruned, timeout=15, message="a's job pruned after the workflow ended")
