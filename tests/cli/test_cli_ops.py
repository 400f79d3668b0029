"""Operating a fleet from a terminal: ``chancy job|worker|cron|workflow``, run as subprocesses.

Each test sets its database up in-process (a migrated app on the test's own prefix, a real
worker where jobs must run), then runs the real command line against it and checks both what
the command prints (its ``--json`` keys and its table) and what it did to the database.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from chancy import Chancy, Job, Queue, QueuedJob, Worker
from chancy.testing import run_until_idle
from tests.cli.conftest import Cli, assert_one_line_error, run_on_a_tty
from tests.conftest import eventually, migrated_app

JOB_KEYS = {
    "id",
    "queue",
    "func",
    "state",
    "cancelled",
    "priority",
    "attempts",
    "max_attempts",
    "recoveries",
    "error_count",
    "unique_key",
    "taken_by",
    "created_at",
    "scheduled_at",
    "started_at",
    "completed_at",
}


def table(output: str) -> tuple[list[str], list[list[str]]]:
    """A table's header cells and rows (cells are separated by two or more spaces)."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert set(lines[1].replace(" ", "")) == {"-"}, output
    split = [re.split(r"\s{2,}", line.strip()) for line in lines]
    return split[0], split[2:]


class Jobs:
    """The jobs a test made, by role."""

    def __init__(self) -> None:
        self.succeeded: list[str] = []
        self.failed = ""
        self.pending: list[str] = []


@pytest.fixture
async def app(dsn: str, prefix: str) -> AsyncIterator[Chancy]:
    async with migrated_app(dsn, prefix, pool=3) as chancy:
        yield chancy


async def make_jobs(app: Chancy) -> Jobs:
    """Two succeeded and one failed job in queue 'work', three pending ones in 'mail'."""
    jobs = Jobs()
    await app.declare(Queue("work", executor=Chancy.Executor.Threaded, concurrency=2))
    for a in (1, 2):
        ref = await app.push(Job(func="tests.jobs.add", queue="work", kwargs={"a": a, "b": 2}))
        jobs.succeeded.append(str(ref))
    # add() without its arguments raises TypeError: a failed job with a traceback.
    jobs.failed = str(await app.push(Job(func="tests.jobs.add", queue="work")))
    await run_until_idle(app, queues=["work"])
    for priority in (0, 5, 9):
        ref = await app.push(Job(func="tests.jobs.noop", queue="mail", priority=priority))
        jobs.pending.append(str(ref))
    return jobs


async def state_of(app: Chancy, job_id: str) -> QueuedJob | None:
    return await app.get_job(job_id)


def ids_of(listing: dict[str, Any]) -> list[str]:
    return [j["id"] for j in listing["jobs"]]


