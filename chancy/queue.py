"""Queues: named, stored in the database, changed while workers run."""

from __future__ import annotations

import dataclasses
import enum
import importlib
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from chancy.errors import ConfigurationError
from chancy.job import QUEUE_NAME

#: Bounds on a queue's settings. Why: a queue's row is read by every worker and by the
#: dashboard, so a value that is not a number (NaN), absurd (a billion slots) or dangerous (a
#: tag regex that backtracks exponentially against worker tags) must never be stored.
MAX_CONCURRENCY = 10_000
MIN_POLLING_INTERVAL = 0.01
MAX_POLLING_INTERVAL = 86_400.0
#: The limit columns are PostgreSQL integers.
MAX_LIMIT = 2**31 - 1
#: Rate-limit windows: at most a year of seconds.
MAX_WINDOW = 366 * 86_400
MAX_TAGS = 100
MAX_TAG_LENGTH = 500
#: Fair-share weights: positive, and small enough that 1/weight stays meaningful.
MAX_WEIGHT = 1_000_000
MAX_PARTITION_KEY = 500
#: What a final failure does to the rest of an ordered queue's key.
ON_FAILURE = ("continue", "hold")

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

    Fair share across partition keys:

    - ``fairness=True``: when several keys have waiting work, claims serve them in proportion
      to their weights (stride scheduling: each key has a pass that grows by 1/weight per job
      it is served; a claim takes the jobs with the smallest passes). Within a key, jobs keep
      their order (priority, then age). A key that had no waiting work starts level with the
      busiest keys, so it gets its share at once but no credit for the time it was idle.
    - ``partition_weights`` maps keys to positive weights; the key ``"*"`` gives the weight of
      every key not listed (1 when absent). Jobs without a key share one key of their own,
      weighted by ``"*"``.
    - A fair queue claims under the queue's lock, like a queue with limits, and may use
      ``rate_limit`` and ``global_concurrency``; per-key limits are not combined with it.

    Strict order per key:

    - ``partition_ordered=True``: the jobs of one partition key run one at a time, in push
      order; priority and scheduling do not reorder them. A job that failed and will be
      retried holds its key until it succeeds or fails for good. Jobs without a key are not
      ordered. Other keys are never held by one key's jobs.
    - ``partition_on_failure``: what a job's final failure does to the rest of its key:
      ``"continue"`` (the default) runs the next job; ``"hold"`` holds the key until an
      operator retries or removes the failed job (dashboard, CLI or ``retry_jobs``).
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
    fairness: bool = False
    partition_weights: Mapping[str, int | float] | None = None
    partition_ordered: bool = False
    partition_on_failure: str = "continue"
    #: Seconds after a job is due (its ``scheduled_at``) by which it must have started,
    #: applied at push to jobs without their own ``deadline``; None: no default deadline.
    default_deadline: int | float | None = None

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
        if self.concurrency is not None:
            _check_int("concurrency", self.concurrency, 1, MAX_CONCURRENCY, "None")
        tags = self.tags
        if isinstance(tags, str):
            tags = {tags}
        object.__setattr__(self, "tags", set(tags))
        if len(self.tags) > MAX_TAGS:
            raise ConfigurationError(
                f"a queue takes at most {MAX_TAGS} tags, got {len(self.tags)}; one regex with"
                " alternatives (a|b|c) can stand for several"
            )
        for tag in self.tags:
            check_tag(tag)
        polling = self.polling_interval
        if isinstance(polling, bool) or not isinstance(polling, int | float):
            raise ConfigurationError(
                f"polling_interval must be a number of seconds, got {polling!r}; pass e.g."
                " polling_interval=5"
            )
        if isinstance(polling, float) and not math.isfinite(polling):
            raise ConfigurationError(
                f"polling_interval must be a finite number of seconds, got {polling!r}; pass"
                " e.g. polling_interval=5"
            )
        if not MIN_POLLING_INTERVAL <= polling <= MAX_POLLING_INTERVAL:
            raise ConfigurationError(
                f"polling_interval must be between {MIN_POLLING_INTERVAL:g} and"
                f" {MAX_POLLING_INTERVAL:g} seconds (a day), got {polling!r}; pass e.g."
                " polling_interval=5"
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
        for name, most in (
            ("rate_limit", MAX_LIMIT),
            ("rate_limit_window", MAX_WINDOW),
            ("global_concurrency", MAX_LIMIT),
            ("partition_concurrency", MAX_LIMIT),
            ("partition_rate_limit", MAX_LIMIT),
            ("partition_rate_limit_window", MAX_WINDOW),
        ):
            value = getattr(self, name)
            if value is not None:
                _check_int(name, value, 1, most, "None (no limit)")
        if not isinstance(self.executor_options, dict):
            raise ConfigurationError("executor_options must be a dict")
        self._check_fairness()
        self._check_ordering()
        self._check_deadline()

    def _check_ordering(self) -> None:
        if not isinstance(self.partition_ordered, bool):
            raise ConfigurationError(
                f"partition_ordered must be True or False, got {self.partition_ordered!r}"
            )
        if self.partition_on_failure not in ON_FAILURE:
            raise ConfigurationError(
                f"partition_on_failure must be one of {', '.join(map(repr, ON_FAILURE))}, got"
                f" {self.partition_on_failure!r}"
            )
        if self.partition_on_failure != "continue" and not self.partition_ordered:
            raise ConfigurationError(
                "partition_on_failure only applies to an ordered queue: pass"
                " partition_ordered=True with it"
            )
        if self.partition_ordered and (self.fairness or self.has_partition_limits):
            raise ConfigurationError(
                "an ordered queue runs one job per key at a time; it cannot also be fair or"
                " have per-key limits (partition_concurrency, partition_rate_limit)"
            )

    def _check_fairness(self) -> None:
        if not isinstance(self.fairness, bool):
            raise ConfigurationError(f"fairness must be True or False, got {self.fairness!r}")
        if self.fairness and self.has_partition_limits:
            raise ConfigurationError(
                "a fair queue cannot also have per-key limits (partition_concurrency,"
                " partition_rate_limit): use one or the other"
            )
        weights = self.partition_weights
        if weights is None:
            return
        if not self.fairness:
            raise ConfigurationError(
                "partition_weights only apply to a fair queue: pass fairness=True with them"
            )
        if not isinstance(weights, Mapping):
            raise ConfigurationError(
                f"partition_weights must map partition keys to weights, got {weights!r}; pass"
                ' e.g. {"gold": 4, "*": 1}'
            )
        for key, weight in weights.items():
            if not isinstance(key, str) or not key or len(key) > MAX_PARTITION_KEY:
                raise ConfigurationError(
                    f"partition_weights key {key!r} is not a partition key: use a non-empty"
                    f' string of at most {MAX_PARTITION_KEY} characters, or "*" for the rest'
                )
            if (
                isinstance(weight, bool)
                or not isinstance(weight, int | float)
                or not math.isfinite(weight)
                or not 0 < weight <= MAX_WEIGHT
            ):
                raise ConfigurationError(
                    f"partition_weights[{key!r}] must be a number above 0 and at most"
                    f" {MAX_WEIGHT:g}, got {weight!r}; a key that should not run belongs in"
                    " another queue (or pause the queue)"
                )
        object.__setattr__(self, "partition_weights", {k: weights[k] for k in sorted(weights)})

    def _check_deadline(self) -> None:
        deadline = self.default_deadline
        if deadline is not None and (
            isinstance(deadline, bool)
            or not isinstance(deadline, int | float)
            or not math.isfinite(deadline)
            or deadline <= 0
        ):
            raise ConfigurationError(
                f"default_deadline must be a positive number of seconds or None, got"
                f" {deadline!r}; pass e.g. default_deadline=3600 (jobs must start within an"
                " hour of being due)"
            )

    @property
    def has_limits(self) -> bool:
        """True when a global limit applies; only such queues claim under a lock."""
        return (
            self.rate_limit is not None
            or self.global_concurrency is not None
            or self.has_partition_limits
            or self.fairness
            or self.partition_ordered
        )

    @property
    def is_keyed(self) -> bool:
        """True when keyless jobs are stored with the key '' (per-key limits, fair, ordered)."""
        return self.has_partition_limits or self.fairness or self.partition_ordered

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
            "fairness": self.fairness,
            "partition_weights": dict(self.partition_weights) if self.partition_weights else None,
            "partition_ordered": self.partition_ordered,
            "partition_on_failure": self.partition_on_failure,
            "default_deadline": self.default_deadline,
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
            fairness=bool(data.get("fairness", False)),
            partition_weights=data.get("partition_weights"),
            partition_ordered=bool(data.get("partition_ordered", False)),
            partition_on_failure=data.get("partition_on_failure") or "continue",
            default_deadline=data.get("default_deadline"),
        )


