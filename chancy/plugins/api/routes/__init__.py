"""The dashboard's core routes, one module per resource.

Each module holds a class built with the :class:`~chancy.plugins.api.dashboard.Dashboard`
whose ``routes()`` returns its Starlette routes, wrapped by the dashboard's route wrapper.
Plugins add theirs through :class:`~chancy.plugins.api.ApiPlugin` instead.
"""

from chancy.plugins.api.routes.jobs import JobRoutes
from chancy.plugins.api.routes.queues import QueueRoutes
from chancy.plugins.api.routes.system import SystemRoutes
from chancy.plugins.api.routes.ui import UiRoutes
from chancy.plugins.api.routes.workers import WorkerRoutes

__all__ = ["CORE_ROUTES", "JobRoutes", "QueueRoutes", "SystemRoutes", "UiRoutes", "WorkerRoutes"]

#: The core route modules built with the dashboard, in the order their routes are tried
#: (the UI's files, which need no dashboard, are served by ``UiRoutes``).
CORE_ROUTES = (SystemRoutes, QueueRoutes, WorkerRoutes, JobRoutes)
