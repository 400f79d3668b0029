"""The Django tasks backend as Chancy 0.26 projects use it: its BACKEND path and OPTIONS, jobs
in its layout (``task_wrapper.django_task_executor`` with ``_task_path``/``_args``/``_kwargs``/
``_takes_context``), tasks that take a context, async tasks, results and errors. Real
PostgreSQL (pytest-django's test database) and real chancy workers; the django-tasks backport
on Python 3.11 (Django 6's ``django.tasks`` is not run here)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections, transaction
from django.test import override_settings
from django_tasks import TaskResultStatus, default_task_backend, task_backends
from django_tasks.exceptions import InvalidTaskBackendError

from chancy import Chancy, Job, Queue
from chancy.contrib.django import get_chancy
from chancy.contrib.django.backend import ChancyBackend, exception_class_path
from chancy.contrib.django.tasks import ChancyTaskBackend
from chancy.errors import ConfigurationError
from chancy.testing import run_until_idle
from tests.django import tasks026
from tests.django.tasks026 import (
    add_later,
    count_users,
    describe,
    describe_later,
    echo,
    multiply,
    uses_the_orm,
)

pytestmark = pytest.mark.django_db(transaction=True)

EXECUTOR = "chancy.contrib.django.task_wrapper.django_task_executor"
ASYNC_EXECUTOR = "chancy.contrib.django.task_wrapper.async_django_task_executor"


def _tasks(**options: Any) -> dict[str, Any]:
    """TASKS as a 0.26 project writes it."""
    return {
        "default": {
            "BACKEND": "chancy.contrib.django.backend.ChancyBackend",
            "QUEUES": ["default", "reports"],
            "OPTIONS": options,
        }
    }


@pytest.fixture
async def app(transactional_db: None, django_prefix: str) -> AsyncIterator[Chancy]:
    chancy = get_chancy()
    async with chancy:
        await chancy.migrate()
        await chancy.declare(Queue("default", executor=Chancy.Executor.Threaded))
        await chancy.declare(Queue("reports", executor=Chancy.Executor.Threaded))
        try:
            yield chancy
        finally:
            await chancy.migrate(to_version=0)
            chancy.sync_close()
            await sync_to_async(connections.close_all)()


@pytest.fixture
def tasks_026(django_prefix: str) -> Iterator[ChancyBackend]:
    """TASKS with 0.26's BACKEND path and OPTIONS. CHANCY_PREFIX names another prefix, so
    only the ``prefix`` option leads to the test's tables."""
    setting = _tasks(dsn=None, prefix=django_prefix, queue="reports")
    with override_settings(TASKS=setting, CHANCY_PREFIX="chancy_not_this_one_"):
        backend = task_backends["default"]
        yield backend
        backend.close()


async def _result(result_id: str) -> Any:
    return await sync_to_async(default_task_backend.get_result)(result_id)


async def test_0_26_s_backend_path_and_options_run_tasks_on_a_worker(
    app: Chancy, tasks_026: ChancyBackend
) -> None:
    assert type(tasks_026) is ChancyBackend and ChancyTaskBackend is ChancyBackend
    product = await sync_to_async(multiply.enqueue)(6, 7)
    echoed = await sync_to_async(echo.using(priority=-5).enqueue)({"to": "ana"})
    assert product.status == TaskResultStatus.READY and product.backend == "default"

    job = await app.get_job(product.id)
    assert job is not None and job.func == EXECUTOR and job.queue == "reports"
    # Exactly 0.26's layout, which a 0.26 worker runs during a rolling deploy.
    assert job.kwargs == {
        "_task_path": "tests.django.tasks026.multiply",
        "_args": [6, 7],
        "_kwargs": {},
        "_takes_context": False,
    }
    # Django's default queue name goes to the `queue` option's chancy queue.
    moved = await app.get_job(echoed.id)
    assert moved is not None and moved.queue == "reports" and moved.priority == -5

    await run_until_idle(app, queues=["reports"])
    done = await _result(product.id)
    assert done.status == TaskResultStatus.SUCCESSFUL and done.return_value == 42
    assert done.args == [6, 7] and done.attempts == 1 and done.finished_at is not None
    assert (await _result(echoed.id)).return_value == {"to": "ana"}
    # refresh() (Django's API on a result) reads the job again.
    await sync_to_async(product.refresh)()
    assert product.status == TaskResultStatus.SUCCESSFUL and product.return_value == 42
    assert product.attempts == 1


