"""OpenTelemetry tracing: push, claim and run spans, linked across processes (extra ``otel``).

::

    from chancy.plugins.opentelemetry import OpenTelemetry

    chancy = Chancy(dsn, plugins=[OpenTelemetry()])   # in the pusher and in the workers

- **push**: every push (any form) is one ``chancy.push <queue>`` span (kind PRODUCER) in the
  pusher's current trace; its W3C trace context is stored in each job's ``meta["otel"]``
  (``traceparent`` and ``tracestate``), so the job carries it to whichever worker runs it.
- **claim**: when a worker starts a job, a ``chancy.claim <queue>`` span (CONSUMER) covers the
  time from the claim (the job's ``started_at``, database time) to the start, as a child of
  the push.
- **run**: ``chancy.run <func>`` (CONSUMER) covers the run, as a child of the push, with the
  outcome (``chancy.job.state``) and, when the job raised, the exception and an ERROR status.

Attributes: ``messaging.system`` = ``chancy``, ``messaging.destination.name`` (the queue),
``chancy.job.id``, ``chancy.job.func``, ``chancy.job.attempt``, ``chancy.batch.size`` (push).
OpenTelemetry is imported only when the plugin is made; chancy itself does not need it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from chancy.errors import ConfigurationError
from chancy.job import Job, QueuedJob
from chancy.plugin import Plugin, PluginScope

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.worker import Worker

__all__ = ["META_KEY", "OpenTelemetry"]

#: The key of ``Job.meta`` that carries the trace context.
META_KEY = "otel"


class OpenTelemetry(Plugin):
    """Trace pushes, claims and runs with OpenTelemetry.

    :param tracer_provider: the provider to get the tracer from (default: the global one set
        with ``opentelemetry.trace.set_tracer_provider``).
    """

    def __init__(self, tracer_provider: Any = None) -> None:
        super().__init__()
        try:
            from opentelemetry import propagate, trace
        except ImportError as exc:  # pragma: no cover - the extra is installed in tests
            raise ConfigurationError(
                "the OpenTelemetry plugin needs the otel extra: pip install 'chancy[otel]'"
            ) from exc
        self._trace = trace
        self._propagate = propagate
        provider = tracer_provider or trace.get_tracer_provider()
        self.tracer = provider.get_tracer("chancy")
        self._running: dict[Any, Any] = {}

    @classmethod
    def get_identifier(cls) -> str:
        return "chancy.opentelemetry"

    @classmethod
    def get_scope(cls) -> PluginScope:
        return PluginScope.WORKER

    # -- push --------------------------------------------------------------------------

    def on_push(self, jobs: list[Job], *, chancy: Chancy) -> list[Job]:
        if not jobs:
            return jobs
        queues = sorted({j.queue for j in jobs})
        attributes: dict[str, Any] = {
            "messaging.system": "chancy",
            "messaging.operation.type": "send",
            "messaging.destination.name": ",".join(queues),
            "chancy.batch.size": len(jobs),
        }
        if len(jobs) == 1:
            attributes["chancy.job.func"] = jobs[0].func
        with self.tracer.start_as_current_span(
            f"chancy.push {attributes['messaging.destination.name']}",
            kind=self._trace.SpanKind.PRODUCER,
            attributes=attributes,
        ):
            carrier: dict[str, str] = {}
            self._propagate.inject(carrier)
        if not carrier:
            return jobs
        return [job.with_meta({**job.meta, META_KEY: carrier}) for job in jobs]

    # -- claim and run -----------------------------------------------------------------

    async def on_job_starting(self, *, job: QueuedJob, worker: Worker) -> QueuedJob:
        carrier = job.meta.get(META_KEY) if isinstance(job.meta, dict) else None
        parent = self._propagate.extract(carrier) if isinstance(carrier, dict) else None
        attributes: dict[str, Any] = {
            "messaging.system": "chancy",
            "messaging.destination.name": job.queue,
            "chancy.job.id": str(job.id),
            "chancy.job.func": job.func,
            "chancy.job.attempt": job.attempts + 1,
            "chancy.worker.id": worker.worker_id,
        }
        claimed = job.started_at.timestamp() if job.started_at is not None else time.time()
        claim = self.tracer.start_span(
            f"chancy.claim {job.queue}",
            context=parent,
            kind=self._trace.SpanKind.CONSUMER,
            attributes={**attributes, "messaging.operation.type": "receive"},
            start_time=int(claimed * 1e9),
        )
        claim.end()
        self._running[job.id] = self.tracer.start_span(
            f"chancy.run {job.func}",
            context=parent,
            kind=self._trace.SpanKind.CONSUMER,
            attributes={**attributes, "messaging.operation.type": "process"},
        )
        return job

    async def on_job_completed(
        self, *, worker: Worker, job: QueuedJob, exc: BaseException | None, result: Any
    ) -> QueuedJob:
        span = self._running.pop(job.id, None)
        if span is not None:
            span.set_attribute("chancy.job.state", str(job.state))
            if exc is not None:
                span.record_exception(exc)
                span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, str(exc)))
            span.end()
        return job
