"""Chancy 0.26's workflow API: argument orders, upsert by id, the cursor forms, process_workflow,
Sequence.add and the plugin identifier; each against the real database."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from chancy import Chancy, QueuedJob, Worker
from chancy.errors import ConfigurationError
from chancy.plugins.leadership import Leadership
from chancy.plugins.workflow import InvalidWorkflowError, Sequence, Workflow, WorkflowPlugin
from chancy.store import Spec
from tests.conftest import eventually
from tests.workflow.conftest import J
from tests.workflow.test_workflow import order, step_jobs


async def count_workflows(app: Chancy) -> int:
    row: Any = await app.db.run(
        Spec(f"SELECT count(*) AS n FROM {app.prefix}workflows", None, "one")  # type: ignore[arg-type]
    )
    return int(row["n"])


async def stored_job_data(app: Chancy, workflow_id: str, step_id: str) -> dict[str, Any]:
    row: Any = await app.db.run(
        Spec(
            f"SELECT job_data FROM {app.prefix}workflow_steps"  # type: ignore[arg-type]
            " WHERE workflow_id = %(w)s AND step_id = %(s)s",
            {"w": workflow_id, "s": step_id},
            "one",
        )
    )
    return dict(row["job_data"])


# -- identifier ------------------------------------------------------------------------------


async def test_the_plugin_is_found_under_026s_identifier(app: Chancy) -> None:
    assert WorkflowPlugin.get_identifier() == "chancy.workflow_plugin"
    assert isinstance(app.plugins["chancy.workflow_plugin"], WorkflowPlugin)
    defaults = Chancy("postgresql://localhost/unused")
    assert isinstance(defaults.plugins["chancy.workflow_plugin"], WorkflowPlugin)


# -- push_ex argument order ------------------------------------------------------------------


async def test_push_ex_takes_026s_cursor_chancy_order_and_ours(app: Chancy) -> None:
    pool = await app.open()
    first = Workflow("order-026").add("a", J("noop"))
    second = Workflow("order-ours").add("a", J("noop"))
    async with pool.connection() as conn:
        async with conn.transaction(), conn.cursor() as cur:
            first_id = await WorkflowPlugin.push_ex(cur, app, first)  # 0.26's order
            second_id = await WorkflowPlugin.push_ex(app, cur, second)  # chancy's first order
            # Inside the transaction the cursor forms see it; nothing is committed yet.
            seen = await WorkflowPlugin.fetch_workflow_ex(cur, app, id_=first_id)
            assert seen is not None and seen.name == "order-026"
            assert await WorkflowPlugin.fetch_workflow(app, first_id) is None
        with pytest.raises(TypeError, match="needs a database cursor and the Chancy app"):
            await WorkflowPlugin.push_ex(conn, conn, first)  # type: ignore[arg-type]
    assert {w.id for w in await WorkflowPlugin.fetch_workflows(app)} == {first_id, second_id}


async def test_push_ex_rolls_back_with_the_callers_transaction(app: Chancy) -> None:
    pool = await app.open()
    wf = Workflow("rolled-back").add("a", J("noop"))
    async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        await WorkflowPlugin.push_ex(cur, app, wf)
        assert await WorkflowPlugin.fetch_workflow_ex(cur, app, wf.id) is not None
        raise psycopg.Rollback()
    assert await count_workflows(app) == 0


def test_sync_push_ex_takes_both_orders(app: Chancy, dsn: str) -> None:
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        a = WorkflowPlugin.sync_push_ex(cur, app, Workflow("s1").add("a", J("noop")))
        b = WorkflowPlugin.sync_push_ex(app, cur, Workflow("s2").add("a", J("noop")))
        found = WorkflowPlugin.sync_fetch_workflows_ex(cur, app, ids=[a, b])
        assert {w.name for w in found} == {"s1", "s2"}
        assert WorkflowPlugin.sync_fetch_workflow_ex(cur, app, id_=a) is not None
    assert {w.id for w in WorkflowPlugin.sync_fetch_workflows(app)} == {a, b}


# -- upsert by id ----------------------------------------------------------------------------


async def test_a_workflow_has_an_id_before_it_is_pushed_and_keeps_it(app: Chancy) -> None:
    wf = Workflow("early-id").add("a", J("noop"))
    assert wf.id is not None
    given = wf.id
    assert await WorkflowPlugin.push(app, wf) == given == wf.id
    # None still means "give it an id at push".
    anonymous = Workflow("anonymous", id=None).add("a", J("noop"))
    assigned = await WorkflowPlugin.push(app, anonymous)
    assert anonymous.id == assigned and assigned != given


async def test_pushing_the_same_object_twice_updates_it(app: Chancy) -> None:
    wf = Workflow("twice").add("a", J("noop")).add("b", J("noop"), ["a"])
    first = await WorkflowPlugin.push(app, wf)
    created_at = wf.created_at
    wf.name = "twice renamed"
    second = await WorkflowPlugin.push(app, wf)
    assert first == second
    assert await count_workflows(app) == 1
    fetched = await WorkflowPlugin.fetch_workflow(app, first)
    assert fetched is not None and fetched.name == "twice renamed"
    assert list(fetched.steps) == ["a", "b"]
    assert fetched.created_at == created_at
    assert fetched.updated_at is not None and created_at is not None
    assert fetched.updated_at >= created_at


async def test_a_fetched_workflow_modified_and_pushed_again_is_updated(
    app: Chancy, plugin: WorkflowPlugin
) -> None:
    wf = Workflow("grow").add("a", J("noop")).add("b", J("noop", kwargs={"v": 1}), ["a"])
    workflow_id = await WorkflowPlugin.push(app, wf)
    # The leader queues "a"; "b" waits for it.
    await plugin.advance(app, workflow_ids=[uuid.UUID(workflow_id)])
    fetched = await WorkflowPlugin.fetch_workflow(app, id_=workflow_id)
    assert fetched is not None and fetched.is_running
    a_job = fetched["a"].job_id
    assert a_job is not None and fetched["b"].job_id is None
    # Change a step not yet queued, add one, and push the fetched object back.
    fetched.steps["b"].job = J("noop", kwargs={"v": 2})
    fetched.add("c", J("noop"), ["b"])
    assert await WorkflowPlugin.push(app, fetched) == workflow_id
    again = await WorkflowPlugin.fetch_workflow(app, workflow_id)
    assert again is not None
    assert list(again.steps) == ["a", "b", "c"]
    assert again["b"].job.kwargs == {"v": 2}
    assert again["c"].dependencies == ["b"]
    assert again["a"].job_id == a_job
    assert again.state is Workflow.State.RUNNING
    assert await count_workflows(app) == 1


async def test_pushing_again_never_queues_a_queued_step_twice(
    app: Chancy, plugin: WorkflowPlugin
) -> None:
    wf = Workflow("no-twice").add("a", J("noop", queue="nobody-serves-this"))
    wf.add("b", J("noop"), ["a"])
    workflow_id = await WorkflowPlugin.push(app, wf)
    await plugin.advance(app, workflow_ids=[uuid.UUID(workflow_id)])
    queued = await WorkflowPlugin.fetch_workflow(app, workflow_id)
    assert queued is not None and queued["a"].job_id is not None
    # The original object never learned the job id, and says "pending": in 0.26 this push
    # cleared the step's job and queued "a" a second time.
    assert wf["a"].job_id is None and wf.state is Workflow.State.PENDING
    stale = Workflow("no-twice", id=workflow_id).add("a", J("noop", kwargs={"changed": True}))
    stale.add("b", J("noop"), ["a"])
    assert stale.state is Workflow.State.PENDING
    await WorkflowPlugin.push(app, stale)
    await WorkflowPlugin.push(app, wf)
    await plugin.advance_all(app)
    after = await WorkflowPlugin.fetch_workflow(app, workflow_id)
    assert after is not None
    assert after["a"].job_id == queued["a"].job_id
    assert after["a"].state == QueuedJob.State.PENDING
    # A queued step is the leader's: its definition is not rewritten either.
    assert after["a"].job.kwargs == {}
    assert after.state is Workflow.State.RUNNING  # never back to pending while "a" waits
    rows = await step_jobs(app, workflow_id)
    assert [row["step"] for row in rows] == ["a"]


async def test_a_finished_workflow_pushed_again_with_a_new_step_runs_it(
    app: Chancy, start_worker: Callable[..., Any]
) -> None:
    await start_worker()
    wf = Workflow("reopen").add("a", J("step"))
    workflow_id = await WorkflowPlugin.push(app, wf)
    done = await WorkflowPlugin.wait_for_workflow(app, workflow_id, timeout=15)
    assert done.is_complete and done.state is Workflow.State.COMPLETED
    # 0.26's way to continue a finished workflow: add a step, set it pending, push it.
    done.add("b", J("step"), ["a"])
    done.state = Workflow.State.PENDING
    await WorkflowPlugin.push(app, done)
    # The leader hears workflow.updated at once (its poll interval is 30 s in these tests).
    again = await WorkflowPlugin.wait_for_workflow(app, workflow_id, timeout=10)
    assert again.state is Workflow.State.COMPLETED
    assert order(workflow_id) == ["a", "b"]
    assert sorted(row["step"] for row in await step_jobs(app, workflow_id)) == ["a", "b"]


async def test_bad_ids_and_states_are_refused_before_anything_is_stored(app: Chancy) -> None:
    bad_id = Workflow("bad-id", id="not-a-uuid").add("a", J("noop"))
    with pytest.raises(InvalidWorkflowError, match="is not a UUID"):
        await WorkflowPlugin.push(app, bad_id)
    bad_state = Workflow("bad-state").add("a", J("noop"))
    bad_state.state = "paused"  # type: ignore[assignment]
    with pytest.raises(InvalidWorkflowError, match="must be one of pending, running"):
        await WorkflowPlugin.push(app, bad_state)
    assert await count_workflows(app) == 0


# -- fetching --------------------------------------------------------------------------------


async def test_fetch_workflow_takes_026s_id_keyword_and_a_position(app: Chancy) -> None:
    workflow_id = await WorkflowPlugin.push(app, Workflow("kw").add("a", J("noop")))
    by_keyword = await WorkflowPlugin.fetch_workflow(app, id_=workflow_id)
    by_position = await WorkflowPlugin.fetch_workflow(app, workflow_id)
    assert by_keyword is not None and by_position is not None
    assert by_keyword.id == by_position.id == workflow_id
    found = WorkflowPlugin.sync_fetch_workflow(app, id_=workflow_id)
    assert found is not None and found.id == workflow_id


async def test_fetch_workflows_ex_filters_inside_the_callers_transaction(app: Chancy) -> None:
    pool = await app.open()
    async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        one = await WorkflowPlugin.push_ex(cur, app, Workflow("one").add("a", J("noop")))
        two = await WorkflowPlugin.push_ex(cur, app, Workflow("two").add("a", J("noop")))
        both = await WorkflowPlugin.fetch_workflows_ex(cur, app, ids=[one, two])
        assert {w.id for w in both} == {one, two}
        pending = await WorkflowPlugin.fetch_workflows_ex(cur, app, states=["pending"], limit=1)
        assert len(pending) == 1
        assert await WorkflowPlugin.fetch_workflows_ex(cur, app, states=["completed"]) == []
        assert await WorkflowPlugin.fetch_workflow_ex(cur, app, str(uuid.uuid4())) is None
        assert await WorkflowPlugin.fetch_workflow_ex(cur, app, "not-a-uuid") is None


# -- Workflow and Sequence -------------------------------------------------------------------


async def test_sequence_add_chains_jobs_and_they_run_in_order(
    app: Chancy, start_worker: Callable[..., Any]
) -> None:
    await start_worker()
    seq = Sequence("added")
    assert seq.jobs == []
    assert seq.add(J("step")) is seq
    seq.add(J("step")).add(J("step"))
    workflow_id = await seq.push(app)
    done = await WorkflowPlugin.wait_for_workflow(app, workflow_id, timeout=15)
    assert done.state is Workflow.State.COMPLETED
    assert order(workflow_id) == ["step_0", "step_1", "step_2"]
    mixed = Sequence("mixed", [J("noop")]).add(J("noop"))
    assert [step.dependencies for step in mixed.to_workflow().steps.values()] == [[], ["step_0"]]
    with pytest.raises(TypeError, match="needs a Job"):
        Sequence("bad").add("not a job")


# -- process_workflow ------------------------------------------------------------------------


async def test_process_workflow_advances_one_workflow_in_the_callers_transaction(
    app: Chancy,
) -> None:
    wf = Workflow("by-hand").add("a", J("noop")).add("b", J("noop"), ["a"])
    workflow_id = await WorkflowPlugin.push(app, wf)
    pool = await app.open()
    # Rolled back with the caller's transaction: nothing queued.
    async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        assert await WorkflowPlugin.process_workflow(cur, app, wf, None)
        assert wf.is_running and wf["a"].job_id is not None
        raise psycopg.Rollback()
    assert await step_jobs(app, workflow_id) == []
    assert (await WorkflowPlugin.fetch_workflow(app, workflow_id)).state is (  # type: ignore[union-attr]
        Workflow.State.PENDING
    )
    # Committed: "a" is queued once, and the object shows it.
    async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        assert await WorkflowPlugin.process_workflow(cur, app, wf, None)
    assert wf.state is Workflow.State.RUNNING
    assert wf["a"].state == QueuedJob.State.PENDING and wf["a"].job_id is not None
    assert wf["b"].job_id is None
    rows = await step_jobs(app, workflow_id)
    assert [row["step"] for row in rows] == ["a"] and str(rows[0]["id"]) == wf["a"].job_id
    # Nothing more to do until "a" finishes.
    async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        assert not await WorkflowPlugin.process_workflow(cur, app, wf, None)
    # "a" succeeds (as a worker would record it); the next call queues "b".
    await app.db.run(
        Spec(
            f"UPDATE {app.prefix}jobs SET state = 'succeeded', completed_at = now()"  # type: ignore[arg-type]
            " WHERE id = %(id)s",
            {"id": wf["a"].job_id},
        )
    )
    async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        assert await WorkflowPlugin.process_workflow(cur, app, wf, None)
    assert wf["a"].state == QueuedJob.State.SUCCEEDED and wf["b"].job_id is not None
    assert sorted(row["step"] for row in await step_jobs(app, workflow_id)) == ["a", "b"]
    # A finished workflow is left alone, as in 0.26; an unknown one is an error.
    finished = Workflow("done", state=Workflow.State.COMPLETED)
    async with pool.connection() as conn, conn.cursor() as cur:
        assert not await WorkflowPlugin.process_workflow(cur, app, finished, None)
        with pytest.raises(KeyError, match="push it before processing it"):
            await WorkflowPlugin.process_workflow(cur, app, Workflow("never pushed"), None)


def test_sync_process_workflow_runs_the_same_pass(app: Chancy, dsn: str) -> None:
    wf = Workflow("sync-by-hand").add("a", J("noop")).add("b", J("noop"))
    workflow_id = WorkflowPlugin.sync_push(app, wf)
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        assert WorkflowPlugin.sync_process_workflow(cur, app, wf)
        assert not WorkflowPlugin.sync_process_workflow(cur, app, wf)
    fetched = WorkflowPlugin.sync_fetch_workflow(app, workflow_id)
    assert fetched is not None and fetched.state is Workflow.State.RUNNING
    assert all(step.job_id for step in fetched.steps.values())


async def test_process_workflow_is_fenced_by_the_workers_leadership(
    app: Chancy, dsn: str, prefix: str
) -> None:
    # An app on the same tables whose leadership is a lease (ImmediateLeadership, the
    # fixture's, does not fence); it has no WorkflowPlugin, so no leader advances on its own.
    leased = Chancy(
        dsn,
        prefix=prefix,
        plugins=[Leadership(poll_interval=0.2, timeout=5)],
        no_default_plugins=True,
        max_connection_pool_size=3,
    )
    wf = Workflow("fenced").add("a", J("noop"))
    workflow_id = await WorkflowPlugin.push(app, wf)
    async with leased:
        follower = Worker(leased, register_signal_handlers=False)  # never started: no lease
        pool = await leased.open()
        async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            assert not await WorkflowPlugin.process_workflow(cur, leased, wf, follower)
        assert await step_jobs(app, workflow_id) == []
        assert wf.state is Workflow.State.PENDING and wf["a"].job_id is None
        async with Worker(leased, register_signal_handlers=False, shutdown_timeout=5) as leader:
            await eventually(lambda: leader.is_leader.is_set(), message="the worker leads")
            async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                assert await WorkflowPlugin.process_workflow(cur, leased, wf, leader)
        assert wf.is_running
        assert [row["step"] for row in await step_jobs(app, workflow_id)] == ["a"]


def test_is_complete_and_is_running() -> None:
    wf = Workflow("w")
    assert not wf.is_complete and not wf.is_running
    wf.state = Workflow.State.RUNNING
    assert wf.is_running and not wf.is_complete
    for state in (Workflow.State.COMPLETED, Workflow.State.FAILED):
        wf.state = state
        assert wf.is_complete and not wf.is_running


def test_026s_constructor_keywords_map_onto_ours() -> None:
    plugin = WorkflowPlugin(
        polling_interval=3,
        max_workflows_per_run=7,
        pruning_rule=WorkflowPlugin.Rules.Age() > 3600,
        max_pending_workflows=10,
    )
    assert plugin.poll_interval == 3 and plugin.batch_size == 7
    assert plugin.retention == 3600 and plugin.max_pending_workflows == 10
    assert WorkflowPlugin(pruning_rule=None).retention == 86400  # 0.26's None: the default
    with pytest.raises(ConfigurationError, match="both poll_interval= and polling_interval="):
        WorkflowPlugin(poll_interval=1, polling_interval=2)
    with pytest.raises(ConfigurationError, match=r"only WorkflowPlugin.Rules.Age\(\) > seconds"):
        WorkflowPlugin(pruning_rule=WorkflowPlugin.Rules.Age() < 5)
    with pytest.raises(ConfigurationError, match="max_pending_workflows"):
        WorkflowPlugin(max_pending_workflows=0)
