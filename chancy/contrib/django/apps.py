"""``INSTALLED_APPS = [..., "chancy.contrib.django"]`` for the admin pages over chancy's tables."""

from __future__ import annotations

from django.apps import AppConfig


class ChancyConfig(AppConfig):
    name = "chancy.contrib.django"
    label = "chancy"
    verbose_name = "chancy"
    default_auto_field = "django.db.models.BigAutoField"
