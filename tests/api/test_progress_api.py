"""A running job's progress in the job JSON the dashboard's job page reads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chancy import Chancy, Job, Queue
from chancy.progress import make_report


async def test_job_detail_has_the_latest_progress(
    client: Any, admin: dict[str, str], app: Chancy
) -> None:
    await app.declare(Queue("q", tags={"^nobody$"}))
    ref = await app.push(Job(func="tests.progress.jobs.noop", queue="q"))
    response = await client.get(f"/api/v1/jobs/{ref}", headers=admin)
    assert response.json()["job"]["progress"] is None

    # Claimed by a worker that wrote one report (the statement a worker runs).
    (claimed,) = await app.db.run(app.store.job_fetch("q", 1, "w1"))
    report = make_report(0.25, "page 1 of 4", {"page": 1, "note": "<b>x</b>"})
    assert await app.db.run(app.store.job_progress_many({claimed.id: (claimed.claim_id, report)}))

    response = await client.get(f"/api/v1/jobs/{ref}", headers=admin)
    assert response.status_code == 200
    progress = response.json()["job"]["progress"]
    assert progress["fraction"] == 0.25
    assert progress["message"] == "page 1 of 4"
    assert progress["data"] == {"page": 1, "note": "<b>x</b>"}
    assert datetime.fromisoformat(progress["at"]).tzinfo is not None
