"""Every operation of the async API has a sync form for WSGI apps and scripts, on the same SQL."""

from __future__ import annotations

import inspect
from datetime import timedelta

import psycopg
import pytest

from chancy import Chancy, Job, Queue
from chancy.errors import MigrationsNeededError
from tests.conftest import drop_prefix

#: Async members that are about the event loop itself, with their sync counterparts named.
LOOP_ONLY = {
    "open": "the sync pool opens on demand (sync_pool)",
    "notifier": "LISTEN belongs to an event loop; sync waits poll instead",
}


def test_every_async_method_has_a_sync_twin() -> None:
    names = {n for n, _ in inspect.getmembers(Chancy)}
    public = [
        n
        for n, f in inspect.getmembers(Chancy)
        if not n.startswith("_")
        and (inspect.iscoroutinefunction(f) or inspect.isasyncgenfunction(f))
    ]
    missing = [n for n in public if f"sync_{n}" not in names and n not in LOOP_ONLY]
    assert not missing, f"async methods without a sync_ form: {missing}"


def test_the_sync_api_runs_a_queue_s_whole_life(dsn: str, prefix: str) -> None:
    app = Chancy(dsn, prefix=prefix, no_default_plugins=True, max_connection_pool_size=2)
    try:
        with app:
            with pytest.raises(MigrationsNeededError, match="sync_migrate"):
                app.sync_check_migrations()
            assert not app.sync_is_up_to_date()
            app.sync_migrate()
            assert app.sync_is_up_to_date()
            app.sync_check_migrations()

            app.sync_declare(Queue("s", rate_limit=5, rate_limit_window=60))
            assert app.sync_get_queue("s").rate_limit == 5
            assert [q.name for q in app.sync_get_all_queues()] == ["s"]
            assert str(app.sync_pause_queue("s", resume_at=timedelta(hours=1)).state) == "paused"
            assert str(app.sync_resume_queue("s").state) == "active"
            usage = app.sync_get_limit_usage("s")
            assert usage["running"] == 0 and usage["started_in_window"] == 0
            with pytest.raises(KeyError):
                app.sync_get_queue("nope")

            [[a, b]] = app.sync_push_many([Job(func="tests.jobs.noop", queue="s")] * 2)
            assert app.sync_cancel_job(a)
            done = app.sync_wait_for_job(a, interval=0.05, timeout=5)
            assert done is not None and str(done.state) == "failed"
            with pytest.raises(TimeoutError):
                app.sync_wait_for_jobs([b], interval=0.05, timeout=0.2)
            retried = app.sync_retry_jobs([a])
            assert list(retried) == [a] and retried.skipped == []
            assert [str(j.state) for j in app.sync_get_jobs([a, b])] == ["retrying", "pending"]
            assert app.sync_purge_jobs([a, b]) == 2
            assert app.sync_get_jobs([a, b]) == []
            assert app.sync_get_all_workers() == []

            # The cursor forms run inside the caller's transaction.
            with psycopg.connect(dsn) as conn, conn.cursor() as cur:
                app.sync_pause_queue_ex(cur, "s")
                conn.rollback()
            assert str(app.sync_get_queue("s").state) == "active"
            with psycopg.connect(dsn) as conn, conn.cursor() as cur:
                assert app.sync_delete_queue_ex(cur, "s")
            with pytest.raises(KeyError):
                app.sync_get_queue("s")

            app.sync_migrate(to_version=0)
            assert not app.sync_is_up_to_date()
    finally:
        drop_prefix(dsn, prefix)


#: Members of the plugins that are the leader's or the worker's machinery, not user operations.
PLUGIN_MACHINERY = {
    "cleanup",
    "migrate",  # a plugin's own line; Chancy.migrate (which has a sync form) runs them all
    "fire_due",
    "run",
    "sleep",
    "wait_for_leader",
    "advance",
    "advance_all",
    "on_job_completed",
    "on_job_starting",
    "on_jobs_starting",
    "on_job_updated",
    "on_jobs_updated_in_transaction",
    "on_worker_started",
    "on_worker_stopped",
}


@pytest.mark.parametrize(
    "cls_path", ["chancy.plugins.cron.Cron", "chancy.plugins.workflow.WorkflowPlugin"]
)
def test_every_plugin_operation_has_a_sync_twin(cls_path: str) -> None:
    from chancy.utils import import_string

    cls = import_string(cls_path)
    names = {n for n, _ in inspect.getmembers(cls)}
    public = [
        n
        for n, f in inspect.getmembers(cls)
        if not n.startswith("_") and inspect.iscoroutinefunction(f) and n not in PLUGIN_MACHINERY
    ]
    missing = [n for n in public if f"sync_{n}" not in names]
    assert public and not missing, f"{cls_path}: async operations without a sync_ form: {missing}"


def test_cron_and_workflows_from_sync_code(dsn: str, prefix: str) -> None:
    from chancy.plugins.cron import Cron
    from chancy.plugins.workflow import Workflow, WorkflowPlugin

    app = Chancy(
        dsn,
        prefix=prefix,
        plugins=[Cron(), WorkflowPlugin()],
        no_default_plugins=True,
        max_connection_pool_size=2,
    )
    try:
        with app:
            app.sync_migrate()
            job = Job(func="tests.jobs.noop").with_unique_key("nightly")
            Cron.sync_schedule(app, "0 3 * * *", job, timezone="Europe/Paris")
            schedules = Cron.sync_get_schedules(app)
            assert schedules["nightly"]["timezone"] == "Europe/Paris"
            assert Cron.sync_pause(app, "nightly") == ["nightly"]
            assert Cron.sync_get_schedules(app, "nightly")["nightly"]["paused_at"] is not None
            assert Cron.sync_resume(app, "nightly") == ["nightly"]
            with psycopg.connect(dsn) as conn, conn.cursor() as cur:
                Cron.sync_schedule_ex(app, cur, "@hourly", job.with_unique_key("hourly"))
                conn.rollback()
            assert set(Cron.sync_get_schedules(app)) == {"nightly"}
            assert Cron.sync_unschedule(app, "nightly") == 1

            wf = (
                Workflow("etl")
                .add("extract", Job(func="tests.jobs.noop"))
                .add("load", Job(func="tests.jobs.noop"), ["extract"])
            )
            wf_id = WorkflowPlugin.sync_push(app, wf)
            found = WorkflowPlugin.sync_fetch_workflow(app, wf_id)
            assert (
                found is not None
                and found.name == "etl"
                and set(found.steps)
                == {
                    "extract",
                    "load",
                }
            )
            assert [w.id for w in WorkflowPlugin.sync_fetch_workflows(app, name="etl")] == [wf_id]
            with pytest.raises(TimeoutError):
                WorkflowPlugin.sync_wait_for_workflow(app, wf_id, interval=0.05, timeout=0.2)
            app.sync_migrate(to_version=0)
    finally:
        drop_prefix(dsn, prefix)
