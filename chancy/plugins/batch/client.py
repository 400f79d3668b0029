"""What applications call: ``Batch.push`` (with its ``_ex`` and sync forms) and ``Batch.get``.

A push is a plan run in one transaction (the caller's, for the ``_ex`` forms): the batch row,
its jobs through the core push (a ``COPY`` for large keyless batches) and one statement that
makes them all members. Everything is checked before the first statement: the jobs are
encoded and the callbacks imported, so bad input stores nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg.errors

from chancy.errors import ChancyError, ConfigurationError
from chancy.job import Job, as_job
from chancy.plugins.batch import store
from chancy.plugins.batch.closing import BATCH_COUNTS_KWARG, BATCH_ID_KWARG, CALLBACKS
from chancy.push import plan as push_plan
from chancy.store import Plan
from chancy.store.encode import encode_job
from chancy.utils import chancy_uuid, import_string, json_dumps

if TYPE_CHECKING:
    from chancy.app import Chancy

#: Jobs per push statement (each is one COPY or one multi-row insert).
PUSH_CHUNK = 10_000

#: The states a job can be in, in the order ``BatchStatus.counts`` lists them.
STATES = ("pending", "running", "retrying", "succeeded", "failed")


class InvalidBatchError(ChancyError, ValueError):
    """A batch cannot be pushed as given; the message says how to fix it."""


@dataclasses.dataclass(frozen=True, slots=True)
class BatchStatus:
    """A batch's progress, as :meth:`Batch.get` reads it."""

    id: str
    #: How many jobs the batch has.
    total: int
    #: Jobs by state (every state listed, zeros included); they add up to ``total``.
    counts: dict[str, int]
    #: Whether the batch is closed: every job's outcome recorded and its callbacks pushed.
    callbacks_pushed: bool
    #: The callback jobs pushed, by callback name (``on_success``, ``on_failure``,
    #: ``on_finish``) -> job id; empty until the batch is closed.
    callbacks: dict[str, str]
    created_at: datetime
    #: When the batch was closed (its callbacks pushed), or None.
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        """Whether every job of the batch has finished (succeeded or failed for good)."""
        return self.counts["succeeded"] + self.counts["failed"] == self.total

    @property
    def succeeded(self) -> int:
        return self.counts["succeeded"]

    @property
    def failed(self) -> int:
        return self.counts["failed"]


def batch_id(value: Any) -> uuid.UUID:
    """A batch id from a UUID or its text; ``KeyError`` for anything else."""
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise KeyError(f"{value!r} is not a batch id (a UUID)") from None


def _status(row: dict[str, Any]) -> BatchStatus:
    unrecorded = row["unrecorded"] or {}
    counts = {state: int(unrecorded.get(state, 0)) for state in STATES}
    counts["succeeded"] += row["succeeded"]
    counts["failed"] += row["failed"]
    return BatchStatus(
        id=str(row["id"]),
        total=row["total"],
        counts=counts,
        callbacks_pushed=row["finished_at"] is not None,
        callbacks=dict(row["callbacks"] or {}),
        created_at=row["created_at"],
        finished_at=row["finished_at"],
    )


def _accepts_batch_kwargs(func: Any) -> bool:
    """Whether ``func`` takes ``batch_id`` and ``batch_counts`` (True when it cannot be told)."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return True
    params = signature.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return True
    names = {
        p.name
        for p in params
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }
    return {BATCH_ID_KWARG, BATCH_COUNTS_KWARG} <= names


def check_callback(name: str, item: Any) -> Job | None:
    """The callback's Job, checked as far as can be before the batch is stored."""
    if item is None:
        return None
    try:
        job = as_job(item, action=f"use {name}=")
    except TypeError:
        raise InvalidBatchError(
            f"{name}={item!r} is not a job: pass a Job (Job.from_func(f, ...)) or a function"
            " decorated with @job"
        ) from None
    clash = sorted({BATCH_ID_KWARG, BATCH_COUNTS_KWARG} & set(job.kwargs))
    if clash:
        raise InvalidBatchError(
            f"{name} job {job.func} already has kwargs {clash}: a callback receives them from"
            " its batch; rename yours"
        )
    try:
        func = import_string(job.func)
    except Exception as exc:
        raise InvalidBatchError(
            f"{name} job {job.func!r} cannot be imported ({exc}); callbacks are imported when"
            " the batch is pushed, so that a typo fails now rather than when the batch"
            " finishes: give the import path of a module-level function"
        ) from None
    if not callable(func):
        raise InvalidBatchError(f"{name} job {job.func!r} is not callable")
    if not _accepts_batch_kwargs(func):
        raise InvalidBatchError(
            f"{name} job {job.func!r} must accept the keyword arguments {BATCH_ID_KWARG} and"
            f" {BATCH_COUNTS_KWARG} (or **kwargs): the batch passes them when it finishes"
        )
    encode_job(job)  # every other field, as a push would check it
    return job