async def test_jobs_a_0_26_app_queued_run_and_their_results_read(app: Chancy) -> None:
    """Pushed with chancy's Job API exactly as 0.26's backend stored them."""

    def job_026(func: str, path: str, args: list[Any], kwargs: dict[str, Any], **more: Any) -> Job:
        return Job(
            func=func,
            queue="reports",
            kwargs={"_task_path": path, "_args": args, "_kwargs": kwargs, "_takes_context": False}
            | more.pop("layout", {}),
            **more,
        )

    plain = await app.push(job_026(EXECUTOR, "tests.django.tasks026.multiply", [6], {"b": 7}))
    later = await app.push(
        job_026(ASYNC_EXECUTOR, "tests.django.tasks026.add_later", [], {"a": 1, "b": 2})
    )
    # A takes_context task on a job allowed two attempts: the first fails.
    flaky = await app.push(
        job_026(
            EXECUTOR,
            "tests.django.tasks026.flaky",
            ["nightly"],
            {},
            layout={"_takes_context": True},
            max_attempts=2,
        )
    )
    # chancy's own earlier layout (func chancy.contrib.django.tasks.run_task) still runs.
    legacy = await app.push(
        Job(
            func="chancy.contrib.django.tasks.run_task",
            queue="reports",
            kwargs={"task": "tests.django.tasks026.multiply", "args": [2, 5], "kwargs": {}},
        )
    )
    done = await run_until_idle(app, queues=["reports"])
    assert {str(j.id): str(j.state) for j in done} == {
        str(r): "succeeded" for r in (plain, later, flaky, legacy)
    }

    assert (await _result(str(plain))).return_value == 42
    assert (await _result(str(later))).return_value == 3
    assert (await _result(str(legacy))).return_value == 10
    result = await _result(str(flaky))
    assert result.status == TaskResultStatus.SUCCESSFUL and result.attempts == 2
    # The second attempt saw attempt 2, its own job, and the first attempt's error.
    assert result.return_value == {
        "attempt": 2,
        "id": str(flaky),
        "status": "RUNNING",
        "args": ["nightly"],
        "kwargs": {},
        "task": "tests.django.tasks026.flaky",
        "errors": ["tests.django.tasks026.ReportError"],
    }
    [error] = result.errors
    # The class of a chained exception whose message has two lines, not a guess from the
    # traceback's last line.
    assert error.exception_class_path == "tests.django.tasks026.ReportError"
    assert error.exception_class is tasks026.ReportError
    assert "second line" in error.traceback


async def test_a_job_a_0_26_worker_finished_reads_its_return_value(
    transactional_db: None,
) -> None:
    """0.26's worker kept the return value in meta["_django_return_value"] (0.26 had no
    result column); the row is made through the models as 0.26 would have left it."""
    from django.utils import timezone

    from chancy.contrib.django.models import Job as JobModel

    chancy = get_chancy(prefix="chancy_")
    async with chancy:
        await chancy.migrate()
        try:

            def finished_by_026() -> Any:
                now = timezone.now()
                return JobModel.objects.create(
                    func=EXECUTOR,
                    queue="reports",
                    kwargs={
                        "_task_path": "tests.django.tasks026.multiply",
                        "_args": [3, 4],
                        "_kwargs": {},
                        "_takes_context": False,
                    },
                    meta={"_django_return_value": 12},
                    state="succeeded",
                    attempts=1,
                    started_at=now,
                    completed_at=now,
                )

            row = await sync_to_async(finished_by_026)()
            with override_settings(TASKS=_tasks(prefix="chancy_")):
                backend = task_backends["default"]
                result = await sync_to_async(backend.get_result)(str(row.id))
                backend.close()
            assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 12
            assert result.args == [3, 4]
        finally:
            await chancy.migrate(to_version=0)
            chancy.sync_close()
            await sync_to_async(connections.close_all)()


async def test_tasks_that_take_a_context_get_their_running_job(app: Chancy) -> None:
    result = await sync_to_async(describe.enqueue)("ab", times=2)
    job = await app.get_job(result.id)
    assert job is not None and job.kwargs["_takes_context"] is True
    await run_until_idle(app, queues=["reports"])
    done = await _result(result.id)
    assert done.return_value == {
        "attempt": 1,
        "id": result.id,
        "status": "RUNNING",
        "args": ["ab"],
        "kwargs": {"times": 2},
        "task": "tests.django.tasks026.describe",
        "errors": [],
        "label": "abab",
    }


