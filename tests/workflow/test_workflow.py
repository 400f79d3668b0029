"""Workflows advanced by an in-process leader: shapes, failures, data flow, fencing, cleanup."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from chancy import Chancy, Queue, QueuedJob, Worker
from chancy.plugins.leadership import ImmediateLeadership
from chancy.plugins.pruner import Pruner
from chancy.plugins.workflow import InvalidWorkflowError, Sequence, Workflow, WorkflowPlugin
from chancy.store import Spec
from tests.conftest import drop_prefix, eventually
from tests.workflow import jobs
from tests.workflow.conftest import ASYNC, J

SUCCEEDED = QueuedJob.State.SUCCEEDED
FAILED = QueuedJob.State.FAILED


async def run_workflow(app: Chancy, wf: Workflow, timeout: float = 15) -> Workflow:
    workflow_id = await WorkflowPlugin.push(app, wf)
    return await WorkflowPlugin.wait_for_workflow(app, workflow_id, timeout=timeout)


def order(workflow_id: str) -> list[str]:
    return [step for step, _, _ in jobs.RUNS[workflow_id]]


def runs(workflow_id: str) -> dict[str, tuple[float, float]]:
    return {step: (start, end) for step, start, end in jobs.RUNS[workflow_id]}


async def step_jobs(app: Chancy, workflow_id: str) -> list[dict[str, Any]]:
    """Every job row made for a step of the workflow (to count duplicates)."""
    return await app.db.run(
        Spec(
            f"SELECT id, meta->'workflow'->>'step' AS step, state, attempts, queue, priority,"  # type: ignore[arg-type]
            f" max_attempts FROM {app.prefix}jobs WHERE meta->'workflow'->>'id' = %(id)s",
            {"id": workflow_id},
            "all",
        )
    )


async def test_push_stores_the_workflow_pending_and_fetch_reads_it_back(app: Chancy) -> None:
    wf = Workflow("stored").add("a", J("noop")).add("b", J("step", priority=3), ["a"])
    workflow_id = await WorkflowPlugin.push(app, wf)
    assert wf.id == workflow_id
    fetched = await WorkflowPlugin.fetch_workflow(app, workflow_id)
    assert fetched is not None
    assert fetched.id == workflow_id and fetched.name == "stored"
    assert fetched.state is Workflow.State.PENDING
    assert list(fetched.steps) == ["a", "b"]
    assert fetched["b"].dependencies == ["a"]
    assert fetched["b"].job.func == "tests.workflow.jobs.step"
    assert fetched["b"].job.priority == 3
    assert fetched["a"].job_id is None and fetched["a"].state is None
    assert fetched.created_at is not None
    assert await WorkflowPlugin.fetch_workflow(app, str(uuid.uuid4())) is None
    assert await WorkflowPlugin.fetch_workflow(app, "not-a-uuid") is None


async def test_invalid_workflows_are_refused_and_nothing_is_stored(app: Chancy) -> None:
    cyclic = Workflow("c").add("a", J("noop"), ["b"]).add("b", J("noop"), ["a"])
    for bad, match in (
        (Workflow("empty"), "has no steps"),
        (cyclic, "cycle"),
        (Workflow("u").add("a", J("noop"), ["ghost"]), "depends on 'ghost'"),
    ):
        with pytest.raises(InvalidWorkflowError, match=match):
            await WorkflowPlugin.push(app, bad)
    assert await WorkflowPlugin.fetch_workflows(app) == []


async def test_a_sequence_runs_in_order(app: Chancy, start_worker: Callable[..., Any]) -> None:
    await start_worker()
    workflow_id = await Sequence("seq", [J("step"), J("step"), J("step"), J("step")]).push(app)
    done = await WorkflowPlugin.wait_for_workflow(app, workflow_id, timeout=15)
    assert done.state is Workflow.State.COMPLETED
    assert order(workflow_id) == ["step_0", "step_1", "step_2", "step_3"]
    assert all(step.state == SUCCEEDED and step.job_id for step in done.steps.values())
    spans = runs(workflow_id)
    for before, after in (("step_0", "step_1"), ("step_1", "step_2"), ("step_2", "step_3")):
        assert spans[before][1] <= spans[after][0]


async def test_a_parallel_group_runs_at_once_then_fans_in(
    app: Chancy, start_worker: Callable[..., Any]
) -> None:
    await start_worker()
    wf = (
        Workflow("group")
        .add("start", J("step"))
        .add_group([(f"g{i}", J("step", kwargs={"seconds": 0.3})) for i in range(5)], ["start"])
        .add("end", J("step"), [f"g{i}" for i in range(5)])
    )
    done = await run_workflow(app, wf)
    assert done.state is Workflow.State.COMPLETED
    spans = runs(done.id or "")
    group = [spans[f"g{i}"] for i in range(5)]
    # The five ran together (each started before any ended), after start and before end.
    assert max(s for s, _ in group) < min(e for _, e in group)
    assert spans["start"][1] <= min(s for s, _ in group)
    assert spans["end"][0] >= max(e for _, e in group)


async def test_a_diamond_fans_out_then_in(app: Chancy, start_worker: Callable[..., Any]) -> None:
    await start_worker()
    wf = (
        Workflow("diamond")
        .add("top", J("step"))
        .add("left", J("step", kwargs={"seconds": 0.05}), ["top"])
        .add("right", J("step", kwargs={"seconds": 0.1}), ["top"])
        .add("bottom", J("step"), ["left", "right"])
    )
    done = await run_workflow(app, wf)
    assert done.state is Workflow.State.COMPLETED
    seen = order(done.id or "")
    assert seen[0] == "top" and seen[-1] == "bottom" and set(seen) == set(wf.steps)
    assert len(seen) == 4
    assert sorted(jobs.RECEIVED[done.id or ""]["bottom"]) == ["left", "right"]


async def test_a_failure_in_the_middle_fails_the_workflow_and_its_dependents_never_run(
    app: Chancy, plugin: WorkflowPlugin, start_worker: Callable[..., Any]
) -> None:
    await start_worker()
    wf = (
        Workflow("fails")
        .add("a", J("step"))
        .add("b", J("fail"), ["a"])
        .add("c", J("step"), ["b"])
        .add("d", J("step"), ["c"])
        .add("side", J("step"), ["a"])
    )
    done = await run_workflow(app, wf)
    workflow_id = done.id or ""
    assert done.state is Workflow.State.FAILED
    assert done["a"].state == SUCCEEDED
    assert done["b"].state == FAILED
    assert done["c"].job_id is None and done["c"].state is None
    assert done["d"].job_id is None and done["d"].state is None
    # Passes after the failure (a full one, as a new leader would run) queue nothing more.
    await plugin.advance_all(app)
    again = await WorkflowPlugin.fetch_workflow(app, workflow_id)
    assert again is not None and again.state is Workflow.State.FAILED
    assert again["c"].job_id is None and again["d"].job_id is None
    assert {row["step"] for row in await step_jobs(app, workflow_id)} <= {"a", "b", "side"}
    assert "c" not in order(workflow_id) and "d" not in order(workflow_id)


async def test_a_cancelled_step_fails_the_workflow(
    app: Chancy, start_worker: Callable[..., Any]
) -> None:
    await start_worker()
    wf = (
        Workflow("cancel")
        .add("slow", J("step", kwargs={"seconds": 30}))
        .add("after", J("step"), ["slow"])
    )
    workflow_id = await WorkflowPlugin.push(app, wf)

    async def slow_job() -> str | None:
        fetched = await WorkflowPlugin.fetch_workflow(app, workflow_id)
        return fetched["slow"].job_id if fetched else None

    job_id = await eventually(slow_job, message="the first step is queued")
    assert await app.cancel_job(job_id)
    done = await WorkflowPlugin.wait_for_workflow(app, workflow_id, timeout=10)
    assert done.state is Workflow.State.FAILED
    assert done["after"].job_id is None


async def test_steps_keep_their_own_queue_priority_and_max_attempts(
    app: Chancy, start_worker: Callable[..., Any]
) -> None:
    await app.declare(
        Queue("wf-threads", executor=Chancy.Executor.Threaded, concurrency=2, polling_interval=0.2)
    )
    await start_worker()
    wf = (
        Workflow("settings")
        .add("flaky", J("flaky", max_attempts=2, priority=5))
        .add("threaded", J("sync_value", queue="wf-threads", kwargs={"x": 1}), ["flaky"])
        .add("low", J("step", priority=-7), ["threaded"])
    )
    done = await run_workflow(app, wf)
    # The flaky step failed once, was retried, and did not fail the workflow.
    assert done.state is Workflow.State.COMPLETED, done
    rows = {row["step"]: row for row in await step_jobs(app, done.id or "")}
    assert rows["flaky"]["attempts"] == 2 and rows["flaky"]["max_attempts"] == 2
    assert rows["flaky"]["priority"] == 5 and rows["flaky"]["state"] == "succeeded"
    assert rows["threaded"]["queue"] == "wf-threads"
    assert rows["low"]["priority"] == -7 and rows["low"]["queue"] == "wf"
    threaded = await app.get_job(done["threaded"].job_id or "")
    assert threaded is not None
    assert threaded.result == {"x": 1, "received": {"flaky": "attempt 2"}}
    assert [s for s in order(done.id or "") if s == "flaky"] == ["flaky", "flaky"]


async def test_a_step_that_runs_out_of_attempts_fails_the_workflow(
    app: Chancy, start_worker: Callable[..., Any]
) -> None:
    await start_worker()
    wf = (
        Workflow("exhausted")
        .add("flaky", J("flaky", max_attempts=1))
        .add("next", J("step"), ["flaky"])
    )
    done = await run_workflow(app, wf)
    assert done.state is Workflow.State.FAILED
    assert done["next"].job_id is None


async def test_steps_receive_the_results_of_their_dependencies(
    app: Chancy, start_worker: Callable[..., Any]
) -> None:
    await start_worker()
    wf = (
        Workflow("data")
        .add("two", J("value", kwargs={"x": 2}))
        .add("three", J("value", kwargs={"x": 3}))
        .add("sum", J("value", kwargs={"x": 0}), ["two", "three"])
        .add("plus_ten", J("value", kwargs={"x": 10}), ["sum"])
        .add("independent", J("value", kwargs={"x": 1}))
    )
    done = await run_workflow(app, wf)
    assert done.state is Workflow.State.COMPLETED
    received = jobs.RECEIVED[done.id or ""]
    assert received["two"] == {} and received["independent"] == {}
    assert received["sum"] == {"two": 2, "three": 3}
    assert received["plus_ten"] == {"sum": 5}
    last = await app.get_job(done["plus_ten"].job_id or "")
    assert last is not None and last.result == 15
    # Only the dependencies of a step are given, not every earlier result.
    assert set(received["plus_ten"]) == {"sum"}


async def test_a_fan_out_reads_shared_results_once_per_worker(
    app: Chancy, plugin: WorkflowPlugin, start_worker: Callable[..., Any]
) -> None:
    await start_worker()
    wf = Workflow("cache").add("root", J("value", kwargs={"x": 7}))
    wf.add_group([(f"s{i}", J("value", kwargs={"x": 0})) for i in range(20)], ["root"])
    done = await run_workflow(app, wf)
    assert done.state is Workflow.State.COMPLETED
    received = jobs.RECEIVED[done.id or ""]
    assert all(received[f"s{i}"] == {"root": 7} for i in range(20))
    assert plugin._results[(app.prefix, uuid.UUID(done.id or ""), "root")] == 7


async def test_workflows_advance_on_notifications_not_on_polling(
    app: Chancy, plugin: WorkflowPlugin, start_worker: Callable[..., Any]
) -> None:
    assert plugin.poll_interval == 30
    await start_worker()
    start = time.monotonic()
    done = await run_workflow(app, Sequence("fast", [J("noop") for _ in range(10)]).to_workflow())
    elapsed = time.monotonic() - start
    assert done.state is Workflow.State.COMPLETED
    # Ten steps one after the other, each needing the previous to be seen finished: with a
    # 30 s poll only notifications can make this quick.
    assert elapsed < 10, f"10 sequential steps took {elapsed:.2f}s"


async def test_without_notifications_workflows_advance_by_polling(dsn: str, prefix: str) -> None:
    app = Chancy(
        dsn,
        prefix=prefix,
        plugins=[ImmediateLeadership(), WorkflowPlugin(poll_interval=0.1)],
        notifications=False,
        no_default_plugins=True,
        max_connection_pool_size=3,
    )
    async with app:
        await app.migrate()
        try:
            await app.declare(Queue("wf", executor=ASYNC, polling_interval=0.1))
            async with Worker(app, register_signal_handlers=False, shutdown_timeout=5):
                wf = Workflow("polled").add("a", J("step")).add("b", J("step"), ["a"])
                workflow_id = await WorkflowPlugin.push(app, wf)
                done = await WorkflowPlugin.wait_for_workflow(
                    app, workflow_id, interval=0.1, timeout=15
                )
                assert done.state is Workflow.State.COMPLETED
                assert order(workflow_id) == ["a", "b"]
        finally:
            try:
                await app.migrate(to_version=0)
            finally:
                drop_prefix(dsn, prefix)


async def test_a_thousand_step_fan_out_and_fan_in_completes_quickly(
    app: Chancy, start_worker: Callable[..., Any]
) -> None:
    await start_worker()
    await app.declare(Queue("wf", executor=ASYNC, concurrency=200), upsert=True)
    n = 1000
    wf = Workflow("wide").add("root", J("value", kwargs={"x": 1}))
    wf.add_group([(f"s{i}", J("value", kwargs={"x": 0})) for i in range(n)], ["root"])
    wf.add("sink", J("value", kwargs={"x": 0}), [f"s{i}" for i in range(n)])
    start = time.monotonic()
    workflow_id = await WorkflowPlugin.push(app, wf)
    pushed = time.monotonic() - start
    done = await WorkflowPlugin.wait_for_workflow(app, workflow_id, timeout=60)
    elapsed = time.monotonic() - start
    print(f"\n1,002-step fan-out/fan-in: pushed in {pushed:.3f}s, completed in {elapsed:.2f}s")
    assert done.state is Workflow.State.COMPLETED
    assert len(done.steps) == n + 2
    assert all(step.state == SUCCEEDED for step in done.steps.values())
    sink = await app.get_job(done["sink"].job_id or "")
    assert sink is not None and sink.result == n  # every middle step passed root's 1 on
    rows = await step_jobs(app, workflow_id)
    assert len(rows) == n + 2 and len({row["step"] for row in rows}) == n + 2
    assert elapsed < 20, f"a 1,002-step workflow took {elapsed:.1f}s"


async def test_fetch_workflows_filters_by_state_name_and_id(
    app: Chancy, start_worker: Callable[..., Any]
) -> None:
    await start_worker()
    done = await run_workflow(app, Workflow("one").add("a", J("step")))
    failed = await run_workflow(app, Workflow("two").add("a", J("fail")))
    waiting = await WorkflowPlugin.push(
        app, Workflow("three").add("a", J("step", queue="nobody-serves-this"))
    )
    everything = await WorkflowPlugin.fetch_workflows(app)
    assert [w.name for w in everything] == ["three", "two", "one"]  # newest first
    finished = await WorkflowPlugin.fetch_workflows(app, states=["completed", "failed"])
    assert {w.id for w in finished} == {done.id, failed.id}
    assert [w.id for w in await WorkflowPlugin.fetch_workflows(app, name="one")] == [done.id]
    assert [w.id for w in await WorkflowPlugin.fetch_workflows(app, ids=[waiting])] == [waiting]
    assert len(await WorkflowPlugin.fetch_workflows(app, limit=2)) == 2

    async def started() -> Workflow | None:
        found = await WorkflowPlugin.fetch_workflow(app, waiting)
        return found if found and found.state is Workflow.State.RUNNING else None

    running = await eventually(started, message="the leader starts the workflow")
    assert running["a"].state == QueuedJob.State.PENDING and running["a"].job_id


async def test_wait_for_workflow_raises_for_unknown_ids_and_on_timeout(app: Chancy) -> None:
    with pytest.raises(KeyError):
        await WorkflowPlugin.wait_for_workflow(app, str(uuid.uuid4()), timeout=1)
    with pytest.raises(KeyError):
        await WorkflowPlugin.wait_for_workflow(app, "nonsense", timeout=1)
    workflow_id = await WorkflowPlugin.push(app, Workflow("stuck").add("a", J("noop")))
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        await WorkflowPlugin.wait_for_workflow(app, workflow_id, interval=0.05, timeout=0.3)
    assert time.monotonic() - start < 3


async def test_a_pass_without_the_lease_changes_nothing(
    app: Chancy, plugin: WorkflowPlugin
) -> None:
    workflow_id = await WorkflowPlugin.push(app, Workflow("fenced").add("a", J("noop")))
    stranger = {"leader": "someone-else", "term": 7, "fenced": True}
    result = await plugin.advance(app, lease=stranger, workflow_ids=[uuid.UUID(workflow_id)])
    assert not result.leader and result.queued == 0
    fetched = await WorkflowPlugin.fetch_workflow(app, workflow_id)
    assert fetched is not None and fetched.state is Workflow.State.PENDING
    assert fetched["a"].job_id is None
    # Unfenced (an operator's call), the same pass queues the step.
    result = await plugin.advance(app, workflow_ids=[uuid.UUID(workflow_id)])
    assert result.leader and result.queued == 1


async def test_a_pass_that_dies_half_way_leaves_nothing_behind(
    app: Chancy, plugin: WorkflowPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    wf = Workflow("atomic").add("a", J("noop")).add("b", J("noop"))
    workflow_id = await WorkflowPlugin.push(app, wf)
    from chancy.plugins.workflow import advance as module

    job_push = module.push_plan

    def push_then_die(chancy: Any, jobs: Any) -> Any:
        yield from job_push(chancy, jobs)
        raise ConnectionError("the leader died after pushing, before recording the jobs")

    monkeypatch.setattr(module, "push_plan", push_then_die)
    with pytest.raises(ConnectionError):
        await plugin.advance(app, workflow_ids=[uuid.UUID(workflow_id)])
    monkeypatch.undo()
    assert await step_jobs(app, workflow_id) == []
    fetched = await WorkflowPlugin.fetch_workflow(app, workflow_id)
    assert fetched is not None and fetched.state is Workflow.State.PENDING
    result = await plugin.advance_all(app)
    assert result.queued == 2
    assert len(await step_jobs(app, workflow_id)) == 2


async def test_a_step_is_queued_once_even_by_overlapping_passes(
    app: Chancy, plugin: WorkflowPlugin
) -> None:
    import asyncio

    wf = Workflow("overlap")
    wf.add_group([(f"s{i}", J("noop")) for i in range(200)])
    workflow_id = await WorkflowPlugin.push(app, wf)
    ids = [uuid.UUID(workflow_id)]
    results = await asyncio.gather(*(plugin.advance(app, workflow_ids=ids) for _ in range(4)))
    assert sum(r.queued for r in results) == 200
    rows = await step_jobs(app, workflow_id)
    assert len(rows) == 200 and len({row["step"] for row in rows}) == 200


async def test_cleanup_removes_old_finished_workflows_and_their_steps(
    app: Chancy, plugin: WorkflowPlugin, start_worker: Callable[..., Any]
) -> None:
    await start_worker()
    old = await run_workflow(app, Workflow("old").add("a", J("step")))
    old_failed = await run_workflow(app, Workflow("old-failed").add("a", J("fail")))
    recent = await run_workflow(app, Workflow("recent").add("a", J("step")))
    unfinished = await WorkflowPlugin.push(
        app, Workflow("unfinished").add("a", J("noop", queue="nobody-serves-this"))
    )
    await app.db.run(
        Spec(
            f"UPDATE {app.prefix}workflows SET updated_at = now() - interval '2 days'"  # type: ignore[arg-type]
            " WHERE id = ANY(%(ids)s::uuid[])",
            {"ids": [old.id, old_failed.id, unfinished]},
        )
    )
    removed = await Pruner.cleanup_plugins(app)
    assert removed == {"chancy.workflow_plugin": 2}
    remaining = {w.id for w in await WorkflowPlugin.fetch_workflows(app)}
    assert remaining == {recent.id, unfinished}
    steps: Any = await app.db.run(
        Spec(f"SELECT count(*) AS n FROM {app.prefix}workflow_steps", None, "one")  # type: ignore[arg-type]
    )
    assert steps["n"] == 2
    assert await WorkflowPlugin(retention=None).cleanup(app) == 0


async def test_a_new_leader_picks_up_workflows_pushed_before_it_started(
    app: Chancy, start_worker: Callable[..., Any]
) -> None:
    wf = Workflow("early").add("a", J("step")).add("b", J("step"), ["a"])
    workflow_id = await WorkflowPlugin.push(app, wf)  # no worker yet: nobody hears the NOTIFY
    await start_worker()
    done = await WorkflowPlugin.wait_for_workflow(app, workflow_id, timeout=15)
    assert done.state is Workflow.State.COMPLETED
