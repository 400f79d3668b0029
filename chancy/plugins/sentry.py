"""SentryPlugin: report the exceptions of jobs to Sentry.

Each failed run (an exception from the job, including one that leaves attempts for a retry)
is captured with the job's id, function, queue, attempt, state and the worker's id as tags,
so events group by function and can be searched by job. ``Retry`` and ``Snooze`` are flow
control requested by the job and are not reported.

The worker process must initialise the SDK itself (``sentry_sdk.init(dsn=...)``); this plugin
only reports. It needs ``sentry-sdk`` (``pip install 'chancy[sentry]'``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chancy.errors import ConfigurationError, JobControl
from chancy.plugin import Plugin

if TYPE_CHECKING:
    from chancy.job import QueuedJob
    from chancy.worker import Worker


class SentryPlugin(Plugin):
    """Reports job exceptions to Sentry, tagged with the job and the worker."""

    def __init__(self) -> None:
        super().__init__()
        try:
            import sentry_sdk
        except ImportError as exc:
            raise ConfigurationError(
                "SentryPlugin needs the sentry-sdk package, which is not installed: run"
                " `pip install 'chancy[sentry]'` (or `pip install sentry-sdk`) and call"
                " sentry_sdk.init(dsn=...) when the worker process starts"
            ) from exc
        self._sdk = sentry_sdk

    @classmethod
    def get_identifier(cls) -> str:
        return "chancy.sentry_plugin"  # Chancy 0.26's identifier

    async def on_job_completed(
        self, *, worker: Worker, job: QueuedJob, exc: BaseException | None, result: Any
    ) -> QueuedJob:
        if exc is None or isinstance(exc, JobControl):
            return job
        sdk = self._sdk
        with sdk.new_scope() as scope:
            scope.set_tag("chancy.job_id", str(job.id))
            scope.set_tag("chancy.func", job.func)
            scope.set_tag("chancy.queue", job.queue)
            scope.set_tag("chancy.worker_id", worker.worker_id)
            scope.set_tag("chancy.attempt", str(max(0, job.attempts - 1)))
            scope.set_tag("chancy.state", str(job.state))
            scope.set_context(
                "chancy job",
                {
                    "id": str(job.id),
                    "func": job.func,
                    "queue": job.queue,
                    "attempts": job.attempts,
                    "max_attempts": job.max_attempts,
                    "recoveries": job.recoveries,
                    "state": str(job.state),
                },
            )
            scope.fingerprint = ["{{ default }}", job.func]
            sdk.capture_exception(exc)
        return job