async def test_job_list_filters_json_and_table(cli: Cli, app: Chancy) -> None:
    jobs = await make_jobs(app)
    everything = [*jobs.succeeded, jobs.failed, *jobs.pending]

    listing = await asyncio.to_thread(cli.json, "job", "list")
    assert set(listing) == {"jobs", "next_before"}
    # Newest first: the ids are time-ordered.
    assert ids_of(listing) == sorted(everything, reverse=True)
    assert listing["next_before"] is None
    assert all(set(j) == JOB_KEYS for j in listing["jobs"])
    by_id = {j["id"]: j for j in listing["jobs"]}
    assert by_id[jobs.failed]["state"] == "failed"
    assert by_id[jobs.failed]["error_count"] == 1
    assert by_id[jobs.failed]["attempts"] == 1
    assert by_id[jobs.succeeded[0]]["state"] == "succeeded"
    assert by_id[jobs.pending[2]]["priority"] == 9
    uuid.UUID(by_id[jobs.pending[0]]["id"])
    assert by_id[jobs.pending[0]]["created_at"].endswith("+00:00")

    def matching(*args: str) -> set[str]:
        return set(ids_of(cli.json("job", "list", *args)))

    checks: list[tuple[list[str], set[str]]] = [
        (["-s", "failed"], {jobs.failed}),
        (["--state", "succeeded,failed", "-q", "work"], {*jobs.succeeded, jobs.failed}),
        (["--state", "pending", "--state", "failed"], {*jobs.pending, jobs.failed}),
        (["-q", "mail,nowhere"], set(jobs.pending)),
        (["-f", "tests.jobs.noop"], set(jobs.pending)),
        (["--func-contains", "ADD"], {*jobs.succeeded, jobs.failed}),
        (["--where", "priority >= 5"], set(jobs.pending[1:])),
        (["--where", "priority>=5", "--where", "priority < 9"], {jobs.pending[1]}),
        (["--where", "state in pending,failed"], {*jobs.pending, jobs.failed}),
        (["--where", "func contains jobs.add"], {*jobs.succeeded, jobs.failed}),
        (["--where", f"id == {jobs.failed}"], {jobs.failed}),
        (["--filter", '{"field": "queue", "op": "==", "value": "mail"}'], set(jobs.pending)),
        (
            [
                "--filter",
                '{"or": [{"field": "state", "op": "==", "value": "failed"},'
                ' {"field": "priority", "op": ">", "value": 5}]}',
            ],
            {jobs.failed, jobs.pending[2]},
        ),
        (["--since", "1h"], set(everything)),
        (["--until", "1h"], set()),
        (["--since", "2000-01-01T00:00:00Z", "--until", "2999-01-01T00:00:00"], set(everything)),
        (["--since", "2999-01-01T00:00:00+00:00"], set()),
    ]
    for args, expected in checks:
        assert await asyncio.to_thread(matching, *args) == expected, args

    # Pages: --limit, then --before the last id shown.
    first = await asyncio.to_thread(cli.json, "job", "list", "-n", "2")
    assert ids_of(first) == sorted(everything, reverse=True)[:2]
    assert first["next_before"] == ids_of(first)[-1]
    rest = await asyncio.to_thread(cli.json, "job", "list", "--before", first["next_before"])
    assert ids_of(rest) == sorted(everything, reverse=True)[2:]
    assert rest["next_before"] is None

    # The table: one row per job, readable columns, and a hint on stderr when cut short.
    result = await asyncio.to_thread(cli, "job", "list", "-n", "4")
    assert result.returncode == 0, result.stderr
    header, rows = table(result.stdout)
    assert header == ["ID", "STATE", "QUEUE", "FUNC", "ATTEMPTS", "CREATED", "FINISHED"]
    assert [r[0] for r in rows] == sorted(everything, reverse=True)[:4]
    failed_row = next(r for r in rows if r[0] == jobs.failed)
    assert failed_row[1:5] == ["failed", "work", "tests.jobs.add", "1/1"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", failed_row[5])
    assert "--before" in result.stderr
    assert (await asyncio.to_thread(cli.ok, "job", "list", "-q", "nowhere")).strip() == (
        "no jobs match"
    )


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["-s", "nope"], ["'nope' is not a job state", "pending"]),
        (["--where", "bogus > 1"], ["unknown field 'bogus'"]),
        (["--where", "priority >= high"], ["takes an integer"]),
        (["--where", "priority"], ["not 'FIELD OP VALUE'"]),
        (["--where", "state < failed"], ["does not support 'lt'"]),
        (["--filter", "{"], ["not valid JSON"]),
        (["--filter", '{"x": 1}'], ["unrecognised filter keys"]),
        (["--since", "yesterday"], ["ISO 8601", "2h"]),
        (["--before", "page-2"], ["not a job id"]),
    ],
)
def test_job_list_rejects_bad_filters(cli: Cli, args: list[str], needles: list[str]) -> None:
    # Checked before any connection: no schema is needed to be told the filter is wrong.
    result = cli("job", "list", *args)
    assert result.returncode == 2, result.stderr
    assert_one_line_error(result, *needles)


