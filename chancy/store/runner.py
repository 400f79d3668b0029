"""Run query specs and plans on async or sync psycopg connections.

A store method returns a ``Spec`` (named SQL, parameters, how to read the result) or a
``Plan`` (a generator that yields specs and receives their results, for operations with a
decision between statements). The same specs run on either runner, so the sync API is a thin
facade over the same SQL rather than a twin of it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any, Generic, Literal, LiteralString, TypeVar, cast

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from chancy.store.loader import per_run

T = TypeVar("T")

Fetch = Literal["none", "one", "all", "rowcount", "copy"]


@dataclasses.dataclass(slots=True)
class Spec(Generic[T]):
    """One statement: its text, parameters and how to turn the result into a value.

    ``query`` is a named query's text, or a statement composed with ``psycopg.sql`` from one
    (a rule's fragment filled into its placeholder).
    """

    query: LiteralString | sql.SQL | sql.Composed
    params: Sequence[Any] | dict[str, Any] | None = None
    fetch: Fetch = "none"
    decode: Callable[[Any], T] | None = None
    #: For ``fetch="copy"``: the rows to send through ``COPY ... FROM STDIN``.
    rows: Iterable[Sequence[Any]] | None = None
    #: For ``fetch="copy"``, instead of ``rows``: the data already in COPY's text format, in
    #: chunks of many rows (one write per chunk instead of one adaptation per value).
    data: Iterable[str] | None = None
    #: psycopg row factory for this statement's rows, instead of the cursor's (dicts).
    row_factory: Any = None
    #: Ask for the rows in PostgreSQL's binary format (None: psycopg's default, text).
    binary: bool | None = None


Plan = Generator[Spec[Any], Any, T]


def _prepare(query: Any) -> bool | None:
    """psycopg's ``prepare`` for ``query``: never for a query planned per run (loader.py),
    else psycopg's default (prepared after a few runs, unless the connection turned it off)."""
    return False if per_run(query) else None


def _finish(spec: Spec[Any], value: Any) -> Any:
    return spec.decode(value) if spec.decode is not None else value


async def run_spec(cur: psycopg.AsyncCursor[Any], spec: Spec[T]) -> T:
    """Execute ``spec`` on an async cursor whose rows are dicts (or ``spec.row_factory``'s)."""
    if spec.row_factory is None:
        return await _run_spec(cur, spec)
    saved = cur.row_factory
    cur.row_factory = spec.row_factory
    try:
        return await _run_spec(cur, spec)
    finally:
        cur.row_factory = saved


async def _run_spec(cur: psycopg.AsyncCursor[Any], spec: Spec[T]) -> T:
    if spec.fetch == "copy":
        async with cur.copy(spec.query) as copy:
            if spec.data is not None:
                for chunk in spec.data:
                    await copy.write(chunk)
            for row in spec.rows or ():
                await copy.write_row(row)
        return _finish(spec, cur.rowcount)
    await cur.execute(spec.query, spec.params, prepare=_prepare(spec.query), binary=spec.binary)
    if spec.fetch == "one":
        value: Any = await cur.fetchone()
    elif spec.fetch == "all":
        value = await cur.fetchall()
    elif spec.fetch == "rowcount":
        value = cur.rowcount
    else:
        value = None
    return _finish(spec, value)


def run_spec_sync(cur: psycopg.Cursor[Any], spec: Spec[T]) -> T:
    """Execute ``spec`` on a sync cursor whose rows are dicts (or ``spec.row_factory``'s)."""
    if spec.row_factory is None:
        return _run_spec_sync(cur, spec)
    saved = cur.row_factory
    cur.row_factory = spec.row_factory
    try:
        return _run_spec_sync(cur, spec)
    finally:
        cur.row_factory = saved


def _run_spec_sync(cur: psycopg.Cursor[Any], spec: Spec[T]) -> T:
    if spec.fetch == "copy":
        with cur.copy(spec.query) as copy:
            if spec.data is not None:
                for chunk in spec.data:
                    copy.write(chunk)
            for row in spec.rows or ():
                copy.write_row(row)
        return _finish(spec, cur.rowcount)
    cur.execute(spec.query, spec.params, prepare=_prepare(spec.query), binary=spec.binary)
    if spec.fetch == "one":
        value: Any = cur.fetchone()
    elif spec.fetch == "all":
        value = cur.fetchall()
    elif spec.fetch == "rowcount":
        value = cur.rowcount
    else:
        value = None
    return _finish(spec, value)


def primed(plan: Plan[T]) -> Plan[T]:
    """``plan`` with the work before its first statement done now: a plan runs lazily, each
    step when its runner asks for the next statement, so what builds a statement costs the
    connection that is waiting for it. ``push_many`` primes the next batch's plan while the
    batch before it is written."""
    try:
        first = next(plan)
    except StopIteration as stop:
        return _no_statement(stop.value)
    return _resumed(plan, first)


def _no_statement(value: T) -> Plan[T]:
    return value
    yield  # a generator that returns at once


def _resumed(plan: Plan[T], first: Spec[Any]) -> Plan[T]:
    result = yield first
    while True:
        try:
            spec = plan.send(result)
        except StopIteration as stop:
            return cast(T, stop.value)
        result = yield spec


async def run(cur: psycopg.AsyncCursor[Any], work: Spec[T] | Plan[T]) -> T:
    """Run a spec or drive a plan to completion on an async cursor."""
    if isinstance(work, Spec):
        return await run_spec(cur, work)
    try:
        spec = next(work)
        while True:
            spec = work.send(await run_spec(cur, spec))
    except StopIteration as stop:
        return stop.value


async def run_pipelined_transaction(
    conn: psycopg.AsyncConnection[Any],
    begin: Spec[Any],
    before: Sequence[Spec[Any]],
    last: Spec[T],
    commit: Spec[Any],
) -> T:
    """Run ``before`` and ``last`` in one transaction in two round trips; return ``last``'s value.

    BEGIN, the statements of ``before`` (which need no result: settings, locks) and ``last``
    go to the server in one pipeline batch; COMMIT goes in a second one, once ``last``'s rows
    have arrived. Committing only after the rows are read keeps a claim whole: if the
    connection is lost before they arrive, the transaction never commits, and no job is left
    running under a claim its worker never saw. On an autocommit connection. If a statement
    fails, the server skips the rest of the batch and the transaction is rolled back here
    before the error is raised, so the connection goes back to its pool idle.
    """
    try:
        async with (
            conn.pipeline() as pipeline,
            conn.cursor(row_factory=dict_row) as cur,
            conn.cursor(row_factory=last.row_factory or dict_row) as out,
        ):
            await cur.execute(begin.query, begin.params)
            for spec in before:
                await cur.execute(
                    spec.query, spec.params, prepare=_prepare(spec.query), binary=spec.binary
                )
            await out.execute(
                last.query, last.params, prepare=_prepare(last.query), binary=last.binary
            )
            await pipeline.sync()
            if last.fetch == "one":
                value: Any = await out.fetchone()
            elif last.fetch == "all":
                value = await out.fetchall()
            else:
                value = out.rowcount if last.fetch == "rowcount" else None
            await cur.execute(commit.query, commit.params)
    except BaseException:
        with contextlib.suppress(Exception):
            await conn.rollback()
        raise
    return _finish(last, value)


def run_sync(cur: psycopg.Cursor[Any], work: Spec[T] | Plan[T]) -> T:
    """Run a spec or drive a plan to completion on a sync cursor."""
    if isinstance(work, Spec):
        return run_spec_sync(cur, work)
    try:
        spec = next(work)
        while True:
            spec = work.send(run_spec_sync(cur, spec))
    except StopIteration as stop:
        return stop.value


def dict_cursor(cursor: Any) -> Any:
    """A cursor on the same connection (and transaction) as ``cursor`` that returns dicts."""
    return cursor.connection.cursor(row_factory=dict_row)
