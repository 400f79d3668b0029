"""The exception tree of chancy; every message says how to fix the problem.

::

    ChancyError
    ├── ConfigurationError (ValueError)   bad constructor arguments, prefix, plugins, queue settings
    ├── InvalidJobError (ValueError)      a job that cannot be stored as given
    ├── InvalidProgressError (ValueError) a progress report a job cannot make as given
    ├── PushError                         a push_many batch failed after earlier batches committed
    ├── ConnectionFailedError             the database could not be reached in time
    ├── MigrationError                    a migration could not be applied
    │   └── MigrationsNeededError         the schema is older than this code expects
    ├── JobFailedError                    raised in a job's place when it could not run at all
    │   ├── JobTimeLimitError (TimeoutError) the job ran past its TIME limit and was stopped
    │   └── JobMemoryLimitError (MemoryError) the job hit its MEMORY limit
    ├── JobNoLongerOwned                  complete_job_ex: the job is no longer this run's
    └── JobControl                        raised *by job code* to steer its own job:
        ├── Retry(delay)                  fail this attempt, run again after ``delay``
        └── Snooze(delay)                 run again after ``delay`` without using an attempt
"""

from __future__ import annotations

from datetime import timedelta


class ChancyError(Exception):
    """Base class of every error chancy raises on purpose."""


class ConfigurationError(ChancyError, ValueError):
    """A setting given to chancy is invalid; the message names the fix."""


class InvalidJobError(ChancyError, ValueError):
    """A job cannot be stored as given (bad field, unserialisable kwargs...)."""


class InvalidProgressError(ChancyError, ValueError):
    """A job's progress report is invalid (fraction outside [0, 1], data not JSON...)."""


class PushError(ChancyError):
    """A batch of ``push_many`` failed; earlier batches were already committed."""

    def __init__(self, message: str, *, committed_batches: int, committed_jobs: int) -> None:
        super().__init__(message)
        self.committed_batches = committed_batches
        self.committed_jobs = committed_jobs


class ConnectionFailedError(ChancyError, ConnectionError):
    """The database could not be reached within the connect timeout."""


class MigrationError(ChancyError):
    """A migration could not be applied, or the requested version does not exist."""


class MigrationsNeededError(MigrationError):
    """The database schema is older than this version of chancy expects."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or (
                "The chancy schema in this database is out of date. Run `await chancy.migrate()`"
                " (or `chancy misc migrate`) before starting workers."
            )
        )


class JobFailedError(ChancyError):
    """A job could not run at all (its function could not be imported, its child died...)."""


class JobNoLongerOwned(ChancyError):
    """``complete_job_ex`` found the job no longer running under the caller's claim.

    It was recovered elsewhere (its worker was thought dead), cancelled, given back at
    shutdown, or already finished. Nothing was written for the job; let the exception
    propagate so the caller's transaction rolls back with it.
    """


class JobTimeLimitError(JobFailedError, TimeoutError):
    """A job ran past its TIME limit and its executor stopped it.

    Also a ``TimeoutError``, which is what every executor of Chancy 0.26 reported for a time
    limit, so a plugin's ``on_job_completed`` that checks ``isinstance(exc, TimeoutError)``
    keeps working.
    """


class JobMemoryLimitError(JobFailedError, MemoryError):
    """A job hit its MEMORY limit (an allocation failed under the executor's cap).

    Also a ``MemoryError``, which is what Chancy 0.26 reported for it.
    """


def _seconds(delay: float | timedelta) -> float:
    if isinstance(delay, timedelta):
        return delay.total_seconds()
    if isinstance(delay, bool) or not isinstance(delay, int | float):
        raise TypeError(f"delay must be seconds (int or float) or a timedelta, not {delay!r}")
    if delay < 0:
        raise ValueError(f"delay must not be negative, got {delay!r}")
    return float(delay)


class JobControl(ChancyError):
    """Base of the exceptions job code raises to steer its own job."""

    def __init__(self, delay: float | timedelta = 0) -> None:
        self.delay = _seconds(delay)
        super().__init__(self.delay)


class Retry(JobControl):
    """Fail this attempt and run the job again after ``delay``.

    The attempt is used up and an error is recorded, exactly like an exception, but the next
    attempt is scheduled ``delay`` seconds after the failure (computed with database time).
    When no attempts remain, the job ends ``failed``.
    """

    def __str__(self) -> str:
        return f"Retry requested by the job, next attempt in {self.delay:g}s"


class Snooze(JobControl):
    """Run the job again after ``delay`` without using an attempt or recording an error."""

    def __str__(self) -> str:
        return f"Snoozed by the job for {self.delay:g}s"
