"""Chancy 0.26's Django integration, as its users wrote against it.

The example project installs 0.26's apps (``chancy.contrib.django``,
``chancy.plugins.cron.django``, ``chancy.plugins.workflow.django``). The models must have 0.26's
fields and defaults, a job made with ``Job.objects.create(func=..., queue=...)`` must run on a
chancy worker, the admin must edit jobs and queues (checked, and waking workers), and the cron
and workflow pages must show what chancy's own APIs made. The models are on the default prefix
(``chancy_``), in pytest-django's test database.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, time
from html.parser import HTMLParser
from typing import Any

import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from chancy import Chancy, Job, Queue
from chancy.contrib.django import get_chancy
from chancy.plugins.cron import Cron
from chancy.plugins.workflow import Workflow, WorkflowPlugin
from chancy.testing import run_until_idle

pytestmark = pytest.mark.django_db(transaction=True)

# Chancy 0.26's model fields and their Django types (from its chancy/contrib/django/models.py,
# chancy/plugins/cron/django/models.py and chancy/plugins/workflow/django/models.py).
FIELDS_026 = {
    "chancy.Job": {
        "id": "UUIDField",
        "queue": "TextField",
        "func": "TextField",
        "kwargs": "JSONField",
        "limits": "JSONField",
        "meta": "JSONField",
        "state": "CharField",
        "priority": "IntegerField",
        "attempts": "IntegerField",
        "max_attempts": "IntegerField",
        "taken_by": "TextField",
        "claim_id": "UUIDField",
        "created_at": "DateTimeField",
        "started_at": "DateTimeField",
        "completed_at": "DateTimeField",
        "scheduled_at": "DateTimeField",
        "unique_key": "TextField",
        "errors": "JSONField",
    },
    "chancy.Worker": {
        "worker_id": "TextField",
        "tags": "ArrayField",
        "queues": "ArrayField",
        "last_seen": "DateTimeField",
        "expires_at": "DateTimeField",
    },
    "chancy.Queue": {
        "name": "TextField",
        "state": "TextField",
        "concurrency": "IntegerField",
        "tags": "ArrayField",
        "executor": "TextField",
        "executor_options": "JSONField",
        "polling_interval": "FloatField",  # 0.26: IntegerField; chancy's column is a float
        "rate_limit": "IntegerField",
        "rate_limit_window": "IntegerField",
        "created_at": "DateTimeField",
    },
    "chancy_cron.Cron": {
        "unique_key": "TextField",
        "job": "JSONField",
        "cron": "TextField",
        "timezone": "TextField",
        "last_run": "DateTimeField",
        "next_run": "DateTimeField",
    },
    "chancy_workflow.Workflow": {
        "id": "UUIDField",
        "name": "TextField",
        "state": "TextField",
        "created_at": "DateTimeField",
        "updated_at": "DateTimeField",
    },
    "chancy_workflow.WorkflowStep": {
        "id": "AutoField",
        "workflow": "ForeignKey",
        "step_id": "TextField",
        "job_data": "JSONField",
        "dependencies": "JSONField",
        "job_id": "UUIDField",
        "created_at": "DateTimeField",
        "updated_at": "DateTimeField",
    },
}


def _field_type(field: Any) -> str:
    name = type(field).__name__
    return name if name in ("ArrayField", "ForeignKey") else field.get_internal_type()


def test_the_models_have_0_26_s_fields_and_defaults() -> None:
    from django.apps import apps

    from chancy.contrib.django.models import Job as JobModel
    from chancy.contrib.django.models import Queue as QueueModel

    for label, fields in FIELDS_026.items():
        model = apps.get_model(label)
        got = {f.name: _field_type(f) for f in model._meta.fields}
        for name, kind in fields.items():
            assert got.get(name) == kind, f"{label}.{name}: {got.get(name)} != {kind}"
    assert apps.get_app_config("chancy").name == "chancy.contrib.django"
    assert apps.get_app_config("chancy_cron").name == "chancy.plugins.cron.django"
    assert apps.get_app_config("chancy_workflow").name == "chancy.plugins.workflow.django"
    job = JobModel(func="tests.jobs.noop", queue="default")
    assert (job.state, job.priority, job.attempts, job.max_attempts) == ("pending", 0, 0, 1)
    assert (job.kwargs, job.limits, job.meta, job.errors) == ({}, [], {}, [])
    assert isinstance(job.id, uuid.UUID) and job.id.version == 7
    queue = QueueModel(name="q")
    assert queue.state == "active" and queue.executor == Chancy.Executor.Process.value
    assert queue.polling_interval == 5 and queue.executor_options == {}
    assert queue.tags == [".*"]  # every worker, as Queue("q"); 0.26 left it empty


def test_chancy_s_own_cron_and_workflow_pages_yield_to_0_26_s_apps() -> None:
    from django.contrib import admin
    from django.test import override_settings

    from chancy.contrib.django import admin as chancy_admin
    from chancy.contrib.django.models import CronSchedule
    from chancy.contrib.django.models import Workflow as WorkflowModel

    # Both 0.26 apps are installed: their pages replace this app's, no duplicates.
    assert chancy_admin._pages() == set()
    assert not admin.site.is_registered(CronSchedule)
    assert not admin.site.is_registered(WorkflowModel)
    with override_settings(CHANCY_ADMIN_PLUGINS=["cron"]):
        assert chancy_admin._pages() == {"cron"}


@pytest.fixture
async def orm_app() -> AsyncIterator[Chancy]:
    """Chancy on the models' prefix (chancy_), with Cron and workflows, in the test database."""
    from chancy.contrib import django as contrib

    chancy = get_chancy(prefix="chancy_", plugins=[Cron(), WorkflowPlugin()])
    async with chancy:
        await chancy.migrate()
        await chancy.declare(Queue("default", executor=Chancy.Executor.Threaded))
        try:
            yield chancy
        finally:
            await chancy.migrate(to_version=0)
            chancy.sync_close()
            contrib._apps.clear()
            await sync_to_async(connections.close_all)()


