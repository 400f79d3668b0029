"""Pushing jobs: one statement (or COPY) per batch, hooks first, the next batch encoded ahead
and written while the one before commits.

Every push form goes through ``plan``: the plugins' ``on_push`` hooks, then the store's push
plan (validated and encoded before anything is written; ``push_many``'s first batch, when
it goes by COPY, is encoded as COPY sends it, and a bad job in it rolls the whole batch
back). ``push_many`` overlaps encoding
with the database's work: while a batch is written, the next one is read from the caller's
iterable and encoded on the event loop in slices, so the write's own steps (sending COPY
data, reading results) run between them. An encoding thread did this before, but it held
the GIL against the loop while the loop waited for the server (pushing 100,000 jobs, its
first statement per batch took 8 ms instead of under 1), and gained nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from psycopg.rows import dict_row

from chancy.errors import ConfigurationError, PushError
from chancy.job import Job, Reference, as_job
from chancy.store import Plan, run
from chancy.store.encode import COPY_THRESHOLD, EncodedJob, encode_jobs
from chancy.store.runner import primed
from chancy.utils import gc_paused

if TYPE_CHECKING:
    import psycopg

    from chancy.app import Chancy

__all__ = ["batches", "plan", "push_many", "push_many_ex", "sync_push_many", "sync_push_many_ex"]

#: push_many encodes the next batch while the current one is written, for batches at least
#: this large (below it, the hand-off costs more than it saves) ...
ENCODE_AHEAD_MIN = 500
#: ... this many jobs at a time, letting the write go on between slices (about 0.4 ms each).
ENCODE_SLICE = 200
#: push_many inserts a batch of at least this many jobs with unique keys without ON CONFLICT
#: first, betting that its keys are new (``job_insert_many_plain``: 6.5 instead of 7.8 ms per
#: 1,000 jobs); a live key rolls that try back and the batch is written again with ON
#: CONFLICT (a lost bet cost 4-5 ms per 1,000 jobs here). Below this size the bet saves
#: less than a lost one costs. It bets while the app's last batch with unique keys found
#: them all new (``Chancy.keys_seen_new``): a push that keeps finding its keys live (one
#: that re-pushes a periodic set, say) stops betting after one loss, and starts again once
#: a batch finds its keys new.
FRESH_KEYS_MIN = 100

JobLike = Job | Any  # a Job, or a function decorated with @job


def plan(chancy: Chancy, jobs: list[Job]) -> Plan[list[Reference]]:
    """The plan that pushes ``jobs``, after the plugins' ``on_push`` hooks."""
    return chancy.store.job_push(chancy.hooks.push(jobs, chancy), notify=chancy.notifications)


def batches(jobs: Iterable[JobLike], size: int) -> Iterator[list[Job]]:
    """``jobs`` as lists of at most ``size`` Jobs (``@job`` functions become their Job)."""
    if size < 1:
        raise ConfigurationError("batch_size must be at least 1")
    iterator = iter(jobs)
    while True:
        batch = [as_job(j) for _, j in zip(range(size), iterator, strict=False)]
        if not batch:
            return
        yield batch


def error(exc: Exception, committed_batches: int, committed_jobs: int) -> PushError:
    return PushError(
        f"batch {committed_batches + 1} failed ({exc}); the {committed_batches}"
        f" earlier batches ({committed_jobs} jobs) were committed",
        committed_batches=committed_batches,
        committed_jobs=committed_jobs,
    )


