"""Run query specs and plans on async or sync psycopg connections.

A store method returns a ``Spec`` (named SQL, parameters, how to read the result) or a
``Plan`` (a generator that yields specs and receives their results, for operations with a
decision between statements). The same specs run on either runner, so the sync API is a thin
facade over the same SQL rather than a twin of it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any, Generic, Literal, LiteralString, TypeVar

import psycopg
from psycopg.rows import dict_row

T = TypeVar("T")

Fetch = Literal["none", "one", "all", "rowcount", "copy"]


@dataclasses.dataclass(slots=True)
class Spec(Generic[T]):
    """One statement: its text, parameters and how to turn the result into a value."""

    query: LiteralString
    params: Sequence[Any] | dict[str, Any] | None = None
    fetch: Fetch = "none"
    decode: Callable[[Any], T] | None = None
    #: For ``fetch="copy"``: the rows to send through ``COPY ... FROM STDIN``.
    rows: Iterable[Sequence[Any]] | None = None
    #: For ``fetch="copy"``, instead of ``rows``: the data already in COPY's text format, in
    #: chunks of many rows (one write per chunk instead of one adaptation per value).
    data: Iterable[str] | None = None


Plan = Generator[Spec[Any], Any, T]


def _finish(spec: Spec[Any], value: Any) -> Any:
    return spec.decode(value) if spec.decode is not None else value


async def run_spec(cur: psycopg.AsyncCursor[Any], spec: Spec[T]) -> T:
    """Execute ``spec`` on an async cursor whose rows are dicts."""
    if spec.fetch == "copy":
        async with cur.copy(spec.query) as copy:
            if spec.data is not None:
                for chunk in spec.data:
                    await copy.write(chunk)
            for row in spec.rows or ():
                await copy.write_row(row)
        return _finish(spec, cur.rowcount)
    await cur.execute(spec.query, spec.params)
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
    """Execute ``spec`` on a sync cursor whose rows are dicts."""
    if spec.fetch == "copy":
        with cur.copy(spec.query) as copy:
            if spec.data is not None:
                for chunk in spec.data:
                    copy.write(chunk)
            for row in spec.rows or ():
                copy.write_row(row)
        return _finish(spec, cur.rowcount)
    cur.execute(spec.query, spec.params)
    if spec.fetch == "one":
        value: Any = cur.fetchone()
    elif spec.fetch == "all":
        value = cur.fetchall()
    elif spec.fetch == "rowcount":
        value = cur.rowcount
    else:
        value = None
    return _finish(spec, value)


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
