"""RetryPlugin: exponential backoff with jitter between the attempts of a failed job.

Without this plugin a failed job with attempts left is eligible again at once. With it, the
next attempt waits::

    delay = min(backoff_limit, backoff * backoff_factor ** (attempts - 1))
            + uniform(backoff_jitter[0], backoff_jitter[1])

seconds, where ``attempts`` counts the runs so far (1 after the first failure). The delay is
added to the database's ``now()`` when the outcome is written. Settings come from the job's
``meta["retry_settings"]``; each missing key takes its default:

===================  =========  ================================================
key                  default    meaning
===================  =========  ================================================
``backoff``          ``1``      seconds before the second attempt (before jitter)
``backoff_factor``   ``2``      multiplier per further attempt
``backoff_limit``    ``300``    cap in seconds on the exponential part
``backoff_jitter``   ``[1, 5]`` random seconds added, between the two bounds
===================  =========  ================================================

An invalid setting is logged as a warning and its default used; it never fails the job or
the worker. A job that raises ``chancy.errors.Retry(delay)`` keeps the delay it asked for,
and ``Snooze`` is left alone. The number of attempts is the job's ``max_attempts``::

    job.with_max_attempts(5).with_meta({"retry_settings": {"backoff": 2, "backoff_limit": 60}})
"""

from __future__ import annotations

import inspect
import logging
import math
import random
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from chancy.errors import JobControl
from chancy.job import QueuedJob
from chancy.outcome import Delayed
from chancy.plugin import Plugin

if TYPE_CHECKING:
    from chancy.worker import Worker

log = logging.getLogger("chancy.retry")

DEFAULT_RETRY_SETTINGS: dict[str, Any] = {
    "backoff": 1.0,
    "backoff_factor": 2.0,
    "backoff_limit": 300.0,
    "backoff_jitter": (1.0, 5.0),
}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _check(key: str, value: Any) -> Any:
    """The setting as used, or None when it is invalid."""
    if key == "backoff_jitter":
        if not isinstance(value, list | tuple) or len(value) != 2:
            return None
        lo, hi = _number(value[0]), _number(value[1])
        if lo is None or hi is None or lo < 0 or hi < lo:
            return None
        return (lo, hi)
    number = _number(value)
    if number is None:
        return None
    if key == "backoff_factor":
        return number if number > 0 else None
    return number if number >= 0 else None


_EXPECTED = {
    "backoff": "a number of seconds >= 0",
    "backoff_factor": "a number > 0",
    "backoff_limit": "a number of seconds >= 0",
    "backoff_jitter": "a pair [low, high] of seconds with 0 <= low <= high",
}


def retry_settings(job: QueuedJob) -> dict[str, Any]:
    """The job's retry settings with defaults filled in and invalid values replaced.

    Each problem is logged as a warning naming the job and the fix.
    """
    raw = job.meta.get("retry_settings") if isinstance(job.meta, dict) else None
    settings = dict(DEFAULT_RETRY_SETTINGS)
    if raw is None:
        return settings
    if not isinstance(raw, dict):
        log.warning(
            "job %s (%s): meta['retry_settings'] must be a dict of %s, not %r; using the defaults",
            job.id,
            job.func,
            sorted(DEFAULT_RETRY_SETTINGS),
            raw,
        )
        return settings
    for key, value in raw.items():
        if key not in DEFAULT_RETRY_SETTINGS:
            log.warning(
                "job %s (%s): unknown retry setting %r ignored; valid keys are %s",
                job.id,
                job.func,
                key,
                sorted(DEFAULT_RETRY_SETTINGS),
            )
            continue
        checked = _check(key, value)
        if checked is None:
            log.warning(
                "job %s (%s): retry setting %s=%r is invalid (expected %s); using the default %r",
                job.id,
                job.func,
                key,
                value,
                _EXPECTED[key],
                DEFAULT_RETRY_SETTINGS[key],
            )
            continue
        settings[key] = checked
    return settings


def backoff_bounds(attempts: int, settings: dict[str, Any]) -> tuple[float, float]:
    """The smallest and largest delay the settings allow after ``attempts`` runs."""
    exponent = max(0, attempts - 1)
    try:
        raw = settings["backoff"] * settings["backoff_factor"] ** exponent
    except OverflowError:
        raw = math.inf
    base = min(settings["backoff_limit"], raw)
    lo, hi = settings["backoff_jitter"]
    return base + lo, base + hi


class RetryPlugin(Plugin):
    """Delays the next attempt of a failed job by exponential backoff with jitter."""

    @classmethod
    def get_identifier(cls) -> str:
        return "chancy.retry_plugin"

    @staticmethod
    def calculate_delay(job: QueuedJob, settings: dict[str, Any] | None = None) -> float:
        """Seconds to wait before the next attempt of ``job`` (which has failed ``attempts``)."""
        settings = retry_settings(job) if settings is None else settings
        exponent = max(0, job.attempts - 1)
        try:
            raw = settings["backoff"] * settings["backoff_factor"] ** exponent
        except OverflowError:
            raw = math.inf
        lo, hi = settings["backoff_jitter"]
        return min(settings["backoff_limit"], raw) + random.uniform(lo, hi)

    async def on_job_completed(
        self, *, worker: Worker, job: QueuedJob, exc: BaseException | None, result: Any
    ) -> Any:
        if exc is None or job.state != QueuedJob.State.RETRYING:
            return job
        if isinstance(exc, JobControl):
            # Retry(delay) and Snooze(delay) carry the delay the job asked for.
            return job
        try:
            if _overrides_next_run(type(self)):
                # A subclass written for Chancy 0.26 picks an absolute time on its own clock.
                when = self.calculate_next_run(job, retry_settings(job))
                delay = max(0.0, (when - datetime.now(UTC)).total_seconds())
            else:
                delay = self.calculate_delay(job)
        except Exception:
            log.exception("job %s: could not compute a retry delay; retrying at once", job.id)
            return job
        return Delayed(job, delay)

    @classmethod
    def calculate_next_run(cls, job: QueuedJob, retry_settings: dict[str, Any]) -> datetime:
        """When to run ``job`` next (Chancy 0.26's hook): ``calculate_delay`` from now.

        Overriding it still works; chancy's own schedule is relative to the database's
        ``now()``, and an override's absolute time is turned into a delay from the worker's
        clock.
        """
        return datetime.now(UTC) + timedelta(seconds=cls.calculate_delay(job, retry_settings))


def _overrides_next_run(cls: type) -> bool:
    """Whether ``cls`` replaced Chancy 0.26's ``calculate_next_run`` hook."""
    return inspect.getattr_static(cls, "calculate_next_run") is not inspect.getattr_static(
        RetryPlugin, "calculate_next_run"
    )