async def test_job_show(cli: Cli, app: Chancy) -> None:
    jobs = await make_jobs(app)
    shown = await asyncio.to_thread(cli.json, "job", "show", jobs.failed)
    assert set(shown) == {
        *JOB_KEYS - {"error_count"},
        "cancel_reason",
        "cancelled_by",
        "partition_key",
        "kwargs",
        "meta",
        "limits",
        "errors",
        "result",
    }
    assert (shown["id"], shown["state"], shown["attempts"], shown["kwargs"]) == (
        jobs.failed,
        "failed",
        1,
        {},
    )
    assert len(shown["errors"]) == 1
    assert shown["errors"][0]["attempt"] == 0
    assert "TypeError" in shown["errors"][0]["traceback"]

    done = await asyncio.to_thread(cli.json, "job", "show", jobs.succeeded[1])
    assert (done["state"], done["result"], done["kwargs"]) == ("succeeded", 4, {"a": 2, "b": 2})

    text = await asyncio.to_thread(cli.ok, "job", "show", jobs.failed)
    lines = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in text.splitlines()[:18])
    assert lines["state"] == "failed"
    assert lines["attempts"] == "1 of 1"
    assert lines["func"] == "tests.jobs.add"
    assert "--- error of attempt 0 ---" in text
    assert "TypeError" in text

    missing = str(uuid.UUID(int=uuid.UUID(jobs.failed).int + 1))
    assert_one_line_error(await asyncio.to_thread(cli, "job", "show", missing), f"no job {missing}")
    malformed = await asyncio.to_thread(cli, "job", "show", "12345")
    assert malformed.returncode == 2
    assert_one_line_error(malformed, "'12345' is not a job id")


async def test_job_cancel_retry_purge(cli: Cli, app: Chancy) -> None:
    jobs = await make_jobs(app)
    first, second, third = jobs.pending

    # Cancel by id: the job ends failed and marked cancelled; cancelling again changes nothing.
    report = await asyncio.to_thread(cli.json, "job", "cancel", first, "--yes")
    assert report == {"matched": 1, "cancelled": [first], "unchanged": [], "more": False}
    cancelled = await state_of(app, first)
    assert cancelled is not None
    assert (cancelled.state, cancelled.meta.get("cancelled")) == ("failed", True)
    again = await asyncio.to_thread(cli.json, "job", "cancel", first, "-y")
    assert again["cancelled"] == [] and again["unchanged"] == [first]
    # --reason is stored with the job, and `job show` prints it with who cancelled.
    report = await asyncio.to_thread(
        cli.json, "job", "cancel", third, "--reason", "customer asked", "-y"
    )
    assert report["cancelled"] == [third]
    shown = await asyncio.to_thread(cli.json, "job", "show", third)
    assert shown["cancel_reason"] == "customer asked" and "@" in shown["cancelled_by"]
    text = (await asyncio.to_thread(cli, "job", "show", third)).stdout
    assert "customer asked" in text

    # Retry by id: back to run again with attempts reset; a pending job is left alone.
    report = await asyncio.to_thread(cli.json, "job", "retry", first, second, "--yes")
    assert report == {
        "matched": 2,
        "retried": [first],
        "skipped": [],
        "unchanged": [second],
        "more": False,
    }
    retried = await state_of(app, first)
    assert retried is not None and retried.state in ("pending", "retrying")
    assert retried.attempts == 0

    # Retry by filter: the failed job of queue 'work'.
    report = await asyncio.to_thread(cli.json, "job", "retry", "-s", "failed", "-q", "work", "-y")
    assert report["retried"] == [jobs.failed]
    again_failed = await state_of(app, jobs.failed)
    assert again_failed is not None and again_failed.state in ("pending", "retrying")

    # Purge by filter, bounded by --limit: the newest match first, and "more" says so.
    report = await asyncio.to_thread(
        cli.json, "job", "purge", "-s", "succeeded", "-n", "1", "--yes"
    )
    assert report == {"matched": 1, "purged": 1, "more": True}
    assert await state_of(app, jobs.succeeded[1]) is None
    assert await state_of(app, jobs.succeeded[0]) is not None
    text = await asyncio.to_thread(cli.ok, "job", "purge", "-s", "succeeded", "--yes")
    assert text.strip() == "1 job purged"
    assert await state_of(app, jobs.succeeded[0]) is None

    # Nothing matches: said plainly, nothing changes, exit 0.
    none = await asyncio.to_thread(cli.json, "job", "purge", "-s", "succeeded", "--yes")
    assert none == {"matched": 0, "more": False}

    # One unknown id among known ones: an error, and nothing was purged.
    unknown = str(uuid.UUID(int=uuid.UUID(third).int + 1))
    result = await asyncio.to_thread(cli, "job", "purge", third, unknown, "--yes")
    assert_one_line_error(result, f"no job {unknown}", "nothing was changed")
    assert await state_of(app, third) is not None

    # Ids or a filter, exactly one of them.
    for args in (["job", "purge", "--yes"], ["job", "purge", third, "-s", "pending", "--yes"]):
        result = await asyncio.to_thread(cli, *args)
        assert result.returncode == 2, result.stderr
        assert_one_line_error(result, "give job ids or a filter")
    result = await asyncio.to_thread(cli, "job", "cancel", "not-an-id", "--yes")
    assert result.returncode == 2
    assert_one_line_error(result, "'not-an-id' is not a job id")


