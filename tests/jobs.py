"""Job functions used by the tests (importable by spawned worker processes)."""

from __future__ import annotations

from chancy import job


def noop() -> None:
    return None


def add(a: int, b: int) -> int:
    return a + b


@job(queue="decorated", priority=5)
def decorated(x: int = 0) -> int:
    return x
