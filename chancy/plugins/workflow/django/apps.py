"""The app config of ``chancy.plugins.workflow.django`` (label ``chancy_workflow``, as in 0.26)."""

from __future__ import annotations

from django.apps import AppConfig


class ChancyWorkflowConfig(AppConfig):
    name = "chancy.plugins.workflow.django"
    label = "chancy_workflow"
    verbose_name = "Chancy Workflow"
    default_auto_field = "django.db.models.BigAutoField"