async def test_destructive_job_commands_ask_first(cli: Cli, app: Chancy) -> None:
    ref = str(await app.push(Job(func="tests.jobs.noop", queue="mail")))

    # No terminal and no --yes: refused, with the way out in the message.
    for verb in ("cancel", "retry", "purge"):
        result = await asyncio.to_thread(cli, "job", verb, ref)
        assert_one_line_error(result, "refusing to", "not a terminal", "--yes")
    # Even an answer piped in is not taken as consent.
    result = await asyncio.to_thread(cli, "job", "purge", ref, input="y\n")
    assert_one_line_error(result, "refusing to purge")
    job = await state_of(app, ref)
    assert job is not None and job.state == "pending"

    # On a terminal: the question, then "no" changes nothing and "yes" acts.
    declined = await asyncio.to_thread(run_on_a_tty, cli, "job", "cancel", ref, answer="n")
    assert f"Cancel 1 job {ref}? [y/N]" in declined.stdout
    assert_one_line_error(declined, "not confirmed; nothing was changed")
    job = await state_of(app, ref)
    assert job is not None and job.state == "pending"
    accepted = await asyncio.to_thread(run_on_a_tty, cli, "job", "cancel", ref, answer="y")
    assert accepted.returncode == 0, accepted.stderr
    assert f"1 job cancelled: {ref}" in accepted.stdout
    job = await state_of(app, ref)
    assert job is not None and job.meta.get("cancelled") is True


async def test_worker_list(cli: Cli, dsn: str, prefix: str) -> None:
    from chancy.plugins.leadership import Leadership

    async with migrated_app(dsn, prefix, [Leadership()], pool=4) as app:
        worker = Worker(app, worker_id="cli-w1", tags={"zone=a"}, register_signal_handlers=False)
        async with worker:
            await asyncio.wait_for(worker.is_leader.wait(), 30)

            def listed() -> list[dict[str, Any]]:
                rows: list[dict[str, Any]] = cli.json("worker", "list")
                return rows if rows and rows[0]["is_leader"] else []

            [row] = await eventually(lambda: asyncio.to_thread(listed), timeout=30)
            assert set(row) == {
                "worker_id",
                "hostname",
                "pid",
                "version",
                "is_leader",
                "queues",
                "tags",
                "started_at",
                "last_seen",
                "expires_at",
            }
            assert (row["worker_id"], row["pid"], row["hostname"]) == (
                "cli-w1",
                os.getpid(),
                socket.gethostname(),
            )
            assert "zone=a" in row["tags"] and "worker_id=cli-w1" in row["tags"]
            assert row["last_seen"] is not None and row["expires_at"] > row["last_seen"]

            out = await asyncio.to_thread(cli.ok, "worker", "list")
            header, rows = table(out)
            assert header == ["WORKER_ID", "HOST", "PID", "LEADER", "HEARTBEAT", "STATUS", "QUEUES"]
            assert rows[0][:4] == ["cli-w1", socket.gethostname(), str(os.getpid()), "yes"]
            assert re.fullmatch(r"\d+s ago", rows[0][4])
            assert rows[0][5] == "alive"
        # A worker that stopped cleanly removes its row.
        assert (await asyncio.to_thread(cli.ok, "worker", "list")).strip() == "no workers"


