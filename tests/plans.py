"""EXPLAIN a named query the way the server plans it, and find scans a plan must not make.

Statements run through psycopg are planned with their parameter values for the first
executions and may then switch to a generic plan (psycopg prepares a statement after five
uses, and the server's plan cache may settle on a plan made without the values). Both are
checked: the query is PREPAREd with ``$n`` parameters and EXPLAINed under
``plan_cache_mode = force_custom_plan`` and ``force_generic_plan``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping
from typing import Any

import psycopg

_PARAM = re.compile(r"%\((\w+)\)s|%%")
_serial = itertools.count()


def positional(query: str) -> tuple[str, list[str]]:
    """``%(name)s`` placeholders as ``$n`` (first use numbered first), and the names."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "%"
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _PARAM.sub(number, query), names


def explain(
    conn: psycopg.Connection[Any],
    query: str,
    params: Mapping[str, Any],
    *,
    generic: bool,
    settings: str | None = None,
) -> dict[str, Any]:
    """The JSON plan of ``query`` with ``params``: the custom plan, or the generic one.

    ``settings`` is a statement run first in the same transaction (the claim's planner
    settings), as the code runs it.
    """
    if settings is not None:
        with conn.transaction():
            conn.execute(settings)  # type: ignore[arg-type]
            return explain(conn, query, params, generic=generic)
    text, names = positional(query)
    statement = f"plan_probe_{next(_serial)}"
    conn.execute(f"PREPARE {statement} AS {text}")  # type: ignore[arg-type]
    try:
        mode = "force_generic_plan" if generic else "force_custom_plan"
        conn.execute(f"SET plan_cache_mode = {mode}")  # type: ignore[arg-type]
        args = ", ".join(["%s"] * len(names))
        call = (
            f"EXPLAIN (FORMAT JSON) EXECUTE {statement}({args})"
            if names
            else (f"EXPLAIN (FORMAT JSON) EXECUTE {statement}")
        )
        # Literal arguments (client-side binding): EXECUTE's own parameters would need types.
        with psycopg.ClientCursor(conn) as cur:
            cur.execute(call, [params[name] for name in names])  # type: ignore[arg-type]
            row = cur.fetchone()
    finally:
        conn.execute(f"DEALLOCATE {statement}")  # type: ignore[arg-type]
        conn.execute("RESET plan_cache_mode")
    assert row is not None
    plan = row[0]
    if isinstance(plan, str):
        import json

        plan = json.loads(plan)
    return dict(plan[0]["Plan"])


def nodes(plan: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from nodes(child)


_INDEX_SCANS = ("Index Scan", "Index Only Scan", "Bitmap Index Scan")


def unbounded_scans(plan: Mapping[str, Any], tables: set[str], indexes: set[str]) -> list[str]:
    """Scans whose cost is not bounded by the rows they find: a sequential scan of one of
    ``tables``, or a scan of one of ``indexes`` with no index condition (the whole index)."""
    found = []
    for node in nodes(plan):
        kind = node["Node Type"]
        if kind == "Seq Scan" and node.get("Relation Name") in tables:
            found.append(f"Seq Scan on {node['Relation Name']}")
        elif kind in _INDEX_SCANS and node.get("Index Name") in indexes:
            if not node.get("Index Cond"):
                found.append(f"{kind} on {node['Index Name']} without an index condition")
    return found


#: Inner sides of a nested loop that are read whole for every outer row: a join of a batch's
#: rows to them costs the batch's size squared (1,000 outcomes: a million comparisons).
_REREAD = ("CTE Scan", "Function Scan", "Materialize", "Values Scan")


def quadratic_joins(plan: Mapping[str, Any]) -> list[str]:
    """Nested loops whose inner side is a CTE, a function (unnest) or a materialised set
    with no condition of its own: every outer row reads all of it again."""
    found = []
    for node in nodes(plan):
        if node["Node Type"] != "Nested Loop" or len(node.get("Plans", ())) < 2:
            continue
        inner = node["Plans"][1]
        if inner["Node Type"] in _REREAD and not inner.get("Filter"):
            name = inner.get("CTE Name") or inner.get("Function Name") or inner["Node Type"]
            found.append(f"Nested Loop reading {inner['Node Type']} {name} for every outer row")
    return found


def describe(plan: Mapping[str, Any], depth: int = 0) -> str:
    """The plan as indented lines, for assertion messages."""
    extra = " ".join(
        f"{key}={plan[key]!r}"
        for key in ("Relation Name", "Index Name", "Index Cond", "Filter", "Plan Rows")
        if key in plan
    )
    lines = ["  " * depth + f"{plan['Node Type']} {extra}"]
    for child in plan.get("Plans", ()):
        lines.append(describe(child, depth + 1))
    return "\n".join(lines)