async def test_a_job_created_through_the_orm_runs_on_a_worker(orm_app: Chancy) -> None:
    from chancy.contrib.django.models import Job as JobModel

    def create(**fields: Any) -> Any:
        return JobModel.objects.create(**fields)

    first = await sync_to_async(create)(func="tests.jobs.noop", queue="default")
    pushed = await orm_app.push(
        Job(func="tests.jobs.add", queue="default", kwargs={"a": 1, "b": 2})
    )
    second = await sync_to_async(create)(
        func="tests.jobs.add", queue="default", kwargs={"a": 2, "b": 3}
    )
    # Time-ordered ids, like chancy's own: the claim serves equal priorities in id order.
    assert first.id < uuid.UUID(str(pushed.identifier)) < second.id
    assert first.id.version == second.id.version == 7

    done = await run_until_idle(orm_app, queues=["default"])
    assert [j.id for j in done] == [first.id, uuid.UUID(str(pushed.identifier)), second.id]
    assert [str(j.state) for j in done] == ["succeeded"] * 3
    assert [j.result for j in done] == [None, 3, 5]
    # 0.26's documented lookup: the ORM row of a pushed job, by its reference.
    orm_row = await JobModel.objects.aget(id=pushed.identifier)
    assert orm_row.func == "tests.jobs.add" and orm_row.state == "succeeded"
    row = await sync_to_async(JobModel.objects.get)(pk=second.id)
    assert row.state == "succeeded" and row.attempts == 1 and row.completed_at is not None
    assert row.result == 5 and row.taken_by