async def test_cron_list_pause_resume_run(cli: Cli, dsn: str, prefix: str) -> None:
    from chancy.plugins.cron import Cron

    async with migrated_app(dsn, prefix, [Cron()], pool=3) as app:
        await Cron.schedule(
            app, "*/5 * * * *", Job(func="tests.jobs.noop", queue="mail", unique_key="every5")
        )
        await Cron.schedule(
            app,
            "30 2 * * *",
            Job(func="tests.jobs.add", kwargs={"a": 1, "b": 2}, unique_key="nightly"),
            timezone="Europe/London",
        )

        listed = await asyncio.to_thread(cli.json, "cron", "list")
        assert [c["unique_key"] for c in listed] == ["every5", "nightly"]
        nightly = listed[1]
        assert set(nightly) == {
            "unique_key",
            "cron",
            "timezone",
            "next_run",
            "last_run",
            "paused",
            "paused_at",
            "job",
        }
        assert (nightly["cron"], nightly["timezone"], nightly["paused"]) == (
            "30 2 * * *",
            "Europe/London",
            False,
        )
        assert nightly["job"] == {
            "func": "tests.jobs.add",
            "queue": "default",
            "kwargs": {"a": 1, "b": 2},
            "priority": 0,
            "max_attempts": 1,
        }

        # Pause: refused without --yes; an unknown key among known ones changes nothing.
        refused = await asyncio.to_thread(cli, "cron", "pause", "every5")
        assert_one_line_error(refused, "refusing to pause cron schedule 'every5'", "--yes")
        unknown = await asyncio.to_thread(cli, "cron", "pause", "every5", "nope", "--yes")
        assert_one_line_error(unknown, "no cron schedule with key 'nope'", "nothing was changed")
        assert (await Cron.get_schedules(app, ["every5"]))["every5"]["paused_at"] is None

        paused = await asyncio.to_thread(cli.json, "cron", "pause", "every5", "--yes")
        assert paused == {"paused": ["every5"]}
        assert (await Cron.get_schedules(app, ["every5"]))["every5"]["paused_at"] is not None
        header, rows = table(await asyncio.to_thread(cli.ok, "cron", "list"))
        assert header == [
            "KEY",
            "CRON",
            "TIMEZONE",
            "NEXT_RUN",
            "LAST_RUN",
            "PAUSED",
            "FUNC",
            "QUEUE",
        ]
        by_key = {r[0]: r for r in rows}
        assert by_key["every5"][5] != "no" and by_key["nightly"][5] == "no"

        resumed = await asyncio.to_thread(cli.json, "cron", "resume", "every5", "nightly", "-y")
        assert resumed == {"resumed": ["every5"], "unchanged": ["nightly"]}
        assert (await Cron.get_schedules(app, ["every5"]))["every5"]["paused_at"] is None

        # Run now: the schedule's job is pushed; while it waits, a second run returns it.
        [ran] = await asyncio.to_thread(cli.json, "cron", "run", "nightly", "--yes")
        assert set(ran) == {"unique_key", "job_id", "existing"}
        assert ran["existing"] is False
        pushed = await app.get_job(ran["job_id"])
        assert pushed is not None
        assert (pushed.func, pushed.kwargs, pushed.unique_key, pushed.state) == (
            "tests.jobs.add",
            {"a": 1, "b": 2},
            "nightly",
            "pending",
        )
        [again] = await asyncio.to_thread(cli.json, "cron", "run", "nightly", "--yes")
        assert (again["job_id"], again["existing"]) == (ran["job_id"], True)
        # The schedule itself did not move.
        after = (await Cron.get_schedules(app, ["nightly"]))["nightly"]
        assert after["last_run"] is None
        missing = await asyncio.to_thread(cli, "cron", "run", "nope", "--yes")
        assert_one_line_error(missing, "no cron schedule with key 'nope'")


