"""The app config of ``chancy.plugins.cron.django`` (label ``chancy_cron``, as in 0.26)."""

from __future__ import annotations

from django.apps import AppConfig


class ChancyCronConfig(AppConfig):
    name = "chancy.plugins.cron.django"
    label = "chancy_cron"
    verbose_name = "Chancy Cron"
    default_auto_field = "django.db.models.BigAutoField"