class _Form(HTMLParser):
    """The fields a browser would post from the page's change form."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, Any] = {}
        self._textarea: str | None = None
        self._select: str | None = None
        self._first_option: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        name = a.get("name")
        if tag == "input" and name and a.get("type") not in ("submit", "button", "file"):
            if a.get("type") == "checkbox":
                if "checked" in a:
                    self.data[name] = "on"
            else:
                self.data[name] = a.get("value", "")
        elif tag == "textarea" and name:
            self._textarea = name
            self.data[name] = ""
        elif tag == "select" and name:
            self._select, self._first_option = name, None
        elif tag == "option" and self._select:
            if self._first_option is None:
                self._first_option = a.get("value", "")
            if "selected" in a:
                self.data[self._select] = a.get("value", "")

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.data[self._textarea] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea" and self._textarea:
            # A browser drops the newline that follows <textarea>.
            value = self.data[self._textarea]
            self.data[self._textarea] = value[1:] if value.startswith("\n") else value
            self._textarea = None
        elif tag == "select" and self._select:
            self.data.setdefault(self._select, self._first_option or "")
            self._select = None


def _form(html: str) -> dict[str, Any]:
    parser = _Form()
    parser.feed(html)
    data = parser.data
    data.pop("csrfmiddlewaretoken", None)
    if data.get("_save") is None:
        data["_save"] = "Save"
    return data


def _admin_client() -> Any:
    from django.contrib.auth.models import User
    from django.test import Client

    admin = User.objects.create_superuser("root", password="root-password-123")
    client = Client()
    client.force_login(admin)
    return client


def _listen(chancy: Chancy) -> psycopg.Connection[Any]:
    conn = psycopg.connect(chancy.dsn, autocommit=True)
    conn.execute(f'LISTEN "{chancy.prefix}events"')
    return conn


def _events(conn: psycopg.Connection[Any], count: int) -> list[dict[str, Any]]:
    return [json.loads(n.payload) for n in conn.notifies(timeout=10, stop_after=count)]


async def test_the_admin_edits_queues_and_jobs_and_wakes_the_workers(orm_app: Chancy) -> None:
    from chancy.contrib.django.models import Job as JobModel

    job = await orm_app.push(Job(func="tests.jobs.add", queue="default", kwargs={"a": 1, "b": 1}))
    listener = await sync_to_async(_listen)(orm_app)

    def edit() -> dict[str, Any]:
        client = _admin_client()
        url = "/admin/chancy/queue/default/change/"
        page = client.get(url)
        assert page.status_code == 200
        data = _form(page.content.decode())
        assert data["concurrency"] == "" and data["executor"] == Chancy.Executor.Threaded.value
        bad = client.post(url, {**data, "concurrency": "0"})
        assert (
            bad.status_code == 200
            and "concurrency must be between 1 and 10,000" in bad.content.decode()
        )
        saved = client.post(url, {**data, "concurrency": "7", "polling_interval": "0.5"})
        assert saved.status_code == 302, saved.content.decode()[-3000:]
        events = _events(listener, 1)

        job_url = f"/admin/chancy/job/{job.identifier}/change/"
        form = _form(client.get(job_url).content.decode())
        assert json.loads(form["kwargs"]) == {"a": 1, "b": 1}
        bad_job = client.post(job_url, {**form, "func": "not a path!"})
        assert bad_job.status_code == 200
        edited = client.post(job_url, {**form, "kwargs": '{"a": 20, "b": 22}', "priority": "5"})
        assert edited.status_code == 302, edited.content.decode()[-3000:]
        events += _events(listener, 1)

        added = client.post("/admin/chancy/job/add/", {**form, "kwargs": '{"a": 1, "b": 2}'})
        assert added.status_code == 302, added.content.decode()[-3000:]
        events += _events(listener, 1)
        assert JobModel.objects.count() == 2
        return {"events": events}

    try:
        result = await sync_to_async(edit)()
    finally:
        listener.close()
    assert [e["t"] for e in result["events"]] == ["queue.declared", "queue.pushed", "queue.pushed"]
    queue = await orm_app.get_queue("default")
    assert queue.concurrency == 7 and queue.polling_interval == 0.5
    assert queue.executor == Chancy.Executor.Threaded.value  # untouched fields kept
    stored = await orm_app.get_job(job)
    assert stored is not None and stored.kwargs == {"a": 20, "b": 22} and stored.priority == 5
    done = await run_until_idle(orm_app, queues=["default"])
    assert sorted(j.result for j in done) == [3, 42]


async def test_the_cron_app_shows_and_makes_schedules(orm_app: Chancy) -> None:
    from chancy.plugins.cron.django.models import Cron as CronModel

    await Cron.schedule(
        orm_app,
        "0 3 * * *",
        Job(func="tests.jobs.noop").with_unique_key("nightly"),
        timezone="Europe/London",
    )
    listener = await sync_to_async(_listen)(orm_app)

    def browse() -> list[dict[str, Any]]:
        client = _admin_client()
        listing = client.get("/admin/chancy_cron/cron/").content.decode()
        assert ">nightly<" in listing and "0 3 * * *" in listing
        # As a 0.26 user writes it: no queue and no next_run.
        CronModel.objects.create(
            unique_key="often",
            job=Job(func="tests.jobs.noop", queue="reports").pack(),
            cron="*/5 * * * *",
        )
        moved = CronModel.objects.create(
            unique_key="moved", job=Job(func="tests.jobs.noop", queue="a").pack(), cron="@daily"
        )
        moved.job = {**moved.job, "q": "b"}
        moved.save()
        assert CronModel.objects.get(pk="moved").queue == "b"  # the column follows the job
        form = _form(client.get("/admin/chancy_cron/cron/add/").content.decode())
        form.update(
            unique_key="hashed",
            cron="H * * * *",
            job=json.dumps(Job(func="tests.jobs.noop").pack()),
        )
        refused = client.post("/admin/chancy_cron/cron/add/", form)
        assert refused.status_code == 200
        assert "&#x27;H&#x27; (hashed) values are not supported" in refused.content.decode()
        assert not CronModel.objects.filter(pk="hashed").exists()
        url = "/admin/chancy_cron/cron/nightly/change/"
        form = _form(client.get(url).content.decode())
        assert form["timezone"] == "Europe/London"
        changed = client.post(url, {**form, "cron": "30 4 * * * 15", "timezone": "UTC"})
        assert changed.status_code == 302, changed.content.decode()[-3000:]
        return _events(listener, 1)

    try:
        events = await sync_to_async(browse)()
    finally:
        listener.close()
    assert events == [{"t": "cron.scheduled"}]
    schedules = await Cron.get_schedules(orm_app)
    often = schedules["often"]
    assert often["job"].queue == "reports" and often["job"].unique_key == "often"
    assert often["timezone"] == "Etc/UTC" and often["next_run"].minute % 5 == 0
    nightly = schedules["nightly"]
    assert nightly["cron"] == "30 4 * * * 15" and nightly["timezone"] == "UTC"
    # Its next run was recomputed for the new expression (seconds last) and zone.
    assert nightly["next_run"].astimezone(UTC).time() == time(4, 30, 15)


async def test_the_workflow_app_shows_workflows_and_their_steps(orm_app: Chancy) -> None:
    flow = (
        Workflow("etl")
        .add("extract", Job(func="tests.jobs.noop"))
        .add("load", Job(func="tests.jobs.noop"), ["extract"])
    )
    flow_id = await WorkflowPlugin.push(orm_app, flow)

    def browse() -> tuple[str, str, str]:
        client = _admin_client()
        listing = client.get("/admin/chancy_workflow/workflow/").content.decode()
        detail = client.get(f"/admin/chancy_workflow/workflow/{flow_id}/change/").content.decode()
        steps = client.get("/admin/chancy_workflow/workflowstep/").content.decode()
        return listing, detail, steps

    listing, detail, steps = await sync_to_async(browse)()
    assert str(flow_id) in listing and "etl" in listing
    assert "extract" in detail and "load" in detail  # the steps, inline
    assert "extract" in steps and "load" in steps
