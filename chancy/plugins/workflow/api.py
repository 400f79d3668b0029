"""The WorkflowPlugin's dashboard extension: workflows with their progress, one workflow's
steps (the UI draws them as a graph).

Served only while the WorkflowPlugin is installed (``WorkflowPlugin.api_plugin()`` names it)::

    GET /api/v1/workflows?state=&name=&limit=&offset=   {"workflows": [...]}
    GET /api/v1/workflows/{id}                          {"workflow": {..., "steps": [...]}}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chancy.plugins.api.api_plugin import ApiPlugin, RouteT
from chancy.plugins.api.http import ApiError, parse_int, parse_uuid
from chancy.plugins.workflow.plugin import WorkflowPlugin
from chancy.plugins.workflow.workflow import Workflow

if TYPE_CHECKING:
    from starlette.requests import Request

    from chancy.app import Chancy

__all__ = ["WorkflowApiPlugin"]

_STATES = tuple(s.value for s in Workflow.State)


def workflow_view(wf: Workflow, *, steps: bool) -> dict[str, Any]:
    """A workflow as the API shows it: its counts of steps per state, and its steps."""
    data: dict[str, Any] = {
        "id": str(wf.id),
        "name": wf.name,
        "state": str(wf.state),
        "created_at": wf.created_at,
        "updated_at": wf.updated_at,
    }
    counts: dict[str, int] = {}
    step_list = []
    for step_id, step in wf.steps.items():
        state = str(step.state) if step.state is not None else "waiting"
        counts[state] = counts.get(state, 0) + 1
        if steps:
            step_list.append(
                {
                    "step_id": step_id,
                    "func": step.job.func,
                    "queue": step.job.queue,
                    "dependencies": list(step.dependencies),
                    "job_id": str(step.job_id) if step.job_id else None,
                    "state": state,
                }
            )
    data["step_counts"] = counts
    data["step_total"] = len(wf.steps)
    if steps:
        data["steps"] = step_list
    return data


class WorkflowApiPlugin(ApiPlugin):
    """Routes for workflows (Chancy 0.26's name for this extension)."""

    def name(self) -> str:
        return "workflow"

    def routes(self) -> list[RouteT]:
        return [
            {
                "path": "/api/v1/workflows",
                "endpoint": self.workflows,
                "methods": ["GET"],
                "name": "get_workflows",
            },
            {
                "path": "/api/v1/workflows/{id}",
                "endpoint": self.workflow,
                "methods": ["GET"],
                "name": "get_workflow",
            },
        ]

    async def workflows(self, request: Request, *, chancy: Chancy, worker: Any) -> Any:
        params = dict(request.query_params)
        page = self.api.max_page_size
        limit = parse_int(params.pop("limit", None), "limit", 50, 1, page)
        offset = parse_int(params.pop("offset", None), "offset", 0, 0, 1_000_000)
        states = [s for s in params.pop("state", "").split(",") if s]
        if any(s not in _STATES for s in states):
            raise ApiError(400, f"unknown workflow state; valid: {', '.join(_STATES)}")
        name = params.pop("name", None) or None
        if params:
            raise ApiError(400, f"unknown parameters {sorted(params)[:10]}")
        found = await WorkflowPlugin.fetch_workflows(
            chancy, states=states or None, name=name, limit=limit, offset=offset
        )
        return {"workflows": [workflow_view(wf, steps=False) for wf in found]}

    @staticmethod
    async def workflow(request: Request, *, chancy: Chancy, worker: Any) -> Any:
        workflow_id = str(parse_uuid(request.path_params["id"], "workflow id"))
        wf = await WorkflowPlugin.fetch_workflow(chancy, workflow_id)
        if wf is None:
            raise ApiError(404, f"no workflow {workflow_id}")
        return {"workflow": workflow_view(wf, steps=True)}
