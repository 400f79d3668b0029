"""The exception tree drawn in chancy.errors' docstring is the one the classes form."""

from __future__ import annotations

import re

import chancy.errors as errors


def _drawn() -> list[tuple[str, str]]:
    """(child, parent) pairs read from the tree in the module docstring."""
    doc = errors.__doc__ or ""
    pairs: list[tuple[str, str]] = []
    stack: list[tuple[int, str]] = []
    tree = doc.split("::", 1)[1]
    for line in tree.splitlines():
        match = re.match(r"^(\s*(?:[│ ]*)(?:[├└]── )?)([A-Z][A-Za-z]+)", line)
        if not match:
            continue
        depth, name = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            pairs.append((name, stack[-1][1]))
        stack.append((depth, name))
    return pairs


def test_every_class_sits_where_the_docstring_draws_it() -> None:
    pairs = _drawn()
    assert len(pairs) == 14
    assert ("JobMemoryLimitError", "JobFailedError") in pairs
    assert ("JobTimeLimitError", "JobFailedError") in pairs
    assert ("JobControl", "ChancyError") in pairs
    assert ("Retry", "JobControl") in pairs
    for child, parent in pairs:
        assert issubclass(getattr(errors, child), getattr(errors, parent)), (child, parent)


def test_job_control_is_a_chancy_error() -> None:
    assert issubclass(errors.Retry, errors.ChancyError)
    assert isinstance(errors.Snooze(5), errors.ChancyError)
