"""``chancy trigger ...`` run for real in subprocesses against the test database.

The tables (core and trigger lines) come from the ``app`` fixture; the commands get only
``--dsn`` and ``--prefix``, as an operator would type them.
"""

from __future__ import annotations

import json
import uuid

from chancy import Chancy
from chancy.plugins.trigger import Trigger
from tests.cli.test_cli import Cli, assert_one_line_error
from tests.trigger.conftest import installed, jobs, sql

ECHO = "tests.trigger.jobs.echo"


def make_cli(dsn: str, app: Chancy) -> Cli:
    return Cli(dsn, app.prefix)


async def test_add_list_disable_enable_and_remove(dsn: str, app: Chancy) -> None:
    cli = make_cli(dsn, app)
    users = f"{app.prefix}users"
    out = cli.ok(
        "trigger",
        "add",
        users,
        ECHO,
        "--on",
        "insert,update",
        "--queue",
        "q",
        "--level",
        "row",
        "--when",
        "NEW.active",
        "--columns",
        "id,email",
        "--unique-key",
        "user:{id}",
        "--kwargs",
        '{"source": "cli"}',
    )
    tid = uuid.UUID(out.strip())
    assert len(await installed(app, users)) == 2

    table = cli.ok("trigger", "list")
    assert str(tid) in table and f"public.{users}" in table and "INSERT,UPDATE" in table
    assert "NEW.active" in table and "yes" in table
    (listed,) = json.loads(cli.ok("trigger", "list", "--json"))
    assert listed["id"] == str(tid) and listed["level"] == "row"
    assert listed["kwargs_columns"] == ["id", "email"] and listed["unique_key"] == "user:{id}"
    assert listed["job"]["func"] == ECHO and listed["job"]["kwargs"] == {"source": "cli"}

    await sql(app, f"INSERT INTO {users} (email) VALUES ('a@x')")
    (job,) = await jobs(app)
    assert job["kwargs"] == {"source": "cli", "id": 1, "email": "a@x"}
    assert job["unique_key"] == "user:1"

    assert "disabled trigger" in cli.ok("trigger", "disable", str(tid))
    assert "was disabled" in cli.ok("trigger", "disable", str(tid))
    assert await installed(app, users) == []
    assert json.loads(cli.ok("trigger", "list", "--json"))[0]["enabled"] is False
    assert "enabled trigger" in cli.ok("trigger", "enable", str(tid))
    assert len(await installed(app, users)) == 2

    # remove asks first: "n" keeps it.
    kept = cli("trigger", "remove", str(tid), input="n\n")
    assert kept.returncode == 1 and "Aborted" in kept.stderr
    assert tid in await Trigger.get_triggers(app)
    removed = cli("trigger", "remove", str(tid), input="y\n")
    assert removed.returncode == 0, removed.stderr
    assert f"removed trigger {tid}" in removed.stdout
    assert await Trigger.get_triggers(app) == {}
    assert await installed(app, users) == []


async def test_remove_with_yes_does_not_ask(dsn: str, app: Chancy) -> None:
    cli = make_cli(dsn, app)
    tid = cli.ok("trigger", "add", f"{app.prefix}users", ECHO, "--on", "DELETE", "--queue", "q")
    assert cli("trigger", "remove", tid.strip(), "--yes", input="").returncode == 0
    assert await Trigger.get_triggers(app) == {}
    assert "no triggers" in cli.ok("trigger", "list")
    assert json.loads(cli.ok("trigger", "list", "--json")) == []


async def test_bad_input_is_a_one_line_error_and_adds_nothing(dsn: str, app: Chancy) -> None:
    cli = make_cli(dsn, app)
    users = f"{app.prefix}users"
    assert_one_line_error(
        cli("trigger", "add", "no_such_table", ECHO, "--on", "INSERT", "--queue", "q"),
        "there is no table public.no_such_table",
    )
    assert_one_line_error(
        cli("trigger", "add", users, ECHO, "--on", "INSERT", "--on", "TRUNCATE", "--queue", "q"),
        "Invalid operation",
    )
    assert_one_line_error(
        cli(
            "trigger",
            "add",
            users,
            ECHO,
            "--on",
            "INSERT",
            "--level",
            "row",
            "--queue",
            "q",
            "--when",
            "NEW.nope = 1",
        ),
        "WHEN condition",
    )
    assert_one_line_error(
        cli("trigger", "add", users, ECHO, "--on", "INSERT", "--queue", "nowhere"),
        "'nowhere' is not declared",
    )
    not_dotted = cli("trigger", "add", users, "send_email", "--on", "INSERT", "--queue", "q")
    assert not_dotted.returncode == 2 and "not an import path" in not_dotted.stderr
    assert "Traceback" not in not_dotted.stderr
    assert await Trigger.get_triggers(app) == {}
    assert await installed(app, users) == []

    missing = str(uuid.uuid4())
    for command in ("enable", "disable"):
        assert_one_line_error(cli("trigger", command, missing), "not found")
    assert_one_line_error(cli("trigger", "remove", missing, "--yes"), "not found")
    assert_one_line_error(cli("trigger", "remove", missing), "not found")
    assert_one_line_error(cli("trigger", "enable", "not-a-uuid"), "is not a trigger id")


async def test_without_the_trigger_tables_the_error_says_what_to_do(
    dsn: str, chancy: Chancy
) -> None:
    cli = Cli(dsn, chancy.prefix)
    assert_one_line_error(cli("trigger", "list"), "add Trigger()")
