"""Queues: named, stored in the database, changed while workers run."""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from chancy.errors import ConfigurationError
from chancy.job import QUEUE_NAME

EXECUTORS = {
    "process": "chancy.executors.process.ProcessExecutor",
    "threaded": "chancy.executors.thread.ThreadedExecutor",
    "async": "chancy.executors.asyncex.AsyncExecutor",
    "sub_interpreter": "chancy.executors.sub.SubInterpreterExecutor",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Queue:
    """A named queue and the settings every worker serving it follows.

    Flow control (every limit is global, across all workers, and enforced when jobs are
    claimed; all default to None, meaning no limit):

    - ``rate_limit`` jobs may start per ``rate_limit_window`` seconds: no window of that length
      holds more starts, across the fleet. The starts are kept in a table, so restarting
      PostgreSQL does not reset a window into a burst.
    - ``global_concurrency``: at most this many jobs of the queue run at once across the fleet
      (``concurrency`` stays the per-worker number of slots). A job counts while its row is
      ``running``: the running jobs of a crashed worker keep counting until Recovery returns
      them to the queue.
    - ``partition_concurrency`` and ``partition_rate_limit`` per ``partition_rate_limit_window``
      seconds apply the same limits to each partition key (``Job.with_partition_key``), so one
      busy key cannot starve the others: jobs of a key at its limit wait, jobs of other keys
      still run. Jobs without a key are not limited per key (the queue's limits still apply).
    """

    class State(enum.StrEnum):
        ACTIVE = "active"
        PAUSED = "paused"

        def __str__(self) -> str:
            return self.value

    name: str
    concurrency: int | None = None
    tags: set[str] = dataclasses.field(default_factory=lambda: {".*"})
    state: Queue.State = State.ACTIVE
    executor: str = EXECUTORS["process"]
    executor_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    polling_interval: int | float = 5
    rate_limit: int | None = None
    rate_limit_window: int | None = None
    resume_at: datetime | None = None
    eager_polling: bool = False
    global_concurrency: int | None = None
    partition_concurrency: int | None = None
    partition_rate_limit: int | None = None
    partition_rate_limit_window: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not QUEUE_NAME.match(self.name):
            raise ConfigurationError(
                f"queue name {self.name!r} is invalid; use 1-200 letters, digits, '_', '-', '.'"
                " or ':'"
            )
        if not isinstance(self.state, Queue.State):
            try:
                object.__setattr__(self, "state", Queue.State(self.state))
            except ValueError:
                raise ConfigurationError(
                    f"queue state {self.state!r} is invalid; use 'active' or 'paused'"
                ) from None
        if hasattr(self.executor, "__module__") and not isinstance(self.executor, str):
            object.__setattr__(
                self, "executor", f"{self.executor.__module__}.{self.executor.__qualname__}"
            )
        elif isinstance(self.executor, enum.Enum):
            object.__setattr__(self, "executor", self.executor.value)
        if self.concurrency is not None and (
            isinstance(self.concurrency, bool)
            or not isinstance(self.concurrency, int)
            or self.concurrency < 1
        ):
            raise ConfigurationError(
                f"concurrency must be a positive integer or None (the executor's default), got"
                f" {self.concurrency!r}"
            )
        tags = self.tags
        if isinstance(tags, str):
            tags = {tags}
        object.__setattr__(self, "tags", set(tags))
        for tag in self.tags:
            try:
                re.compile(tag)
            except re.error as exc:
                raise ConfigurationError(f"queue tag {tag!r} is not a valid regex: {exc}") from None
        if (
            isinstance(self.polling_interval, bool)
            or not isinstance(self.polling_interval, int | float)
            or self.polling_interval <= 0
        ):
            raise ConfigurationError(
                f"polling_interval must be a positive number of seconds, got"
                f" {self.polling_interval!r}"
            )
        if (self.rate_limit is None) != (self.rate_limit_window is None):
            raise ConfigurationError(
                "rate_limit and rate_limit_window go together: give both (jobs per window of"
                " seconds) or neither"
            )
        if (self.partition_rate_limit is None) != (self.partition_rate_limit_window is None):
            raise ConfigurationError(
                "partition_rate_limit and partition_rate_limit_window go together: give both"
                " (jobs per key per window of seconds) or neither"
            )
        for name in (
            "rate_limit",
            "rate_limit_window",
            "global_concurrency",
            "partition_concurrency",
            "partition_rate_limit",
            "partition_rate_limit_window",
        ):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.executor_options, dict):
            raise ConfigurationError("executor_options must be a dict")

    @property
    def has_limits(self) -> bool:
        """True when a global limit applies; only such queues claim under a lock."""
        return (
            self.rate_limit is not None
            or self.global_concurrency is not None
            or self.has_partition_limits
        )

    @property
    def has_partition_limits(self) -> bool:
        """True when jobs are limited per partition key."""
        return self.partition_concurrency is not None or self.partition_rate_limit is not None

    def pack(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "concurrency": self.concurrency,
            "tags": sorted(self.tags),
            "state": self.state.value,
            "executor": self.executor,
            "executor_options": self.executor_options,
            "polling_interval": self.polling_interval,
            "rate_limit": self.rate_limit,
            "rate_limit_window": self.rate_limit_window,
            "resume_at": self.resume_at.isoformat() if self.resume_at else None,
            "eager_polling": self.eager_polling,
            "global_concurrency": self.global_concurrency,
            "partition_concurrency": self.partition_concurrency,
            "partition_rate_limit": self.partition_rate_limit,
            "partition_rate_limit_window": self.partition_rate_limit_window,
        }

    @classmethod
    def unpack(cls, data: Mapping[str, Any]) -> Queue:
        resume_at = data.get("resume_at")
        if isinstance(resume_at, str):
            resume_at = datetime.fromisoformat(resume_at)
        return cls(
            name=data["name"],
            concurrency=data.get("concurrency"),
            tags=set(data.get("tags") or {".*"}),
            state=Queue.State(data.get("state", "active")),
            executor=data.get("executor") or EXECUTORS["process"],
            executor_options=data.get("executor_options") or {},
            polling_interval=data.get("polling_interval", 5),
            rate_limit=data.get("rate_limit"),
            rate_limit_window=data.get("rate_limit_window"),
            resume_at=resume_at,
            eager_polling=bool(data.get("eager_polling", False)),
            global_concurrency=data.get("global_concurrency"),
            partition_concurrency=data.get("partition_concurrency"),
            partition_rate_limit=data.get("partition_rate_limit"),
            partition_rate_limit_window=data.get("partition_rate_limit_window"),
        )
