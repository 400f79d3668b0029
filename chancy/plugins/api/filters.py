"""Job filters from query parameters or JSON, checked and compiled through :mod:`chancy.rule`.

Every value becomes a parameter of the compiled rule, never SQL text; the checks here refuse
filters that would be valid rules but too big to build or impossible for PostgreSQL to
compute, with a message that says how to fix them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from chancy.plugins.api.counts import STATES
from chancy.plugins.api.http import ApiError, check_json, parse_json, parse_time
from chancy.rule import (
    AndCondition,
    Condition,
    JobRules,
    NotCondition,
    OrCondition,
    SQLAble,
)

__all__ = ["JOB_FILTER_PARAMS", "job_rule"]

JOB_FILTER_PARAMS = frozenset(
    {"state", "queue", "func", "func_contains", "since", "until", "filter"}
)
#: A filter may hold at most this many parts of any kind (conditions, and, or, not, all).
MAX_FILTER_PARTS = 128
#: The largest age a filter may name: PostgreSQL cannot compute now() minus much more.
MAX_AGE = timedelta(days=36_500)


def _check_filter_size(data: Any) -> None:
    """Refuse a filter of more parts than a request may build.

    Why here: ``chancy.rule`` caps the conditions of a filter, but ``{"all": true}`` and the
    and/or/not around them are free there, and 900 of them chain deeper than Python recurses.
    """
    parts = 0
    stack = [data]
    while stack:
        item = stack.pop()
        if not isinstance(item, dict):
            continue
        parts += 1
        if parts > MAX_FILTER_PARTS:
            raise ApiError(
                400,
                f"a filter may hold at most {MAX_FILTER_PARTS} parts (conditions and the"
                " and/or/not/all around them); use 'in' with a list instead of many =",
            )
        for key in ("and", "or"):
            if isinstance(item.get(key), list):
                stack.extend(item[key])
        if "not" in item:
            stack.append(item["not"])


def _check_rule_values(rule: SQLAble) -> None:
    """Refuse values the rule accepts but PostgreSQL cannot compute (an age of 1e13 s)."""
    stack = [rule]
    while stack:
        item = stack.pop()
        if isinstance(item, AndCondition | OrCondition):
            stack.extend((item.left, item.right))
        elif isinstance(item, NotCondition):
            stack.append(item.inner)
        elif isinstance(item, Condition) and isinstance(item.rule, JobRules.Age):
            if isinstance(item.value, timedelta) and abs(item.value) > MAX_AGE:
                raise ApiError(
                    400,
                    f"an age may be at most {MAX_AGE.total_seconds():.0f} seconds (100 years)"
                    f" either way, got {item.value.total_seconds():g}",
                )


def _values(params: Mapping[str, Any], key: str) -> list[str]:
    raw = params.get(key)
    if raw is None or raw == "":
        return []
    items = raw if isinstance(raw, list) else str(raw).split(",")
    out = [str(v).strip() for v in items if str(v).strip()]
    if len(out) > 100:
        raise ApiError(400, f"{key} takes at most 100 values")
    return out


def _free_filter(raw_filter: Any) -> SQLAble:
    """The rule of a ``filter`` given as JSON text or an object."""
    if isinstance(raw_filter, str):
        if len(raw_filter) > 20000:
            raise ApiError(400, "filter is too long")
        try:
            raw_filter = parse_json(raw_filter, "filter")
        except ApiError as exc:
            if "not valid JSON" not in exc.message:
                raise
            raise ApiError(
                400,
                'filter must be JSON such as {"field": "queue", "op": "==", "value": "default"}',
            ) from None
    if not isinstance(raw_filter, dict):
        raise ApiError(400, "filter must be a JSON object")
    check_json(raw_filter, "filter")
    _check_filter_size(raw_filter)
    rule = JobRules.from_dict(raw_filter)
    _check_rule_values(rule)
    return rule


def job_rule(params: Mapping[str, Any], *, allow: Iterable[str] = ()) -> SQLAble:
    """Build the rule for job filters given as query parameters or a JSON object."""
    unknown = set(params) - JOB_FILTER_PARAMS - set(allow)
    if unknown:
        raise ApiError(
            400,
            f"unknown parameters {sorted(unknown)[:10]}; valid:"
            f" {sorted(JOB_FILTER_PARAMS | set(allow))}",
        )
    parts: list[SQLAble] = []
    states = _values(params, "state")
    if states:
        bad = [s for s in states if s not in STATES]
        if bad:
            raise ApiError(
                400, f"unknown state {bad[0][:40]!r}; valid states are {', '.join(STATES)}"
            )
        parts.append(JobRules.State().is_in(states))
    queues = _values(params, "queue")
    if queues:
        parts.append(JobRules.Queue().is_in(queues))
    funcs = _values(params, "func")
    if funcs:
        parts.append(JobRules.Job().is_in(funcs))
    contains = params.get("func_contains")
    if contains:
        parts.append(JobRules.Job().contains(str(contains)))
    since, until = params.get("since"), params.get("until")
    if since:
        parts.append(JobRules.CreatedAt() >= parse_time(str(since), "since"))
    if until:
        parts.append(JobRules.CreatedAt() <= parse_time(str(until), "until"))
    raw_filter = params.get("filter")
    if raw_filter:
        parts.append(_free_filter(raw_filter))
    if not parts:
        return JobRules.All()
    rule = parts[0]
    for part in parts[1:]:
        rule = AndCondition(rule, part)
    return rule
