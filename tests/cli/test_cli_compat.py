"""What Chancy 0.26's users type keeps working: its short flags, ``misc migrate --plugin``,
``worker web --debug/--allow-origin`` and ``queue declare``'s default concurrency of 1.

Every command runs for real (``python -m chancy``) against the test server.
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg.rows import dict_row

from chancy import Chancy, Queue
from chancy.migrate import current_versions
from tests.cli.conftest import ROOT, Cli, assert_one_line_error, run_on_a_tty


def versions(cli: Cli) -> dict[str, int]:
    """Each installed migration line's version, read from the database."""

    async def read() -> dict[str, int]:
        conn = await psycopg.AsyncConnection.connect(cli.dsn)
        async with conn, conn.cursor(row_factory=dict_row) as cur:
            return await current_versions(cur, cli.prefix)

    return asyncio.run(read())


def test_top_level_a_and_the_short_flags_of_queue_and_migrate(cli: Cli, dsn: str) -> None:
    app = ("-a", "tests.cli.apps.instance")
    out = cli.raw(*app, "misc", "migrate").stdout
    assert cli.prefix in out
    assert versions(cli)["chancy"] > 0

    declared = cli.raw(
        *app,
        "queue",
        "declare",
        "q",
        "-c",
        "3",
        "-e",
        "chancy.executors.thread.ThreadedExecutor",
        "-r",
        "10",
        "-w",
        "60",
        "-p",
        "2",
        "-t",
        "gpu{1,2}",
        "-t",
        "cpu",
    )
    assert declared.returncode == 0, declared.stderr
    [packed] = cli.json("queue", "list")
    assert Queue.unpack(packed) == Queue(
        "q",
        concurrency=3,
        executor=Chancy.Executor.Threaded,
        rate_limit=10,
        rate_limit_window=60,
        polling_interval=2,
        # 0.26 took each -t whole: a comma inside a regex's braces does not split it.
        tags={"gpu{1,2}", "cpu"},
    )

    pushed = cli.raw(
        *app,
        "queue",
        "push",
        "tests.jobs.add",
        "-q",
        "q",
        "-p",
        "7",
        "-u",
        "k1",
        "-m",
        "3",
        "-k",
        '{"a": 1, "b": 2}',
    )
    assert pushed.returncode == 0, pushed.stderr
    job = cli.json("job", "show", pushed.stdout.strip())
    assert (job["queue"], job["priority"], job["unique_key"], job["max_attempts"]) == (
        "q",
        7,
        "k1",
        3,
    )
    assert job["kwargs"] == {"a": 1, "b": 2}

    # -t on migrate is --to-version.
    removed = cli.raw(*app, "misc", "migrate", "-t", "0")
    assert removed.returncode == 0, removed.stderr
    assert versions(cli) == {}


def test_h_is_help_except_on_worker_web(cli: Cli) -> None:
    for args in ([], ["queue"], ["job", "list"], ["worker", "start"]):
        result = cli.raw(*args, "-h")
        assert result.returncode == 0, (args, result.stderr)
        assert result.stdout.startswith("Usage: chancy"), args
    # 0.26's `worker web -h HOST`: -h takes a value there, and --help still shows help.
    web_help = cli.raw("worker", "web", "--help").stdout
    assert "-h, --host" in web_help and "-p, --port" in web_help
    assert "-d, --debug" in web_help and "-o, --allow-origin" in web_help
    missing_value = cli.raw("worker", "web", "-h")
    assert missing_value.returncode == 2
    assert "'-h' requires an argument" in missing_value.stderr


def test_worker_start_short_flags(cli: Cli) -> None:
    cli.ok("misc", "migrate")
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "chancy", "--dsn", cli.dsn, "--prefix", cli.prefix),
            *("worker", "start", "-w", "cli-short-1", "-t", "zone=a", "--shutdown-timeout", "5"),
        ],
        cwd=ROOT,
        env=cli.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            workers = cli.json("worker", "list")
            if workers:
                break
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the worker never registered"
            time.sleep(0.2)
        [row] = workers
        assert row["worker_id"] == "cli-short-1"
        assert "zone=a" in row["tags"]
        assert row["pid"] == proc.pid
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def test_declare_concurrency_defaults_to_1_as_in_0_26(cli: Cli) -> None:
    cli.ok("misc", "migrate")
    cli.ok("queue", "declare", "plain")
    cli.ok("queue", "declare", "auto", "--concurrency", "default")
    packed = {q["name"]: q for q in cli.json("queue", "list")}
    assert packed["plain"]["concurrency"] == 1
    assert packed["auto"]["concurrency"] is None
    bad = cli("queue", "declare", "q", "-c", "0")
    assert bad.returncode == 2
    assert "not at least 1" in bad.stderr


