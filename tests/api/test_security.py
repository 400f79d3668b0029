"""Attacks on the dashboard, each written as the attacker would try it.

Every test here was first run against the dashboard before its hardening and failed there (the
attack worked); see the report of the ``sec`` branch. They cover: bodies read whole before
their cap, logins locked out by strangers or raced past the limiter, a read-only user starving
the worker's connections, inputs that answered 500, a GET cache shared across users, stored
queue values that broke pages and workers, and the smaller points (headers, revocation,
re-checked users, redirects built from the Host header).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urljoin

import psycopg
import pytest

from chancy import Chancy, Job, Queue, Worker
from chancy.errors import ConfigurationError
from chancy.plugins.api import ADMIN, READ_ONLY, Api, AuthBackend, SimpleAuthBackend, User
from tests.api.conftest import SECRET, USERS, login, make_asgi
from tests.conftest import eventually

httpx = pytest.importorskip("httpx")

NOOP = "tests.metrics.jobs.noop"
CAP = 256 * 1024


def transport_from(asgi: Any, address: str) -> Any:
    """An in-process transport whose requests come from ``address``."""
    return httpx.ASGITransport(app=asgi, client=(address, 40000))


def client_from(asgi: Any, address: str) -> Any:
    """A client whose requests come from ``address`` (the login limiter keys on it)."""
    return httpx.AsyncClient(transport=transport_from(asgi, address), base_url="http://d.t")


def no_server_errors(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


# -- 1. bodies are capped as they stream ----------------------------------------------------


class Counted:
    """A request body of ``total`` bytes in 64 KiB chunks that counts what was read of it."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.chunks = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunk = b"[" * 65536
        sent = 0
        while sent < self.total:
            self.chunks += 1
            sent += len(chunk)
            yield chunk


@pytest.mark.parametrize("path", ["/api/v1/login", "/api/v1/jobs/retry"])
async def test_a_huge_chunked_body_is_refused_as_it_streams(
    client: Any, admin: dict[str, str], path: str
) -> None:
    body = Counted(256 * 1024 * 1024)
    response = await client.post(path, headers=admin, content=body)
    assert response.status_code == 413, response.text
    assert "256 KiB" in response.json()["error"]
    # The cap is 256 KiB: the server stops at the first chunk past it (5 of 4,096).
    assert body.chunks <= CAP // 65536 + 1, body.chunks


async def test_an_announced_oversized_body_is_refused_before_it_is_read(client: Any) -> None:
    body = Counted(CAP + 1)
    response = await client.post(
        "/api/v1/login", content=body, headers={"Content-Length": str(CAP + 1)}
    )
    assert response.status_code == 413
    assert body.chunks == 0


async def test_a_malformed_content_length_is_a_400(client: Any) -> None:
    response = await client.post(
        "/api/v1/login", content=Counted(10), headers={"Content-Length": "lots"}
    )
    assert response.status_code == 400 and "Content-Length" in response.json()["error"]


# -- 2. failed logins limit the address, never the user ------------------------------------


async def test_a_stranger_cannot_lock_a_user_out(app: Chancy) -> None:
    asgi = make_asgi(app)
    wrong = {"username": "admin", "password": "wrong"}
    right = {"username": "admin", "password": USERS["admin"]}
    async with client_from(asgi, "203.0.113.7") as stranger:
        for _ in range(5):
            assert (await stranger.post("/api/v1/login", json=wrong)).status_code == 401
        locked = await stranger.post("/api/v1/login", json=wrong)
        assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    async with client_from(asgi, "198.51.100.20") as owner:
        assert (await owner.post("/api/v1/login", json=right)).status_code == 200


async def test_one_address_cannot_spray_many_users(app: Chancy) -> None:
    asgi = make_asgi(app)
    async with client_from(asgi, "203.0.113.8") as sprayer:
        statuses = [
            (
                await sprayer.post(
                    "/api/v1/login", json={"username": f"user{i}", "password": "guess"}
                )
            ).status_code
            for i in range(30)
        ]
    # Each pair (address, username) is fresh, but the address as a whole is limited.
    assert statuses.count(401) == 20 and statuses[20:] == [429] * 10, statuses


@pytest.fixture
async def served(app: Chancy) -> AsyncIterator[Callable[..., Any]]:
    """Serve the dashboard over real HTTP with uvicorn, as the Api plugin does."""
    tasks: list[asyncio.Task[None]] = []

    async def serve(**options: Any) -> str:
        api = Api(
            port=0,
            authentication_backend=SimpleAuthBackend(USERS, read_only=["viewer"]),
            secret_key=SECRET,
            **options,
        )
        task = asyncio.create_task(api.run(None, app))  # type: ignore[arg-type]
        tasks.append(task)
        await eventually(api.started.is_set, timeout=10)
        return f"http://127.0.0.1:{api.bound_port}"

    yield serve
    for task in tasks:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_forwarded_for_is_ignored_by_default(served: Any) -> None:
    base = await served(login_attempts=3, client_login_attempts=4)
    async with httpx.AsyncClient(base_url=base) as http:
        statuses = []
        for i in range(6):
            # A fresh address and a fresh username each time: only the real address links them.
            forged = {"X-Forwarded-For": f"192.0.2.{i + 1}"}
            wrong = {"username": f"user{i}", "password": "wrong"}
            response = await http.post("/api/v1/login", json=wrong, headers=forged)
            statuses.append(response.status_code)
    # Every attempt comes from 127.0.0.1, whatever the header claims.
    assert statuses == [401, 401, 401, 401, 429, 429], statuses


async def test_forwarded_for_is_used_from_a_trusted_proxy(served: Any) -> None:
    base = await served(login_attempts=3, trusted_proxies=["127.0.0.1"])
    wrong = {"username": "admin", "password": "wrong"}
    async with httpx.AsyncClient(base_url=base) as http:

        async def attempt(address: str) -> int:
            headers = {"X-Forwarded-For": address}
            return (await http.post("/api/v1/login", json=wrong, headers=headers)).status_code

        assert [await attempt("192.0.2.1") for _ in range(4)] == [401, 401, 401, 429]
        assert await attempt("192.0.2.2") == 401  # another client behind the proxy


def test_trusted_proxies_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="trusted_proxies"):
        Api(trusted_proxies="127.0.0.1; drop")  # type: ignore[arg-type]
    assert Api(trusted_proxies=["10.0.0.0/8", "127.0.0.1"]).trusted_proxies == [
        "10.0.0.0/8",
        "127.0.0.1",
    ]


