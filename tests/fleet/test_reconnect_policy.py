"""The retry policy of every chancy loop: full-jitter exponential backoff, never giving up."""

from __future__ import annotations

import logging
import socket

import pytest

from chancy.backoff import RECONNECT_MAX, Backoff, full_jitter
from chancy.db import Db, _AsyncPool
from tests.conftest import eventually


def test_waits_are_random_below_a_doubling_cap() -> None:
    backoff = Backoff(0.1, 1.0)
    ceilings = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    for failures, ceiling in enumerate(ceilings):
        draws = [full_jitter(0.1, 1.0, failures) for _ in range(300)]
        assert all(0 <= d <= ceiling for d in draws)
        assert min(draws) < ceiling * 0.1 and max(draws) > ceiling * 0.9  # the whole range
        assert 0 <= backoff.next() <= ceiling
    backoff.reset()
    assert backoff.next() <= 0.1
    assert full_jitter(0.1, 1.0, 10_000) <= 1.0  # no overflow on a long outage


def test_the_pools_reconnect_with_it() -> None:
    db = Db("postgresql://nowhere.invalid/x", prefix="p_")
    assert isinstance(db.pool, _AsyncPool)


async def test_a_pool_slot_never_gives_up(caplog: pytest.LogCaptureFixture) -> None:
    """psycopg_pool alone gives a slot up after reconnect_timeout; chancy's keeps trying and
    says so once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connections are refused
    gave_up: list[object] = []
    pool = _AsyncPool(
        f"host=127.0.0.1 port={port} user=postgres connect_timeout=1",
        min_size=1,
        max_size=1,
        open=False,
        reconnect_timeout=0.2,
        reconnect_failed=gave_up.append,
        name="never-gives-up",
    )

    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records if "still retrying" in r.getMessage()]

    with caplog.at_level(logging.ERROR, logger="chancy.db"):
        await pool.open(wait=False)
        try:
            # Three attempts, and the error once the slot has retried past reconnect_timeout
            # (the waits are random: with a short first one, the third attempt can fail
            # before 0.2 s have passed, and the error comes with a later one).
            await eventually(
                lambda: pool.get_stats().get("connections_errors", 0) >= 3 and said(),
                timeout=4 * RECONNECT_MAX,
                message="three connection attempts and the error",
            )
            await eventually(
                lambda: pool.get_stats().get("connections_errors", 0) >= 4,
                timeout=4 * RECONNECT_MAX,
                message="a fourth attempt, after the error",
            )
        finally:
            await pool.close()
    assert not gave_up
    assert len(said()) == 1, [r.getMessage() for r in caplog.records]