def _check_int(name: str, value: Any, lo: int, hi: int, default: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(
            f"{name} must be an integer between {lo} and {hi:,} or {default}, got {value!r}"
        )
    if not lo <= value <= hi:
        raise ConfigurationError(
            f"{name} must be between {lo} and {hi:,} (or {default}), got {value:,}"
        )


def check_tag(tag: Any) -> None:
    """Refuse a tag that is not a string, does not compile, or could backtrack exponentially.

    Why: every worker matches each queue's tags against its own tags (its hostname, worker id,
    ...), so a pattern such as ``(a+)+$`` stored by one admin could freeze every worker's event
    loop on a long hostname. A quantifier applied to a group that itself holds a quantifier of
    variable length is refused; a possessive quantifier or an atomic group is fine.
    """
    if not isinstance(tag, str):
        raise ConfigurationError(f"queue tags must be strings (regexes), got {tag!r}")
    if len(tag) > MAX_TAG_LENGTH:
        raise ConfigurationError(
            f"queue tag is too long ({len(tag)} characters; at most {MAX_TAG_LENGTH})"
        )
    try:
        re.compile(tag)
    except (re.error, RecursionError, OverflowError) as exc:
        raise ConfigurationError(f"queue tag {tag!r} is not a valid regex: {exc}") from None
    if _nested_quantifier(tag):
        raise ConfigurationError(
            f"queue tag {tag!r} has a nested quantifier (a repeated group that itself repeats,"
            " such as (a+)+), which can take exponential time to match; write it without the"
            " nesting (a+ instead of (a+)+) or make the outer quantifier possessive ((a+)++)"
        )


def _regex_parser() -> Any:
    # The standard library's own regex parser gives the exact structure of a pattern; it is
    # private, so the check is skipped on a Python whose parser moved.
    try:
        return importlib.import_module("re._parser")
    except ImportError:  # pragma: no cover
        return None


_PARSER = _regex_parser()


def _nested_quantifier(pattern: str) -> bool:
    """True when a repeat of more than one may hold a repeat of variable length."""
    if _PARSER is None:  # pragma: no cover
        return False
    try:
        parsed = _PARSER.parse(pattern)
    except Exception:  # pragma: no cover - re.compile accepted it already
        return False
    constants = _PARSER
    greedy = {constants.MAX_REPEAT, constants.MIN_REPEAT}

    def walk(items: Any, inside_repeat: bool) -> bool:
        for op, arg in items:
            if op in greedy:
                lo, hi, sub = arg
                variable = lo != hi
                if inside_repeat and variable:
                    return True
                if walk(sub, inside_repeat or hi > 1):
                    return True
            elif op == constants.SUBPATTERN:
                if walk(arg[-1], inside_repeat):
                    return True
            elif op == constants.BRANCH:
                if any(walk(branch, inside_repeat) for branch in arg[1]):
                    return True
            elif op in (constants.ASSERT, constants.ASSERT_NOT):
                if walk(arg[1], inside_repeat):
                    return True
            # Possessive repeats and atomic groups never backtrack into themselves.
        return False

    return walk(parsed, False)