# -- 3. the limiter reserves before it awaits, and never forgets an active lock ----------


class SlowBackend(AuthBackend):
    """A backend that waits on I/O (here an event) before it answers."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()

    async def authenticate(self, username: str, password: str) -> User | None:
        self.calls += 1
        await self.release.wait()
        return None


async def test_parallel_wrong_logins_reach_the_backend_at_most_the_limit(
    app: Chancy, client_for: Any
) -> None:
    backend = SlowBackend()
    asgi = make_asgi(app, authentication_backend=backend)
    async with client_for(asgi) as client:
        wrong = {"username": "admin", "password": "wrong"}
        tasks = [asyncio.create_task(client.post("/api/v1/login", json=wrong)) for _ in range(40)]
        # The refused ones answer while the admitted ones still wait on the backend.
        await eventually(lambda: sum(t.done() for t in tasks) >= 35, timeout=5)
        backend.release.set()
        statuses = [r.status_code for r in await asyncio.gather(*tasks)]
    assert backend.calls == 5, backend.calls
    assert statuses.count(401) == 5 and statuses.count(429) == 35, statuses


async def test_a_flood_of_failures_never_drops_an_active_lock(app: Chancy) -> None:
    asgi = make_asgi(app)
    wrong = {"username": "admin", "password": "wrong"}
    async with client_from(asgi, "203.0.113.9") as attacker:
        for _ in range(5):
            await attacker.post("/api/v1/login", json=wrong)
        assert (await attacker.post("/api/v1/login", json=wrong)).status_code == 429
        limiter = asgi.state.dashboard.limiter
        for i in range(50_001):
            limiter.failed(f"ip:198.18.{i // 256}.{i % 256}", f"user:u{i}")
        assert (await attacker.post("/api/v1/login", json=wrong)).status_code == 429


def test_the_limiter_evicts_expired_entries_then_refuses_new_keys() -> None:
    from chancy.plugins.api.auth import LoginLimiter

    now = [1000.0]
    limiter = LoginLimiter(attempts=2, window=60, max_keys=4, clock=lambda: now[0])
    for key in ("a", "b"):
        limiter.failed(key)
        limiter.failed(key)
    assert limiter.retry_after("a") > 0
    limiter.failed("c")
    limiter.failed("d")
    # Full: a new key is refused (its attempt cannot be counted) but no lock is dropped.
    refused = limiter.reserve("e")
    assert not refused.granted and refused.retry_after > 0
    assert limiter.retry_after("a") > 0 and limiter.retry_after("b") > 0
    now[0] += 61  # every entry has expired: they make room first
    ticket = limiter.reserve("e")
    assert ticket.granted
    limiter.release(ticket, failed=True)
    assert len(limiter) == 1


# -- 4. the dashboard has its own pool and caps each user ----------------------------------


async def test_dashboard_reads_never_take_the_workers_connections(
    app: Chancy, client: Any, viewer: dict[str, str]
) -> None:
    pool = await app.open()
    held = [await pool.getconn() for _ in range(pool.max_size)]
    try:
        response = await asyncio.wait_for(
            client.get("/api/v1/jobs?state=pending", headers=viewer), 10
        )
        assert response.status_code == 200
        overview = await asyncio.wait_for(client.get("/api/v1/overview", headers=viewer), 10)
        assert overview.status_code == 200
    finally:
        for conn in held:
            await pool.putconn(conn)


async def test_health_does_not_need_the_dashboard_pool(app: Chancy, client: Any) -> None:
    dashboard = client._transport.app.state.dashboard
    pool = await dashboard.db.open()
    held = [await pool.getconn() for _ in range(pool.max_size)]
    try:
        response = await asyncio.wait_for(client.get("/health"), 5)
        assert response.status_code == 200 and response.json() == {"status": "ok"}
    finally:
        for conn in held:
            await pool.putconn(conn)


async def test_a_flood_of_health_checks_costs_one_ping(app: Chancy) -> None:
    asgi = make_asgi(app)
    dashboard = asgi.state.dashboard
    pings = 0
    ping = dashboard._ping

    async def counted() -> tuple[bool, str]:
        nonlocal pings
        pings += 1
        return await ping()

    dashboard._ping = counted
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=asgi), base_url="http://d.t"
    ) as client:
        answers = await asyncio.gather(*(client.get("/health") for _ in range(50)))
    assert {r.status_code for r in answers} == {200}
    assert pings == 1


async def test_a_user_gets_at_most_two_reads_at_once(
    app: Chancy, client: Any, viewer: dict[str, str], admin: dict[str, str], dsn: str
) -> None:
    # A lock on the jobs table makes every read of it wait, as a slow filter would.
    blocker = await psycopg.AsyncConnection.connect(dsn)
    try:
        await blocker.execute(f"LOCK TABLE {app.prefix}jobs IN ACCESS EXCLUSIVE MODE")  # type: ignore[arg-type]
        reads = [
            asyncio.create_task(client.get(f"/api/v1/jobs?queue=q{i}", headers=viewer))
            for i in range(5)
        ]
        await eventually(lambda: sum(t.done() for t in reads) >= 3, timeout=5)
        refused = [t.result() for t in reads if t.done()]
        assert [r.status_code for r in refused] == [429] * 3
        assert all(int(r.headers["Retry-After"]) >= 1 for r in refused)
        assert "at once" in refused[0].json()["error"]
        # Another user still gets in (and waits on the same lock).
        other = asyncio.create_task(client.get("/api/v1/jobs?queue=x", headers=admin))
        await eventually(lambda: sum(t.done() for t in reads) == 3 and not other.done())
        await blocker.rollback()
        assert (await other).status_code == 200
        statuses = sorted(r.status_code for r in await asyncio.gather(*reads))
        assert statuses == [200, 200, 429, 429, 429]
    finally:
        await blocker.close()


async def test_the_dashboard_pool_closes_with_the_plugin(app: Chancy) -> None:
    api = Api(port=0, authentication_backend=SimpleAuthBackend(USERS), secret_key=SECRET)
    task = asyncio.create_task(api.run(None, app))  # type: ignore[arg-type]
    await eventually(api.started.is_set, timeout=10)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api.bound_port}") as http:
        body = {"username": "admin", "password": USERS["admin"]}
        token = (await http.post("/api/v1/login", json=body)).json()["token"]
        jobs = await http.get("/api/v1/jobs", headers={"Authorization": f"Bearer {token}"})
        assert jobs.status_code == 200
    dashboard = api.dashboard
    assert dashboard is not None
    pool = dashboard.db.pool
    assert not pool.closed
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert pool.closed


# -- 5. bad input is a 4xx with the reason, never a 500 -----------------------------------


def _filter(rule: Any) -> str:
    return "filter=" + quote(json.dumps(rule), safe="")


BAD_INPUT = [
    ("POST", "/api/v1/login", b"[" * 50_000, 400, "nested"),
    ("POST", "/api/v1/login", b'{"username": "admin", "password": "\\ud800"}', 400, "surrogate"),
    ("POST", "/api/v1/login", b'{"username": "admin\\u0000", "password": "x"}', 400, "NUL"),
    (
        "GET",
        "/api/v1/jobs?" + _filter({"field": "queue", "op": "==", "value": "\ud800"}),
        None,
        400,
        "surrogate",
    ),
    (
        "GET",
        "/api/v1/jobs?" + _filter({"field": "age", "op": ">", "value": 1e13}),
        None,
        400,
        "age",
    ),
    ("GET", "/api/v1/jobs?" + _filter({"and": [{"all": True}] * 900}), None, 400, "at most"),
    (
        "GET",
        "/api/v1/jobs?"
        + _filter({"field": "created_at", "op": ">", "value": "0001-01-01T00:00:00+14:00"}),
        None,
        200,
        None,
    ),
    ("GET", "/api/v1/jobs?since=9999-12-31T23:59:59-14:00", None, 200, None),
    ("GET", "/api/v1/workflows?name=a%00b", None, 400, "NUL"),
    ("GET", "/api/v1/metrics/jobs.succeeded?queue=a%00", None, 400, "NUL"),
    ("GET", "/api/v1/queues/a%00b", None, 400, "NUL"),
    ("POST", "/api/v1/crons/a%00b/run", None, 400, "NUL"),
    ("POST", "/api/v1/jobs/retry", b'{"filter": {"queue": "a\\u0000"}}', 400, "NUL"),
    ("POST", "/api/v1/queues/default/pause", b'{"resume_in": NaN}', 400, "NaN"),
    ("POST", "/api/v1/queues/default/pause", b'{"resume_in": 1e400}', 400, "finite"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), BAD_INPUT)
async def test_bad_input_is_refused_with_its_reason(
    client: Any,
    admin: dict[str, str],
    app: Chancy,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    body: bytes | None,
    status: int,
    message: str | None,
) -> None:
    await app.declare(Queue("default"))
    response = await client.request(method, path, headers=admin, content=body)
    assert response.status_code == status, response.text
    if message is not None:
        error = response.json()["error"]
        assert message in error, error
        assert "SELECT" not in error and "Traceback" not in error
    no_server_errors(caplog)


async def test_a_token_with_non_ascii_bytes_is_refused(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    for value in (b"Bearer \xc3\xa9t\xc3\xa9.abc", b"Bearer abc.\xff", "Bearer é.é".encode()):
        response = await client.get("/api/v1/me", headers={"Authorization": value})
        assert response.status_code == 401, response.text
    no_server_errors(caplog)


# -- 6. the GET cache never answers one user with another's answer ------------------------


async def test_the_get_cache_is_per_user(app: Chancy, client_for: Any) -> None:
    async with client_for(make_asgi(app, cache_ttl=60)) as client:
        admin, viewer = await login(client, "admin"), await login(client, "viewer")
        assert (await client.get("/api/v1/me", headers=admin)).json()["username"] == "admin"
        me = (await client.get("/api/v1/me", headers=viewer)).json()
        assert me == {"username": "viewer", "role": "read-only", "can_act": False}
        await app.declare(Queue("seen-by-admin"))
        first = (await client.get("/api/v1/queues", headers=admin)).json()
        await app.declare(Queue("later"))
        # The viewer's first look is fresh, not the admin's cached answer.
        second = (await client.get("/api/v1/queues", headers=viewer)).json()
        assert len(second["queues"]) == len(first["queues"]) + 1


# -- 7. absurd queue values are refused everywhere, and stored ones break nothing ---------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"name": "q", "polling_interval": NaN}', "NaN"),
        (b'{"name": "q", "polling_interval": Infinity}', "NaN"),
        (b'{"name": "q", "polling_interval": 1e300}', "polling_interval"),
        (b'{"name": "q", "polling_interval": 0.0001}', "polling_interval"),
        (b'{"name": "q", "concurrency": 1000000000}', "concurrency"),
        (b'{"name": "q", "tags": ["(a+)+$"]}', "nested"),
        (b'{"name": "q", "tags": ["(x*)*y"]}', "nested"),
        (b'{"name": "q", "rate_limit": 10, "rate_limit_window": 1e12}', "rate_limit_window"),
        (b'{"name": "q", "rate_limit": 1e10, "rate_limit_window": 10}', "rate_limit"),
        (b'{"name": "q", "global_concurrency": 99999999999}', "global_concurrency"),
    ],
)
async def test_absurd_queue_values_are_refused_by_the_api(
    client: Any, admin: dict[str, str], app: Chancy, body: bytes, message: str
) -> None:
    response = await client.post("/api/v1/queues", headers=admin, content=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    assert [q.name for q in await app.get_all_queues()] == []
    assert (await client.get("/api/v1/queues", headers=admin)).status_code == 200


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"polling_interval": math.nan}, "finite"),
        ({"polling_interval": math.inf}, "finite"),
        ({"polling_interval": 10**6}, "polling_interval"),
        ({"polling_interval": 0.001}, "polling_interval"),
        ({"concurrency": 10**9}, "concurrency"),
        ({"tags": {"(a+)+$"}}, "nested"),
        ({"tags": {"((ab)*c)+"}}, "nested"),
        ({"tags": {"x" * 2000}}, "long"),
        ({"rate_limit": 10, "rate_limit_window": 10**9}, "rate_limit_window"),
        ({"global_concurrency": 2**40}, "global_concurrency"),
    ],
)
def test_absurd_queue_values_are_refused_in_python(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        Queue("q", **fields)
    assert (
        "between" in str(caught.value)
        or "nested" in str(caught.value)
        or "finite" in str(caught.value)
        or "long" in str(caught.value)
    )


def test_sane_queue_values_are_still_accepted() -> None:
    queue = Queue(
        "q",
        concurrency=10_000,
        polling_interval=0.01,
        tags={"^web-[0-9]+$", "(ab)+", "a+b*", "(?:x|y){2,5}"},
        rate_limit=1_000_000,
        rate_limit_window=86400,
        global_concurrency=100_000,
    )
    assert queue.polling_interval == 0.01


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--polling-interval", "nan"], "polling-interval"),
        (["--polling-interval", "inf"], "polling-interval"),
        (["--concurrency", "1000000000"], "concurrency"),
        (["--tags", "(a+)+$"], "nested"),
    ],
)
def test_absurd_queue_values_are_refused_by_the_cli(
    app: Chancy, dsn: str, args: list[str], message: str
) -> None:
    from click.testing import CliRunner

    from chancy.cli import main

    result = CliRunner().invoke(
        main, ["--dsn", dsn, "--prefix", app.prefix, "queue", "declare", "q", *args]
    )
    assert result.exit_code != 0, result.output
    assert message in result.output, result.output
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f"SELECT count(*) FROM {app.prefix}queues").fetchone()  # type: ignore[arg-type]
    assert row is not None and row[0] == 0


BAD_ROWS = {
    "nan-polling": "polling_interval = 'NaN'",
    "huge-concurrency": "concurrency = 1000000000",
    "bad-regex": "tags = ARRAY['(']",
    "nested-regex": "tags = ARRAY['(a+)+$']",
    "odd-state": "state = 'sideways'",
    "odd-executor-options": "executor_options = '[1, 2]'::jsonb",
}


@pytest.fixture
async def bad_rows(app: Chancy, dsn: str) -> AsyncIterator[None]:
    """Queue rows edited by hand into values no API accepts (removed after the test)."""
    for name, change in BAD_ROWS.items():
        await app.declare(Queue(name, executor=Chancy.Executor.Async))
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                f"UPDATE {app.prefix}queues SET {change} WHERE name = %s",  # type: ignore[arg-type]
                (name,),
            )
    yield
    # A NaN polling interval would also stop the schema's downgrade at teardown.
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"DELETE FROM {app.prefix}queues WHERE name = ANY(%s)",  # type: ignore[arg-type]
            (list(BAD_ROWS),),
        )


async def test_a_bad_stored_queue_row_breaks_no_page(
    client: Any,
    admin: dict[str, str],
    app: Chancy,
    bad_rows: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await app.declare(Queue("good"))
    listed = await client.get("/api/v1/queues", headers=admin)
    assert listed.status_code == 200, listed.text
    by_name = {q["name"]: q for q in listed.json()["queues"]}
    assert by_name["good"].get("invalid") is None
    for name in BAD_ROWS:
        assert by_name[name]["invalid"], name
    assert by_name["nan-polling"]["polling_interval"] == "NaN"
    assert by_name["huge-concurrency"]["concurrency"] == 1000000000
    overview = await client.get("/api/v1/overview", headers=admin)
    assert overview.status_code == 200, overview.text
    assert {q["name"] for q in overview.json()["queues"] if q.get("invalid")} == set(BAD_ROWS)
    kinds = {a["kind"] for a in overview.json()["alerts"]}
    assert "queue_invalid" in kinds
    for name in BAD_ROWS:
        page = await client.get(f"/api/v1/queues/{name}", headers=admin)
        assert page.status_code == 200, (name, page.text)
        assert page.json()["invalid"]
    # An admin can repair one from the dashboard.
    fixed = await client.post(
        "/api/v1/queues/nan-polling", headers=admin, json={"polling_interval": 2}
    )
    assert fixed.status_code == 200, fixed.text
    assert (await app.get_queue("nan-polling")).polling_interval == 2
    paused = await client.post("/api/v1/queues/bad-regex/pause", headers=admin, json={})
    assert paused.status_code == 200 and paused.json()["queue"]["invalid"]
    no_server_errors(caplog)


async def test_a_bad_stored_queue_row_does_not_stop_a_worker(
    app: Chancy, bad_rows: None, caplog: pytest.LogCaptureFixture
) -> None:
    await app.declare(Queue("good", executor=Chancy.Executor.Async, polling_interval=0.2))
    caplog.set_level(logging.WARNING, logger="chancy")
    async with Worker(app, register_signal_handlers=False, shutdown_timeout=5) as worker:
        await eventually(lambda: "good" in worker.executors, timeout=10)
        ref = await app.push(Job(func=NOOP, queue="good"))
        job = await app.wait_for_job(ref, timeout=15)
        assert job is not None and str(job.state) == "succeeded"
        assert not set(BAD_ROWS) & set(worker.queues)
        skipped = [r.getMessage() for r in caplog.records if "not served" in r.getMessage()]
        assert {name for name in BAD_ROWS if any(repr(name) in m for m in skipped)} == set(
            BAD_ROWS
        ), skipped


# -- 8. headers, revocation, re-checked users, token lifetime, redirects -----------------


async def test_responses_are_not_stored_or_sniffed(client: Any, admin: dict[str, str]) -> None:
    for path, headers in (
        ("/api/v1/me", admin),
        ("/api/v1/me", {}),
        ("/api/v1/nothing-here", admin),
        ("/health", {}),
    ):
        response = await client.get(path, headers=headers)
        assert response.headers["cache-control"] == "no-store", path
        assert response.headers["x-content-type-options"] == "nosniff", path
    page = await client.get("/")
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    script = await client.get("/ui/app.js")
    assert script.headers["x-content-type-options"] == "nosniff"


async def test_unknown_routes_and_methods_answer_json(client: Any, admin: dict[str, str]) -> None:
    missing = await client.get("/api/v1/jobs//x", headers=admin)
    assert missing.status_code == 404 and missing.json() == {"error": "no such route"}
    wrong = await client.delete("/api/v1/jobs", headers=admin)
    assert wrong.status_code == 405 and wrong.json() == {"error": "method not allowed"}
    assert "GET" in wrong.headers["allow"]


async def test_logout_revokes_the_token(client: Any) -> None:
    first, second = await login(client), await login(client)
    response = await client.post("/api/v1/logout", headers=first)
    assert response.status_code == 200 and response.json() == {"logged_out": True}
    assert (await client.get("/api/v1/me", headers=first)).status_code == 401
    assert (await client.post("/api/v1/logout", headers=first)).status_code == 401
    assert (await client.get("/api/v1/me", headers=second)).status_code == 200


def test_revocations_are_bounded_and_kept_until_expiry() -> None:
    from chancy.plugins.api.auth import Revocations

    now = [1000.0]
    revoked = Revocations(max_entries=3, clock=lambda: now[0])
    for i in range(3):
        revoked.add(f"t{i}", expires=1000.0 + 10 * (i + 1))
    assert all(f"t{i}" in revoked for i in range(3))
    revoked.add("t3", expires=1100.0)  # full: the entry closest to its expiry makes room
    assert "t0" not in revoked and "t3" in revoked and len(revoked) == 3
    now[0] = 1025.0  # t1 (1020) has expired on its own
    assert "t1" not in revoked and "t2" in revoked


class Directory(AuthBackend):
    """Users kept in a dict that changes at run time; looked up again on every request."""

    def __init__(self) -> None:
        self.users = {"ana": ("ana-password-123", ADMIN), "bo": ("bo-password-123", ADMIN)}

    async def authenticate(self, username: str, password: str) -> User | None:
        found = self.users.get(username)
        return User(username, found[1]) if found and found[0] == password else None

    async def get_user(self, username: str) -> User | None:
        found = self.users.get(username)
        return User(username, found[1]) if found else None


async def test_a_deleted_or_demoted_user_loses_access_at_once(app: Chancy, client_for: Any) -> None:
    directory = Directory()
    asgi = make_asgi(app, authentication_backend=directory)
    async with client_for(asgi) as client:

        async def token(user: str) -> dict[str, str]:
            body = {"username": user, "password": directory.users[user][0]}
            response = await client.post("/api/v1/login", json=body)
            return {"Authorization": f"Bearer {response.json()['token']}"}

        ana, bo = await token("ana"), await token("bo")
        await app.declare(Queue("q"))
        assert (await client.post("/api/v1/queues/q/pause", headers=bo)).status_code == 200
        directory.users["bo"] = (directory.users["bo"][0], READ_ONLY)
        assert (await client.post("/api/v1/queues/q/resume", headers=bo)).status_code == 403
        assert (await client.get("/api/v1/me", headers=bo)).json()["role"] == READ_ONLY
        del directory.users["ana"]
        gone = await client.get("/api/v1/me", headers=ana)
        assert gone.status_code == 401 and "no longer" in gone.json()["error"]


async def test_simple_backend_looks_users_up() -> None:
    backend = SimpleAuthBackend(USERS, read_only=["viewer"])
    assert await backend.get_user("viewer") == User("viewer", READ_ONLY)
    assert await backend.get_user("admin") == User("admin", ADMIN)
    assert await backend.get_user("nobody") is None


async def test_tokens_last_an_hour_by_default(client: Any) -> None:
    response = await client.post(
        "/api/v1/login", json={"username": "admin", "password": USERS["admin"]}
    )
    expires = datetime.fromisoformat(response.json()["expires_at"])
    left = (expires - datetime.now(UTC)).total_seconds()
    assert 3500 < left <= 3600, left


@pytest.mark.parametrize("path", ["/api/v1/me/", "/api/v1/jobs/", "/health/"])
async def test_a_trailing_slash_never_redirects_to_the_host_header(
    client: Any, admin: dict[str, str], path: str
) -> None:
    response = await client.get(
        path, headers={**admin, "Host": "evil.example"}, follow_redirects=False
    )
    assert "evil.example" not in response.headers.get("location", "")
    assert response.status_code == 200, response.text


async def test_the_mount_redirect_is_relative(app: Chancy) -> None:
    from starlette.requests import Request

    dashboard = make_asgi(app).state.dashboard
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/ops/chancy",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"evil.example")],
    }
    response = await dashboard.index(Request(scope))
    location = response.headers["location"]
    assert "evil.example" not in location
    assert urljoin("http://real.example/ops/chancy", location) == "http://real.example/ops/chancy/"
