"""Admin pages over chancy's tables: jobs and queues can be added and edited (as in Chancy
0.26), workers are read-only, and jobs have retry and cancel actions.

The actions go through chancy's own API (fenced, notifying workers), never a raw UPDATE. An
edit writes only the fields the form changed (so it does not overwrite what a worker wrote
meanwhile), is checked with the same rules as ``Chancy.push`` / ``Chancy.declare``, and wakes
the workers in the same transaction: a queue edit is picked up at once, and an added or edited
job is claimed without waiting for the queue's polling interval.

The cron schedules and workflows pages of this app are registered when
``settings.CHANCY_ADMIN_PLUGINS`` names them. By default each is registered unless Chancy
0.26's dedicated app for it (``chancy.plugins.cron.django``, ``chancy.plugins.workflow.django``)
is installed, which has its own pages; set it to ``[]`` when neither plugin is installed.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib import admin, messages
from django.db import transaction

from chancy import events
from chancy.contrib.django import django_cursor, get_chancy
from chancy.contrib.django.models import PREFIX, CronSchedule, Job, Queue, Worker, Workflow


def _chancy() -> Any:
    """The app on the models' tables (their prefix was fixed when Django loaded them)."""
    return get_chancy(prefix=PREFIX)


def _notify(event: str, payload: dict[str, Any]) -> None:
    """NOTIFY through Django's connection, so it is sent only if the admin's save commits."""
    with django_cursor() as cursor:
        _chancy().sync_notify(cursor, event, payload)


class _ChangedFieldsOnly(admin.ModelAdmin):
    """Saves only what the form changed, then tells the workers."""

    def save_model(self, request: Any, obj: Any, form: Any, change: bool) -> None:
        with transaction.atomic():
            if change:
                fields = [f for f in form.changed_data if f in {x.name for x in obj._meta.fields}]
                if fields:
                    obj.save(update_fields=fields)
            else:
                obj.save(force_insert=True)
            self.saved(obj)

    def saved(self, obj: Any) -> None:
        """Called inside the save's transaction."""


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(_ChangedFieldsOnly):
    list_display = (
        "id",
        "queue",
        "func",
        "state",
        "attempts",
        "max_attempts",
        "created_at",
        "completed_at",
    )
    list_filter = ("state", "queue")
    search_fields = ("id", "queue", "func", "unique_key")
    # What only a worker writes stays read-only: editing a claim would defeat its fencing.
    readonly_fields = (
        "id",
        "created_at",
        "started_at",
        "completed_at",
        "taken_by",
        "claim_id",
        "recoveries",
        "result",
        "progress",
    )
    actions = ["retry_jobs", "cancel_jobs"]

    def saved(self, obj: Any) -> None:
        _notify(events.QUEUE_PUSHED, {"q": obj.queue})

    @admin.action(description="Retry the selected finished jobs")
    def retry_jobs(self, request: Any, queryset: Any) -> None:
        result = _chancy().sync_retry_jobs(
            [str(pk) for pk in queryset.values_list("pk", flat=True)]
        )
        self.message_user(request, f"{len(result)} job(s) retried", messages.SUCCESS)

    @admin.action(description="Cancel the selected unfinished jobs")
    def cancel_jobs(self, request: Any, queryset: Any) -> None:
        app = _chancy()
        cancelled = sum(
            1 for pk in queryset.values_list("pk", flat=True) if app.sync_cancel_job(str(pk))
        )
        self.message_user(request, f"{cancelled} job(s) cancelled", messages.SUCCESS)


@admin.register(Queue)
class QueueAdmin(_ChangedFieldsOnly):
    list_display = ("name", "state", "executor", "concurrency", "rate_limit")
    search_fields = ("name",)
    list_filter = ("state",)

    def get_readonly_fields(self, request: Any, obj: Any = None) -> Any:
        # Renaming would make a second queue (the name is the key); declare a new one instead.
        return ("name", "created_at") if obj is not None else ("created_at",)

    def saved(self, obj: Any) -> None:
        _notify(events.QUEUE_DECLARED, {"q": obj.name})


@admin.register(Worker)
class WorkerAdmin(_ReadOnly):
    list_display = ("worker_id", "tags", "queues", "last_seen", "expires_at")
    search_fields = ("worker_id",)


def _pages() -> set[str]:
    configured = getattr(settings, "CHANCY_ADMIN_PLUGINS", None)
    if configured is not None:
        return set(configured)
    pages = set()
    if not apps.is_installed("chancy.plugins.cron.django"):
        pages.add("cron")
    if not apps.is_installed("chancy.plugins.workflow.django"):
        pages.add("workflows")
    return pages


_PLUGINS = _pages()

if "cron" in _PLUGINS:

    @admin.register(CronSchedule)
    class CronScheduleAdmin(_ReadOnly):
        list_display = ("unique_key", "cron", "timezone", "queue", "next_run", "paused_at")


if "workflows" in _PLUGINS:

    @admin.register(Workflow)
    class WorkflowAdmin(_ReadOnly):
        list_display = ("id", "name", "state", "created_at", "updated_at")
        list_filter = ("state",)