def test_cron_without_its_table_is_a_one_line_error(cli: Cli) -> None:
    cli.ok("misc", "migrate")
    assert_one_line_error(cli("cron", "list"), f"no {cli.prefix}cron table", "Cron()")


async def test_workflow_list_and_show(cli: Cli, dsn: str, prefix: str) -> None:
    from chancy.plugins.workflow import Workflow, WorkflowPlugin

    plugin = WorkflowPlugin()
    async with migrated_app(dsn, prefix, [plugin], pool=3) as app:
        wf = (
            Workflow("nightly")
            .add("load", Job(func="tests.jobs.noop"), ["clean", "enrich"])
            .add("extract", Job(func="tests.jobs.noop", queue="io"))
            .add_group(
                [("clean", Job(func="tests.jobs.noop")), ("enrich", Job(func="tests.jobs.noop"))],
                ["extract"],
            )
        )
        workflow_id = await WorkflowPlugin.push(app, wf)
        # One pass by hand (no leader is running): the first step is queued.
        await plugin.advance_all(app)

        shown = await asyncio.to_thread(cli.json, "workflow", "show", workflow_id)
        assert (shown["id"], shown["name"], shown["state"], shown["step_count"]) == (
            workflow_id,
            "nightly",
            "running",
            4,
        )
        steps = shown["steps"]
        # Each step comes after the steps it depends on.
        assert [s["step_id"] for s in steps] == ["extract", "clean", "enrich", "load"]
        extract = steps[0]
        assert set(extract) == {"step_id", "state", "func", "queue", "dependencies", "job_id"}
        assert (extract["state"], extract["queue"]) == ("pending", "io")
        assert steps[3]["dependencies"] == ["clean", "enrich"]
        assert [s["state"] for s in steps[1:]] == [None, None, None]
        assert shown["steps_by_state"] == {"pending": 1, "waiting": 3}

        # Cancel the first step's job through the CLI: the next pass fails the workflow.
        await asyncio.to_thread(cli.ok, "job", "cancel", extract["job_id"], "--yes")
        await plugin.advance_all(app)
        shown = await asyncio.to_thread(cli.json, "workflow", "show", workflow_id)
        assert shown["state"] == "failed"
        assert shown["steps"][0]["state"] == "failed"

        text = await asyncio.to_thread(cli.ok, "workflow", "show", workflow_id)
        assert f"workflow  {workflow_id}" in text
        header, rows = table(text.split("\n\n", 1)[1])
        assert header == ["STEP", "STATE", "FUNC", "QUEUE", "DEPENDS_ON", "JOB_ID"]
        assert rows[0][:2] == ["extract", "failed"]
        assert rows[3][:2] == ["load", "waiting"] and rows[3][4] == "clean,enrich"

        listed = await asyncio.to_thread(cli.json, "workflow", "list", "-s", "failed")
        assert [w["id"] for w in listed] == [workflow_id]
        assert await asyncio.to_thread(cli.json, "workflow", "list", "-s", "running") == []

        unknown = str(uuid.UUID(int=uuid.UUID(workflow_id).int + 1))
        assert_one_line_error(
            await asyncio.to_thread(cli, "workflow", "show", unknown), f"no workflow {unknown}"
        )
        malformed = await asyncio.to_thread(cli, "workflow", "show", "wf-1")
        assert malformed.returncode == 2
        assert_one_line_error(malformed, "'wf-1' is not a workflow id")


def test_help_lists_the_operator_commands(cli: Cli) -> None:
    out = cli.raw("--help").stdout
    for group in ("cron", "job", "misc", "queue", "worker", "workflow"):
        assert re.search(rf"^\s+{group}\s", out, re.MULTILINE), (group, out)
    for args, commands in (
        (["job"], ("list", "show", "retry", "cancel", "purge")),
        (["cron"], ("list", "pause", "resume", "run")),
        (["worker"], ("list", "start", "web")),
        (["workflow"], ("list", "show")),
    ):
        out = cli.raw(*args, "-h").stdout
        for command in commands:
            assert re.search(rf"^\s+{command}\s", out, re.MULTILINE), (args, command, out)