def test_migrate_plugin_moves_only_that_line(cli: Cli) -> None:
    app = ("-a", "tests.cli.apps.with_cron")
    # 0.26 matched the class name in any case.
    only = cli.raw(*app, "misc", "migrate", "--plugin", "cron")
    assert only.returncode == 0, only.stderr
    assert "plugin Cron (line 'cron')" in only.stdout
    lines = versions(cli)
    assert lines["cron"] > 0
    assert "chancy" not in lines and "workflow" not in lines

    assert cli.raw(*app, "misc", "migrate").returncode == 0
    head = versions(cli)
    down = cli.raw(*app, "misc", "migrate", "-p", "CRON", "-t", "0")
    assert down.returncode == 0, down.stderr
    assert versions(cli) == {k: v for k, v in head.items() if k != "cron"}
    # The identifier names it too.
    assert cli.raw(*app, "misc", "migrate", "-p", "chancy.cron").returncode == 0
    assert versions(cli) == head

    unknown = cli.raw(*app, "misc", "migrate", "-p", "nope")
    assert_one_line_error(unknown, "no plugin 'nope'", "Cron", "Leadership")
    no_lines = cli.raw(*app, "misc", "migrate", "-p", "Leadership")
    assert no_lines.returncode == 0, no_lines.stderr
    assert "has no migrations" in no_lines.stdout
    past_head = cli.raw(*app, "misc", "migrate", "-p", "cron", "-t", "999")
    assert_one_line_error(past_head, "no version 999")
    # Without --app the app has only the default plugins, and the error says so.
    assert_one_line_error(cli("misc", "migrate", "-p", "cron"), "no plugin 'cron'", "--app")
    cli.raw(*app, "misc", "migrate", "-t", "0")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


Start = Callable[..., tuple[str, "subprocess.Popen[str]"]]


@pytest.fixture
def web(cli: Cli) -> Iterator[Start]:
    """Start ``chancy ... worker web ARGS`` and wait until it answers; stop it afterwards."""
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("uvicorn")
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> tuple[str, subprocess.Popen[str]]:
        port = _free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "chancy", *args, "-h", "127.0.0.1", "-p", str(port)],
            cwd=ROOT,
            env=cli.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/health", timeout=2)
                return base, proc
            except httpx.TransportError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.1)

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            proc.communicate(timeout=10)


def _allowed(base: str, origin: str) -> str | None:
    import httpx

    headers = {"Origin": origin}
    return httpx.get(f"{base}/health", headers=headers).headers.get("access-control-allow-origin")


def _api_takes_debug() -> bool:
    from chancy.plugins.api import Api
    from chancy.plugins.api.app import Dashboard, build_starlette_app

    return any(
        "debug" in inspect.signature(f).parameters for f in (Api, Dashboard, build_starlette_app)
    )


def test_worker_web_allow_origin_and_debug(cli: Cli, web: Start) -> None:
    cli.ok("misc", "migrate")
    start = web

    # Without an Api in the app: -o allows exactly the origins given.
    base, proc = start(
        "--dsn", cli.dsn, "--prefix", cli.prefix, "worker", "web", "-o", "https://ops.example"
    )
    assert _allowed(base, "https://ops.example") == "https://ops.example"
    assert _allowed(base, "https://evil.example") is None

    # With -d: the process runs in debug mode (passed to the Api when it takes `debug`, else
    # DEBUG logging, announced on stderr).
    base, debug_proc = start(
        "--dsn", cli.dsn, "--prefix", cli.prefix, "worker", "web", "-d", "--allow-origin", "*"
    )
    assert _allowed(base, "https://any.example") == "*"
    debug_proc.send_signal(signal.SIGINT)
    assert debug_proc.wait(30) == 0
    _, err = debug_proc.communicate(timeout=10)
    if not _api_takes_debug():
        assert "--debug: this dashboard has no debug mode of its own" in err

    # The app's own Api keeps its origins unless -o is given, which replaces them.
    app = ("-a", "tests.cli.apps.with_api")
    base, _ = start(*app, "worker", "web")
    assert _allowed(base, "https://kept.example") == "https://kept.example"
    base, _ = start(*app, "worker", "web", "-o", "https://new.example")
    assert _allowed(base, "https://new.example") == "https://new.example"
    assert _allowed(base, "https://kept.example") is None
    assert proc.poll() is None


def test_queue_delete_asks_first(cli: Cli) -> None:
    cli.ok("misc", "migrate")
    cli.ok("queue", "declare", "doomed")

    def names() -> list[str]:
        return [q["name"] for q in cli.json("queue", "list")]

    refused = cli("queue", "delete", "doomed")
    assert_one_line_error(refused, "refusing to delete queue 'doomed'", "not a terminal", "--yes")
    assert names() == ["doomed"]
    declined = run_on_a_tty(cli, "queue", "delete", "doomed", answer="n")
    assert "Delete queue 'doomed' and all its jobs? [y/N]" in declined.stdout
    assert_one_line_error(declined, "not confirmed; nothing was changed")
    assert names() == ["doomed"]
    accepted = run_on_a_tty(cli, "queue", "delete", "doomed", answer="y")
    assert accepted.returncode == 0, accepted.stderr
    assert "deleted queue 'doomed'" in accepted.stdout
    assert names() == []
