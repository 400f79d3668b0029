"""Databases made by released Chancy versions are upgraded in place and served, nothing lost.

Each dump in tests/compat/databases/ was made once by a released Chancy (record.py says how
and what it holds: finished, failed, waiting and future jobs, a paused queue, a cron schedule
and a half-run workflow). The test loads it into a fresh database with psql, runs chancy's
migrations over it, checks that every row reads back through chancy's API with the values the
old version wrote, serves it with a chancy worker (waiting jobs run, future ones wait, the cron
schedule fires, the workflow finishes), and then migrates down to 0 and up again.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from chancy import Chancy, Job, Queue, QueuedJob, Worker
from chancy.plugins.cron import Cron
from chancy.plugins.pruner import Pruner
from chancy.plugins.workflow import Workflow, WorkflowPlugin
from chancy.store import Spec
from tests.conftest import eventually
from tests.test_migrate import catalog

HERE = Path(__file__).resolve().parent
DUMPS = sorted(
    (HERE / "databases").glob("chancy-*.sql"),
    key=lambda p: tuple(int(n) for n in p.stem.removeprefix("chancy-").split(".")),
)
PREFIX = "chancy_"
JOBS = "tests.compat.fixture_jobs"
SUCCEEDED = QueuedJob.State.SUCCEEDED
PENDING = QueuedJob.State.PENDING

#: Waiting jobs (run by chancy) and jobs scheduled in the future (left waiting), by label.
WAITING = ("waiting-1", "waiting-2", "waiting-3")
FUTURE = ("future-1", "future-2")
#: The workflow's steps: fetch ran under the old version, parse and index are queued on the
#: paused queue, store waits for both.
STEPS = ("fetch", "parse", "index", "store")
#: Every table chancy keeps rows in; their rows are counted before and after the upgrade.
TABLES = ("jobs", "queues", "cron", "workflows", "workflow_steps")


def _version(path: Path) -> str:
    return path.stem.removeprefix("chancy-")


def psql() -> str:
    """Debian's psql, else the embedded server's (a machine may have no PostgreSQL installed)."""
    found = shutil.which("psql") or ("/usr/bin/psql" if os.access("/usr/bin/psql", os.X_OK) else "")
    if found:
        return found
    from chancy.embedded import server_binaries

    return str(server_binaries().bin / "psql")


@pytest.fixture
def database(dsn: str) -> Iterator[str]:
    """A new, empty database on the suite's server (its DSN), dropped at the end."""
    name = f"compat_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    try:
        yield make_conninfo(dsn, dbname=name)
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def load(target: str, dump: Path) -> None:
    result = subprocess.run(
        [
            psql(),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-o",
            os.devnull,
            "-d",
            target,
            "-f",
            str(dump),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"psql could not load {dump.name}: {result.stderr}"


def query(target: str, sql: str, params: Any = None) -> list[dict[str, Any]]:
    with psycopg.connect(target, autocommit=True) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def snapshot(target: str) -> dict[str, Any]:
    """The rows as the old version left them, read with plain SQL (json or jsonb alike)."""
    jobs = query(
        target,
        f"SELECT id, queue, func, kwargs::jsonb AS kwargs, limits::jsonb AS limits,"
        f" meta::jsonb AS meta, state, priority, attempts, max_attempts, scheduled_at,"
        f" unique_key, errors::jsonb AS errors, created_at, started_at, completed_at"
        f" FROM {PREFIX}jobs",
    )
    steps = query(
        target,
        f"SELECT workflow_id, step_id, job_id, dependencies::jsonb AS dependencies"
        f" FROM {PREFIX}workflow_steps",
    )
    return {
        "jobs": {str(j["id"]): j for j in jobs},
        "by_label": {j["kwargs"].get("label"): j for j in jobs},
        "queues": {q["name"]: q for q in query(target, f"SELECT * FROM {PREFIX}queues")},
        "cron": {c["unique_key"]: c for c in query(target, f"SELECT * FROM {PREFIX}cron")},
        "workflows": query(target, f"SELECT * FROM {PREFIX}workflows"),
        "steps": {s["step_id"]: s for s in steps},
        "counts": counts(target),
    }


def counts(target: str) -> dict[str, int]:
    return {t: query(target, f"SELECT count(*) AS n FROM {PREFIX}{t}")[0]["n"] for t in TABLES}


def check_jobs_read_back(before: dict[str, Any], found: list[QueuedJob]) -> None:
    """Every job, read through chancy's API, has what the old version wrote."""
    assert sorted(str(j.id) for j in found) == sorted(before["jobs"])
    for job in found:
        old = before["jobs"][str(job.id)]
        assert (job.queue, job.func, job.kwargs, job.meta) == (
            old["queue"],
            old["func"],
            old["kwargs"],
            old["meta"],
        ), job.id
        assert (job.state.value, job.priority, job.attempts, job.max_attempts) == (
            old["state"],
            old["priority"],
            old["attempts"],
            old["max_attempts"],
        ), job.id
        assert (job.unique_key, job.scheduled_at, job.created_at) == (
            old["unique_key"],
            old["scheduled_at"],
            old["created_at"],
        ), job.id
        assert (job.started_at, job.completed_at) == (old["started_at"], old["completed_at"])
        assert [e["traceback"] for e in job.errors] == [e["traceback"] for e in old["errors"]]
        assert [(limit.type_.value, limit.value) for limit in job.limits] == [
            (limit["t"], limit["v"]) for limit in old["limits"]
        ]


def check_recorded_content(before: dict[str, Any]) -> None:
    """The dump holds what record.py promises (so the rest of the test proves something)."""
    by_label = before["by_label"]
    assert by_label["done"]["state"] == "succeeded"
    assert by_label["failed"]["state"] == "failed"
    assert "fixture job failed on purpose" in by_label["failed"]["errors"][0]["traceback"]
    waiting1 = by_label["waiting-1"]
    assert (waiting1["priority"], waiting1["max_attempts"], waiting1["unique_key"]) == (
        5,
        3,
        "compat-unique",
    )
    assert waiting1["kwargs"]["nested"] == {"a": [1, 2, {"b": None}]}
    assert by_label["waiting-2"]["limits"] == [{"t": "time", "v": 60}]
    assert by_label["waiting-3"]["meta"]["recorded_by"] is not None
    for label in (*WAITING, *FUTURE):
        assert by_label[label]["state"] == "pending", label
    assert by_label["future-1"]["scheduled_at"] == datetime(2100, 1, 1, tzinfo=UTC)
    assert set(before["cron"]) == {"compat-cron"}
    assert before["queues"]["compat_later"]["state"] == "paused"
    (workflow,) = before["workflows"]
    assert workflow["name"] == "compat-workflow" and workflow["state"] in ("pending", "running")
    steps = before["steps"]
    assert by_label["fetch"]["state"] == "succeeded"
    assert str(steps["fetch"]["job_id"]) == str(by_label["fetch"]["id"])
    for name in ("parse", "index"):
        assert str(steps[name]["job_id"]) == str(by_label[name]["id"])
        assert by_label[name]["state"] == "pending"
    assert steps["store"]["job_id"] is None


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "dump",
    [
        # The newest release runs in the quick mode too; each older one adds ~10 s (most of it
        # DROP DATABASE waiting for a checkpoint on a busy server), so they are slow tests.
        pytest.param(d, id=_version(d), marks=[] if d == DUMPS[-1] else [pytest.mark.slow])
        for d in DUMPS
    ],
)
async def test_a_released_chancy_database_upgrades_in_place_and_is_served(
    dump: Path, database: str
) -> None:
    load(database, dump)
    before = snapshot(database)
    check_recorded_content(before)
    by_label = before["by_label"]

    # The dump's finished jobs date from when it was made: the default Pruner (a day's
    # retention) would delete them once the dump is a day old, so this one keeps them.
    keep = Pruner(rule=Pruner.Rules.Age() > 100 * 365 * 86400)
    app = Chancy(database, plugins=[Cron(), WorkflowPlugin(), keep], max_connection_pool_size=4)
    async with app:
        assert not await app.is_up_to_date()
        await app.migrate()
        assert await app.is_up_to_date()
        upgraded = await catalog(database, PREFIX)
        assert counts(database) == before["counts"], "the upgrade lost or added rows"

        # Jobs, queues, the cron schedule and the workflow read back through chancy's API.
        check_jobs_read_back(before, await app.get_jobs(list(before["jobs"])))
        queues = {q.name: q for q in await app.get_all_queues()}
        assert set(queues) == set(before["queues"])
        for name, old in before["queues"].items():
            queue = queues[name]
            assert (queue.state.value, queue.concurrency, queue.executor) == (
                old["state"],
                old["concurrency"],
                old["executor"],
            ), name
            assert (queue.rate_limit, queue.rate_limit_window) == (
                old["rate_limit"],
                old["rate_limit_window"],
            ), name
            assert queue.polling_interval == old["polling_interval"], name
            assert queue.tags == set(old["tags"] or [".*"]), name
        schedules = await Cron.get_schedules(app)
        assert set(schedules) == {"compat-cron"}
        schedule, old_cron = schedules["compat-cron"], before["cron"]["compat-cron"]
        assert (schedule["cron"], schedule["next_run"], schedule["last_run"]) == (
            "0 0 1 1 *",
            old_cron["next_run"],
            None,
        )
        assert schedule["timezone"] == old_cron.get("timezone", "Etc/UTC")
        assert schedule["job"].func == f"{JOBS}.tick"
        assert schedule["job"].queue == "compat_later"
        assert schedule["job"].unique_key == "compat-cron"
        workflow_id = str(before["workflows"][0]["id"])
        workflow = await WorkflowPlugin.fetch_workflow(app, workflow_id)
        assert workflow is not None and workflow.name == "compat-workflow"
        assert workflow.state in (Workflow.State.PENDING, Workflow.State.RUNNING)
        assert list(sorted(workflow.steps)) == sorted(STEPS)
        for name in STEPS:
            step = workflow[name]
            old_step = before["steps"][name]
            assert step.dependencies == old_step["dependencies"], name
            assert step.job.func == f"{JOBS}.step" and step.job.kwargs["name"] == name
            expected = old_step["job_id"]
            assert step.job_id == (None if expected is None else str(expected)), name
        assert workflow["fetch"].state == SUCCEEDED
        assert workflow["parse"].state == PENDING and workflow["index"].state == PENDING
        assert workflow["store"].state is None

        # A unique key the old version stored still blocks a second job: pushing it again
        # returns the waiting job's id and adds nothing.
        again = await app.push(
            Job(func=f"{JOBS}.echo", queue="compat_later", unique_key="compat-future")
        )
        assert str(again.identifier) == str(by_label["future-1"]["id"])
        assert counts(database) == before["counts"]

        # Served: resume the queue the old worker never ran and make the schedule due.
        await app.resume_queue("compat_later")
        await _sql(
            app,
            f"UPDATE {PREFIX}cron SET next_run = now() - interval '1 minute'"
            " WHERE unique_key = 'compat-cron'",
        )
        waiting_ids = [str(by_label[label]["id"]) for label in WAITING]
        future_ids = [str(by_label[label]["id"]) for label in FUTURE]
        async with Worker(app, register_signal_handlers=False, shutdown_timeout=10):
            finished = await asyncio.wait_for(app.wait_for_jobs(waiting_ids, interval=0.1), 60)
            for job in finished:
                assert job.state == SUCCEEDED, (job.kwargs, job.errors)
                # fixture_jobs.echo returns its kwargs: they reached the function intact.
                assert job.result == job.kwargs
                assert job.attempts == 1
            done = await WorkflowPlugin.wait_for_workflow(
                app, workflow_id, interval=0.1, timeout=60
            )
            assert done.state is Workflow.State.COMPLETED
            assert all(done[name].state == SUCCEEDED for name in STEPS)
            # The jobs the old version queued for steps are the ones that ran: none was
            # queued twice.
            for name in ("fetch", "parse", "index"):
                assert done[name].job_id == str(before["steps"][name]["job_id"]), name

            async def cron_ran() -> list[QueuedJob]:
                rows = await _sql(
                    app,
                    f"SELECT id FROM {PREFIX}jobs WHERE func = '{JOBS}.tick'",
                    fetch="all",
                )
                jobs = await app.get_jobs([str(r["id"]) for r in rows])
                return [j for j in jobs if j.state == SUCCEEDED]

            (tick,) = await eventually(cron_ran, timeout=60, message="the cron job never ran")
            assert tick.queue == "compat_later" and tick.unique_key == "compat-cron"
            schedule = (await Cron.get_schedules(app))["compat-cron"]
            assert schedule["last_run"] is not None
            assert schedule["next_run"] > datetime.now(UTC)

            # Jobs scheduled in the future stay where they are.
            for job in await app.get_jobs(future_ids):
                assert job.state == PENDING and job.attempts == 0
                assert job.scheduled_at == by_label[job.kwargs["label"]]["scheduled_at"]

        # Nothing lost: every old job is still there, plus the store step and the cron run.
        after = counts(database)
        assert after == {**before["counts"], "jobs": before["counts"]["jobs"] + 2}
        still = {str(j.id): j for j in await app.get_jobs(list(before["jobs"]))}
        assert set(still) == set(before["jobs"])
        for label in ("done", "failed", "fetch", *FUTURE):
            old = by_label[label]
            assert still[str(old["id"])].state.value == old["state"], label

        # Down to nothing and up again: the schema is exactly the one the upgrade gave.
        await app.migrate(to_version=0)
        left = query(
            database,
            "SELECT relname FROM pg_class WHERE relname LIKE %s",
            (PREFIX.replace("_", "\\_") + "%",),
        )
        assert left == [], f"migrating down to 0 left {left}"
        await app.migrate()
        assert await app.is_up_to_date()
        assert await catalog(database, PREFIX) == upgraded
        await app.declare(Queue("again", executor=Chancy.Executor.Threaded))
        ref = await app.push(Job(func=f"{JOBS}.echo", queue="again", kwargs={"label": "again"}))
        async with Worker(app, register_signal_handlers=False, shutdown_timeout=10):
            job = await app.wait_for_job(ref, interval=0.1, timeout=30)
        assert job is not None and job.state == SUCCEEDED and job.result == {"label": "again"}


async def _sql(app: Chancy, text: str, params: Any = None, fetch: str = "none") -> Any:
    return await app.db.run(Spec(text, params, fetch))  # type: ignore[arg-type]