def _require_plugin(chancy: Chancy) -> None:
    from chancy.plugins.batch.plugin import BatchPlugin

    if not any(isinstance(p, BatchPlugin) for p in chancy.plugins.values()):
        raise ConfigurationError(
            "Batch.push needs the batch plugin: add BatchPlugin() to Chancy(plugins=[...]) (in"
            " the workers too: their leader closes batches) and run `await chancy.migrate()`"
        )


@contextlib.contextmanager
def _explain_missing_table(chancy: Chancy) -> Iterator[None]:
    try:
        yield
    except psycopg.errors.UndefinedTable as exc:
        raise ConfigurationError(
            f"there is no {chancy.prefix}batches table: add BatchPlugin() to"
            " Chancy(plugins=[...]) and run `await chancy.migrate()` (or `chancy misc migrate`)"
        ) from exc


class Batch:
    """Groups of jobs with callbacks, pushed when every job of the group has finished.

    ``on_success`` is pushed when every job succeeded, ``on_failure`` when every job finished
    and at least one failed, ``on_finish`` in both cases. Each callback job gets two keyword
    arguments besides its own: ``batch_id`` (the batch id, text) and ``batch_counts`` (a dict:
    ``total``, ``succeeded``, ``failed``). Needs :class:`~chancy.plugins.batch.BatchPlugin`.
    """

    @classmethod
    def _push_plan(
        cls,
        chancy: Chancy,
        jobs: Iterable[Any],
        on_success: Any,
        on_failure: Any,
        on_finish: Any,
    ) -> Plan[str]:
        """Check everything, then return the plan that writes the batch."""
        _require_plugin(chancy)
        given = {"on_success": on_success, "on_failure": on_failure, "on_finish": on_finish}
        packed: dict[str, str | None] = {}
        for name in CALLBACKS:
            callback = check_callback(name, given[name])
            packed[name] = None if callback is None else json_dumps(callback.pack())
        if isinstance(jobs, Job) or callable(jobs):
            raise InvalidBatchError("Batch.push takes a list of jobs, not one job: wrap it in [ ]")
        items = [as_job(j, action="add to a batch") for j in jobs]
        if not items:
            raise InvalidBatchError(
                "a batch needs at least one job: push the callback directly instead"
            )
        # Encoded (and so validated) now, before the plan writes anything.
        chunks = [items[start : start + PUSH_CHUNK] for start in range(0, len(items), PUSH_CHUNK)]
        pushes = [(chunk, push_plan(chancy, chunk)) for chunk in chunks]
        return cls._write(chancy, chancy_uuid(), packed, pushes)

    @staticmethod
    def _write(
        chancy: Chancy,
        new_id: uuid.UUID,
        packed: dict[str, str | None],
        pushes: list[tuple[list[Job], Any]],
    ) -> Plan[str]:
        yield store.insert(chancy.prefix, new_id, packed)
        fresh: list[uuid.UUID] = []
        keyed: dict[uuid.UUID, None] = {}
        for chunk, pushing in pushes:
            refs = yield from pushing
            for job, ref in zip(chunk, refs, strict=True):
                if job.unique_key is None:
                    fresh.append(ref.identifier)
                else:
                    keyed[ref.identifier] = None
        spec = store.add_jobs(
            chancy.prefix, new_id, fresh, list(keyed), notify=chancy.notifications
        )
        yield spec
        return str(new_id)

    @classmethod
    async def push(
        cls,
        chancy: Chancy,
        jobs: Iterable[Any],
        *,
        on_success: Any = None,
        on_failure: Any = None,
        on_finish: Any = None,
    ) -> str:
        """Push ``jobs`` as one batch, in one transaction; return the batch id.

        ``jobs`` are Jobs or ``@job`` functions (at least one); each callback is a Job or an
        ``@job`` function, or None. Callbacks are imported now: one that cannot be imported,
        or does not accept ``batch_id`` and ``batch_counts``, is an :class:`InvalidBatchError`
        and nothing is stored. A job whose unique key is live in another job joins the batch
        as that job (unless that job is already in another batch).
        """
        plan = cls._push_plan(chancy, jobs, on_success, on_failure, on_finish)
        with _explain_missing_table(chancy):
            return await chancy.db.run(plan, transaction=True)

    @classmethod
    async def push_ex(
        cls,
        chancy: Chancy,
        cursor: psycopg.AsyncCursor[Any],
        jobs: Iterable[Any],
        *,
        on_success: Any = None,
        on_failure: Any = None,
        on_finish: Any = None,
    ) -> str:
        """:meth:`push` inside the caller's transaction (the batch exists if it commits)."""
        plan = cls._push_plan(chancy, jobs, on_success, on_failure, on_finish)
        with _explain_missing_table(chancy):
            return await chancy.db.run_ex(cursor, plan)

    @classmethod
    def sync_push(
        cls,
        chancy: Chancy,
        jobs: Iterable[Any],
        *,
        on_success: Any = None,
        on_failure: Any = None,
        on_finish: Any = None,
    ) -> str:
        """:meth:`push` for sync code."""
        plan = cls._push_plan(chancy, jobs, on_success, on_failure, on_finish)
        with _explain_missing_table(chancy):
            return chancy.db.run_sync(plan, transaction=True)

    @classmethod
    def sync_push_ex(
        cls,
        chancy: Chancy,
        cursor: psycopg.Cursor[Any],
        jobs: Iterable[Any],
        *,
        on_success: Any = None,
        on_failure: Any = None,
        on_finish: Any = None,
    ) -> str:
        """:meth:`push_ex` for sync code."""
        plan = cls._push_plan(chancy, jobs, on_success, on_failure, on_finish)
        with _explain_missing_table(chancy):
            return chancy.db.run_ex_sync(cursor, plan)

    @classmethod
    async def get(cls, chancy: Chancy, id_: Any) -> BatchStatus:
        """The progress of a batch; ``KeyError`` when there is no such batch.

        Outcomes the leader recorded are read from the batch row; the jobs not recorded yet
        are looked up by id (so reading a batch costs what is left of it, not its size).
        """
        with _explain_missing_table(chancy):
            row = await chancy.db.run(store.get(chancy.prefix, batch_id(id_)))
        if row is None:
            raise KeyError(f"no batch {id_}")
        return _status(row)

    @classmethod
    def sync_get(cls, chancy: Chancy, id_: Any) -> BatchStatus:
        """:meth:`get` for sync code."""
        with _explain_missing_table(chancy):
            row = chancy.db.run_sync(store.get(chancy.prefix, batch_id(id_)))
        if row is None:
            raise KeyError(f"no batch {id_}")
        return _status(row)

    @classmethod
    async def wait(
        cls, chancy: Chancy, id_: Any, *, interval: float = 0.5, timeout: float | None = None
    ) -> BatchStatus:
        """Wait until the batch is closed (its callbacks pushed); return its status.

        Polls every ``interval`` seconds; ``TimeoutError`` after ``timeout`` seconds, and
        ``KeyError`` when there is no such batch.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = await cls.get(chancy, id_)
            if status.callbacks_pushed:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"batch {id_} not closed after {timeout}s: {status.counts}")
            await asyncio.sleep(interval)

    @classmethod
    def sync_wait(
        cls, chancy: Chancy, id_: Any, *, interval: float = 0.5, timeout: float | None = None
    ) -> BatchStatus:
        """:meth:`wait` for sync code."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = cls.sync_get(chancy, id_)
            if status.callbacks_pushed:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"batch {id_} not closed after {timeout}s: {status.counts}")
            time.sleep(interval)
