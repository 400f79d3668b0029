"""chancy through a real PgBouncer in transaction pooling mode.

Each test module starts Debian's ``pgbouncer`` (tests.fleet.bouncer) in front of the test
server with a pool of two server connections and no reset query, so statements of every
client (workers, pushers, the dashboard) interleave on the same two server connections. What
is proven through it:
- a worker with the default plugins drains jobs, with a direct ``listen_dsn`` (woken by
  NOTIFY, session liveness) and without one (polling, one log line saying how to fix it);
- nothing chancy sends leaves session state on the pooled server connections: no prepared
  statement, no LISTEN, no setting, no session advisory lock (audited while workers run);
- the dashboard's API reads work through it;
- a worker killed mid-job behind the pooler is recovered and its job runs again;
- how many connections a worker holds (the figure docs/pgbouncer.md quotes).
The tests skip with a reason when the pgbouncer binary is missing (.ci/run installs it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from chancy import Chancy, Job, Queue, Worker
from chancy.errors import ConfigurationError
from chancy.plugins.leadership import Leadership
from chancy.plugins.recovery import Recovery
from tests.conftest import drop_prefix, eventually
from tests.fleet.bouncer import PgBouncer, find_pgbouncer
from tests.fleet.jobs import echo, stall_first_run

pytestmark = [pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
ASYNC = Chancy.Executor.Async
POOL = 2


@pytest.fixture(scope="module")
def bouncer(dsn: str) -> Iterator[PgBouncer]:
    if find_pgbouncer() is None:
        pytest.skip(
            "the pgbouncer binary is missing: install Debian's pgbouncer"
            " (apt-get install pgbouncer; .ci/run does so when it can) to run these tests"
        )
    with PgBouncer(dsn, pool_size=POOL) as running:
        yield running


def named(dsn: str, application_name: str) -> str:
    params = conninfo_to_dict(dsn)
    params["application_name"] = application_name
    return make_conninfo("", **params)


@pytest.fixture
async def make_app(bouncer: PgBouncer, dsn: str, prefix: str) -> AsyncIterator[Any]:
    """``make_app(name, listen=True, **options)``: a pooled Chancy through the bouncer; the
    first one made migrates (through the bouncer too). Everything is removed at the end."""
    apps: list[Chancy] = []

    async def make(name: str, *, listen: bool = True, **options: Any) -> Chancy:
        options.setdefault("min_connection_pool_size", 1)
        options.setdefault("max_connection_pool_size", 3)
        app = Chancy(
            bouncer.dsn_named(name),
            listen_dsn=named(dsn, f"{name}-listen") if listen else None,
            pooled=True,
            prefix=prefix,
            **options,
        )
        await app.open()
        if not apps:
            await app.migrate()
        apps.append(app)
        return app

    try:
        yield make
    finally:
        try:
            if apps:
                await apps[0].migrate(to_version=0)
        finally:
            for app in apps:
                await app.close()
            drop_prefix(dsn, prefix)


def audit_pooled_sessions(bouncer: PgBouncer, dsn: str) -> set[int]:
    """Fail if a pooled server connection carries session state; return the backends seen.

    Through the bouncer (a few times, to land on its server connections): no prepared
    statement, no LISTEN, chancy's transaction-local settings back at their defaults. On the
    server: no advisory lock held by a pooled backend that is idle, i.e. outside any
    transaction (only a session lock survives its transaction).
    """
    seen: set[int] = set()
    for _ in range(POOL * 4):
        with psycopg.connect(bouncer.dsn, autocommit=True, prepare_threshold=None) as conn:
            row = conn.execute(
                "SELECT pg_backend_pid(), (SELECT count(*) FROM pg_prepared_statements),"
                " (SELECT count(*) FROM pg_listening_channels()),"
                " current_setting('enable_bitmapscan'), current_setting('statement_timeout'),"
                " current_setting('jit'), current_setting('max_parallel_workers_per_gather')"
            ).fetchone()
        assert row is not None
        pid, prepared, listening, *settings = row
        seen.add(pid)
        assert prepared == 0, f"prepared statements left on pooled backend {pid}"
        assert listening == 0, f"a LISTEN left on pooled backend {pid}"
        assert settings[:2] == ["on", "0"], f"session settings left on backend {pid}: {settings}"
    pids = [s["remote_pid"] for s in bouncer.admin("SHOW SERVERS")]
    with psycopg.connect(dsn, autocommit=True) as conn:
        held = conn.execute(
            "SELECT l.pid, l.objid FROM pg_locks AS l JOIN pg_stat_activity AS a USING (pid)"
            " WHERE l.locktype = 'advisory' AND l.granted AND a.state = 'idle'"
            " AND l.pid = ANY(%s)",
            (pids,),
        ).fetchall()
    assert held == [], f"session advisory locks held by pooled backends: {held}"
    return seen


def succeeded(jobs: list[Any], count: int) -> None:
    assert len(jobs) == count
    bad = [(j.id, j.state, j.errors) for j in jobs if str(j.state) != "succeeded"]
    assert not bad, bad


async def test_worker_through_pgbouncer_with_a_direct_listen_dsn(
    make_app: Any, bouncer: PgBouncer, dsn: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = await make_app("pgb-listen")
    assert app.listening
    # A polling interval no test waits for: a job pushed later starts because NOTIFY woke it.
    await app.declare(Queue("q", executor=ASYNC, concurrency=20, polling_interval=60))
    jobs = [Job.from_func(echo, queue="q", kwargs={"n": i}) for i in range(300)]
    refs = [r async for batch in app.push_many(jobs, batch_size=100) for r in batch]
    worker = Worker(app, register_signal_handlers=False, queue_change_poll_interval=60)
    with caplog.at_level(logging.WARNING, logger="chancy"):
        async with worker:
            succeeded(await app.wait_for_jobs(refs, timeout=60), 300)
            await eventually(worker.is_leader.is_set, message="the worker leads")
            assert worker.runtime.liveness_key is not None, "no session liveness lock"
            ref = await app.push(Job.from_func(echo, queue="q", kwargs={"n": 7}))
            job = await app.wait_for_job(ref, timeout=15)
            assert job is not None and job.result == 7
            # The sync facade goes through the same pooler.
            sref = await asyncio.to_thread(
                app.sync_push, Job.from_func(echo, queue="q", kwargs={"n": 8})
            )
            job = await app.wait_for_job(sref, timeout=15)
            assert job is not None and job.result == 8
            fetched = await asyncio.to_thread(app.sync_get_job, sref)
            assert fetched is not None and fetched.result == 8
            audit_pooled_sessions(bouncer, dsn)
    assert worker.fatal_error is None
    assert not [r for r in caplog.records if "listen_dsn" in r.getMessage()]


async def test_without_listen_dsn_the_worker_polls_and_says_so(
    make_app: Any, bouncer: PgBouncer, dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = await make_app("pgb-poll", listen=False)
    assert not app.listening
    with pytest.raises(ConfigurationError, match="listen_dsn"):
        await app.notifier()
    await app.declare(Queue("q", executor=ASYNC, concurrency=20, polling_interval=0.5))
    worker = Worker(app, register_signal_handlers=False)
    with caplog.at_level(logging.INFO, logger="chancy"):
        async with worker:
            jobs = [Job.from_func(echo, queue="q", kwargs={"n": i}) for i in range(100)]
            refs = [r async for batch in app.push_many(jobs) for r in batch]
            succeeded(await app.wait_for_jobs(refs, interval=0.2, timeout=60), 100)
            await eventually(worker.is_leader.is_set, message="the worker leads")
            assert worker.runtime.liveness_key is None
            audit_pooled_sessions(bouncer, dsn)
    assert worker.fatal_error is None
    lines = [r for r in caplog.records if "listen_dsn" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    message = lines[0].getMessage()
    assert lines[0].levelno == logging.WARNING
    assert "polled" in message and "heartbeat" in message and "listen_dsn=" in message


async def test_clients_interleave_on_two_server_connections(
    make_app: Any, bouncer: PgBouncer, dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Two workers, two pushers and the dashboard share the bouncer's two server connections."""
    httpx = pytest.importorskip("httpx", reason="the dashboard check needs httpx")
    pytest.importorskip("starlette", reason="the dashboard needs the web extra (starlette)")
    from chancy.plugins.api import SimpleAuthBackend, build_starlette_app

    apps = [await make_app(f"pgb-mix-{i}", listen=i == 0) for i in range(3)]
    await apps[0].declare(Queue("q", executor=ASYNC, concurrency=10, polling_interval=0.5))
    workers = [Worker(a, register_signal_handlers=False) for a in apps[:2]]

    async def pusher(app: Chancy, base: int) -> list[Any]:
        refs = []
        for i in range(20):
            batch = [
                Job.from_func(echo, queue="q", kwargs={"n": base + i * 10 + k}) for k in range(9)
            ]
            refs.extend([r async for b in app.push_many(batch) for r in b])
            refs.append(await app.push(Job.from_func(echo, queue="q", kwargs={"n": -i})))
        return refs

    asgi = build_starlette_app(
        apps[2],
        authentication_backend=SimpleAuthBackend({"admin": "pw"}),
        secret_key="a-test-secret-key-of-enough-length",
        cache_ttl=0,
    )
    with caplog.at_level(logging.ERROR, logger="chancy"):
        async with workers[0], workers[1]:
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=asgi), base_url="http://dashboard.test"
            )
            async with client:
                token = (
                    await client.post("/api/v1/login", json={"username": "admin", "password": "pw"})
                ).json()["token"]
                auth = {"Authorization": f"Bearer {token}"}
                pushed = await asyncio.gather(pusher(apps[1], 0), pusher(apps[2], 10_000))
                for path in (
                    "/api/v1/overview",
                    "/api/v1/queues",
                    "/api/v1/workers",
                    "/api/v1/jobs?state=succeeded",
                    "/api/v1/jobs/counts",
                    "/api/v1/metrics",
                ):
                    response = await client.get(path, headers=auth)
                    assert response.status_code == 200, (path, response.text)
                refs = pushed[0] + pushed[1]
                succeeded(await apps[0].wait_for_jobs(refs, timeout=90), 400)
                job = (await client.get(f"/api/v1/jobs/{refs[0]}", headers=auth)).json()["job"]
                assert job["state"] == "succeeded"
                seen = (await client.get("/api/v1/workers", headers=auth)).json()["workers"]
                assert len(seen) == 2
                audit_pooled_sessions(bouncer, dsn)
            dashboard = getattr(asgi.state, "dashboard", None)
            if dashboard is not None:
                await dashboard.close()
    assert all(w.fatal_error is None for w in workers)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors


