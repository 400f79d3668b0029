"""Admin page for cron schedules (Chancy 0.26's, plus pause state and checked edits).

Adding or editing a schedule checks it (``Cron.full_clean``); changing its expression or time
zone moves ``next_run`` to the new expression's next fire time unless ``next_run`` is edited
too, and the leader is told at once (``cron.scheduled``).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import transaction

from chancy.plugins.cron.django.models import PREFIX, Cron


@admin.register(Cron)
class CronAdmin(admin.ModelAdmin):
    list_display = ("unique_key", "cron", "timezone", "last_run", "next_run", "paused_at")
    search_fields = ("unique_key", "cron")
    readonly_fields = ("queue",)

    def get_readonly_fields(self, request: Any, obj: Any = None) -> Any:
        # The unique key is the row's key: changing it would make a second schedule.
        return ("unique_key", "queue") if obj is not None else ("queue",)

    def save_model(self, request: Any, obj: Any, form: Any, change: bool) -> None:
        from chancy.contrib.django import django_cursor, get_chancy
        from chancy.plugins.cron import SCHEDULED

        with transaction.atomic():
            if change:
                fields = set(form.changed_data)
                if fields & {"cron", "timezone"} and "next_run" not in fields:
                    obj.next_run = None  # recomputed by save()
                obj.save(update_fields=sorted(fields & {f.name for f in obj._meta.fields}))
            else:
                obj.save(force_insert=True)
            with django_cursor() as cursor:
                get_chancy(prefix=PREFIX).sync_notify(cursor, SCHEDULED, {})
