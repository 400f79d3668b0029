"""The runtime services one at a time, on a real database, without a running worker.

A ``Worker`` is built but not started, so its ``Runtime`` and services exist and nothing runs
on its own: each test drives one service (the producer, the completer, the heartbeat, the
queue set, the ledger) and checks what it wrote or claimed in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, LiteralString, cast

import psycopg
import pytest
from psycopg.rows import dict_row

from chancy import Chancy, Job, Queue, QueuedJob, Worker, events
from chancy.executors.base import Executor
from chancy.job import Reference
from chancy.outcome import Outcome, build_outcome, evolve
from chancy.runtime.ledger import Ledger
from chancy.runtime.producer import Producer, fetch_claim
from chancy.store import Spec, run
from tests.conftest import eventually

ASYNC = Chancy.Executor.Async


class Recording(Executor):
    """Runs nothing: keeps what the producer hands it, with a fixed number of slots."""

    def __init__(self, worker: Any, queue: Queue, **options: Any) -> None:
        super().__init__(worker, queue, **options)
        self.running: dict[uuid.UUID, QueuedJob] = {}
        self.pushed: list[QueuedJob] = []
        self.pushed_event = asyncio.Event()

    async def push(self, job: QueuedJob) -> None:
        self.running[job.id] = job
        self.pushed.append(job)
        self.pushed_event.set()

    async def stop(self) -> None:
        self.running.clear()

    async def cancel(self, ref: Reference) -> None:
        self.running.pop(ref.identifier, None)

    def get_default_concurrency(self) -> int:
        return 4

    def __len__(self) -> int:
        return len(self.running)


async def push(chancy: Chancy, jobs: list[Job]) -> list[Reference]:
    return [ref async for batch in chancy.push_many(jobs) for ref in batch]


async def rows(chancy: Chancy, text: str, **params: Any) -> list[dict[str, Any]]:
    query = cast(LiteralString, text.replace("{prefix}", chancy.prefix))
    return await chancy.db.run(Spec(query, params, "all"))


async def states(chancy: Chancy, refs: list[Reference]) -> dict[str, str]:
    found = await rows(
        chancy,
        "SELECT id::text AS id, state FROM {prefix}jobs WHERE id = ANY(%(ids)s::uuid[])",
        ids=[r.identifier for r in refs],
    )
    return {r["id"]: r["state"] for r in found}


@pytest.fixture
async def worker(chancy: Chancy) -> AsyncIterator[Worker]:
    """A worker that is built, not started: its heartbeat is renewed once so it may claim."""
    w = Worker(chancy, worker_id=f"svc-{uuid.uuid4().hex[:8]}", register_signal_handlers=False)
    await w.heartbeat.beat()
    yield w


def job(queue: str = "a", **kw: Any) -> Job:
    return Job(func="tests.runtime.jobs.noop", queue=queue, **kw)


# -- producer ---------------------------------------------------------------------------------


async def test_fetch_claim_takes_jobs_for_this_worker_once(chancy: Chancy, worker: Worker) -> None:
    queue = await chancy.declare(Queue("a", executor=ASYNC))
    refs = await push(chancy, [job(priority=p) for p in range(5)])
    pool = await chancy.open()
    async with pool.connection() as conn:
        first = await fetch_claim(chancy, worker.worker_id, queue, conn, up_to=3)
        second = await fetch_claim(chancy, worker.worker_id, queue, conn, up_to=10)
        third = await fetch_claim(chancy, worker.worker_id, queue, conn, up_to=10)
    # Highest priority first; every job claimed exactly once; nothing left for a third claim.
    assert [j.priority for j in first.jobs] == [4, 3, 2]
    assert len(second.jobs) == 2 and not third.jobs
    claimed = {j.id for j in first.jobs + second.jobs}
    assert claimed == {r.identifier for r in refs}
    taken = await rows(
        chancy, "SELECT taken_by, state, claim_id FROM {prefix}jobs WHERE queue = 'a'"
    )
    assert {r["taken_by"] for r in taken} == {worker.worker_id}
    assert {r["state"] for r in taken} == {"running"}
    assert all(r["claim_id"] is not None for r in taken)


async def test_fetch_claim_under_a_concurrency_limit_reports_it_held(
    chancy: Chancy, worker: Worker
) -> None:
    queue = await chancy.declare(Queue("lim", executor=ASYNC, global_concurrency=1))
    await push(chancy, [job("lim") for _ in range(3)])
    pool = await chancy.open()
    async with pool.connection() as conn:
        claim = await fetch_claim(chancy, worker.worker_id, queue, conn, up_to=3)
        again = await fetch_claim(chancy, worker.worker_id, queue, conn, up_to=3)
    assert len(claim.jobs) == 1
    assert claim.held  # the limit, not the worker's slots, kept the other two back
    assert not again.jobs and again.held


async def test_producer_fills_free_slots_and_stops_at_none(chancy: Chancy, worker: Worker) -> None:
    queue = await chancy.declare(Queue("a", executor=ASYNC, concurrency=4, polling_interval=60))
    executor = Recording(worker, queue)
    producer = Producer(worker.runtime, queue, executor)
    worker.runtime.queues.producers["a"] = producer
    worker.runtime.queues.executors["a"] = executor
    refs = await push(chancy, [job() for _ in range(10)])
    task = asyncio.create_task(producer.run())
    try:
        await eventually(lambda: len(executor.pushed) == 4, message="the producer fills 4 slots")
        # No free slot: a wake-up does not make it claim more.
        producer.wake()
        await asyncio.sleep(0)
        assert len(executor.pushed) == 4
        assert len(worker.runtime.ledger) == 4  # recorded as running here
        # Two slots free: it claims two more at once (a backlog was reported).
        for done in executor.pushed[:2]:
            executor.running.pop(done.id)
        producer.slot_freed()
        await eventually(lambda: len(executor.pushed) == 6, message="two more claimed")
    finally:
        producer.drain()
        await asyncio.wait_for(task, 5)
    found = await states(chancy, refs)
    assert sorted(found.values()).count("running") == 6
    assert {str(j.id) for j in executor.pushed} <= set(found)


async def test_a_woken_producer_claims_at_the_loops_next_turn(
    chancy: Chancy, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With short jobs each turn of the loop runs every job task then ready (hundreds): a
    producer woken by a freed slot must claim at the next turn, while the jobs it holds still
    run. Waiting through ``asyncio.wait_for`` (a task of its own) took three turns, and a
    drain of no-op jobs claimed only once its executor had run dry."""
    queue = await chancy.declare(Queue("a", executor=ASYNC, concurrency=4, polling_interval=60))
    executor = Recording(worker, queue)
    producer = Producer(worker.runtime, queue, executor)
    worker.runtime.queues.producers["a"] = producer
    worker.runtime.queues.executors["a"] = executor
    await push(chancy, [job() for _ in range(10)])
    task = asyncio.create_task(producer.run())
    loop = asyncio.get_running_loop()
    turns = 0
    ticking = True

    def tick() -> None:  # runs once per turn of the loop
        nonlocal turns
        turns += 1
        if ticking:
            loop.call_soon(tick)

    claims_at: list[int] = []
    fetch = producer._fetch

    async def fetch_counted(up_to: int) -> Any:
        claims_at.append(turns)
        return await fetch(up_to)

    try:
        await eventually(lambda: len(executor.pushed) == 4, message="the producer fills 4 slots")
        monkeypatch.setattr(producer, "_fetch", fetch_counted)
        loop.call_soon(tick)
        await eventually(lambda: turns > 2)
        for done in executor.pushed[:2]:
            executor.running.pop(done.id)
        woken_at = turns
        producer.slot_freed()
        await eventually(lambda: claims_at, message="the producer claims")
        assert claims_at[0] - woken_at <= 1, (woken_at, claims_at)
        await eventually(lambda: len(executor.pushed) == 6, message="two more claimed")
    finally:
        ticking = False
        producer.drain()
        await asyncio.wait_for(task, 5)


