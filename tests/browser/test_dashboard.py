"""The dashboard in headless Chromium: a live worker serves it, a person's walk through it.

Screenshots of every page are saved (``CHANCY_SCREENSHOTS=docs/img`` refreshes the README's).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chancy import Chancy, Job, Queue, Worker
from chancy.plugins.leadership import Leadership
from chancy.plugins.metrics import Metrics
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import drop_prefix, eventually

# Screenshots go to a scratch folder so a test run leaves the tree clean; refresh the README's
# images with `CHANCY_SCREENSHOTS=docs/img pytest tests/browser`.
SHOTS = Path(
    os.environ.get("CHANCY_SCREENSHOTS") or Path(tempfile.gettempdir()) / "chancy-screenshots"
)
ASYNC = Chancy.Executor.Async
PASSWORD = "browser-test-password"
XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
async def served(dsn: str, prefix: str, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    from chancy.plugins.api import Api, SimpleAuthBackend
    from chancy.plugins.cron import Cron
    from chancy.plugins.workflow import Workflow, WorkflowPlugin

    api = Api(
        port=0,
        authentication_backend=SimpleAuthBackend(
            {"admin": PASSWORD, "viewer": PASSWORD}, read_only=["viewer"]
        ),
        secret_key="browser-test-secret-key-0123456789",
    )
    app = Chancy(
        dsn,
        prefix=prefix,
        plugins=[
            Leadership(poll_interval=1, timeout=10),
            Metrics(flush_interval=0.2, sample_interval=0.5),
            Cron(poll_interval=3600),
            WorkflowPlugin(),
            api,
        ],
        no_default_plugins=True,
        min_connection_pool_size=1,
        max_connection_pool_size=3,
    )
    async with app:
        await app.migrate()
        try:
            await app.declare(Queue("default", tags={"^nobody$"}))
            await app.declare(Queue("work", executor=ASYNC, polling_interval=0.1, concurrency=4))
            await app.declare(Queue("reports", executor=ASYNC, polling_interval=0.1))
            marker = tmp_path / "fixed"
            refs = [
                await app.push(Job(func="tests.metrics.jobs.noop", queue="work")) for _ in range(8)
            ]
            flaky = await app.push(
                Job(
                    func="tests.metrics.jobs.fails_until_file",
                    queue="work",
                    kwargs={"path": str(marker)},
                )
            )
            xss = await app.push(
                Job(func="tests.metrics.jobs.echo", queue="reports", kwargs={"html": XSS})
            )
            await Cron.schedule(
                app,
                "0 3 * * *",
                Job(func="tests.metrics.jobs.noop", queue="reports").with_unique_key("nightly"),
            )
            wf = (
                Workflow("etl")
                .add("extract", Job(func="tests.metrics.jobs.noop", queue="work"))
                .add("transform", Job(func="tests.metrics.jobs.noop", queue="work"), ["extract"])
                .add("audit", Job(func="tests.metrics.jobs.noop", queue="work"), ["extract"])
                .add(
                    "load",
                    Job(func="tests.metrics.jobs.noop", queue="work"),
                    ["transform", "audit"],
                )
            )
            wf_id = await WorkflowPlugin.push(app, wf)
            async with Worker(
                app,
                register_signal_handlers=False,
                worker_id="worker-1",
                heartbeat_poll_interval=1,
                heartbeat_timeout=10,
            ):
                await eventually(api.started.is_set, timeout=15)
                await app.wait_for_jobs([*refs, flaky, xss], timeout=30)
                await WorkflowPlugin.wait_for_workflow(app, wf_id, timeout=30, interval=0.2)
                yield {
                    "url": f"http://127.0.0.1:{api.bound_port}/",
                    "app": app,
                    "flaky": str(flaky.identifier),
                    "xss": str(xss.identifier),
                    "marker": marker,
                    "workflow": str(wf_id),
                }
        finally:
            try:
                await app.migrate(to_version=0)
            finally:
                drop_prefix(dsn, prefix)


@pytest.fixture
async def page(served: dict[str, Any]) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 860})
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.set_default_timeout(20000)
            yield page
            assert errors == [], f"JavaScript errors: {errors}"
        finally:
            await browser.close()


def _shot_path(name: str) -> str:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return str(SHOTS / f"dashboard-{name}.png")


async def shot(page: Any, name: str) -> None:
    # Notifications of earlier actions would cover the page's corner.
    await page.evaluate("document.getElementById('flash').replaceChildren()")
    await page.screenshot(path=_shot_path(name), full_page=True)


async def log_in(page: Any, url: str, user: str = "admin") -> None:
    await page.goto(url)
    await page.fill("input[name=username]", user)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_selector("#alerts li")


async def test_operator_walks_through_the_dashboard(page: Any, served: dict[str, Any]) -> None:
    url = served["url"]
    # A wrong password is refused with a message.
    await page.goto(url)
    await shot(page, "login")
    await page.fill("input[name=username]", "admin")
    await page.fill("input[name=password]", "wrong")
    await page.click("button[type=submit]")
    await page.wait_for_selector("#login-error:has-text('wrong username or password')")

    await log_in(page, url)
    # Overview: the throughput chart has bars once metrics are flushed (polling, no reload).
    await page.wait_for_selector("svg.chart rect", timeout=30000)
    await page.wait_for_selector("tr[data-queue=work]")
    await shot(page, "overview")

    # Queues: pause, see it paused (and the overview alert), resume.
    await page.click("#nav a[data-page=queues]")
    await page.click("tr[data-queue=work] button.pause-toggle")
    await page.wait_for_selector("tr[data-queue=work] .badge.paused")
    await page.click("#nav a[data-page=overview]")
    await page.wait_for_selector("#alerts li[data-kind=queue_paused]")
    await page.click("#nav a[data-page=queues]")
    await shot(page, "queues")
    await page.click("tr[data-queue=work] button.pause-toggle")
    await page.wait_for_selector("tr[data-queue=work] .badge.active")
    await page.click("tr[data-queue=work] a[href='#/queues/work']")
    await page.wait_for_selector("#queue-settings")
    await shot(page, "queue")

    # Jobs: the failed tab holds the flaky job; filter by queue too.
    await page.click("#nav a[data-page=jobs]")
    await page.wait_for_selector("#job-list tr[data-job]")
    await page.click("#state-tabs a[data-state=failed]")
    await page.wait_for_selector(f"#job-list tr[data-job='{served['flaky']}']")
    # The list re-renders on every poll; a count taken mid-render reads 0, so poll for it.
    rows = page.locator("#job-list tr[data-job]")

    async def one_failed_row() -> bool:
        return await rows.count() == 1

    await eventually(one_failed_row, message="the failed tab shows exactly the flaky job")
    await page.fill("#job-filters input[name=queue]", "reports")
    await page.click("#job-filters button[type=submit]")
    await page.wait_for_selector("#job-list td.muted:has-text('No jobs match')")
    await page.click("#job-filters button:has-text('Clear')")
    await page.wait_for_selector(f"#job-list tr[data-job='{served['xss']}']")
    await shot(page, "jobs")

    # The failed job's traceback, then retry it once the "bug" is fixed: it succeeds.
    await page.goto(url + "#/jobs/" + served["flaky"])
    await page.wait_for_selector("pre.traceback:has-text('ValueError')")
    await shot(page, "job-failed")
    served["marker"].write_text("fixed")
    await page.click("#retry-job")
    await page.wait_for_selector("h1 .badge.succeeded", timeout=30000)
    await page.wait_for_selector("#job-result:has-text('fixed')")
    await shot(page, "job")

    # A job whose kwargs hold markup shows it as text, and nothing ran.
    await page.goto(url + "#/jobs/" + served["xss"])
    kwargs = await page.wait_for_selector("#job-kwargs")
    assert XSS.replace('"', '\\"') in (await kwargs.text_content() or "")
    assert await page.evaluate("window.__xss") is None
    assert await page.locator("#job-kwargs img, #job-kwargs script").count() == 0

    # Workers (the leader is marked), crons, workflows and the DAG, metrics, system.
    await page.click("#nav a[data-page=workers]")
    await page.wait_for_selector("tr[data-worker=worker-1] .badge.alive")
    await shot(page, "workers")
    await page.click("#nav a[data-page=crons]")
    await page.wait_for_selector("tr[data-cron=nightly]")
    # Pause the schedule (it shows as paused), then resume it.
    await page.click("tr[data-cron=nightly] button[data-action=pause]")
    await page.wait_for_selector("tr[data-cron=nightly] .badge.paused")
    await shot(page, "crons")
    await page.click("tr[data-cron=nightly] button[data-action=resume]")
    await page.wait_for_selector("tr[data-cron=nightly] button[data-action=pause]")
    assert await page.locator("tr[data-cron=nightly] .badge.paused").count() == 0
    await page.click("#nav a[data-page=workflows]")
    await page.click(f"tr[data-workflow='{served['workflow']}'] a")
    await page.wait_for_selector("#workflow-graph svg g.node[data-state=succeeded]")
    assert await page.locator("#workflow-graph g.node").count() == 4
    assert await page.locator("#workflow-graph path.edge").count() == 4
    await shot(page, "workflow")
    await page.click("#nav a[data-page=metrics]")
    await page.wait_for_selector("#metric-chart svg.chart rect")
    await page.select_option("select[name=metric]", "jobs.runtime")
    await page.wait_for_selector("#metric-chart svg.chart circle")
    await shot(page, "metrics")
    await page.click("#nav a[data-page=system]")
    await page.wait_for_selector("td:has-text('tests.metrics.jobs.noop')")
    await shot(page, "system")


async def test_read_only_user_sees_no_actions(page: Any, served: dict[str, Any]) -> None:
    await log_in(page, served["url"], "viewer")
    await page.goto(served["url"] + "#/queues")
    await page.wait_for_selector("tr[data-queue=work]")
    assert await page.locator("button.pause-toggle").count() == 0
    await page.goto(served["url"] + "#/jobs/" + served["flaky"])
    await page.wait_for_selector("pre.traceback")
    assert await page.locator("#retry-job").count() == 0
    await page.click("#logout")
    await page.wait_for_selector("#login-form")
