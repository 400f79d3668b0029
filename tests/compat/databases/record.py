"""Record a database made and filled by a released Chancy, as a plain SQL dump.

Run it ONCE per version, with that version's own interpreter (never the project's .venv), from
the repository root, against a PostgreSQL server where the user may create databases:

    python3 -m venv /work/venvs/chancy-0.20.0
    /work/venvs/chancy-0.20.0/bin/pip install 'chancy[cron]==0.20.0'
    /work/venvs/chancy-0.20.0/bin/python tests/compat/databases/record.py \
        --dsn postgresql://postgres@127.0.0.1:5432/postgres

It creates the database ``chancy_fixture_<version>``, uses only the public API of the installed
Chancy (as its documentation shows) to fill it, dumps it with ``pg_dump --no-owner
--no-privileges`` into ``tests/compat/databases/chancy-<version>.sql`` and drops it. The test
suite never runs this script; tests/compat/test_databases.py loads the committed dumps.

What every dump holds (names the test relies on):
- queues ``compat_now`` (threads, concurrency 2) and ``compat_later`` (threads, concurrency 3,
  polling interval 2, a rate limit of 100 per 60 s, left PAUSED so the recording worker never
  ran its jobs), and ``default`` as the recording worker declared it;
- ``done``: a job that a worker of that version ran to ``succeeded``;
- ``failed``: a job whose function raised, ``failed`` after its one attempt;
- waiting jobs ``waiting-1`` (priority 5, kwargs, unique key ``compat-unique``,
  max_attempts 3), ``waiting-2`` (priority -2, a time limit), ``waiting-3`` (queue ``default``,
  priority 10, meta);
- jobs scheduled far in the future: ``future-1`` (2100-01-01, unique key ``compat-future``) and
  ``future-2`` (2099-06-01, queue ``default``);
- a cron schedule ``compat-cron`` (``0 0 1 1 *``, job ``tick`` on ``compat_later``; Europe/Paris
  on versions whose Cron takes a time zone);
- a workflow ``compat-workflow``: ``fetch`` (ran, succeeded) -> ``parse`` and ``index`` (queued
  on the paused queue, pending) -> ``store`` (depends on both, not queued yet).
Each job's kwargs carry ``"label"`` (the names above), so the test can find them.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import version as installed_version
from pathlib import Path

import psycopg

from chancy import Chancy, Job, Queue, Worker
from chancy.plugins.cron import Cron
from chancy.plugins.leadership import Leadership
from chancy.plugins.metrics import Metrics
from chancy.plugins.pruner import Pruner
from chancy.plugins.recovery import Recovery
from chancy.plugins.workflow import Workflow, WorkflowPlugin

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
JOBS = "tests.compat.fixture_jobs"
THREADS = "chancy.executors.thread.ThreadedExecutor"


def job(name: str, label: str, **fields: object) -> Job:
    """A job calling ``fixture_jobs.<name>`` whose kwargs carry its label."""
    kwargs = dict(fields.pop("kwargs", {}) or {})  # type: ignore[call-overload]
    kwargs["label"] = label
    return Job(func=f"{JOBS}.{name}", kwargs=kwargs, **fields)  # type: ignore[arg-type]


async def eventually(check, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what}")
        await asyncio.sleep(0.2)


async def fill(dsn: str, chancy_version: str) -> None:
    plugins = [
        Leadership(poll_interval=1, timeout=5),
        Recovery(),
        Pruner(),
        Metrics(),
        WorkflowPlugin(polling_interval=1),
        Cron(),
    ]
    async with Chancy(dsn, plugins=plugins) as chancy:
        # Core and every plugin's line (cron, workflow, metrics, ...), as the docs say.
        await chancy.migrate()

        await chancy.declare(Queue("compat_now", concurrency=2, executor=THREADS))
        await chancy.declare(
            Queue(
                "compat_later",
                concurrency=3,
                executor=THREADS,
                polling_interval=2,
                rate_limit=100,
                rate_limit_window=60,
                state=Queue.State.PAUSED,
            )
        )

        done = await chancy.push(job("echo", "done", queue="compat_now", kwargs={"n": 0}))
        failed = await chancy.push(job("fail", "failed", queue="compat_now"))

        workflow = Workflow("compat-workflow")
        workflow.add("fetch", job("step", "fetch", queue="compat_now", kwargs={"name": "fetch"}))
        workflow.add_group(
            [
                ("parse", job("step", "parse", queue="compat_later", kwargs={"name": "parse"})),
                ("index", job("step", "index", queue="compat_later", kwargs={"name": "index"})),
            ],
            ["fetch"],
        )
        workflow.add(
            "store",
            job("step", "store", queue="compat_later", kwargs={"name": "store"}),
            ["parse", "index"],
        )
        workflow_id = await WorkflowPlugin.push(chancy, workflow)

        # A worker of this version runs what it can: compat_later is paused, so the workflow
        # stops with parse and index queued there.
        worker = Worker(chancy, register_signal_handlers=False, shutdown_timeout=10)
        await worker.start()

        async def finished() -> bool:
            a, b = await chancy.get_job(done), await chancy.get_job(failed)
            return a.state.value == "succeeded" and b.state.value == "failed"

        async def workflow_waiting() -> bool:
            wf = await WorkflowPlugin.fetch_workflow(chancy, workflow_id)
            return all(wf.steps[s].job_id for s in ("fetch", "parse", "index"))

        try:
            await eventually(finished, "the done and failed jobs")
            await eventually(workflow_waiting, "the workflow to queue parse and index")
        finally:
            await worker.stop()

        # Pushed after the worker stopped, so they stay waiting in the dump.
        await chancy.push(
            job(
                "echo",
                "waiting-1",
                queue="compat_later",
                priority=5,
                max_attempts=3,
                unique_key="compat-unique",
                kwargs={"n": 1, "text": "héllo wörld", "nested": {"a": [1, 2, {"b": None}]}},
            )
        )
        await chancy.push(
            job(
                "echo",
                "waiting-2",
                queue="compat_later",
                priority=-2,
                kwargs={"n": 2},
                limits=[_time_limit(60)],
            )
        )
        await chancy.push(
            job(
                "echo",
                "waiting-3",
                queue="default",
                priority=10,
                kwargs={"n": 3},
                meta={"recorded_by": chancy_version},
            )
        )
        await chancy.push(
            job(
                "echo",
                "future-1",
                queue="compat_later",
                unique_key="compat-future",
                scheduled_at=datetime(2100, 1, 1, tzinfo=UTC),
                kwargs={"n": 4},
            )
        )
        await chancy.push(
            job(
                "echo",
                "future-2",
                queue="default",
                priority=1,
                scheduled_at=datetime(2099, 6, 1, 12, 30, tzinfo=UTC),
                kwargs={"n": 5},
            )
        )

        cron_job = job("tick", "cron", queue="compat_later", unique_key="compat-cron")
        if "timezone" in inspect.signature(Cron.schedule).parameters:
            from zoneinfo import ZoneInfo

            await Cron.schedule(chancy, "0 0 1 1 *", cron_job, timezone=ZoneInfo("Europe/Paris"))
        else:
            await Cron.schedule(chancy, "0 0 1 1 *", cron_job)


def _time_limit(seconds: int) -> object:
    from chancy.job import Limit

    return Limit(Limit.Type.TIME, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dsn", required=True, help="a server where databases can be created")
    parser.add_argument("--pg-dump", default="pg_dump", help="the pg_dump to use")
    args = parser.parse_args()

    chancy_version = installed_version("chancy")
    name = "chancy_fixture_" + chancy_version.replace(".", "_")
    out = HERE / f"chancy-{chancy_version}.sql"
    # The recording worker imports tests.compat.fixture_jobs (process children too).
    sys.path.insert(0, str(ROOT))
    os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")

    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    target = psycopg.conninfo.make_conninfo(args.dsn, dbname=name)
    try:
        asyncio.run(fill(target, chancy_version))
        dump = subprocess.run(
            [args.pg_dump, "--no-owner", "--no-privileges", "--format=plain", target],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        # pg_dump 15.14 and later fence the script with \restrict, which older psql builds do
        # not know; the dumps are our own trusted files, so any psql may load them.
        dump = "".join(
            line
            for line in dump.splitlines(keepends=True)
            if not line.startswith(("\\restrict ", "\\unrestrict "))
        )
        header = (
            f"-- A database made and filled by Chancy {chancy_version} with"
            " tests/compat/databases/record.py.\n"
        )
        out.write_text(header + dump, encoding="utf-8")
        print(f"wrote {out.relative_to(ROOT)} ({len(dump)} bytes)")
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
