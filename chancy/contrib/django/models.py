"""Unmanaged models over chancy's tables (Django never creates or migrates them: chancy does).

The fields, their names, types and defaults are Chancy 0.26's, so code written against its
models keeps working (``Job.objects.create(func=..., queue=...)`` makes a job a worker runs),
plus the columns chancy added (``result``, ``recoveries``, ``partition_key``, ``progress``,
the queue limits, the worker's host details). The table prefix is ``settings.CHANCY_PREFIX``
(default ``chancy_``) when Django loads them; the tables are assumed to be in the ``default``
database.

Rows written through these models skip chancy's API, so they do not wake workers by
themselves: a worker finds a job created here at its queue's ``polling_interval`` (the admin
pages notify workers at once). ``full_clean()`` (which the admin runs) checks a job or queue
with the same rules as ``Chancy.push`` and ``Chancy.declare``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from chancy.utils import chancy_uuid

__all__ = ("CronSchedule", "Job", "Queue", "Worker", "Workflow")

PREFIX = getattr(settings, "CHANCY_PREFIX", "chancy_")

PROCESS_EXECUTOR = "chancy.executors.process.ProcessExecutor"

JOB_STATES = [(state, state) for state in ("pending", "running", "retrying", "succeeded", "failed")]
QUEUE_STATES = [("active", "active"), ("paused", "paused")]


def all_worker_tags() -> list[str]:
    """A new queue runs on every worker (the regex ``.*``), as ``Queue(name)`` does."""
    return [".*"]


class Job(models.Model):
    # Made in Python, as 0.26 did, and time-ordered like every chancy id (the claim orders
    # waiting jobs of one priority by id, so an ORM-made job waits its turn).
    id = models.UUIDField(primary_key=True, default=chancy_uuid, editable=False)
    queue = models.TextField()
    func = models.TextField()
    kwargs = models.JSONField(default=dict, blank=True)
    limits = models.JSONField(default=list, blank=True)
    meta = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=25, default="pending", choices=JOB_STATES)
    priority = models.IntegerField(default=0)
    attempts = models.IntegerField(default=0)
    max_attempts = models.IntegerField(default=1)
    taken_by = models.TextField(null=True, blank=True)
    claim_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # 0.26 used auto_now_add, which overwrote a given time; a default lets a job be scheduled.
    scheduled_at = models.DateTimeField(default=timezone.now)
    unique_key = models.TextField(null=True, blank=True)
    errors = models.JSONField(default=list, blank=True)
    # chancy's columns.
    recoveries = models.IntegerField(default=0)
    result = models.JSONField(null=True, blank=True)
    partition_key = models.TextField(null=True, blank=True)
    progress = models.JSONField(null=True, blank=True)
    deadline = models.DateTimeField(null=True, blank=True)

    class Meta:
        managed = False
        db_table = f"{PREFIX}jobs"
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.func} ({self.state})"

    def clean(self) -> None:
        """Check the job as ``Chancy.push`` would (function path, queue name, ranges, limits)."""
        from chancy.job import Job as ChancyJob
        from chancy.job import Limit

        try:
            ChancyJob(
                func=self.func,
                queue=self.queue,
                kwargs=self.kwargs,
                priority=self.priority,
                max_attempts=self.max_attempts,
                scheduled_at=self.scheduled_at,
                limits=[Limit.deserialize(x) for x in (self.limits or [])],
                unique_key=self.unique_key or None,
                meta=self.meta,
                partition_key=self.partition_key or None,
                deadline=self.deadline,
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise ValidationError(str(exc)) from None
        if not isinstance(self.errors, list):
            raise ValidationError("errors must be a list of {attempt, traceback} objects")


class Queue(models.Model):
    name = models.TextField(primary_key=True)
    state = models.TextField(default="active", choices=QUEUE_STATES)
    concurrency = models.IntegerField(null=True, blank=True)
    tags = ArrayField(models.TextField(), default=all_worker_tags, blank=True)
    executor = models.TextField(default=PROCESS_EXECUTOR)
    executor_options = models.JSONField(default=dict, blank=True)
    # A float (0.26: integer): chancy stores fractional polling intervals.
    polling_interval = models.FloatField(default=5)
    rate_limit = models.IntegerField(null=True, blank=True)
    rate_limit_window = models.IntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # chancy's columns.
    resume_at = models.DateTimeField(null=True, blank=True)
    eager_polling = models.BooleanField(default=False)
    global_concurrency = models.IntegerField(null=True, blank=True)
    partition_concurrency = models.IntegerField(null=True, blank=True)
    partition_rate_limit = models.IntegerField(null=True, blank=True)
    partition_rate_limit_window = models.IntegerField(null=True, blank=True)
    default_deadline = models.FloatField(null=True, blank=True)

    class Meta:
        managed = False
        db_table = f"{PREFIX}queues"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def as_chancy_queue(self) -> Any:
        """The row as a :class:`chancy.Queue` (raises ConfigurationError when invalid)."""
        from chancy.queue import Queue as ChancyQueue

        polling: float | int = self.polling_interval
        if isinstance(polling, float) and polling.is_integer():
            polling = int(polling)
        return ChancyQueue(
            self.name,
            concurrency=self.concurrency,
            tags=set(self.tags or [".*"]),
            state=self.state,
            executor=self.executor,
            executor_options=self.executor_options or {},
            polling_interval=polling,
            rate_limit=self.rate_limit,
            rate_limit_window=self.rate_limit_window,
            resume_at=self.resume_at,
            eager_polling=self.eager_polling,
            global_concurrency=self.global_concurrency,
            partition_concurrency=self.partition_concurrency,
            partition_rate_limit=self.partition_rate_limit,
            partition_rate_limit_window=self.partition_rate_limit_window,
            default_deadline=self.default_deadline,
        )

    def clean(self) -> None:
        """Check the queue as ``Chancy.declare`` would."""
        try:
            self.as_chancy_queue()
        except (ValueError, TypeError) as exc:
            raise ValidationError(str(exc)) from None


class Worker(models.Model):
    worker_id = models.TextField(primary_key=True)
    tags = ArrayField(models.TextField(), default=list, blank=True)
    queues = ArrayField(models.TextField(), default=list, blank=True)
    last_seen = models.DateTimeField(auto_now=True)
    expires_at = models.DateTimeField()
    # chancy's columns.
    started_at = models.DateTimeField(default=timezone.now)
    hostname = models.TextField(null=True, blank=True)
    pid = models.IntegerField(null=True, blank=True)
    version = models.TextField(null=True, blank=True)

    class Meta:
        managed = False
        db_table = f"{PREFIX}workers"
        ordering = ["worker_id"]

    def __str__(self) -> str:
        return self.worker_id


class CronSchedule(models.Model):
    """A schedule of the ``Cron`` plugin (its table exists when the plugin is installed).

    Kept for chancy's own admin page; the ``chancy.plugins.cron.django`` app has 0.26's
    ``Cron`` model over the same table.
    """

    unique_key = models.TextField(primary_key=True)
    queue = models.TextField()
    job = models.JSONField()
    cron = models.TextField()
    timezone = models.TextField()
    last_run = models.DateTimeField(null=True)
    next_run = models.DateTimeField()
    paused_at = models.DateTimeField(null=True)

    class Meta:
        managed = False
        db_table = f"{PREFIX}cron"
        ordering = ["unique_key"]

    def __str__(self) -> str:
        return self.unique_key


class Workflow(models.Model):
    """A workflow of the ``WorkflowPlugin`` (its table exists when the plugin is installed).

    Kept for chancy's own admin page; the ``chancy.plugins.workflow.django`` app has 0.26's
    ``Workflow`` and ``WorkflowStep`` models over the same tables.
    """

    id = models.UUIDField(primary_key=True)
    name = models.TextField()
    state = models.TextField()
    created_at = models.DateTimeField(null=True)
    updated_at = models.DateTimeField(null=True)

    class Meta:
        managed = False
        db_table = f"{PREFIX}workflows"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.state})"
