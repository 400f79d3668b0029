"""Flow-control limits across a crash and restart of PostgreSQL itself.

Runs its own throwaway cluster (never the shared server): the crash is ``pg_ctl stop -m
immediate``, which kills the server without a checkpoint, so the restart goes through crash
recovery, as after a power cut of the database host's processes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chancy import Chancy, Queue, Worker
from tests.cluster import Cluster, find_pg_bin
from tests.conftest import eventually
from tests.limits.test_limits import ASYNC, J, count_states, push

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    if find_pg_bin() is None:
        pytest.skip("no PostgreSQL server binaries (Debian's postgresql package) on this machine")
    with Cluster() as running:
        yield running


async def test_a_database_crash_does_not_reset_a_rate_window(cluster: Cluster) -> None:
    prefix = "rl_"
    async with Chancy(
        cluster.dsn, prefix=prefix, no_default_plugins=True, max_connection_pool_size=3
    ) as app:
        await app.migrate()
        await app.declare(Queue("rw", executor=ASYNC, rate_limit=5, rate_limit_window=3600))
        await app.declare(Queue("free", executor=ASYNC))
        await push(app, [J("noop", "rw") for _ in range(8)])
        worker = Worker(app, worker_id="w", register_signal_handlers=False, shutdown_timeout=5)
        async with worker:

            async def five_ran() -> bool:
                return (await count_states(app, "rw")).get("succeeded", 0) == 5

            await eventually(five_ran, timeout=30)
            assert (await count_states(app, "rw")).get("pending") == 3

            cluster.crash_and_restart()

            # The same worker reconnects and serves again: a job on an unlimited queue runs.
            async def pushed_after_restart() -> bool:
                try:
                    await push(app, [J("noop", "rw"), J("noop", "free")])
                except Exception:
                    return False  # the pool is still finding the restarted server
                return True

            await eventually(pushed_after_restart, timeout=60)

            async def free_ran() -> bool:
                try:
                    return (await count_states(app, "free")).get("succeeded", 0) >= 1
                except Exception:
                    return False

            await eventually(free_ran, timeout=60)

            # The window logged before the crash still holds: nothing more started.
            states = await count_states(app, "rw")
            assert states.get("succeeded", 0) == 5 and states.get("pending") == 4, states
            usage = await app.get_limit_usage("rw")
            assert usage["started_in_window"] == 5

    # A fresh installation handle (new connections) sees a full window, an hour long.
    async with Chancy(
        cluster.dsn, prefix=prefix, no_default_plugins=True, max_connection_pool_size=1
    ) as other:
        queue = await other.get_queue("rw")
        probe = Worker(other, register_signal_handlers=False)
        async with other.pool.connection() as conn:
            claim = await probe.fetch_claim(queue, conn, up_to=8)
        assert claim.jobs == [] and claim.held and claim.full
        assert claim.retry_in is not None and 3500 < claim.retry_in <= 3600.1
