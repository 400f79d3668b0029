"""Admin pages over chancy's tables: read-only lists, plus retry and cancel for jobs.

Actions go through chancy's own API (fenced, notifying workers), never a raw UPDATE. The cron
and workflow pages are registered when ``settings.CHANCY_ADMIN_PLUGINS`` names them (default
both: set it to ``[]`` or ``["workflows"]`` when the Cron plugin is not installed).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages

from chancy.contrib.django import get_chancy
from chancy.contrib.django.models import CronSchedule, Job, Queue, Worker, Workflow


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(_ReadOnly):
    list_display = ("id", "func", "queue", "state", "attempts", "created_at", "completed_at")
    list_filter = ("state", "queue")
    search_fields = ("func", "unique_key")
    actions = ["retry_jobs", "cancel_jobs"]

    @admin.action(description="Retry the selected finished jobs")
    def retry_jobs(self, request: Any, queryset: Any) -> None:
        result = get_chancy().sync_retry_jobs(
            [str(pk) for pk in queryset.values_list("pk", flat=True)]
        )
        self.message_user(request, f"{len(result)} job(s) retried", messages.SUCCESS)

    @admin.action(description="Cancel the selected unfinished jobs")
    def cancel_jobs(self, request: Any, queryset: Any) -> None:
        app = get_chancy()
        cancelled = sum(
            1 for pk in queryset.values_list("pk", flat=True) if app.sync_cancel_job(str(pk))
        )
        self.message_user(request, f"{cancelled} job(s) cancelled", messages.SUCCESS)


@admin.register(Queue)
class QueueAdmin(_ReadOnly):
    list_display = ("name", "state", "executor", "concurrency", "rate_limit")


@admin.register(Worker)
class WorkerAdmin(_ReadOnly):
    list_display = ("worker_id", "last_seen", "expires_at")


_PLUGINS = set(getattr(settings, "CHANCY_ADMIN_PLUGINS", ("cron", "workflows")))

if "cron" in _PLUGINS:

    @admin.register(CronSchedule)
    class CronScheduleAdmin(_ReadOnly):
        list_display = ("unique_key", "cron", "timezone", "queue", "next_run", "paused_at")


if "workflows" in _PLUGINS:

    @admin.register(Workflow)
    class WorkflowAdmin(_ReadOnly):
        list_display = ("id", "name", "state", "created_at", "updated_at")
        list_filter = ("state",)
