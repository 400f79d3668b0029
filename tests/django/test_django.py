"""Django: pushing inside transaction.atomic(), Chancy(settings.DATABASES[...]), and the tasks
backend (django-tasks backport on Python 3.11) running tasks on a chancy worker."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, connections
from django_tasks import TaskResultStatus, default_task_backend
from django_tasks.exceptions import InvalidTaskError, TaskResultDoesNotExist

from chancy import Chancy, Job, Queue
from chancy.contrib.django import get_chancy
from chancy.errors import ConfigurationError
from chancy.testing import run_until_idle
from examples.django_app.jobs import add, explode

# pytest-django: a test database (test_<name>) and real commits, since chancy's own pool and
# workers must see what the Django connection commits.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def app(transactional_db: None, django_prefix: str) -> Chancy:
    chancy = get_chancy()
    async with chancy:
        await chancy.migrate()
        await chancy.declare(Queue("default", executor=Chancy.Executor.Threaded))
        await chancy.declare(Queue("reports", executor=Chancy.Executor.Threaded))
        try:
            yield chancy
        finally:
            await chancy.migrate(to_version=0)
            chancy.sync_close()  # the backend's reads use the sync pool
            # Views ran in sync_to_async's thread: close its Django connection too, or the
            # test database cannot be dropped.
            await sync_to_async(connections.close_all)()


def _count(prefix: str) -> int:
    with connection.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {prefix}jobs")
        return int(cur.fetchone()[0])


def test_chancy_takes_a_django_databases_entry() -> None:
    chancy = Chancy(settings.DATABASES["default"])
    assert f"dbname={settings.DATABASES['default']['NAME']}" in chancy.dsn
    with pytest.raises(ConfigurationError, match="PostgreSQL"):
        settings.DATABASES["other"] = {"ENGINE": "django.db.backends.sqlite3", "NAME": "x"}
        try:
            get_chancy("other")
        finally:
            del settings.DATABASES["other"]


async def test_a_view_s_job_exists_only_if_its_transaction_commits(
    app: Chancy, django_prefix: str
) -> None:
    """examples/django_app: POST /signup creates a user and pushes a job in one atomic block."""
    from django.contrib.auth.models import User
    from django.test import Client

    def sign_up(username: str, fail: bool) -> Any:
        client = Client(raise_request_exception=False)
        data = {"username": username, **({"fail": "1"} if fail else {})}
        return client.post("/signup", data)

    ok = await sync_to_async(sign_up)("ana", False)
    assert ok.status_code == 200, ok.content
    failed = await sync_to_async(sign_up)("bo", True)
    assert failed.status_code == 500
    names = await sync_to_async(lambda: sorted(User.objects.values_list("username", flat=True)))()
    assert names == ["ana"]  # bo's user was rolled back...
    assert await sync_to_async(_count)(django_prefix) == 1  # ...and so was bo's job
    job = await app.get_job(ok.json()["job_id"])
    assert job is not None and job.kwargs == {"username": "ana"}
    await app.declare(Queue("default", executor=Chancy.Executor.Async), upsert=True)
    done = await run_until_idle(app, queues=["default"])
    assert [j.result for j in done] == ["welcome, ana"]


async def test_the_tasks_backend_runs_tasks_on_a_worker(app: Chancy) -> None:
    result = await sync_to_async(add.enqueue)(2, 3)
    assert result.status == TaskResultStatus.READY and result.backend == "default"
    job = await app.get_job(result.id)
    assert job is not None and job.queue == "reports" and job.priority == 10
    failing = await sync_to_async(explode.enqueue)()
    await run_until_idle(app, queues=["reports"], timeout=30)

    done = await sync_to_async(default_task_backend.get_result)(result.id)
    assert done.status == TaskResultStatus.SUCCESSFUL and done.return_value == 5
    assert done.args == [2, 3] and done.finished_at is not None
    broken = await sync_to_async(default_task_backend.get_result)(failing.id)
    assert broken.status == TaskResultStatus.FAILED
    assert broken.errors[0].exception_class_path == "builtins.ValueError"
    assert "could not be built" in broken.errors[0].traceback
    with pytest.raises(TaskResultDoesNotExist):
        await sync_to_async(default_task_backend.get_result)("not-a-job-id")
    with pytest.raises(InvalidTaskError):
        await sync_to_async(add.using(queue_name="nope").enqueue)(1, 2)


async def test_the_dashboard_logs_in_django_users(app: Chancy) -> None:
    """Default: superusers only, as Chancy 0.26. roles=True: staff act, other users look."""
    httpx = pytest.importorskip("httpx")
    from django.contrib.auth.models import User

    from chancy.contrib.django.auth import DjangoAuthBackend
    from chancy.plugins.api import build_starlette_app

    def make_users() -> None:
        User.objects.create_superuser("root", password="root-password-123")
        User.objects.create_user("ops", password="ops-password-123", is_staff=True)
        User.objects.create_user("viewer", password="viewer-password-123")
        User.objects.create_user("gone", password="gone-password-123", is_active=False)
        User.objects.create_superuser("old", password="old-password-123", is_active=False)

    await sync_to_async(make_users)()
    for backend, expected in [
        (DjangoAuthBackend(), {"root": "act", "ops": None, "viewer": None}),
        (DjangoAuthBackend(roles=True), {"root": "act", "ops": "act", "viewer": "look"}),
        (DjangoAuthBackend(staff_only=True), {"root": "act", "ops": "act", "viewer": None}),
    ]:
        asgi = build_starlette_app(
            app, authentication_backend=backend, secret_key="a-test-secret-key-0123456789"
        )
        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://d.test") as client:

            async def login(user: str, password: str) -> Any:
                body = {"username": user, "password": password}
                return await client.post("/api/v1/login", json=body)

            assert (await login("viewer", "wrong")).status_code == 401
            assert (await login("gone", "gone-password-123")).status_code == 401
            assert (await login("old", "old-password-123")).status_code == 401
            for user, may in expected.items():
                got = await login(user, f"{user}-password-123")
                if may is None:
                    assert got.status_code == 401, (backend.roles, user)
                    continue
                assert got.status_code == 200, (backend.roles, user, got.text)
                headers = {"Authorization": f"Bearer {got.json()['token']}"}
                paused = await client.post("/api/v1/queues/reports/pause", headers=headers)
                assert paused.status_code == (200 if may == "act" else 403), (user, may)
                assert (await client.get("/api/v1/queues", headers=headers)).status_code == 200
        await asgi.state.dashboard.close()  # its own pool, on Django's test database
    await sync_to_async(connections.close_all)()


async def test_the_auth_backend_also_answers_0_26_s_session_calls(transactional_db: None) -> None:
    """0.26's Api called login(request, user, password), authenticate(conn), logout(request)."""
    from django.contrib.auth.models import User
    from starlette.authentication import SimpleUser
    from starlette.requests import Request

    from chancy.contrib.django.auth import DjangoAuthBackend

    def make_users() -> None:
        User.objects.create_superuser("root", password="root-password-123")
        User.objects.create_user("ops", password="ops-password-123", is_staff=True)

    await sync_to_async(make_users)()
    backend = DjangoAuthBackend()
    request = Request({"type": "http", "session": {}, "headers": []})
    assert not await backend.login(request, "ops", "ops-password-123")
    assert await backend.authenticate(request) is None
    assert await backend.login(request, "root", "root-password-123")
    credentials, user = await backend.authenticate(request)
    assert credentials.scopes == ["authenticated"] and isinstance(user, SimpleUser)
    assert user.username == "root"
    await backend.logout(request)
    assert await backend.authenticate(request) is None
    # Without SessionMiddleware (no session in the scope) nothing is kept, nothing breaks.
    bare = Request({"type": "http", "headers": []})
    assert await backend.login(bare, "root", "root-password-123")
    assert await backend.authenticate(bare) is None
    await sync_to_async(connections.close_all)()


