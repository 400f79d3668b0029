"""Workflows: DAGs of jobs whose steps run once their dependencies succeeded.

::

    wf = Workflow("report").add("fetch", fetch.job).add("render", render.job, ["fetch"])
    workflow_id = await WorkflowPlugin.push(chancy, wf)
    done = await WorkflowPlugin.wait_for_workflow(chancy, workflow_id, timeout=60)

A step reads the results of the steps it depends on from ``QueuedJob.dependencies`` (step id
-> stored return value). See :mod:`chancy.plugins.workflow.plugin` for how the leader advances
workflows.
"""

from chancy.plugins.workflow.plugin import WorkflowPlugin
from chancy.plugins.workflow.workflow import (
    InvalidWorkflowError,
    Sequence,
    Workflow,
    WorkflowStep,
)

__all__ = ["InvalidWorkflowError", "Sequence", "Workflow", "WorkflowPlugin", "WorkflowStep"]