def spawn_worker(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``tests.fleet.bouncer_worker`` with ``args``, its output in ``log``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANCY_")}
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.fleet.bouncer_worker", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.mark.parametrize("listen", [True, False], ids=["listen_dsn", "no-listen_dsn"])
async def test_a_worker_killed_mid_job_behind_pgbouncer_is_recovered(
    make_app: Any, bouncer: PgBouncer, dsn: str, prefix: str, tmp_path: Path, listen: bool
) -> None:
    """SIGKILL a worker process while its job runs: the leader returns the job, which runs
    again on another worker. With a listen_dsn the dead session frees the worker's liveness
    lock; without one its heartbeat (4 s here) has to expire first."""
    plugins = lambda: [Leadership(poll_interval=1, timeout=4), Recovery(poll_interval=1)]  # noqa: E731
    beats = {"heartbeat_poll_interval": 1, "heartbeat_timeout": 4}
    leader_app = await make_app("pgb-leader", listen=listen, plugins=plugins())
    await leader_app.declare(Queue("slow", executor=ASYNC, tags={"runner"}, polling_interval=0.5))
    leader = Worker(leader_app, register_signal_handlers=False, **beats)
    async with leader:
        await eventually(leader.is_leader.is_set, message="the first worker leads")
        listen_dsn = named(dsn, "pgb-victim-listen") if listen else "-"
        victim = spawn_worker(
            [bouncer.dsn_named("pgb-victim"), listen_dsn, prefix, "victim", "runner"],
            tmp_path / "victim.log",
        )
        try:
            ref = await leader_app.push(Job.from_func(stall_first_run, queue="slow"))

            async def running_on_victim() -> bool:
                if victim.poll() is not None:
                    log = (tmp_path / "victim.log").read_text(errors="replace")
                    pytest.fail(f"the worker process exited:\n{log}")
                job = await leader_app.get_job(ref)
                return job is not None and str(job.state) == "running" and job.taken_by == "victim"

            await eventually(running_on_victim, timeout=60, message="the job runs on the victim")
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
            loop = asyncio.get_running_loop()
            killed_at = loop.time()
            rescuer_app = await make_app("pgb-rescuer", listen=listen, plugins=plugins())
            async with Worker(
                rescuer_app, register_signal_handlers=False, tags={"runner"}, **beats
            ):
                job = await leader_app.wait_for_job(ref, interval=0.2, timeout=60)
            took = loop.time() - killed_at
        finally:
            if victim.poll() is None:
                victim.kill()
                victim.wait()
    assert job is not None and str(job.state) == "succeeded", job
    assert job.result == "recovered 1" and job.recoveries == 1 and job.taken_by != "victim"
    assert took < 30, f"recovered after {took:.1f}s"
    print(f"\nkilled worker's job done {took:.1f}s after the kill (listen_dsn={listen})")


async def test_connections_a_worker_holds(
    make_app: Any, bouncer: PgBouncer, dsn: str, prefix: str
) -> None:
    """Count a default worker's connections while it drains a backlog: pooled client
    connections (its pool, default sizes) and direct sessions (the listen_dsn)."""
    name = "pgb-count"
    pusher = await make_app("pgb-count-pusher", max_connection_pool_size=2)
    app = await make_app(name, min_connection_pool_size=1, max_connection_pool_size=10)
    await pusher.declare(Queue("q", executor=ASYNC, concurrency=100, polling_interval=1))
    jobs = [Job.from_func(echo, queue="q", kwargs={"n": i}) for i in range(3000)]
    refs = [r async for batch in pusher.push_many(jobs) for r in batch]
    peak = 0
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, await asyncio.to_thread(bouncer.clients, name))
            await asyncio.sleep(0.02)  # a sampling period, not a wait for a condition

    def sessions() -> int:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                (f"{name}-listen",),
            ).fetchone()
        return int(row[0]) if row else 0

    async with Worker(app, register_signal_handlers=False) as worker:
        sampler = asyncio.create_task(sample())
        try:
            succeeded(await pusher.wait_for_jobs(refs, timeout=120), len(refs))
        finally:
            done.set()
            await sampler
        direct = await asyncio.to_thread(sessions)
        idle = await asyncio.to_thread(bouncer.clients, name)
        assert worker.fatal_error is None
    print(
        f"\nconnections of one worker (pool max 10, 100 slots): peak {peak} pooled,"
        f" {idle} pooled after the drain, {direct} direct session(s)"
    )
    assert direct == 1, "one LISTEN session per process"
    assert 1 <= peak <= 10
