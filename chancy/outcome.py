"""What a run leaves behind: the job's next state, computed without the database or a clock.

An executor runs a job and reports ``(job, exc, result)``; ``build_outcome`` turns that into
an ``Outcome`` (succeeded, retrying, failed or snoozed, with the encoded result and any delay),
plugins may adjust it (``Delayed`` reschedules relative to the database's ``now()``), and the
completer writes it, fenced by the claim. Nothing here does I/O, so it is the same in every
executor and in every process.
"""

from __future__ import annotations

import dataclasses
import traceback
from typing import Any

from chancy.errors import Retry, Snooze
from chancy.job import QueuedJob
from chancy.utils import jsonb_dumps, safe_text, slot_copier

__all__ = [
    "DEFAULT_MAX_RESULT_SIZE",
    "Delayed",
    "Outcome",
    "RemoteJobError",
    "build_outcome",
    "encode_result",
    "evolve",
    "format_exception",
]

DEFAULT_MAX_RESULT_SIZE = 1024 * 1024


class RemoteJobError(Exception):
    """An exception raised by job code in another process or interpreter.

    Carries the original type name and formatted traceback, so exceptions that cannot be
    pickled still reach the job's ``errors`` intact.
    """

    def __init__(self, type_name: str, message: str, formatted: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.formatted_traceback = formatted


def format_exception(exc: BaseException) -> str:
    """The traceback text stored in a job's ``errors``."""
    formatted = getattr(exc, "formatted_traceback", None)
    if isinstance(formatted, str):
        return formatted
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def encode_result(result: Any, max_size: int) -> tuple[str | None, str | None]:
    """Encode a job's return value as JSON text; return (json, None) or (None, reason)."""
    if result is None:
        return None, None
    try:
        text = jsonb_dumps(result)
    except (TypeError, ValueError) as exc:
        return None, f"the return value is not JSON-serialisable, so it cannot be stored: {exc}"
    if len(text) > max_size:
        return None, (
            f"the return value is {len(text)} bytes as JSON, over the {max_size}-byte limit;"
            " store large results elsewhere and return a reference to them"
        )
    return text, None


@dataclasses.dataclass(frozen=True, slots=True)
class Delayed:
    """Returned by a plugin's ``on_job_completed`` to make the job eligible again later.

    ``delay`` is in seconds and is added to the database's ``now()`` when the outcome is
    written, so a worker's clock never decides when a job runs.
    """

    job: QueuedJob
    delay: float


@dataclasses.dataclass(slots=True)
class Outcome:
    """What the completer writes for one finished run."""

    job: QueuedJob
    #: Seconds after database ``now()`` at which the job becomes eligible again (retry or
    #: snooze); None keeps ``scheduled_at`` as it is.
    delay: float | None = None
    #: The return value as JSON text (None stores SQL NULL).
    result_json: str | None = None


#: A new QueuedJob with changes applied, stored slot by slot (generated once: see
#: chancy.utils.slot_copier), rather than dataclasses.replace's introspection per call.
_copy_job = slot_copier(QueuedJob)


def evolve(job: QueuedJob, **changes: Any) -> QueuedJob:
    """``dataclasses.replace`` for a QueuedJob, without its introspection on every call.

    Every outcome makes one new job, so this is on the hot path. Subclasses (which may
    validate in ``__post_init__``) go through ``dataclasses.replace``.
    """
    if type(job) is not QueuedJob:
        return dataclasses.replace(job, **changes)
    return _copy_job(job, changes)


def build_outcome(
    job: QueuedJob,
    exc: BaseException | None,
    result: Any,
    *,
    max_result_size: int = DEFAULT_MAX_RESULT_SIZE,
) -> Outcome:
    """Compute the state a run leaves its job in (pure: no database, no clock)."""
    if isinstance(exc, Snooze):
        meta = dict(job.meta)
        meta["snoozed"] = int(meta.get("snoozed", 0)) + 1
        return Outcome(evolve(job, state=QueuedJob.State.PENDING, meta=meta), delay=exc.delay)
    attempts = job.attempts + 1
    if exc is None:
        result_json, reason = encode_result(result, max_result_size)
        meta = job.meta
        if reason is not None:
            meta = {**meta, "result_error": reason}
        return Outcome(
            evolve(job, state=QueuedJob.State.SUCCEEDED, attempts=attempts, meta=meta, result=None),
            result_json=result_json,
        )
    traceback_text = safe_text(format_exception(exc))
    errors = [*job.errors, {"attempt": job.attempts, "traceback": traceback_text}]
    failed = attempts >= job.max_attempts
    state = QueuedJob.State.FAILED if failed else QueuedJob.State.RETRYING
    delay = exc.delay if isinstance(exc, Retry) and not failed else None
    return Outcome(evolve(job, state=state, attempts=attempts, errors=errors), delay=delay)
