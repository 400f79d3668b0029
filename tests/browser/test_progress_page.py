"""The job page shows a running job's progress as a bar with its message, updated live."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chancy import Chancy, Job, Queue, Worker
from chancy.plugins.leadership import ImmediateLeadership
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import drop_prefix, eventually

PASSWORD = "browser-test-password"

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def served(dsn: str, prefix: str, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    from chancy.plugins.api import Api, SimpleAuthBackend

    api = Api(
        port=0,
        authentication_backend=SimpleAuthBackend({"admin": PASSWORD}),
        secret_key="browser-test-secret-key-0123456789",
    )
    app = Chancy(
        dsn,
        prefix=prefix,
        plugins=[ImmediateLeadership(), api],
        no_default_plugins=True,
        min_connection_pool_size=1,
        max_connection_pool_size=3,
    )
    async with app:
        await app.migrate()
        try:
            await app.declare(Queue("default", tags={"^nobody$"}))
            await app.declare(Queue("work", executor=Chancy.Executor.Async, polling_interval=0.1))
            gate = tmp_path / "go"
            ref = await app.push(
                Job(func="tests.progress.jobs.agated", queue="work", kwargs={"gate": str(gate)})
            )
            async with Worker(app, register_signal_handlers=False, progress_interval=0.1):
                await eventually(api.started.is_set, timeout=15)

                async def reported() -> bool:
                    job = await app.get_job(ref)
                    return job is not None and job.progress is not None

                await eventually(reported, timeout=20)
                yield {
                    "url": f"http://127.0.0.1:{api.bound_port}/",
                    "app": app,
                    "job": str(ref),
                    "gate": gate,
                }
        finally:
            try:
                await app.migrate(to_version=0)
            finally:
                drop_prefix(dsn, prefix)


async def test_job_page_shows_progress_live(served: dict[str, Any]) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await (await browser.new_context()).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.set_default_timeout(20000)
            await page.goto(served["url"])
            await page.fill("input[name=username]", "admin")
            await page.fill("input[name=password]", PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_selector("#alerts li")

            await page.goto(served["url"] + "#/jobs/" + served["job"])
            await page.wait_for_selector("h1 .badge.running")
            await page.wait_for_selector("#job-progress-percent:has-text('50%')")
            assert await page.eval_on_selector("#job-progress-bar", "el => el.value") == 0.5
            assert await page.text_content("#job-progress-message") == "half way"
            assert '"step": 1' in (await page.text_content("#job-progress-data") or "")

            # The job goes on: the open page follows (it polls), bar and message.
            served["gate"].touch()
            await page.wait_for_selector("#job-progress-percent:has-text('100%')", timeout=30000)
            assert await page.text_content("#job-progress-message") == "done"
            assert await page.eval_on_selector("#job-progress-bar", "el => el.value") == 1
            assert errors == [], f"JavaScript errors: {errors}"
        finally:
            await browser.close()
