"""chancy: a job queue for Python on PostgreSQL alone."""

from chancy.job import Job, Limit, QueuedJob, Reference, job
from chancy.queue import Queue

__all__ = ["Chancy", "Job", "Limit", "Queue", "QueuedJob", "Reference", "Worker", "job"]


def __getattr__(name: str) -> object:
    # Chancy and Worker pull in psycopg and the runtime; import them on first use so that
    # `from chancy import job` in a module of job functions stays light.
    if name == "Chancy":
        from chancy.app import Chancy

        return Chancy
    if name == "Worker":
        from chancy.worker import Worker

        return Worker
    raise AttributeError(f"module 'chancy' has no attribute {name!r}")