async def test_the_admin_lists_jobs_and_retries_and_cancels_them() -> None:
    """The admin pages read chancy's tables (default prefix) through unmanaged models."""
    from django.contrib.auth.models import User
    from django.test import Client

    from chancy.plugins.cron import Cron
    from chancy.plugins.workflow import Workflow, WorkflowPlugin

    chancy = get_chancy(prefix="chancy_", plugins=[Cron(), WorkflowPlugin()])
    async with chancy:
        await chancy.migrate()
        try:
            failed = await chancy.push(Job(func="tests.jobs.noop", queue="default"))
            await chancy.cancel_job(failed)
            waiting = await chancy.push(Job(func="tests.jobs.add", queue="default"))
            await Cron.schedule(
                chancy, "@daily", Job(func="tests.jobs.noop").with_unique_key("daily")
            )
            await WorkflowPlugin.push(chancy, Workflow("etl").add("a", Job(func="tests.jobs.noop")))

            def browse() -> tuple[str, int, int]:
                admin = User.objects.create_superuser("root", password="root-password-123")
                client = Client()
                client.force_login(admin)
                listing = client.get("/admin/chancy/job/").content.decode()
                crons = client.get("/admin/chancy_cron/cron/").content.decode()
                flows = client.get("/admin/chancy_workflow/workflow/").content.decode()
                assert ">daily<" in crons, crons[-2000:]
                assert "etl (pending)" in flows or ">etl<" in flows, flows[-2000:]
                retried = client.post(
                    "/admin/chancy/job/",
                    {"action": "retry_jobs", "_selected_action": [str(failed.identifier)]},
                )
                cancelled = client.post(
                    "/admin/chancy/job/",
                    {"action": "cancel_jobs", "_selected_action": [str(waiting.identifier)]},
                )
                return listing, retried.status_code, cancelled.status_code

            listing, retried, cancelled = await sync_to_async(browse)()
            assert "tests.jobs.noop" in listing and "tests.jobs.add" in listing
            assert (retried, cancelled) == (302, 302)
            assert str((await chancy.get_job(failed)).state) == "retrying"  # type: ignore[union-attr]
            assert str((await chancy.get_job(waiting)).state) == "failed"  # type: ignore[union-attr]
        finally:
            await chancy.migrate(to_version=0)
            chancy.sync_close()
            await sync_to_async(connections.close_all)()
