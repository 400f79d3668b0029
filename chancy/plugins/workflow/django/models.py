"""Chancy 0.26's ``Workflow`` and ``WorkflowStep`` models over the workflow plugin's tables.

Unmanaged: chancy creates and migrates ``{CHANCY_PREFIX}workflows`` and
``{CHANCY_PREFIX}workflow_steps``. ``WorkflowStep.state`` is chancy's column (the step's state
as the leader last recorded it).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from chancy.utils import chancy_uuid

__all__ = ("Workflow", "WorkflowStep")

PREFIX = getattr(settings, "CHANCY_PREFIX", "chancy_")

WORKFLOW_STATES = [(s, s) for s in ("pending", "running", "completed", "failed")]


class Workflow(models.Model):
    id = models.UUIDField(primary_key=True, default=chancy_uuid, editable=False)
    name = models.TextField()
    state = models.TextField(default="pending", choices=WORKFLOW_STATES)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        managed = False
        db_table = f"{PREFIX}workflows"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.state})"


class WorkflowStep(models.Model):
    id = models.AutoField(primary_key=True)
    workflow = models.ForeignKey(
        Workflow, on_delete=models.CASCADE, related_name="steps", db_column="workflow_id"
    )
    step_id = models.TextField()
    job_data = models.JSONField()
    dependencies = models.JSONField(default=list, blank=True)
    job_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # chancy's column.
    state = models.TextField(null=True, blank=True)

    class Meta:
        managed = False
        db_table = f"{PREFIX}workflow_steps"
        unique_together = ("workflow", "step_id")
        ordering = ["workflow", "id"]

    def __str__(self) -> str:
        return self.step_id
