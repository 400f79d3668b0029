"""Event names, in one place: hub events inside a worker, and NOTIFY events between workers.

Events that cross workers travel as NOTIFY payloads ``{"t": name, ...}`` on
``{prefix}events`` (the SQL that sends them spells the same names) and are emitted on every
worker's hub when they arrive; the others are emitted on one worker's hub only.
"""

from __future__ import annotations

from typing import Final

# -- between workers (NOTIFY) ---------------------------------------------------------------
QUEUE_PUSHED: Final = "queue.pushed"
QUEUE_DECLARED: Final = "queue.declared"
QUEUE_PAUSED: Final = "queue.paused"
QUEUE_RESUMED: Final = "queue.resumed"
JOB_FINISHED: Final = "job.finished"
JOB_CANCELLED: Final = "job.cancelled"
LEADERSHIP_RESIGNED: Final = "leadership.resigned"
LEADERSHIP_RENEWED: Final = "leadership.renewed"
WORKFLOW_CREATED: Final = "workflow.created"
WORKFLOW_UPDATED: Final = "workflow.updated"
WORKFLOW_FINISHED: Final = "workflow.finished"
WORKFLOW_STEP_COMPLETED: Final = "workflow.step_completed"
CRON_SCHEDULED: Final = "cron.scheduled"
BATCH_CREATED: Final = "batch.created"
BATCH_FINISHED: Final = "batch.finished"
PRUNER_REMOVED: Final = "pruner.removed"
RECOVERY_RECOVERED: Final = "recovery.recovered"
WORKER_ANNOUNCED: Final = "worker.announced"

# -- inside one worker (hub) ----------------------------------------------------------------
WORKER_STARTED: Final = "worker.started"
WORKER_STOPPED: Final = "worker.stopped"
WORKER_SHUTDOWN_TIMEOUT: Final = "worker.shutdown_timeout"
WORKER_QUEUE_STARTED: Final = "worker.queue.started"
WORKER_QUEUE_UPDATED: Final = "worker.queue.updated"
WORKER_QUEUE_REMOVED: Final = "worker.queue.removed"
WORKER_QUEUE_FULL: Final = "worker.queue.full"
WORKER_JOB_DONE: Final = "worker.job.done"
#: A claim failed jobs whose deadline had passed; body ``{"queue", "jobs": [(id, func)]}``.
JOBS_EXPIRED: Final = "jobs.expired"
WORKER_HEARTBEAT_LOST: Final = "worker.heartbeat.lost"
WORKER_HEARTBEAT_RESTORED: Final = "worker.heartbeat.restored"
LEADERSHIP_GAINED: Final = "leadership.gained"
LEADERSHIP_LOST: Final = "leadership.lost"
METRICS_COUNTER: Final = "metrics.counter"
METRICS_GAUGE: Final = "metrics.gauge"
METRICS_HISTOGRAM: Final = "metrics.histogram"
#: The worker's LISTEN connection (re)connected, or went down: notifications may be missed.
NOTIFIER_CONNECTED: Final = "notifier.connected"
NOTIFIER_DISCONNECTED: Final = "notifier.disconnected"
