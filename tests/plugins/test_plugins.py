"""The plugin system: defaults and how to disable them, and a user-written plugin at work."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import pytest

from chancy import Chancy, Job, Queue, QueuedJob, Worker
from chancy.errors import ConfigurationError
from chancy.plugin import Plugin, PluginScope
from chancy.plugins.leadership import ImmediateLeadership, Leadership
from chancy.plugins.pruner import Pruner
from chancy.plugins.recovery import Recovery
from tests.conftest import eventually

ASYNC = Chancy.Executor.Async


def test_defaults_are_leadership_pruner_recovery_metrics_workflow(dsn: str, prefix: str) -> None:
    from chancy.plugins.metrics import Metrics
    from chancy.plugins.workflow import WorkflowPlugin

    app = Chancy(dsn, prefix=prefix)
    assert {type(v) for v in app.plugins.values()} == {
        Leadership,
        Pruner,
        Recovery,
        Metrics,
        WorkflowPlugin,
    }


def test_a_given_plugin_replaces_its_default(dsn: str, prefix: str) -> None:
    pruner = Pruner(rule=Pruner.Rules.Age() > 60)
    app = Chancy(dsn, prefix=prefix, plugins=[ImmediateLeadership(), pruner])
    assert isinstance(app.plugins["chancy.leadership"], ImmediateLeadership)
    assert app.plugins["chancy.pruner"] is pruner
    assert isinstance(app.plugins["chancy.recovery"], Recovery)


def test_no_default_plugins_keeps_only_the_chosen_ones(dsn: str, prefix: str) -> None:
    app = Chancy(dsn, prefix=prefix, no_default_plugins=True, plugins=[Leadership()])
    assert list(app.plugins) == ["chancy.leadership"]
    assert Chancy(dsn, prefix=prefix, no_default_plugins=True).plugins == {}


def test_two_leadership_providers_are_an_error(dsn: str, prefix: str) -> None:
    with pytest.raises(ConfigurationError, match=r"chancy\.leadership"):
        Chancy(dsn, prefix=prefix, plugins=[Leadership(), ImmediateLeadership()])


async def test_a_leader_only_plugin_without_leadership_runs_anyway_with_a_warning(
    chancy: Chancy, make_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Chancy 0.26 runs leader-only plugins on every worker when no leadership is installed."""
    await chancy.declare(Queue("default", tags={"^nobody$"}))
    ref = await chancy.push(Job(func="tests.plugins.jobs.noop", queue="default"))
    # Claimed by a worker that never heartbeats: only a running Recovery gives it back.
    [claimed] = await chancy.db.run(chancy.store.job_fetch("default", 1, "ghost"))
    assert claimed.id == ref.identifier
    app = make_app(Recovery(poll_interval=0.1))
    caplog.set_level(logging.WARNING, logger="chancy.worker")

    async def recovered() -> bool:
        return await _state(chancy, ref) == "pending"

    async with Worker(app, register_signal_handlers=False):
        await eventually(recovered, timeout=10, message="recovered")
    assert "no leadership plugin is installed: they run on every worker" in caplog.text


async def test_a_missing_dependency_fails_at_start(chancy: Chancy, make_app: Any) -> None:
    class NeedsMetrics(Plugin):
        def get_dependencies(self) -> list[str]:
            return ["chancy.metrics"]

    app = make_app(NeedsMetrics())
    with pytest.raises(ConfigurationError, match=r"chancy\.metrics"):
        await Worker(app, register_signal_handlers=False).start()


async def test_disabling_recovery_is_allowed_and_logged(
    chancy: Chancy, make_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    await chancy.declare(Queue("default", tags={"^nobody$"}))
    app = make_app(ImmediateLeadership())
    caplog.set_level(logging.ERROR, logger="chancy.worker")
    async with Worker(app, register_signal_handlers=False) as worker:
        await eventually(worker.is_leader.is_set)
    assert "no recovery plugin is installed" in caplog.text


class Stamp(Plugin):
    """A user plugin: job hooks that change meta, and a service that runs on the leader."""

    def __init__(self) -> None:
        super().__init__()
        self.running: set[str] = set()
        self.ticks: dict[str, int] = {}

    @classmethod
    def get_identifier(cls) -> str:
        return "tests.stamp"

    @classmethod
    def get_scope(cls) -> PluginScope:
        return PluginScope.LEADER

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        assert worker.is_leader.is_set()
        self.running.add(worker.worker_id)
        try:
            while True:
                self.ticks[worker.worker_id] = self.ticks.get(worker.worker_id, 0) + 1
                await self.sleep(0.05)
        finally:
            self.running.discard(worker.worker_id)

    async def on_job_starting(self, *, job: QueuedJob, worker: Worker) -> QueuedJob:
        return dataclasses.replace(job, meta={**job.meta, "started_on": worker.worker_id})

    async def on_job_completed(
        self, *, worker: Worker, job: QueuedJob, exc: BaseException | None, result: Any
    ) -> QueuedJob:
        meta = {**job.meta, "outcome": str(job.state), "result_seen": result}
        return dataclasses.replace(job, meta=meta)


async def test_a_user_plugin_with_hooks_and_a_leader_only_service(
    chancy: Chancy, make_app: Any
) -> None:
    await chancy.declare(Queue("default", tags={"^nobody$"}))
    await chancy.declare(Queue("u", executor=ASYNC, polling_interval=0.05))
    stamps = [Stamp(), Stamp()]
    apps = [make_app(Leadership(poll_interval=0.2, timeout=2), stamp) for stamp in stamps]
    workers = [Worker(app, register_signal_handlers=False, shutdown_timeout=2) for app in apps]
    for worker in workers:
        await worker.start()
    try:
        # Exactly one worker leads, and only its Stamp service runs.
        await eventually(lambda: sum(w.is_leader.is_set() for w in workers) == 1, timeout=10)
        leader = next(w for w in workers if w.is_leader.is_set())
        follower = next(w for w in workers if w is not leader)
        lead_stamp = stamps[workers.index(leader)]
        await eventually(lambda: lead_stamp.running == {leader.worker_id})
        assert stamps[workers.index(follower)].running == set()
        assert isinstance(leader.leader_term, int) and follower.leader_term is None

        # The hooks run around every job, and what they put in meta is saved.
        ref = await chancy.push(Job(func="tests.plugins.jobs.echo_meta", queue="u", meta={"a": 1}))
        job = await chancy.wait_for_job(ref, timeout=10)
        assert job is not None and job.state == "succeeded"
        ran_on = job.meta["started_on"]
        assert ran_on in {w.worker_id for w in workers}
        assert job.result == {"a": 1, "started_on": ran_on}
        assert job.meta == {
            "a": 1,
            "started_on": ran_on,
            "outcome": "succeeded",
            "result_seen": {"a": 1, "started_on": ran_on},
        }

        # The leader stops: it steps down at once (its service is cancelled) and the
        # follower's service starts within a second.
        lost = asyncio.create_task(leader.hub.wait_one("leadership.lost", timeout=5))
        gained = asyncio.create_task(follower.hub.wait_one("leadership.gained", timeout=5))
        await leader.stop()
        assert lead_stamp.running == set()
        handover = (await gained).body["monotonic"] - (await lost).body["monotonic"]
        assert 0 < handover < 1.0, handover
        follow_stamp = stamps[workers.index(follower)]
        await eventually(lambda: follow_stamp.running == {follower.worker_id}, timeout=2)
    finally:
        for worker in workers:
            await worker.stop()


async def _state(chancy: Chancy, ref: Any) -> str | None:
    job = await chancy.get_job(ref)
    return None if job is None else str(job.state)
