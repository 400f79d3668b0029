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
    """A named queue and the settings every worker serving it follows."""

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
        for name in ("rate_limit", "rate_limit_window"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.executor_options, dict):
            raise ConfigurationError("executor_options must be a dict")

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
        )
