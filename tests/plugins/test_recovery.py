"""Recovery: statements in-process, then real worker processes killed under their jobs."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import time
from pathlib import Path

import pytest

from chancy import Chancy, Job, Queue, QueuedJob, Reference
from chancy.executors.base import Outcome
from chancy.plugins.recovery import Recovery
from tests.conftest import eventually
from tests.plugins.conftest import Fleet, Proc, lease_row

ASYNC = Chancy.Executor.Async


def J(func: str, queue: str, **kw: object) -> Job:
    return Job(func=f"tests.plugins.jobs.{func}", queue=queue, **kw)  # type: ignore[arg-type]


async def claim_as(chancy: Chancy, queue: str, worker_id: str, n: int) -> list[QueuedJob]:
    return await chancy.db.run(chancy.store.job_fetch(queue, n, worker_id))


async def test_jobs_of_workers_without_a_live_heartbeat_go_back(chancy: Chancy) -> None:
    await chancy.declare(Queue("q", tags={"^nobody$"}))
    refs = [r async for b in chancy.push_many(J("noop", "q") for _ in range(7)) for r in b]
    # "alive" heartbeats; "expired" heartbeat ran out; "ghost" never had a row.
    await chancy.db.run(
        chancy.store.worker_heartbeat(
            "alive", tags=[], queues=[], timeout=60, hostname="h", pid=1, version="t"
        )
    )
    # Its lease already ran out when it was written (a positive timeout raced the test: on
    # a quiet machine the whole set-up ran within it).
    await chancy.db.run(
        chancy.store.worker_heartbeat(
            "expired", tags=[], queues=[], timeout=-60, hostname="h", pid=2, version="t"
        )
    )
    alive = await claim_as(chancy, "q", "alive", 2)
    expired = await claim_as(chancy, "q", "expired", 2)
    ghost = await claim_as(chancy, "q", "ghost", 2)
    # "reborn" claimed a job, died, and a new process registered under the same id: the
    # live row is not the incarnation that holds the claim.
    reborn = await claim_as(chancy, "q", "reborn", 1)
    await chancy.db.run(
        chancy.store.worker_heartbeat(
            "reborn", tags=[], queues=[], timeout=60, hostname="h", pid=3, version="t"
        )
    )
    assert len(alive) + len(expired) + len(ghost) + len(reborn) == 7

    # Small batches: one pass still recovers everything, batch after batch.
    recovered, failed = await Recovery(batch_size=2).recover(chancy)
    assert (recovered, failed) == (5, 0)
    jobs = {j.id: j for j in await chancy.get_jobs(refs)}
    for job in alive:
        assert jobs[job.id].state == "running" and jobs[job.id].claim_id == job.claim_id
    for job in expired + ghost + reborn:
        back = jobs[job.id]
        assert back.state == "pending"
        assert (back.claim_id, back.taken_by, back.started_at) == (None, None, None)
        assert back.attempts == 0 and back.recoveries == 1
    # A late write from the dead worker's claim is fenced out.
    assert (
        await chancy.db.run(chancy.store.job_complete_many([_succeeded(ghost[0])], notify=False))
        == []
    )


def _succeeded(job: QueuedJob) -> Outcome:
    return Outcome(dataclasses.replace(job, state=QueuedJob.State.SUCCEEDED, attempts=1))


async def test_a_job_interrupted_too_often_fails_with_a_clear_error(chancy: Chancy) -> None:
    await chancy.declare(Queue("q", tags={"^nobody$"}))
    ref = await chancy.push(J("noop", "q"))
    recovery = Recovery(max_recoveries=2)
    waiter = asyncio.create_task(chancy.wait_for_job(ref, timeout=20, interval=30))
    for n in range(1, 4):
        [job] = await claim_as(chancy, "q", f"ghost-{n}", 1)
        assert job.id == ref.identifier
        recovered, failed = await recovery.recover(chancy)
        assert (recovered, failed) == ((1, 0) if n < 3 else (0, 1))
    # job.finished woke the waiter (its polling interval is 30 s).
    started = time.monotonic()
    job = await waiter
    assert time.monotonic() - started < 5
    assert job is not None and job.state == "failed"
    assert job.recoveries == 3 and job.attempts == 0 and job.claim_id is None
    assert job.completed_at is not None
    [error] = job.errors
    assert error["attempt"] == 0
    assert "interrupted 3 times by its worker dying" in error["traceback"]
    assert "max_recoveries=2" in error["traceback"]


def test_recovery_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_recoveries"):
        Recovery(max_recoveries=-1)
    with pytest.raises(ValueError, match="poll_interval"):
        Recovery(poll_interval=0)


# -- real processes ------------------------------------------------------------------------


async def test_killed_worker_jobs_are_finished_elsewhere_without_using_an_attempt(
    chancy: Chancy, fleet: Fleet
) -> None:
    await chancy.declare(
        Queue("r", executor=ASYNC, concurrency=20, tags={"role=r"}, polling_interval=1)
    )
    doomed = fleet.start("doomed", tags=("role=r",))
    await eventually(doomed.started, timeout=30, message="first worker started")
    refs = [
        r
        async for batch in chancy.push_many(
            J("first_run_waits", "r", kwargs={"seconds": 120}) for _ in range(20)
        )
        for r in batch
    ]

    async def all_running() -> bool:
        jobs = await chancy.get_jobs(refs)
        return all(j.state == "running" and j.taken_by == doomed.worker_id for j in jobs)

    await eventually(all_running, timeout=30, message="20 jobs running on the first worker")
    doomed.kill()
    survivor = fleet.start("survivor", tags=("role=r",))
    jobs = await chancy.wait_for_jobs(refs, timeout=60)
    assert len(jobs) == 20
    for job in jobs:
        assert job.state == "succeeded", job
        assert job.result == "rerun"
        assert job.attempts == 1, "the crash must not use up an attempt"
        assert job.recoveries == 1
        assert job.taken_by == survivor.worker_id


async def _restart_dead(fleet: Fleet, pool: list[Proc], tags: tuple[str, ...]) -> None:
    for i, proc in enumerate(pool):
        if not proc.alive():
            pool[i] = fleet.start("k", tags=tags)


@pytest.mark.slow
async def test_a_job_that_kills_its_worker_fails_after_the_limit_and_the_fleet_goes_on(
    chancy: Chancy, fleet: Fleet
) -> None:
    await chancy.declare(Queue("k", executor=ASYNC, tags={"role=k"}, polling_interval=1))
    # A steady leader that serves no queue, so failovers do not slow the test down.
    lead = fleet.start("lead")

    async def lead_leads() -> bool:
        row = await lease_row(chancy)
        return bool(row and row["live"] and row["worker_id"] == lead.worker_id)

    await eventually(lead_leads, timeout=30, message="the first worker leads")
    pool = [fleet.start("k", tags=("role=k",)) for _ in range(2)]
    ref = await chancy.push(J("kill_my_worker", "k"))

    async def finished() -> QueuedJob | None:
        await _restart_dead(fleet, pool, ("role=k",))
        job = await chancy.get_job(ref)
        return job if job is not None and job.state == "failed" else None

    job = await eventually(finished, timeout=90, interval=0.1, message="the killer job fails")
    assert job.recoveries == 4 and job.attempts == 0
    [error] = job.errors
    assert "interrupted 4 times by its worker dying" in error["traceback"]
    assert "giving up after max_recoveries=3" in error["traceback"]
    killed = [p for p in fleet.procs if p.name == "k" and p.popen.returncode == -signal.SIGKILL]
    assert len(killed) == 4

    # The fleet keeps working.
    await _restart_dead(fleet, pool, ("role=k",))
    refs = [await chancy.push(J("noop", "k")) for _ in range(5)]
    done = await chancy.wait_for_jobs(refs, timeout=30)
    assert [j.state for j in done] == ["succeeded"] * 5
    assert lead.alive()


async def test_a_zombie_cannot_overwrite_the_result_of_the_rerun(
    chancy: Chancy, fleet: Fleet, tmp_path: Path
) -> None:
    await chancy.declare(Queue("z", executor=ASYNC, tags={"role=z"}, polling_interval=1))
    release = tmp_path / "release"
    zombie = fleet.start("zombie", tags=("role=z",))
    await eventually(zombie.started, timeout=30, message="zombie started")
    ref: Reference = await chancy.push(J("wait_for_file", "z", kwargs={"path": str(release)}))

    async def running_on_zombie() -> bool:
        job = await chancy.get_job(ref)
        return job is not None and job.state == "running" and job.taken_by == zombie.worker_id

    await eventually(running_on_zombie, timeout=30, message="job running on the zombie")
    # It must lead when it is paused (it is alone, but its job can start before its election
    # completes on a loaded machine): the test then waits for it to notice it lost the lead.
    await eventually(
        lambda: any(e["e"] == "gained" for e in zombie.events()), timeout=30, message="leads"
    )
    zombie.signal(signal.SIGSTOP)
    try:
        rescuer = fleet.start("rescuer", tags=("role=z",))
        rerun = await chancy.wait_for_job(ref, timeout=60)
        assert rerun is not None and rerun.state == "succeeded" and rerun.result == "rerun"
        assert rerun.taken_by == rescuer.worker_id
        # Let the zombie's job finish too, then wake it up.
        release.touch()
    finally:
        resumed = time.monotonic()
        zombie.signal(signal.SIGCONT)

    # It notices it lost its leadership (it led when it was paused) and its heartbeat, and
    # its late outcome is written fenced: ignored. Stop it to read its count of such writes.
    await eventually(
        lambda: any(e["e"] == "lost" for e in zombie.events()), timeout=10, message="lost"
    )
    lost = next(e for e in zombie.events() if e["e"] == "lost")
    assert lost["mono"] >= resumed
    zombie.signal(signal.SIGTERM)
    try:
        await eventually(lambda: not zombie.alive(), timeout=20, message="zombie exits")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; its log and stacks:\n{zombie.stacks()}") from None
    exit_line = zombie.exit_line()
    assert exit_line is not None and exit_line["fenced"] >= 1, exit_line

    final = await chancy.get_job(ref)
    assert final is not None
    assert (final.state, final.result, final.attempts, final.recoveries) == (
        "succeeded",
        "rerun",
        1,
        1,
    )
    assert final.taken_by == rescuer.worker_id
    row = await lease_row(chancy)
    assert row["worker_id"] == rescuer.worker_id