async def push_many(
    chancy: Chancy, jobs: Iterable[JobLike], batch_size: int
) -> AsyncIterator[list[Reference]]:
    """Push in batches, one transaction each; yield each batch's references in order.

    Each batch is written on a connection of its own (``_Write``). Once a batch's statements
    have run, the next batch's start, on another connection, while the first commits (a
    commit waits for the server's disk flush): the next batch commits only after the one
    before it has, and only once the caller asks for it (resumes after the yield); a caller
    that stops early rolls it back.
    """
    iterator = batches(jobs, batch_size)
    batch = next(iterator, None)
    if batch is None:
        return
    committed_batches = committed_jobs = 0
    hooked = chancy.hooks.push(batch, chancy)
    if len(hooked) >= COPY_THRESHOLD and all(j.unique_key is None for j in hooked):
        # A first batch for COPY is encoded while COPY sends it: no write runs before it to
        # hide its encoding behind (a later batch is encoded while the one before it is
        # written). A first batch of 10,000 took 68-74 ms, now 51-57.
        work = primed(chancy.store.job_copy_streamed(hooked, notify=chancy.notifications))
        writing = _Write(chancy, [], work, None, may_commit=True)
    else:
        encoded = await _encode_in_slices(hooked)
        writing = _Write(chancy, encoded, *_plans(chancy, encoded), may_commit=True)
    following_write: _Write | None = None
    try:
        while True:
            following = next(iterator, None)
            ahead: list[EncodedJob] | None = None
            failed: Exception | None = None
            if following is not None:
                try:
                    ahead = await _encode_in_slices(chancy.hooks.push(following, chancy))
                except Exception as exc:
                    failed = exc  # raised once the batch being written has committed
                if ahead is not None:
                    plans = _plans(chancy, ahead)
                    if await writing.statements_done():
                        following_write = _Write(chancy, ahead, *plans, may_commit=False)
            try:
                refs = await writing.task
            except Exception as exc:
                if committed_batches == 0:
                    raise
                raise error(exc, committed_batches, committed_jobs) from exc
            _learn(chancy, writing.rows, refs, bet=writing.bet, lost=writing.conflicted)
            committed_batches += 1
            committed_jobs += len(refs)
            yield refs
            if following is None:
                return
            if failed is not None:
                raise error(failed, committed_batches, committed_jobs) from failed
            # Started above: the batch before committed, so its statements had run.
            assert following_write is not None
            writing, following_write = following_write, None
            writing.allow_commit()
    finally:
        # Stopped early (an error, the caller closed or cancelled the push): the writes not
        # committed yet roll back.
        for unfinished in (writing, following_write):
            if unfinished is not None:
                await unfinished.abandon()


class _Abandoned(Exception):
    """A batch of ``push_many`` that is not to be committed (the push stopped first)."""


Retry = Callable[[], Plan[list[Reference]]] | None


def _plans(chancy: Chancy, encoded: list[EncodedJob]) -> tuple[Plan[list[Reference]], Retry]:
    """The plan that writes a batch, its first statement built now; and, if that plan bets
    that the batch's unique keys are new (FRESH_KEYS_MIN), the plan to write it with once
    the bet is lost."""
    notify = chancy.notifications
    if not chancy.keys_seen_new or len(encoded) < FRESH_KEYS_MIN:
        return primed(chancy.store.job_push_encoded(encoded, notify=notify)), None
    first = primed(chancy.store.job_push_encoded(encoded, notify=notify, fresh_keys=True))
    return first, lambda: chancy.store.job_push_encoded(encoded, notify=notify)


def _learn(
    chancy: Chancy, rows: list[EncodedJob], refs: list[Reference], *, bet: bool, lost: bool
) -> None:
    """Update ``chancy.keys_seen_new`` from a batch just written: a lost bet says no; a
    batch with unique keys written without betting says whether any of its jobs was mapped
    to a live job outside the batch (a bet won says yes, as it already was)."""
    if lost:
        chancy.keys_seen_new = False
    elif not bet and len(rows) >= FRESH_KEYS_MIN and any(r.unique_key for r in rows):
        ids = {r.id.int for r in rows}
        chancy.keys_seen_new = all(ref.identifier.int in ids for ref in refs)


