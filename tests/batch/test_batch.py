"""Batches: callbacks pushed once with the right counts, progress, and bad input."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from chancy import Chancy, Job, Queue
from chancy.errors import ConfigurationError, InvalidJobError
from chancy.plugins.batch import Batch, BatchPlugin, InvalidBatchError
from chancy.plugins.batch.closing import pass_plan
from chancy.plugins.leadership import ImmediateLeadership
from chancy.plugins.store import UNFENCED
from tests.batch.conftest import J, callback_jobs, sql
from tests.conftest import drop_prefix, eventually

CB = J("callback", queue="cb")


async def closed(app: Chancy, batch_id: str) -> bool:
    return (await Batch.get(app, batch_id)).callbacks_pushed


async def test_all_succeeded_pushes_on_success_and_on_finish_once(
    app: Chancy, start_worker: Callable[..., Any]
) -> None:
    batch_id = await Batch.push(
        app,
        [J("ok") for _ in range(7)],
        on_success=CB.with_kwargs(which="success"),
        on_failure=CB.with_kwargs(which="failure"),
        on_finish=CB.with_kwargs(which="finish"),
    )
    await start_worker()
    await eventually(lambda: closed(app, batch_id), message="the batch closes")
    status = await Batch.get(app, batch_id)
    assert status.total == 7 and status.finished
    assert status.counts == {"pending": 0, "running": 0, "retrying": 0, "succeeded": 7, "failed": 0}
    assert set(status.callbacks) == {"on_success", "on_finish"}
    pushed = await callback_jobs(app)
    assert sorted(j["kwargs"]["which"] for j in pushed) == ["finish", "success"]
    counts = {"total": 7, "succeeded": 7, "failed": 0}
    for j in pushed:
        assert j["kwargs"]["batch_id"] == batch_id and j["kwargs"]["batch_counts"] == counts
    assert {str(j["id"]) for j in pushed} == set(status.callbacks.values())
    # The callbacks run, with their kwargs.
    for j in pushed:
        done = await app.wait_for_job(j["id"], timeout=10)
        assert done is not None and done.result == batch_id
    assert len(await callback_jobs(app)) == 2


async def test_a_failed_job_pushes_on_failure_and_on_finish_with_the_counts(
    app: Chancy, start_worker: Callable[..., Any]
) -> None:
    jobs = [J("ok"), J("boom"), J("ok"), J("boom"), J("flaky", max_attempts=2)]
    batch_id = await Batch.push(
        app,
        jobs,
        on_success=CB.with_kwargs(which="success"),
        on_failure=CB.with_kwargs(which="failure"),
        on_finish=CB.with_kwargs(which="finish"),
    )
    await start_worker()
    await eventually(lambda: closed(app, batch_id), message="the batch closes")
    status = await Batch.get(app, batch_id)
    assert (status.succeeded, status.failed, status.total) == (3, 2, 5)
    pushed = await callback_jobs(app)
    assert sorted(j["kwargs"]["which"] for j in pushed) == ["failure", "finish"]
    for j in pushed:
        assert j["kwargs"]["batch_counts"] == {"total": 5, "succeeded": 3, "failed": 2}


async def test_only_the_callbacks_given_are_pushed(
    app: Chancy, start_worker: Callable[..., Any]
) -> None:
    quiet = await Batch.push(app, [J("ok")])
    failing = await Batch.push(app, [J("boom")], on_success=CB.with_kwargs(which="success"))
    await start_worker()
    await eventually(lambda: closed(app, quiet), message="the first batch closes")
    await eventually(lambda: closed(app, failing), message="the second batch closes")
    assert await callback_jobs(app) == []
    assert (await Batch.get(app, failing)).callbacks == {}


async def test_get_reads_progress_by_state(app: Chancy, start_worker: Callable[..., Any]) -> None:
    go = f"{app.prefix}go"
    await sql(app, f"CREATE TABLE {go} (x int)", fetch="none")
    hold = J("wait_for_go", kwargs={"dsn": app.db.conninfo(), "table": go})
    batch_id = await Batch.push(app, [J("ok"), J("ok"), hold, hold], on_finish=CB)
    status = await Batch.get(app, batch_id)
    assert status.total == 4 and not status.finished and not status.callbacks_pushed
    assert status.counts["pending"] == 4 and sum(status.counts.values()) == 4
    assert status.callbacks == {} and status.finished_at is None
    await start_worker()

    async def two_running() -> bool:
        s = await Batch.get(app, batch_id)
        return s.counts["running"] == 2 and s.counts["succeeded"] == 2

    await eventually(two_running, message="two jobs done, two running")
    assert not (await Batch.get(app, batch_id)).callbacks_pushed
    with pytest.raises(TimeoutError, match="not closed"):
        await Batch.wait(app, batch_id, interval=0.05, timeout=0.2)
    await sql(app, f"INSERT INTO {go} VALUES (1)", fetch="none")
    await eventually(lambda: closed(app, batch_id), message="the batch closes")
    status = await Batch.get(app, batch_id)
    assert status.counts["succeeded"] == 4 and status.finished_at is not None
    # Sync twins, and ids as UUID or text.
    assert Batch.sync_get(app, uuid.UUID(batch_id)) == status
    assert Batch.sync_wait(app, batch_id, timeout=5) == status
    assert await Batch.wait(app, batch_id, timeout=5) == status
    with pytest.raises(KeyError):
        await Batch.get(app, uuid.uuid4())
    with pytest.raises(KeyError):
        Batch.sync_get(app, "not-an-id")


async def _nothing_stored(app: Chancy) -> None:
    rows = await sql(
        app,
        f"SELECT (SELECT count(*) FROM {app.prefix}batches) AS b,"
        f" (SELECT count(*) FROM {app.prefix}batch_jobs) AS m,"
        f" (SELECT count(*) FROM {app.prefix}jobs) AS j",
        fetch="one",
    )
    assert rows == {"b": 0, "m": 0, "j": 0}


async def test_bad_input_is_refused_before_anything_is_stored(app: Chancy) -> None:
    with pytest.raises(InvalidBatchError, match="at least one job"):
        await Batch.push(app, [], on_finish=CB)
    with pytest.raises(InvalidBatchError, match="not a job"):
        await Batch.push(app, [J("ok")], on_success="tests.batch.jobs.callback")
    with pytest.raises(InvalidBatchError, match="cannot be imported"):
        await Batch.push(app, [J("ok")], on_failure=J("no_such_function"))
    with pytest.raises(InvalidBatchError, match="cannot be imported"):
        await Batch.push(app, [J("ok")], on_finish=Job(func="no_such_module.callback"))
    with pytest.raises(InvalidBatchError, match="not callable"):
        await Batch.push(app, [J("ok")], on_finish=J("NOT_CALLABLE"))
    with pytest.raises(InvalidBatchError, match="must accept the keyword arguments"):
        await Batch.push(app, [J("ok")], on_finish=J("not_a_callback"))
    with pytest.raises(InvalidBatchError, match="already has kwargs"):
        await Batch.push(app, [J("ok")], on_finish=CB.with_kwargs(batch_id="mine"))
    with pytest.raises(InvalidBatchError, match="list of jobs"):
        await Batch.push(app, J("ok"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cannot add to a batch"):
        await Batch.push(app, [J("ok"), "tests.batch.jobs.ok"])
    # A bad job anywhere in a big batch: nothing is written, not even the first chunk.
    bad = [J("ok")] * 25_000 + [J("ok").with_kwargs(x=object())]
    with pytest.raises(InvalidJobError, match="JSON"):
        await Batch.push(app, bad, on_finish=CB)
    with pytest.raises(InvalidBatchError, match="at least one job"):
        Batch.sync_push(app, [])
    await _nothing_stored(app)


async def test_a_batch_needs_the_plugin_and_its_tables(dsn: str, prefix: str) -> None:
    without = Chancy(dsn, prefix=prefix, no_default_plugins=True, max_connection_pool_size=2)
    async with without:
        with pytest.raises(ConfigurationError, match="BatchPlugin"):
            await Batch.push(without, [J("ok")])
        with pytest.raises(ConfigurationError, match="BatchPlugin"):
            Batch.sync_push(without, [J("ok")])
    unmigrated = Chancy(
        dsn,
        prefix=prefix,
        plugins=[ImmediateLeadership(), BatchPlugin()],
        no_default_plugins=True,
        max_connection_pool_size=2,
    )
    try:
        async with unmigrated:
            with pytest.raises(ConfigurationError, match="migrate"):
                await Batch.push(unmigrated, [J("ok")])
            with pytest.raises(ConfigurationError, match="migrate"):
                await Batch.get(unmigrated, uuid.uuid4())
    finally:
        drop_prefix(dsn, prefix)
    with pytest.raises(ConfigurationError, match="poll_interval"):
        BatchPlugin(poll_interval=0)
    with pytest.raises(ConfigurationError, match="retention=-1"):
        BatchPlugin(retention=-1)
    with pytest.raises(ConfigurationError, match="page_size"):
        BatchPlugin(page_size=0)


async def test_push_ex_is_part_of_the_caller_s_transaction(app: Chancy, dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        async with conn.cursor() as cur:
            await Batch.push_ex(app, cur, [J("ok"), J("ok")], on_finish=CB)
        await conn.rollback()
    await _nothing_stored(app)
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        async with conn.cursor() as cur:
            kept = await Batch.push_ex(app, cur, [J("ok"), J("ok")], on_finish=CB)
        await conn.commit()
    assert (await Batch.get(app, kept)).total == 2
    with psycopg.connect(dsn) as sync_conn, sync_conn.cursor() as cur:
        synced = Batch.sync_push_ex(app, cur, [J("ok")], on_success=CB)
    status = Batch.sync_get(app, synced)
    assert status.total == 1 and status.counts["pending"] == 1
    assert Batch.sync_get(app, Batch.sync_push(app, [J("ok")] * 3)).total == 3


async def test_a_unique_key_joins_the_live_job_once(app: Chancy) -> None:
    keyed = J("ok", unique_key="same")
    first = await Batch.push(app, [keyed, keyed, J("ok")])
    assert (await Batch.get(app, first)).total == 2
    # The live keyed job is already in the first batch: the second batch does not wait for it.
    second = await Batch.push(app, [keyed, J("ok")])
    assert (await Batch.get(app, second)).total == 1


async def test_concurrent_passes_close_a_batch_once(app: Chancy, plugin: BatchPlugin) -> None:
    """Many passes at once over the same finished jobs (as many leaders would run them, or two
    workers reporting a batch's last jobs together): each batch closes, and its callbacks are
    pushed, exactly once."""
    batches = [
        await Batch.push(app, [J("ok") for _ in range(3)], on_success=CB, on_finish=CB)
        for _ in range(10)
    ]
    rows = await sql(app, f"SELECT id FROM {app.prefix}jobs")
    ids = [r["id"] for r in rows]
    await sql(
        app,
        f"UPDATE {app.prefix}jobs SET state = 'succeeded', completed_at = now()",
        fetch="none",
    )
    results = await asyncio.gather(
        *(plugin.process_jobs(app, list(reversed(ids)) if n % 2 else ids) for n in range(12)),
        *(plugin.process(app) for _ in range(4)),
    )
    assert sum(r.closed for r in results[:12]) <= 10
    pushed = await callback_jobs(app)
    by_batch: dict[str, int] = {}
    for j in pushed:
        by_batch[j["kwargs"]["batch_id"]] = by_batch.get(j["kwargs"]["batch_id"], 0) + 1
    assert by_batch == {b: 2 for b in batches}
    for b in batches:
        status = await Batch.get(app, b)
        assert status.callbacks_pushed and status.succeeded == 3
    # A pass given batches that another pass closed meanwhile (a stale page of open batches)
    # closes nothing again.
    again = await app.db.run(pass_plan(app, UNFENCED, batch_ids=batches), transaction=True)
    assert again.closed == 0 and again.pushed == 0
    assert len(await callback_jobs(app)) == 20


async def test_two_workers_finishing_the_last_jobs_at_once(
    app: Chancy, start_worker: Callable[..., Any]
) -> None:
    """Every batch's two jobs are held until a signal, then finish together, often on two
    different workers, each of which runs the batch pass (ImmediateLeadership)."""
    go = f"{app.prefix}go"
    await sql(app, f"CREATE TABLE {go} (x int)", fetch="none")
    await app.declare(Queue("b", executor=Chancy.Executor.Async, concurrency=10), upsert=True)
    hold = J("wait_for_go", kwargs={"dsn": app.db.conninfo(), "table": go})
    batches = [await Batch.push(app, [hold, hold], on_finish=CB) for _ in range(8)]
    first = await start_worker(worker_id="w1")
    second = await start_worker(worker_id="w2")

    async def all_running() -> bool:
        row = await sql(
            app,
            f"SELECT count(*) AS n, count(DISTINCT taken_by) AS w FROM {app.prefix}jobs"
            " WHERE state = 'running'",
            fetch="one",
        )
        return row["n"] == 16 and row["w"] == 2

    await eventually(all_running, timeout=20, message="every job runs, on both workers")
    await sql(app, f"INSERT INTO {go} VALUES (1)", fetch="none")
    for b in batches:
        await eventually(lambda b=b: closed(app, b), timeout=20, message=f"batch {b} closes")
    pushed = await callback_jobs(app)
    assert sorted(j["kwargs"]["batch_id"] for j in pushed) == sorted(batches)
    assert first.worker_id != second.worker_id


async def test_the_pruner_keeps_jobs_not_recorded_yet(app: Chancy, plugin: BatchPlugin) -> None:
    from chancy.plugins.pruner import Pruner
    from chancy.rule import JobRules

    batch_id = await Batch.push(app, [J("ok"), J("ok")], on_finish=CB)
    loose = await app.push(J("ok"))
    await sql(
        app,
        f"UPDATE {app.prefix}jobs SET state = 'succeeded',"
        " completed_at = now() - interval '1 hour'",
        fetch="none",
    )
    pruner = Pruner(JobRules.Age() > 60)
    app.plugins[pruner.get_identifier()] = pruner
    try:
        pool = await app.open()
        async with pool.connection() as conn, conn.cursor() as cur:
            assert await pruner.prune(app, cur) == 1  # only the job outside the batch
        assert await app.get_job(loose) is None
        await plugin.process(app)
        assert (await Batch.get(app, batch_id)).counts["succeeded"] == 2
        async with pool.connection() as conn, conn.cursor() as cur:
            assert await pruner.prune(app, cur) == 2  # the batch's, once recorded
    finally:
        del app.plugins[pruner.get_identifier()]
    # A job that vanished before it was recorded counts as failed.
    gone = await Batch.push(app, [J("ok")], on_success=CB, on_failure=CB)
    [row] = await sql(app, f"SELECT job_id FROM {app.prefix}batch_jobs")
    await app.purge_jobs([row["job_id"]])
    await plugin.process_jobs(app, [row["job_id"]])
    assert await closed(app, gone)
    assert (await Batch.get(app, gone)).failed == 1


async def test_cleanup_deletes_closed_batches_after_retention(app: Chancy) -> None:
    plugin = BatchPlugin(retention=0)
    batch_id = await Batch.push(app, [J("ok")])
    open_id = await Batch.push(app, [J("ok")])
    await sql(
        app,
        f"UPDATE {app.prefix}jobs SET state = 'succeeded', completed_at = now()"
        f" WHERE id = (SELECT job_id FROM {app.prefix}batch_jobs WHERE batch_id = %(b)s)",
        {"b": batch_id},
        fetch="none",
    )
    assert await plugin.process(app)  # the second batch is still open
    assert await plugin.cleanup(app) == 1
    with pytest.raises(KeyError):
        await Batch.get(app, batch_id)
    assert (await Batch.get(app, open_id)).total == 1
    assert await BatchPlugin(retention=None).cleanup(app) == 0


def test_every_batch_operation_has_a_sync_twin() -> None:
    import inspect

    public = [
        n
        for n, f in inspect.getmembers(Batch)
        if not n.startswith("_") and inspect.iscoroutinefunction(f)
    ]
    assert sorted(public) == ["get", "push", "push_ex", "wait"]
    assert all(hasattr(Batch, f"sync_{n}") for n in public)


async def test_a_cancelled_job_counts_as_failed(
    app: Chancy, start_worker: Callable[..., Any]
) -> None:
    batch_id = await Batch.push(
        app,
        [J("ok"), J("ok")],
        on_success=CB.with_kwargs(which="success"),
        on_failure=CB.with_kwargs(which="failure"),
    )
    [first, _] = await sql(app, f"SELECT job_id FROM {app.prefix}batch_jobs ORDER BY job_id")
    assert await app.cancel_job(first["job_id"])
    await start_worker()
    await eventually(lambda: closed(app, batch_id), message="the batch closes")
    status = await Batch.get(app, batch_id)
    assert (status.succeeded, status.failed) == (1, 1)
    [pushed] = await callback_jobs(app)
    assert pushed["kwargs"]["which"] == "failure"


async def test_the_batch_line_migrates_down_and_up(app: Chancy, plugin: BatchPlugin) -> None:
    async def tables() -> list[str]:
        rows = await sql(
            app,
            "SELECT tablename FROM pg_tables WHERE tablename = ANY(%(names)s) ORDER BY 1",
            {"names": [f"{app.prefix}batches", f"{app.prefix}batch_jobs"]},
        )
        return [r["tablename"] for r in rows]

    assert await tables() == [f"{app.prefix}batch_jobs", f"{app.prefix}batches"]
    await plugin.migrate(app, to_version=0)
    assert await tables() == []
    assert not await app.is_up_to_date()
    await plugin.migrate(app)
    assert await app.is_up_to_date()
    assert (await Batch.get(app, await Batch.push(app, [J("ok")]))).total == 1