@pytest.mark.parametrize("executor", [Chancy.Executor.Async, Chancy.Executor.Threaded])
async def test_async_tasks_run(app: Chancy, executor: Chancy.Executor) -> None:
    await app.declare(Queue("reports", executor=executor), upsert=True)
    summed = await sync_to_async(add_later.enqueue)(2, 3)
    described = await sync_to_async(describe_later.enqueue)("x")
    counted = await sync_to_async(count_users.enqueue)()
    job = await app.get_job(summed.id)
    assert job is not None and job.func == ASYNC_EXECUTOR

    def make_users() -> None:
        from django.contrib.auth.models import User

        User.objects.create_user("ana")
        User.objects.create_user("bo")

    await sync_to_async(make_users)()
    await run_until_idle(app, queues=["reports"])
    assert (await _result(summed.id)).return_value == 5
    seen = (await _result(described.id)).return_value
    assert seen["attempt"] == 1 and seen["id"] == described.id and seen["label"] == "x"
    assert (await _result(counted.id)).return_value == 2


async def test_a_worker_thread_does_not_keep_django_s_connection_between_tasks(
    app: Chancy,
) -> None:
    """As around a request (CONN_MAX_AGE=0 here): the connection a task opened is closed
    when it ends, so the next task on the same thread starts without one."""
    await app.declare(
        Queue("reports", executor=Chancy.Executor.Threaded, concurrency=1), upsert=True
    )
    first = await sync_to_async(uses_the_orm.enqueue)()
    second = await sync_to_async(uses_the_orm.enqueue)()
    await run_until_idle(app, queues=["reports"])
    assert (await _result(first.id)).return_value is False
    assert (await _result(second.id)).return_value is False


async def test_enqueue_inside_a_transaction_exists_only_if_it_commits(
    app: Chancy, django_prefix: str
) -> None:
    def enqueue(commit: bool) -> Any:
        try:
            with transaction.atomic():
                result = multiply.enqueue(1, 2)
                # Returned inside the block, before any other connection can see the job.
                assert result is not None and result.status == TaskResultStatus.READY
                if not commit:
                    raise RuntimeError("roll back")
        except RuntimeError:
            pass
        return result

    kept = await sync_to_async(enqueue)(True)
    dropped = await sync_to_async(enqueue)(False)
    assert await app.get_job(kept.id) is not None
    assert await app.get_job(dropped.id) is None


async def test_the_dsn_option_uses_chancy_s_own_connection(app: Chancy, django_prefix: str) -> None:
    """With a dsn, enqueueing is not part of Django's transaction (another database may be
    meant): a rolled-back block keeps the job."""
    with override_settings(TASKS=_tasks(dsn=app.dsn, prefix=django_prefix)):
        backend = task_backends["default"]

        def enqueue_and_roll_back() -> Any:
            try:
                with transaction.atomic():
                    result = multiply.enqueue(3, 3)
                    raise RuntimeError("roll back")
            except RuntimeError:
                return result

        try:
            result = await sync_to_async(enqueue_and_roll_back)()
            assert await app.get_job(result.id) is not None
            await run_until_idle(app, queues=["reports"])
            assert (await sync_to_async(backend.get_result)(result.id)).return_value == 9
        finally:
            backend.close()


def test_bad_options_are_refused_clearly(transactional_db: None) -> None:
    with override_settings(TASKS=_tasks(dsn="postgresql:///x", database="default")):
        with pytest.raises(ConfigurationError, match="both 'dsn' and 'database'"):
            task_backends["default"]
    with override_settings(TASKS=_tasks(dsm="postgresql:///x")):
        with pytest.raises(ConfigurationError, match=r"unknown option\(s\) \['dsm'\]"):
            task_backends["default"]
    with override_settings(TASKS=_tasks(queue="")):
        with pytest.raises(ConfigurationError, match=r"'queue'.* must be a chancy queue name"):
            task_backends["default"]
    with override_settings(TASKS=_tasks(max_connection_pool_size=2)):
        backend = task_backends["default"]
        assert backend.chancy.max_connection_pool_size == 2
    bad = {"default": {"BACKEND": "chancy.contrib.django.nope.ChancyBackend"}}
    with override_settings(TASKS=bad), pytest.raises(InvalidTaskBackendError):
        task_backends["default"]


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("", "builtins.Exception"),
        (
            'Traceback (most recent call last):\n  File "x.py", line 1, in f\n    g()\n'
            "ValueError: bad\nmore of the message\n",
            "builtins.ValueError",
        ),
        (
            'Traceback (most recent call last):\n  File "x.py", line 1, in f\n    g()\n'
            "KeyError: 'a'\n\nThe above exception was the direct cause of the following"
            ' exception:\n\nTraceback (most recent call last):\n  File "y.py", line 2, in h\n'
            "    raise E\n    ^^^^^^^\napp.errors.E: one\ntwo: three\n",
            "app.errors.E",
        ),
        ("app.errors.E\n", "app.errors.E"),
    ],
)
def test_exception_class_path(text: str, path: str) -> None:
    assert exception_class_path(text) == path
