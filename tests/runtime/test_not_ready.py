"""A server that answers but is not ready yet is waited for, not reported unreachable.

A worker started while its database restarts (starting up, in crash recovery) used to exit
at once with "the database system is starting up". The server here is a real standby with
hot standby off: it refuses every connection with SQLSTATE 57P03 until it is promoted.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from chancy import Chancy
from chancy.errors import ConnectionFailedError
from tests.cluster import Cluster, find_pg_bin

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def standby() -> Iterator[Cluster]:
    """A cluster in standby mode that refuses connections until ``promote``."""
    if find_pg_bin() is None:
        pytest.skip("no PostgreSQL server binaries (Debian's postgresql package) on this machine")
    with Cluster({"hot_standby": "off"}) as cluster:
        cluster.stop()
        signal_file = cluster.data / "standby.signal"
        signal_file.touch()
        if cluster.as_root:
            shutil.chown(signal_file, cluster.account, cluster.account)
        cluster.start()
        yield cluster


def promote(cluster: Cluster) -> None:
    cluster._run("pg_ctl", "-D", str(cluster.data), "-w", "promote")


def refuses(dsn: str) -> str:
    try:
        psycopg.connect(dsn).close()
    except psycopg.OperationalError as exc:
        return str(exc)
    raise AssertionError("the standby accepted a connection")


def wait_for_warning(caplog: pytest.LogCaptureFixture, deadline: float) -> None:
    while not any("is not ready" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "the probe never reported waiting"
        time.sleep(0.05)


async def test_opening_waits_for_a_server_that_is_not_ready(
    standby: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    assert "not accepting connections" in refuses(standby.dsn)
    caplog.set_level(logging.WARNING, logger="chancy.db")
    app = Chancy(standby.dsn, min_connection_pool_size=0)
    opening = asyncio.create_task(app.open())
    deadline = time.monotonic() + 60
    while not any("is not ready" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "the probe never reported waiting"
        assert not opening.done(), opening.result()
        await asyncio.sleep(0.05)
    # Still waiting (several attempts), not failed.
    assert not opening.done()
    await asyncio.to_thread(promote, standby)
    pool = await asyncio.wait_for(opening, 60)
    async with pool.connection() as conn:
        assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
    await app.close()


def test_the_sync_pool_waits_too(standby: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="chancy.db")
    app = Chancy(standby.dsn, min_connection_pool_size=0)
    opened: list[object] = []
    failed: list[BaseException] = []

    def open_sync() -> None:
        try:
            opened.append(app.db.sync_pool)
        except BaseException as exc:  # reported below
            failed.append(exc)

    thread = threading.Thread(target=open_sync)
    thread.start()
    wait_for_warning(caplog, time.monotonic() + 60)
    assert not opened and not failed
    promote(standby)
    thread.join(60)
    assert not failed and opened
    with app.db.sync_pool.connection() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    app.db.sync_pool.close()


async def test_waiting_is_bounded_by_the_reconnect_timeout(standby: Cluster) -> None:
    app = Chancy(standby.dsn, min_connection_pool_size=0, poll_reconnect_timeout=1)
    started = time.monotonic()
    with pytest.raises(ConnectionFailedError, match="not accepting connections"):
        await app.open()
    assert time.monotonic() - started < 30


async def test_a_refused_connection_still_fails_fast() -> None:
    # Nothing listens on this port: no waiting, the error names the server.
    app = Chancy("postgresql://postgres@127.0.0.1:9/postgres", connect_timeout=2)
    started = time.monotonic()
    with pytest.raises(ConnectionFailedError, match=r"host 127\.0\.0\.1 port 9"):
        await app.open()
    assert time.monotonic() - started < 10
