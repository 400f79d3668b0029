"""Progress reports of running jobs: the stored value, its checks, and where reports go.

A job function that takes its ``QueuedJob`` calls ``job.report_progress(fraction, message,
data)``. The report is checked at once, in the job's own code (a bad report raises
``InvalidProgressError`` there), then handed to whoever runs the job in this process:

- in a worker process (async and thread executors), the worker whose ledger holds the job
  under the same claim; its runtime keeps the latest report per job and writes pending
  reports in one fenced statement at most a few times a second (chancy.runtime.progress);
- in a ProcessExecutor child, the child's pipe to its worker (chancy.executors._progress),
  which forwards the latest report to the worker at most every few tens of milliseconds.

A report made where no worker runs the job (a job function called directly in a test, a
sub-interpreter) is checked and kept on the job object only. Nothing here touches the
database, and a job that never reports costs nothing: no worker looks at progress unless a
report arrives.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from chancy.errors import InvalidProgressError
from chancy.utils import check_text, json_dumps, jsonb_dumps

#: Largest ``data`` a report may carry, as JSON text. Progress is rewritten several times a
#: second; keep it to what a next attempt needs to resume (a cursor, an offset, a few ids).
MAX_DATA_SIZE = 64 * 1024
#: Longest ``message`` a report may carry (characters).
MAX_MESSAGE_LENGTH = 2000


@dataclasses.dataclass(frozen=True, slots=True)
class Progress:
    """A job's latest progress report, as stored in its row (``QueuedJob.progress``).

    ``at`` is when the report was written, in database time (None for a report not written
    yet, e.g. the one a running job just made, as seen on its own ``QueuedJob``).
    """

    fraction: float
    message: str | None = None
    data: Any = None
    at: datetime | None = None

    @classmethod
    def from_stored(cls, value: Any) -> Progress | None:
        """Read the stored ``progress`` column (a JSON object, or NULL)."""
        if not isinstance(value, dict):
            return None
        at = value.get("at")
        if isinstance(at, str):
            try:
                at = datetime.fromisoformat(at)
            except ValueError:
                at = None
        fraction = value.get("fraction")
        return cls(
            fraction=float(fraction) if isinstance(fraction, int | float) else 0.0,
            message=value.get("message"),
            data=value.get("data"),
            at=at if isinstance(at, datetime) else None,
        )


class Report:
    """A checked report on its way to the database: ``data`` already encoded as JSON text.

    A plain class rather than a dataclass: one is made per report, and jobs report in loops.
    """

    __slots__ = ("data", "data_json", "fraction", "message")

    def __init__(
        self, fraction: float, message: str | None, data_json: str | None, data: Any = None
    ) -> None:
        self.fraction = fraction
        self.message = message
        self.data_json = data_json
        self.data = data

    def __repr__(self) -> str:
        return f"Report({self.fraction!r}, {self.message!r}, {self.data_json!r})"

    def as_progress(self) -> Progress:
        return Progress(fraction=self.fraction, message=self.message, data=self.data)

    def to_json(self) -> str:
        """The stored object without ``at`` (the database adds it), as JSON text."""
        message = "null" if self.message is None else json_dumps(self.message)
        data = "null" if self.data_json is None else self.data_json
        return f'{{"fraction":{self.fraction!r},"message":{message},"data":{data}}}'


def make_report(fraction: Any, message: Any = None, data: Any = None) -> Report:
    """Check a report's fields; raise ``InvalidProgressError`` saying how to fix a bad one."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise InvalidProgressError(
            f"progress fraction must be a number between 0 and 1, got {fraction!r}; for 40 of"
            " 200 items done, report 40 / 200"
        )
    fraction = float(fraction)
    if not math.isfinite(fraction) or not 0.0 <= fraction <= 1.0:
        raise InvalidProgressError(
            f"progress fraction must be between 0 and 1 (0 = nothing done, 1 = all done), got"
            f" {fraction!r}; divide the work done by the total"
        )
    if message is not None:
        if not isinstance(message, str):
            raise InvalidProgressError(
                f"progress message must be a string or None, got {type(message).__name__}"
            )
        if len(message) > MAX_MESSAGE_LENGTH:
            raise InvalidProgressError(
                f"progress message is {len(message)} characters long, over the limit of"
                f" {MAX_MESSAGE_LENGTH}; keep it to a short line such as 'page 4 of 10'"
            )
        try:
            check_text(message, "progress message")
        except ValueError as exc:
            raise InvalidProgressError(str(exc)) from None
    data_json = None
    if data is not None:
        try:
            data_json = jsonb_dumps(data)
        except (TypeError, ValueError) as exc:
            raise InvalidProgressError(
                f"progress data must be JSON-serialisable (dicts, lists, strings, numbers,"
                f" booleans, None): {exc}"
            ) from None
        if len(data_json) > MAX_DATA_SIZE:
            raise InvalidProgressError(
                f"progress data is {len(data_json)} bytes as JSON, over the limit of"
                f" {MAX_DATA_SIZE}; keep only what a next attempt needs to resume (an offset, a"
                " cursor) and store bulky state elsewhere"
            )
    return Report(fraction, message, data_json, data)


#: A report waiting to be written: (claim id of the run that made it, the report).
Pending = tuple[uuid.UUID | None, Report]


class Sink(Protocol):
    """Where a worker process takes reports: the runtime of one worker."""

    def offer(self, job_id: uuid.UUID, claim_id: uuid.UUID | None, report: Report) -> bool:
        """Take ``report`` if this worker runs the job under that claim; True if taken."""
        ...


#: The workers running in this process (usually one; tests run several).
_sinks: list[Sink] = []
#: In a ProcessExecutor child: sends a report to the worker (job id as int, report).
_remote: Callable[[int, Report], None] | None = None


def register(sink: Sink) -> None:
    if sink not in _sinks:
        _sinks.append(sink)


def unregister(sink: Sink) -> None:
    if sink in _sinks:
        _sinks.remove(sink)


def set_remote(send: Callable[[int, Report], None] | None) -> None:
    """In a ProcessExecutor child: send reports to the worker through ``send``."""
    global _remote
    _remote = send


def deliver(job_id: uuid.UUID, claim_id: uuid.UUID | None, report: Report) -> bool:
    """Hand ``report`` to whoever runs the job here; False when nobody does."""
    for sink in _sinks:
        if sink.offer(job_id, claim_id, report):
            return True
    remote = _remote
    if remote is not None:
        remote(job_id.int, report)
        return True
    return False
