"""A worker killed under a job that reported progress: the rerun elsewhere resumes from it."""

from __future__ import annotations

from chancy import Chancy, Job, Queue
from tests.conftest import eventually
from tests.plugins.conftest import Fleet


async def test_a_killed_workers_job_resumes_from_its_progress_elsewhere(
    chancy: Chancy, fleet: Fleet
) -> None:
    await chancy.declare(
        Queue("p", executor=Chancy.Executor.Async, tags={"role=p"}, polling_interval=1)
    )
    doomed = fleet.start("doomed", tags=("role=p",))
    await eventually(doomed.started, timeout=30, message="first worker started")
    ref = await chancy.push(Job(func="tests.progress.jobs.first_run_reports_and_waits", queue="p"))

    async def reported() -> bool:
        job = await chancy.get_job(ref)
        return job is not None and job.progress is not None

    await eventually(reported, timeout=30, message="the first run's report was written")
    doomed.kill()
    survivor = fleet.start("survivor", tags=("role=p",))
    job = await chancy.wait_for_job(ref, timeout=60)
    assert job is not None and job.state == "succeeded", job
    assert job.result == {"resumed": {"page": 3}, "recoveries": 1}
    assert job.taken_by == survivor.worker_id
    assert job.progress is not None and job.progress.message == "first run"
