"""Django app for workflows: ``INSTALLED_APPS += ["chancy.plugins.workflow.django"]``.

Chancy 0.26's app, label ``chancy_workflow``: the ``Workflow`` and ``WorkflowStep`` models over
``{CHANCY_PREFIX}workflows`` and ``{CHANCY_PREFIX}workflow_steps``, and their admin pages.
"""
