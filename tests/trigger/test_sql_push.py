"""``{prefix}push``, the SQL function that pushes a job as Chancy.push does.

Called from a real ``psql`` process where the point is that no Python is involved, and through
psycopg elsewhere; every test runs against the real server.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from chancy import Chancy, Job, Queue, Worker
from chancy.job import QueuedJob
from tests.conftest import eventually
from tests.trigger.conftest import ASYNC, jobs, sql

PSQL = shutil.which("psql") or "/usr/bin/psql"
needs_psql = pytest.mark.skipif(not shutil.which(PSQL), reason="psql is not installed")


def psql(dsn: str, script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with psql (stop at the first error, unaligned tuples only)."""
    return subprocess.run(
        [PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-d", dsn],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
async def app(chancy: Chancy) -> AsyncIterator[Chancy]:
    await chancy.declare(Queue("q", executor=ASYNC, polling_interval=60))
    yield chancy


@pytest.fixture
async def worker(app: Chancy) -> AsyncIterator[Worker]:
    w = Worker(app, register_signal_handlers=False, shutdown_timeout=5)
    async with w:
        await eventually(lambda: "q" in w.executors, message="worker serves queue q")
        yield w


@needs_psql
async def test_a_job_pushed_from_psql_runs_on_a_worker(
    dsn: str, app: Chancy, worker: Worker
) -> None:
    result = psql(
        dsn,
        f"SELECT {app.prefix}push('q', 'tests.trigger.jobs.send', '{{\"to\": \"x\"}}',"
        ' priority => 5, max_attempts => 2, meta => \'{"source": "psql"}\');',
    )
    assert result.returncode == 0, result.stderr
    job_id = uuid.UUID(result.stdout.strip())
    done = await app.wait_for_job(job_id, timeout=20)
    assert done is not None and done.state == QueuedJob.State.SUCCEEDED, done
    assert done.result == "sent to x"
    assert done.func == "tests.trigger.jobs.send" and done.queue == "q"
    assert (done.kwargs, done.priority, done.max_attempts) == ({"to": "x"}, 5, 2)
    assert done.meta == {"source": "psql"} and done.unique_key is None


@needs_psql
async def test_a_rolled_back_push_leaves_no_job_and_sends_no_wake_up(dsn: str, app: Chancy) -> None:
    await app.declare(Queue("after"))
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as listener:
        await listener.execute(f'LISTEN "{app.prefix}events"')
        result = psql(
            dsn,
            "BEGIN;\n"
            f"SELECT {app.prefix}push('q', 'tests.trigger.jobs.noop');\n"
            "ROLLBACK;\n"
            f"SELECT {app.prefix}push('after', 'tests.trigger.jobs.noop');\n",
        )
        assert result.returncode == 0, result.stderr
        # Notifications arrive in commit order: once the committed push's wake-up is here,
        # the rolled-back one would have arrived before it.
        seen = []
        async for note in listener.notifies(timeout=10):
            seen.append(note.payload)
            if '"after"' in note.payload:
                break
    assert seen == ['{"t" : "queue.pushed", "q" : "after"}']
    assert [j["queue"] for j in await jobs(app)] == ["after"]


async def test_a_push_wakes_a_waiting_worker_through_notify(
    dsn: str, app: Chancy, worker: Worker
) -> None:
    # The queue polls every 60 s. A first job, run to its end, leaves the worker idle and
    # waiting (its last claim was not full); only a NOTIFY can start the next one sooner.
    first = await app.push(Job(func="tests.trigger.jobs.noop", queue="q"))
    await app.wait_for_job(first, timeout=20)
    with psycopg.connect(dsn, autocommit=True) as conn:
        pushed = time.monotonic()
        row = conn.execute(  # type: ignore[call-overload]
            f"SELECT {app.prefix}push('q', 'tests.trigger.jobs.send', %s)",
            ('{"to": "y"}',),
        ).fetchone()
    done = await app.wait_for_job(row[0], timeout=20)
    elapsed = time.monotonic() - pushed
    assert done is not None and done.result == "sent to y"
    assert elapsed < 5, f"the job took {elapsed:.2f}s to finish: the worker was not woken"


async def test_a_live_unique_key_returns_the_existing_job_unchanged(app: Chancy) -> None:
    q = (
        f"SELECT {app.prefix}push(%(q)s, %(f)s, %(k)s, priority => %(p)s, unique_key => %(u)s)"
        " AS id"
    )
    first = await sql(app, q, {"q": "q", "f": "a.first", "k": '{"n": 1}', "p": 1, "u": "k1"}, "one")
    again = await sql(
        app, q, {"q": "q", "f": "a.second", "k": '{"n": 2}', "p": 9, "u": "k1"}, "one"
    )
    assert again == first
    (stored,) = await jobs(app)
    assert (stored["func"], stored["kwargs"], stored["priority"]) == ("a.first", {"n": 1}, 1)
    # The Python push sees the same key as live, and returns the same job.
    ref = await app.push(Job(func="a.third", queue="q", unique_key="k1"))
    assert ref == first["id"]
    # Once that job has finished, the key is free again.
    await sql(app, f"UPDATE {app.prefix}jobs SET state = 'succeeded'")
    fresh = await sql(app, q, {"q": "q", "f": "a.fourth", "k": "{}", "p": 0, "u": "k1"}, "one")
    assert fresh != first
    assert len(await jobs(app)) == 2


BAD_CALLS = [
    ("NULL, 'a.b'", "queue is NULL"),
    ("'no such queue!', 'a.b'", "is not a valid queue name"),
    ("'undeclared', 'a.b'", "queue 'undeclared' is not declared"),
    ("'q', 'nodots'", "func 'nodots' is not an import path"),
    ("'q', 'a..b'", "is not an import path"),
    ("'q', NULL", "func NULL is not an import path"),
    ("'q', 'a.b', kwargs => '[1, 2]'", "kwargs must be a JSON object"),
    ("'q', 'a.b', meta => '\"x\"'", "meta must be a JSON object"),
    ("'q', 'a.b', max_attempts => 0", "max_attempts must be at least 1"),
    ("'q', 'a.b', priority => NULL", "priority is NULL"),
    ("'q', 'a.b', unique_key => ''", "unique_key is an empty string"),
    ("'q', 'a.b', partition_key => ''", "partition_key must be 1-500 characters"),
    ("'q', 'a.b', limits => '[{\"t\": \"time\", \"v\": -1}]'", "limits must be a JSON array"),
]


@pytest.mark.parametrize(("args", "message"), BAD_CALLS, ids=[m for _, m in BAD_CALLS])
async def test_bad_input_is_a_clear_error_and_stores_nothing(
    dsn: str, app: Chancy, args: str, message: str
) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
            conn.execute(f"SELECT {app.prefix}push({args})")  # type: ignore[call-overload]
    assert message in caught.value.diag.message_primary  # type: ignore[operator]
    # Every error says how to fix the call.
    assert caught.value.diag.message_hint, caught.value
    assert await jobs(app) == []


@needs_psql
async def test_psql_shows_the_error_and_its_hint(dsn: str, app: Chancy) -> None:
    result = psql(dsn, f"SELECT {app.prefix}push('q', 'send_email');")
    assert result.returncode != 0
    assert "ERROR:" in result.stderr and "is not an import path" in result.stderr
    assert "HINT:" in result.stderr and "package.module.function" in result.stderr
    assert await jobs(app) == []


async def test_ids_are_time_ordered_with_python_made_ids(app: Chancy) -> None:
    made = []
    for n in range(20):
        if n % 2:
            row = await sql(app, f"SELECT {app.prefix}push('q', 'a.b') AS id", None, "one")
            made.append(row["id"])
        else:
            made.append((await app.push(Job(func="a.b", queue="q"))).identifier)
    # Both lay out Unix milliseconds in the first 48 bits, so ids sort by the millisecond
    # they were made in. Within one millisecond, ids of different processes (two Python
    # processes, or Python and the server) have no order, as with any UUIDv7.
    millis = [value.int >> 80 for value in made]
    assert millis == sorted(millis)
    assert millis[-1] - millis[0] < 60_000
    for value in made[1::2]:
        assert value.version == 7 and value.variant == uuid.RFC_4122
    # Ids the server makes within one session are strictly increasing.
    rows = await sql(
        app,
        f"SELECT {app.prefix}push('q', 'a.b') AS id FROM generate_series(1, 50)",
        None,
        "all",
    )
    in_session = [r["id"] for r in rows]
    assert in_session == sorted(in_session) and len(set(in_session)) == 50
    # Even when the server's clock steps back: a session never makes an id below its last.
    ahead = (in_session[-1].int >> 80) + 10_000
    row = await sql(
        app,
        "SELECT set_config('chancy.push_clock', %(stamp)s, false),"
        f" {app.prefix}push('q', 'a.b') AS id",
        {"stamp": str(ahead * 4096)},
        "one",
    )
    assert row["id"].int >> 80 == ahead and (row["id"].int >> 64) & 0xFFF == 1


async def test_stored_like_a_python_push(app: Chancy) -> None:
    await app.declare(Queue("keyed", partition_concurrency=1))
    later = await sql(app, "SELECT now() + interval '1 hour' AS t", None, "one")
    calls = {
        "now": ("'q', 'a.b'", {}),
        "later": ("'q', 'a.b', scheduled_at => %(t)s", {"t": later["t"]}),
        "keyless": ("'keyed', 'a.b'", {}),
        "keyed": ("'keyed', 'a.b', partition_key => 'c1'", {}),
        "limits": ("'q', 'a.b', limits => '[{\"t\": \"time\", \"v\": 5}]'", {}),
        "undeclared": ("'elsewhere', 'a.b', require_queue => false", {}),
    }
    ids = {}
    for name, (args, params) in calls.items():
        row = await sql(app, f"SELECT {app.prefix}push({args}) AS id", params, "one")
        ids[name] = row["id"]
    got = {name: await app.get_job(job_id) for name, job_id in ids.items()}
    db_now = (await sql(app, "SELECT now() AS t", None, "one"))["t"]
    assert all(j is not None for j in got.values())
    assert abs(got["now"].scheduled_at - db_now) < timedelta(minutes=1)  # type: ignore[union-attr]
    assert got["later"].scheduled_at == later["t"]  # type: ignore[union-attr]
    # A keyless job of a queue with per-key limits is stored with the key '' (read as None),
    # as job_insert_many stores it; elsewhere the key stays NULL.
    raw = {r["id"]: r["partition_key"] for r in await jobs(app)}
    assert raw[ids["keyless"]] == "" and raw[ids["now"]] is None and raw[ids["keyed"]] == "c1"
    assert got["limits"].limits[0].value == 5  # type: ignore[union-attr]
    assert got["undeclared"].queue == "elsewhere"  # type: ignore[union-attr]
    assert all(j.state == QueuedJob.State.PENDING for j in got.values())  # type: ignore[union-attr]


async def test_works_whatever_the_callers_search_path(dsn: str, app: Chancy) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET search_path = pg_catalog")
        row = conn.execute(  # type: ignore[call-overload]
            f"SELECT public.{app.prefix}push('q', 'a.b')"
        ).fetchone()
    assert (await app.get_job(row[0])) is not None


async def test_concurrent_pushes_of_one_key_make_one_job(dsn: str, app: Chancy) -> None:
    async def push() -> Any:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            cur = await conn.execute(  # type: ignore[call-overload]
                f"SELECT {app.prefix}push('q', 'a.b', unique_key => 'race')"
            )
            return (await cur.fetchone())[0]

    got = await asyncio.gather(*(push() for _ in range(5)))
    assert len(set(got)) == 1
    assert len(await jobs(app)) == 1
