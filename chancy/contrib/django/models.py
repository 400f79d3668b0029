"""Unmanaged models over chancy's tables (Django never creates or migrates them: chancy does).

The table prefix is ``settings.CHANCY_PREFIX`` (default ``chancy_``) when Django loads them.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

PREFIX = getattr(settings, "CHANCY_PREFIX", "chancy_")


class Job(models.Model):
    id = models.UUIDField(primary_key=True)
    queue = models.TextField()
    func = models.TextField()
    kwargs = models.JSONField(default=dict)
    meta = models.JSONField(default=dict)
    state = models.TextField()
    priority = models.IntegerField()
    attempts = models.IntegerField()
    max_attempts = models.IntegerField()
    recoveries = models.IntegerField()
    taken_by = models.TextField(null=True)
    created_at = models.DateTimeField()
    scheduled_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True)
    completed_at = models.DateTimeField(null=True)
    unique_key = models.TextField(null=True)
    errors = models.JSONField(default=list)
    result = models.JSONField(null=True)

    class Meta:
        managed = False
        db_table = f"{PREFIX}jobs"
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.func} ({self.state})"


class Queue(models.Model):
    name = models.TextField(primary_key=True)
    state = models.TextField()
    concurrency = models.IntegerField(null=True)
    executor = models.TextField()
    polling_interval = models.FloatField()
    rate_limit = models.IntegerField(null=True)
    rate_limit_window = models.IntegerField(null=True)

    class Meta:
        managed = False
        db_table = f"{PREFIX}queues"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Worker(models.Model):
    worker_id = models.TextField(primary_key=True)
    last_seen = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = f"{PREFIX}workers"
        ordering = ["worker_id"]

    def __str__(self) -> str:
        return self.worker_id


class CronSchedule(models.Model):
    """A schedule of the ``Cron`` plugin (its table exists when the plugin is installed)."""

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
    """A workflow of the ``WorkflowPlugin`` (its table exists when the plugin is installed)."""

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