async def test_producer_claims_nothing_while_the_heartbeat_is_not_trusted(
    chancy: Chancy, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = await chancy.declare(Queue("a", executor=ASYNC, polling_interval=0.05))
    await chancy.push(job())
    executor = Recording(worker, queue)
    producer = Producer(worker.runtime, queue, executor)
    worker.heartbeat.last_ok = time.monotonic() - worker.heartbeat.timeout  # lapsed
    asked = _calls(monkeypatch, worker.runtime, "can_claim")
    task = asyncio.create_task(producer.run())
    try:
        # A negative check: nothing may be claimed while the producer asks, and is refused,
        # on several polling intervals.
        await eventually(lambda: len(asked) >= 4, timeout=10)
        assert not executor.pushed
        await worker.heartbeat.beat()  # trusted again
        await asyncio.wait_for(executor.pushed_event.wait(), 5)
    finally:
        producer.drain()
        await asyncio.wait_for(task, 5)
    assert len(executor.pushed) == 1


async def test_producer_gives_back_what_a_lost_claim_took_once_its_session_is_done(
    chancy: Chancy, worker: Worker
) -> None:
    # A claim in autocommit can commit while its rows never reach the worker (the connection
    # dropped on the way): its jobs would stay running under this worker, unseen. The
    # producer gives them back, but only once that claim's server session is no longer busy.
    queue = await chancy.declare(Queue("a", executor=ASYNC, concurrency=10))
    refs = await push(chancy, [job(priority=p) for p in (9, 8, 1)])
    producer = Producer(worker.runtime, queue, Recording(worker, queue))
    lost = await psycopg.AsyncConnection.connect(chancy.dsn)
    try:
        # The "lost" claim: the two first jobs, under this worker, not committed yet.
        await lost.execute("BEGIN")
        async with lost.cursor(row_factory=dict_row) as cur:
            taken = await run(cur, chancy.store.job_fetch("a", 2, worker.worker_id))
        assert [j.priority for j in taken] == [9, 8]
        producer._lost_claim = lost.info.backend_pid
        # Its session is busy (it may still commit): nothing is given back; the claim gets
        # the one job it can lock, which the worker now holds.
        first = await producer._fetch(10)
        assert [j.priority for j in first.jobs] == [1]
        await worker.runtime.claimed(first.jobs)
        assert producer._lost_claim is not None
        await lost.execute("COMMIT")
    finally:
        await lost.close()
    # The session ended: its two jobs go back to pending, and this claim takes them.
    second = await producer._fetch(10)
    assert producer._lost_claim is None
    assert sorted(j.id for j in second.jobs) == sorted(j.id for j in taken)
    assert all(j.attempts == 0 for j in second.jobs)
    assert {j.claim_id for j in second.jobs}.isdisjoint({j.claim_id for j in taken})
    # The job the worker held was left alone.
    found = await states(chancy, refs)
    assert set(found.values()) == {"running"}
    [held] = await rows(
        chancy, "SELECT claim_id FROM {prefix}jobs WHERE id = %(id)s", id=first.jobs[0].id
    )
    assert held["claim_id"] == first.jobs[0].claim_id


async def test_a_claim_that_loses_its_connection_remembers_its_session(
    chancy: Chancy, worker: Worker
) -> None:
    queue = await chancy.declare(Queue("a", executor=ASYNC, concurrency=10))
    await push(chancy, [job() for _ in range(3)])
    producer = Producer(worker.runtime, queue, Recording(worker, queue))
    blocker = await psycopg.AsyncConnection.connect(chancy.dsn)
    try:
        # Hold the jobs table so the claim waits, then end the claim's session under it.
        await blocker.execute("BEGIN")
        await blocker.execute(
            cast(LiteralString, f"LOCK TABLE {chancy.prefix}jobs IN ACCESS EXCLUSIVE MODE")
        )
        claiming = asyncio.create_task(producer._fetch(10))

        async def waiting_claim() -> int | None:
            found = await rows(
                chancy,
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE %(q)s",
                q=f"%{chancy.prefix}claim_jobs%",
            )
            return found[0]["pid"] if found else None

        pid = await eventually(waiting_claim, message="the claim waits for the lock")
        await rows(chancy, "SELECT pg_terminate_backend(%(pid)s) AS ok", pid=pid)
        with pytest.raises(psycopg.OperationalError):
            await asyncio.wait_for(claiming, 10)
        assert producer._lost_claim == pid
    finally:
        await blocker.close()
    # The terminated claim rolled back: the next claim gives back nothing and takes all three.
    again = await producer._fetch(10)
    assert len(again.jobs) == 3 and producer._lost_claim is None


# -- completer --------------------------------------------------------------------------------


async def _claimed(chancy: Chancy, worker: Worker, n: int, queue: str = "a") -> list[QueuedJob]:
    declared = await chancy.declare(Queue(queue, executor=ASYNC))
    await push(chancy, [job(queue, max_attempts=2) for _ in range(n)])
    pool = await chancy.open()
    async with pool.connection() as conn:
        claim = await fetch_claim(chancy, worker.worker_id, declared, conn, up_to=n)
    await worker.runtime.claimed(claim.jobs)
    return claim.jobs


async def test_completer_writes_outcomes_in_batches(chancy: Chancy, worker: Worker) -> None:
    claimed = await _claimed(chancy, worker, 25)
    completer = worker.completer
    completer.batch_size = 10
    for running in claimed[:20]:
        completer.add(build_outcome(running, None, {"ok": True}))
    for running in claimed[20:]:
        completer.add(build_outcome(running, ValueError("boom"), None))
    await completer.flush()
    assert completer.written == 25 and completer.fenced == 0 and len(completer) == 0
    found = await rows(
        chancy, "SELECT state, count(*) AS n FROM {prefix}jobs GROUP BY state ORDER BY state"
    )
    # Failures with an attempt left are retried; successes carry their result.
    assert {r["state"]: r["n"] for r in found} == {"retrying": 5, "succeeded": 20}
    results = await rows(
        chancy, "SELECT result FROM {prefix}jobs WHERE state = 'succeeded' LIMIT 1"
    )
    assert results[0]["result"] == {"ok": True}


async def test_completer_lets_outcomes_that_arrive_during_a_write_gather_into_a_batch(
    chancy: Chancy, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A steady trickle (a process queue) is written in batches, not in back-to-back writes
    of whatever arrived during the previous write."""
    claimed = await _claimed(chancy, worker, 20)
    completer = worker.completer
    completer.batch_size = 10
    completer.interval = 60.0  # a batch goes when it is full (or at stop)
    sizes: list[int] = []
    release, returned = asyncio.Event(), asyncio.Event()
    write = completer._write

    async def held_write(batch: list[Outcome], reports: dict[Any, Any]) -> None:
        sizes.append(len(batch))
        if len(sizes) == 1:
            await release.wait()
        await write(batch, reports)
        returned.set()

    monkeypatch.setattr(completer, "_write", held_write)
    task = asyncio.create_task(completer.run())
    try:
        for running in claimed[:10]:
            completer.add(build_outcome(running, None, None))
        await eventually(lambda: sizes == [10], message="the first batch was not written")
        for running in claimed[10:13]:  # arrive while the first batch is being written
            completer.add(build_outcome(running, None, None))
        release.set()
        await returned.wait()
        for running in claimed[13:]:
            completer.add(build_outcome(running, None, None))
        await eventually(lambda: completer.written == 20, message="not all were written")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert sizes == [10, 10]


async def test_completer_writes_what_is_left_after_a_whole_batch(
    chancy: Chancy, worker: Worker
) -> None:
    """More than a batch at once: the rest is written an interval later, with nothing new
    arriving to wake the completer."""
    claimed = await _claimed(chancy, worker, 13)
    completer = worker.completer
    completer.batch_size = 10
    completer.interval = 0.01
    for running in claimed:
        completer.add(build_outcome(running, None, None))
    task = asyncio.create_task(completer.run())
    try:
        await eventually(lambda: completer.written == 13, message="the last 3 were not written")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _calls(monkeypatch: pytest.MonkeyPatch, obj: Any, name: str) -> list[tuple[Any, ...]]:
    """Record the arguments of every call of ``obj.name`` (which still runs)."""
    calls: list[tuple[Any, ...]] = []
    original = getattr(obj, name)

    def recorded(*args: Any) -> Any:
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(obj, name, recorded)
    return calls


async def test_completer_writes_outcomes_in_one_statement_or_in_the_hooks_transaction(
    chancy: Chancy, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The write carries its planner settings (the function complete_jobs, migration v0020):
    # no settings statement around it, whatever the batch's size.
    from chancy.plugin import Plugin
    from chancy.store.jobs import LINEAR_JOIN_FROM

    applied = _calls(monkeypatch, chancy.store, "complete_settings")
    claimed = await _claimed(chancy, worker, LINEAR_JOIN_FROM + 10)
    completer = worker.completer
    for running in claimed[:LINEAR_JOIN_FROM]:
        completer.add(build_outcome(running, None, None))
    await completer.flush()
    assert applied == [] and completer.written == LINEAR_JOIN_FROM

    # With a plugin hook in the write's transaction, the hook's statements see the batch
    # written, run with the planner as the server has it, and a failing hook takes the write
    # back with it.
    seen: list[tuple[list[str], str]] = []

    class InTransaction(Plugin):
        fail = False

        async def on_jobs_updated_in_transaction(
            self, *, worker: Any, cursor: Any, jobs: list[QueuedJob]
        ) -> None:
            await cursor.execute(
                "SELECT state, current_setting('enable_nestloop') AS nestloop FROM "
                + chancy.prefix
                + "jobs WHERE id = ANY(%s) ORDER BY id",
                ([j.id for j in jobs],),
            )
            found = await cursor.fetchall()
            seen.append(([r["state"] for r in found], found[0]["nestloop"]))
            if self.fail:
                raise RuntimeError("the hook failed")

    plugin = InTransaction()
    chancy.plugins["in-transaction"] = plugin
    try:
        for running in claimed[LINEAR_JOIN_FROM : LINEAR_JOIN_FROM + 5]:
            completer.add(build_outcome(running, None, None))
        await completer.flush()
        assert seen == [(["succeeded"] * 5, "on")]
        plugin.fail = True
        failing = claimed[LINEAR_JOIN_FROM + 5 :]
        for running in failing:
            completer.add(build_outcome(running, None, None))
        with pytest.raises(RuntimeError, match="the hook failed"):
            await completer.flush()
        assert seen[-1] == (["succeeded"] * 5, "on")
    finally:
        del chancy.plugins["in-transaction"]
    assert set((await states(chancy, [Reference(j.id) for j in failing])).values()) == {"running"}
    assert applied == [] and completer.written == LINEAR_JOIN_FROM + 5


async def test_big_progress_and_release_batches_are_written_under_the_linear_settings(
    chancy: Chancy, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Progress reports and given-back claims join their batch to the table as outcomes do:
    # a batch of LINEAR_JOIN_FROM or more is written under complete_settings (test_plans).
    from chancy.progress import make_report
    from chancy.store.jobs import LINEAR_JOIN_FROM

    joins = _calls(monkeypatch, chancy.store, "linear_join")
    settings = _calls(monkeypatch, chancy.store, "complete_settings")
    claimed = await _claimed(chancy, worker, LINEAR_JOIN_FROM + 2)
    writer = worker.progress
    for i, running in enumerate(claimed):
        assert writer.offer(running.id, running.claim_id, make_report(0.5, f"step {i}"))
    await writer.flush()
    assert [size for _, size in joins] == [LINEAR_JOIN_FROM + 2] and len(settings) == 1
    assert writer.written == LINEAR_JOIN_FROM + 2
    found = await rows(
        chancy,
        "SELECT progress->>'message' AS m FROM {prefix}jobs WHERE id = ANY(%(ids)s::uuid[])",
        ids=[j.id for j in claimed],
    )
    assert sorted(r["m"] for r in found) == sorted(f"step {i}" for i in range(len(claimed)))
    # A small batch spares the extra statement.
    writer.offer(claimed[0].id, claimed[0].claim_id, make_report(0.9))
    await writer.flush()
    assert joins[-1][1] == 1 and len(settings) == 1

    await worker._release_running()
    assert joins[-1][1] == LINEAR_JOIN_FROM + 2 and len(settings) == 2
    assert set((await states(chancy, [Reference(j.id) for j in claimed])).values()) == {"pending"}
    [row] = await rows(chancy, "SELECT current_setting('enable_nestloop') AS v")
    assert row["v"] == "on"


async def test_completer_writes_nothing_for_a_claim_it_no_longer_holds(
    chancy: Chancy, worker: Worker
) -> None:
    claimed = await _claimed(chancy, worker, 3)
    cancelled = claimed[0]
    await chancy.cancel_job(Reference(cancelled.id))  # terminal write by someone else
    # Another claim of the second job (as after recovery): the old claim id no longer matches.
    await rows(
        chancy,
        "UPDATE {prefix}jobs SET claim_id = gen_random_uuid() WHERE id = %(id)s RETURNING id",
        id=claimed[1].id,
    )
    for running in claimed:
        worker.completer.add(build_outcome(running, None, "late"))
    await worker.completer.flush()
    assert worker.completer.written == 1 and worker.completer.fenced == 2
    found = await rows(chancy, "SELECT id, state, result FROM {prefix}jobs")
    by_id = {r["id"]: r for r in found}
    assert by_id[cancelled.id]["state"] == "failed"
    assert by_id[claimed[1].id]["state"] == "running"
    assert by_id[claimed[1].id]["result"] is None
    assert by_id[claimed[2].id]["state"] == "succeeded"


async def test_completer_run_flushes_on_its_own_within_the_interval(
    chancy: Chancy, worker: Worker
) -> None:
    claimed = await _claimed(chancy, worker, 2)
    task = asyncio.create_task(worker.completer.run())
    try:
        for running in claimed:
            worker.completer.add(build_outcome(running, None, None))
        await eventually(lambda: worker.completer.written == 2, timeout=5)
    finally:
        task.cancel()
    assert set((await states(chancy, [Reference(j.id) for j in claimed])).values()) == {"succeeded"}


# -- heartbeat --------------------------------------------------------------------------------


async def test_heartbeat_writes_the_lease_in_database_time(chancy: Chancy) -> None:
    w = Worker(chancy, worker_id="hb-1", heartbeat_timeout=90, register_signal_handlers=False)
    seen: list[Any] = []
    w.hub.on(events.WORKER_HEARTBEAT_RESTORED, seen.append)
    assert not w.heartbeat.trusted()  # no renewal yet: not allowed to claim
    await w.heartbeat.beat()
    assert w.heartbeat.trusted() and w.heartbeat.alive.is_set()
    assert len(seen) == 1
    [row] = await rows(
        chancy,
        "SELECT tags, extract(epoch FROM expires_at - now()) AS left_s, pid"
        " FROM {prefix}workers WHERE worker_id = 'hb-1'",
    )
    assert 85 < float(row["left_s"]) <= 90
    assert "worker_id=hb-1" in row["tags"]
    await w.heartbeat.beat()  # a renewal keeps one row and emits nothing new
    assert len(seen) == 1
    assert len(await rows(chancy, "SELECT 1 FROM {prefix}workers")) == 1


async def test_heartbeat_gives_up_its_jobs_once_the_lease_lapses(
    chancy: Chancy, worker: Worker
) -> None:
    claimed = await _claimed(chancy, worker, 2)
    lost: list[Any] = []
    worker.hub.on(events.WORKER_HEARTBEAT_LOST, lost.append)
    heartbeat = worker.heartbeat
    heartbeat.interval = 3600  # the loop only watches the lease from here on
    before = heartbeat.last_ok
    task = asyncio.create_task(heartbeat.run())
    try:
        await eventually(lambda: heartbeat.last_ok != before, message="the loop's first beat")
        heartbeat.last_ok = time.monotonic() - heartbeat.timeout  # the lease lapsed
        await eventually(lambda: lost, timeout=5, message="the loss is noticed")
    finally:
        task.cancel()
    assert lost[0].body == {"running": 2}
    assert not worker.runtime.can_claim()
    # The interrupted runs are given back, not failed: pending again, no attempt used.
    for running in claimed:
        given = worker.runtime.ledger.settle(build_outcome(running, RuntimeError("cut"), None))
        assert given.job.state == QueuedJob.State.PENDING
        assert given.job.attempts == running.attempts


# -- queue set --------------------------------------------------------------------------------


async def test_queue_set_serves_matching_queues_and_follows_changes(
    chancy: Chancy, worker: Worker
) -> None:
    served = worker.served
    await chancy.declare(Queue("mine", executor=ASYNC, concurrency=2))
    await chancy.declare(Queue("theirs", executor=ASYNC, tags={"^gpu$"}))
    try:
        await served.sync()
        assert set(served.queues) == {"mine"}  # no "gpu" tag on this worker
        assert served.executors["mine"].concurrency == 2
        first = served.executors["mine"]
        # A setting the producer reads live changes in place...
        await chancy.declare(
            Queue("mine", executor=ASYNC, concurrency=2, polling_interval=7), upsert=True
        )
        await served.sync()
        assert served.executors["mine"] is first
        assert served.queues["mine"].polling_interval == 7
        # ...an executor setting retires the old executor and builds a new one.
        await chancy.declare(Queue("mine", executor=ASYNC, concurrency=5), upsert=True)
        await served.sync()
        await eventually(lambda: "mine" not in served._retiring_names())
        await served.sync()
        assert served.executors["mine"] is not first
        assert served.executors["mine"].concurrency == 5
        # A removed queue is no longer served.
        await chancy.delete_queue("mine")
        await served.sync()
        assert "mine" not in served.queues and "mine" not in served.producers
    finally:
        await served.stop_claiming(timeout=5)
        await served.stop_executors()


async def test_queue_set_routes_a_due_again_outcome_to_its_producer(
    chancy: Chancy, worker: Worker
) -> None:
    served = worker.served
    await chancy.declare(Queue("a", executor=ASYNC, polling_interval=60))
    try:
        await served.sync()
        producer = served.producers["a"]
        producer._wake.clear()
        pending = QueuedJob(id=uuid.uuid4(), func="f", queue="a", state=QueuedJob.State.PENDING)
        served.outcomes_written([Outcome(pending)])
        assert producer._wake.is_set()
        producer._wake.clear()
        done = evolve(pending, state=QueuedJob.State.SUCCEEDED)
        served.outcomes_written([Outcome(done)])
        assert not producer._wake.is_set()  # a finished job is nothing to claim
    finally:
        await served.stop_claiming(timeout=5)
        await served.stop_executors()


# -- ledger -----------------------------------------------------------------------------------


async def test_ledger_tracks_claims_and_gives_back_abandoned_runs(
    chancy: Chancy, worker: Worker
) -> None:
    ledger = Ledger()
    assert ledger.all_done.is_set()
    claimed = await _claimed(chancy, worker, 3)
    ledger.add(claimed)
    assert len(ledger) == 3 and not ledger.all_done.is_set()
    assert sorted(ledger.claims()) == sorted((j.id, j.claim_id) for j in claimed)
    # A normal run leaves with its own outcome.
    ok = ledger.settle(build_outcome(claimed[0], None, 1))
    assert ok.job.state == QueuedJob.State.SUCCEEDED
    # A run recovered elsewhere and then failing here is given back, not failed.
    ledger.abandon([claimed[1].id, uuid.uuid4()])  # an id not running here is ignored
    back = ledger.settle(build_outcome(claimed[1], RuntimeError("interrupted"), None))
    assert back.job.state == QueuedJob.State.PENDING and back.job.attempts == claimed[1].attempts
    # An abandoned run that succeeded anyway keeps its success (the write is fenced anyway).
    ledger.abandon([claimed[2].id])
    kept = ledger.settle(build_outcome(claimed[2], None, 2))
    assert kept.job.state == QueuedJob.State.SUCCEEDED
    assert len(ledger) == 0 and ledger.all_done.is_set()
    # Written through the completer, the given-back job is pending again in the database.
    worker.completer.add(ok)
    worker.completer.add(back)
    await worker.completer.flush()
    found = await states(chancy, [Reference(j.id) for j in claimed[:2]])
    assert found == {str(claimed[0].id): "succeeded", str(claimed[1].id): "pending"}


# -- hooks ------------------------------------------------------------------------------------


async def test_starting_hooks_see_a_claimed_batch_once_or_each_job(chancy: Chancy) -> None:
    """A plugin with the batch form gets the claimed batch in one call; a 0.26-style plugin
    gets each job; both in the installed order, the batch's order kept."""
    from chancy.hooks import Hooks
    from chancy.plugin import Plugin

    calls: list[tuple[str, int]] = []

    class Batched(Plugin):
        async def on_jobs_starting(self, *, jobs: list[QueuedJob], worker: Any) -> list[QueuedJob]:
            calls.append(("batch", len(jobs)))
            return [evolve(j, meta={**j.meta, "seen": ["batch"]}) for j in jobs]

    class Single(Plugin):
        async def on_job_starting(self, *, job: QueuedJob, worker: Any) -> QueuedJob:
            calls.append(("one", 1))
            return evolve(job, meta={**job.meta, "seen": [*job.meta.get("seen", []), "one"]})

    w = Worker(chancy, worker_id="hooks", register_signal_handlers=False)
    await w.heartbeat.beat()
    claimed = await _claimed(chancy, w, 4)
    hooks = Hooks({"b": Batched(), "s": Single()})
    started = await hooks.starting(claimed, w)
    assert calls == [("batch", 4), ("one", 1), ("one", 1), ("one", 1), ("one", 1)]
    assert [j.id for j in started] == [j.id for j in claimed]
    assert all(j.meta["seen"] == ["batch", "one"] for j in started)


async def _setting(conn: Any, name: str) -> str | None:
    cur = await conn.execute("SELECT current_setting(%s, true)", (name,))
    row = await cur.fetchone()
    return None if row is None else row[0]


async def test_pool_connections_run_the_warmups_before_their_first_use(chancy: Chancy) -> None:
    pool = await chancy.open()
    assert pool.get_stats().get("pool_available", 0) >= 1  # opened before the warm-up
    marker: Spec[None] = Spec("SELECT set_config('chancy.test_warmed', 'yes', false)")
    chancy.db.warmups.append(marker)
    try:
        await chancy.db.warm()  # the idle connections
        before = pool.get_stats()["pool_size"]
        async with contextlib.AsyncExitStack() as stack:
            # Every slot at once: the pool opens new connections, which warm as they open.
            conns = [await stack.enter_async_context(pool.connection()) for _ in range(4)]
            assert pool.get_stats()["pool_size"] > before
            for conn in conns:
                assert await _setting(conn, "chancy.test_warmed") == "yes"
    finally:
        chancy.db.warmups.remove(marker)
    # A failing warm-up costs nothing but the time it tried to save.
    broken: Spec[None] = Spec("SELECT no_such_function()")
    chancy.db.warmups.append(broken)
    try:
        await chancy.db.warm()
        async with pool.connection() as a, pool.connection() as b, pool.connection() as c:
            for conn in (a, b, c):
                assert await _setting(conn, "server_version_num") is not None
    finally:
        chancy.db.warmups.remove(broken)


async def test_a_running_worker_warms_connections_with_a_claim_that_takes_nothing(
    chancy: Chancy,
) -> None:
    await chancy.declare(Queue("elsewhere", tags={"^nobody$"}))
    refs = await push(chancy, [Job(func="tests.runtime.jobs.noop", queue="elsewhere")])
    warmup = chancy.store.claim_warmup()
    assert warmup not in chancy.db.warmups
    async with Worker(chancy, register_signal_handlers=False, worker_id="warming"):
        assert chancy.db.warmups == [warmup]
        # What each new connection runs: the claim function (an error here would only be
        # logged in a pool's warm-up), claiming nothing.
        await chancy.db.run(warmup)
    assert chancy.db.warmups == []
    assert await states(chancy, refs) == {str(refs[0].identifier): "pending"}
