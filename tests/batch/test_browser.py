"""The dashboard's Batches page in headless Chromium (skipped without Chromium/Playwright)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("playwright.async_api", reason="the playwright package is not installed")
pytest.importorskip("uvicorn", reason="the web extra is not installed")

from chancy import Chancy, Queue, Worker
from chancy.plugins.batch import Batch, BatchPlugin
from chancy.plugins.leadership import Leadership
from tests.batch.conftest import J
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import drop_prefix, eventually

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"no Chromium at {CHROMIUM}"),
]
PASSWORD = "browser-test-password"


@pytest.fixture
async def served(dsn: str, prefix: str) -> AsyncIterator[dict[str, Any]]:
    from chancy.plugins.api import Api, SimpleAuthBackend

    api = Api(
        port=0,
        authentication_backend=SimpleAuthBackend({"admin": PASSWORD}),
        secret_key="browser-test-secret-key-0123456789",
    )
    app = Chancy(
        dsn,
        prefix=prefix,
        plugins=[Leadership(poll_interval=1, timeout=10), BatchPlugin(), api],
        no_default_plugins=True,
        max_connection_pool_size=3,
    )
    async with app:
        await app.migrate()
        try:
            await app.declare(Queue("default", tags={"^nobody$"}))
            await app.declare(Queue("b", executor=Chancy.Executor.Async, polling_interval=0.1))
            await app.declare(Queue("cb", executor=Chancy.Executor.Async, polling_interval=0.1))
            batch_id = await Batch.push(
                app, [J("ok"), J("ok"), J("boom")], on_failure=J("callback", queue="cb")
            )
            async with Worker(app, register_signal_handlers=False, worker_id="worker-1"):
                await eventually(api.started.is_set, timeout=15)
                await Batch.wait(app, batch_id, interval=0.1, timeout=30)
                yield {"url": f"http://127.0.0.1:{api.bound_port}/", "batch": batch_id}
        finally:
            try:
                await app.migrate(to_version=0)
            finally:
                drop_prefix(dsn, prefix)


async def test_the_batches_page_shows_a_batch_and_its_callback(served: dict[str, Any]) -> None:
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
            await page.click("#nav a[data-page=batches]")
            row = f"tr[data-batch='{served['batch']}']"
            await page.wait_for_selector(f"{row} .badge.closed")
            await page.click(f"{row} a")
            await page.wait_for_selector("h1 .badge.closed")
            text = await page.text_content("#main") or ""
            assert "on_failure" in text and served["batch"] in text
            assert await page.locator("#main a[href^='#/jobs/']").count() == 1
            assert errors == [], errors
        finally:
            await browser.close()
