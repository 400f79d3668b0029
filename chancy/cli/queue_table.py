"""How a queue shows in the CLI's tables, and the parsing of ``--weight KEY=N``."""

from __future__ import annotations

import click

from chancy.queue import EXECUTORS, Queue


def short_executor(path: str) -> str:
    for name, full in EXECUTORS.items():
        if full == path:
            return name
    return path


QUEUE_HEADERS = ("NAME", "STATE", "EXECUTOR", "CONCURRENCY", "POLLING", "TAGS", "LIMITS")


def limits_cell(q: Queue) -> str:
    """The queue's flow-control limits in one cell without spaces ("-" when it has none).

    ``rate=10/60s,running=4,key-running=1,key-rate=2/10s``: jobs started per window, jobs
    running at once across all workers, and the same two per partition key.
    """
    parts = []
    if q.rate_limit is not None:
        parts.append(f"rate={q.rate_limit}/{q.rate_limit_window}s")
    if q.global_concurrency is not None:
        parts.append(f"running={q.global_concurrency}")
    if q.partition_concurrency is not None:
        parts.append(f"key-running={q.partition_concurrency}")
    if q.partition_rate_limit is not None:
        parts.append(f"key-rate={q.partition_rate_limit}/{q.partition_rate_limit_window}s")
    if q.fairness:
        weights = q.partition_weights or {}
        parts.append("fair" + "".join(f",{k}={w:g}" for k, w in weights.items()))
    if q.partition_ordered:
        parts.append("ordered" + (",hold" if q.partition_on_failure == "hold" else ""))
    return ",".join(parts) or "-"


def parse_weights(given: tuple[str, ...]) -> dict[str, float] | None:
    """``--weight KEY=N`` options as a dict (None when there are none)."""
    if not given:
        return None
    weights: dict[str, float] = {}
    for item in given:
        key, sep, value = item.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not sep or not key or number is None:
            raise click.UsageError(f"--weight takes KEY=N (e.g. --weight gold=4), got {item!r}")
        weights[key] = int(number) if number.is_integer() else number
    return weights


def queue_row(q: Queue) -> list[str]:
    state = str(q.state)
    if q.resume_at is not None:
        state += f" (until {q.resume_at.isoformat(timespec='seconds')})"
    return [
        q.name,
        state,
        short_executor(q.executor),
        "default" if q.concurrency is None else str(q.concurrency),
        f"{q.polling_interval:g}s",
        ",".join(sorted(q.tags)),
        limits_cell(q),
    ]