class _Write:
    """One batch of ``push_many`` in its own transaction on its own pool connection. Its
    statements run at once; it commits when allowed (at once, or by ``allow_commit``), or
    rolls back when abandoned. A try that finds a unique key live, when it bet on new ones,
    rolls back and the batch is written again by ``retry`` (``conflicted``)."""

    def __init__(
        self,
        chancy: Chancy,
        rows: list[EncodedJob],
        work: Plan[list[Reference]],
        retry: Retry,
        *,
        may_commit: bool,
    ) -> None:
        self._written = asyncio.Event()
        self._decided = asyncio.Event()
        self._commit = may_commit
        self.rows = rows
        self.bet = retry is not None
        self.conflicted = False
        if may_commit:
            self._decided.set()
        self.task = asyncio.ensure_future(self._run(chancy, work, retry))
        self.task.add_done_callback(_retrieve)  # seen even if the push stops first

    async def _run(
        self, chancy: Chancy, work: Plan[list[Reference]], retry: Retry
    ) -> list[Reference]:
        try:
            pool = await chancy.open()
            async with pool.connection() as conn:
                try:
                    return await self._transaction(conn, work)
                except Exception as exc:
                    if retry is None or not chancy.store.live_key_conflict(exc):
                        raise
                self.conflicted = True  # that try rolled back; again, skipping live keys
                return await self._transaction(conn, retry())
        finally:
            self._written.set()

    async def _transaction(
        self, conn: psycopg.AsyncConnection[Any], work: Plan[list[Reference]]
    ) -> list[Reference]:
        async with conn.transaction():
            async with conn.cursor(row_factory=dict_row) as cur:
                refs = await run(cur, work)
            self._written.set()
            await self._decided.wait()
            if not self._commit:
                raise _Abandoned  # rolls the transaction back
        return refs

    async def statements_done(self) -> bool:
        """Wait until the statements ran (the commit may be pending); False if they failed."""
        await self._written.wait()
        return not (self.task.done() and (self.task.cancelled() or self.task.exception()))

    def allow_commit(self) -> None:
        self._commit = True
        self._decided.set()

    async def abandon(self) -> None:
        """Roll the batch back unless it committed or is committing: its statements end
        first, then the transaction rolls back (a cancelled push rolls back the batch it was
        writing, as when the write itself was cancelled)."""
        if self.task.done():
            return
        self._commit = False
        self._decided.set()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


def _encode(jobs: list[Job]) -> list[EncodedJob]:
    """``jobs`` (after the ``on_push`` hooks) encoded, InvalidJobError before anything is
    written."""
    with gc_paused():
        return encode_jobs(jobs)


async def _encode_in_slices(jobs: list[Job]) -> list[EncodedJob]:
    """``_encode(jobs)``; a batch of at least ``ENCODE_AHEAD_MIN`` jobs ``ENCODE_SLICE`` at a
    time with the loop free in between (the write of the previous batch goes on meanwhile).
    ``_plans`` then builds the plan's first statement (the batch's arrays) now too, not once
    the write has its connection."""
    if len(jobs) < ENCODE_AHEAD_MIN:
        return _encode(jobs)
    encoded: list[EncodedJob] = []
    # The collector stays off for the whole batch (see gc_paused), not slice by slice: on
    # between slices, it walked the caller's jobs again after every few slices.
    with gc_paused():
        for start in range(0, len(jobs), ENCODE_SLICE):
            encoded.extend(encode_jobs(jobs[start : start + ENCODE_SLICE], start))
            await asyncio.sleep(0)
    return encoded


def sync_push_many(
    chancy: Chancy, jobs: Iterable[JobLike], batch_size: int
) -> Iterator[list[Reference]]:
    """``push_many`` for sync code: a generator, each batch pushed as iteration reaches it,
    in a transaction of its own; the bet on new unique keys as in ``push_many``."""
    pushed = 0
    for n, batch in enumerate(batches(jobs, batch_size)):
        try:
            encoded = _encode(chancy.hooks.push(batch, chancy))
            work, retry = _plans(chancy, encoded)
            lost = False
            try:
                refs = chancy.db.run_sync(work, transaction=True)
            except Exception as exc:
                if retry is None or not chancy.store.live_key_conflict(exc):
                    raise
                lost = True  # that try rolled back; again, skipping live keys
                refs = chancy.db.run_sync(retry(), transaction=True)
            _learn(chancy, encoded, refs, bet=retry is not None, lost=lost)
        except Exception as exc:
            if n == 0:
                raise
            raise error(exc, n, pushed) from exc
        pushed += len(refs)
        yield refs


async def push_many_ex(
    chancy: Chancy, cursor: psycopg.AsyncCursor[Any], jobs: Iterable[JobLike], batch_size: int
) -> list[Reference]:
    """Push many inside the caller's transaction; return every reference in order."""
    out: list[Reference] = []
    for batch in batches(jobs, batch_size):
        out.extend(await chancy.db.run_ex(cursor, plan(chancy, batch)))
    return out


def sync_push_many_ex(
    chancy: Chancy, cursor: psycopg.Cursor[Any], jobs: Iterable[JobLike], batch_size: int
) -> list[Reference]:
    out: list[Reference] = []
    for batch in batches(jobs, batch_size):
        out.extend(chancy.db.run_ex_sync(cursor, plan(chancy, batch)))
    return out


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a future's outcome as seen, so an unawaited failure is not logged at exit."""
    if not future.cancelled():
        future.exception()
