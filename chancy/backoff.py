"""Capped exponential backoff with full jitter: how every chancy loop waits between retries.

The n-th wait (from 0) is random in ``[0, min(maximum, initial * 2**n)]``. Full jitter, not
a fixed schedule with a little noise: when a database restart fails every worker of a fleet at
the same moment, fixed schedules (1 s, 2 s, 4 s...) keep the fleet retrying in waves, all at
once; random waits spread the attempts evenly over the whole window, and the cap bounds how
long a worker stays idle once the server is back. No loop gives up: a worker waits out any
outage (see docs/reliability.md for the measured reconnect of a fleet).
"""

from __future__ import annotations

import random

__all__ = ["RECONNECT_INITIAL", "RECONNECT_MAX", "Backoff", "full_jitter"]

#: The waits of a connection that failed (a pool slot or the LISTEN session): a quarter
#: second at first, doubling up to five seconds, each drawn at random below that.
RECONNECT_INITIAL = 1.0
RECONNECT_MAX = 5.0


def full_jitter(initial: float, maximum: float, failures: int) -> float:
    """The wait after ``failures`` earlier failures: random in [0, min(maximum, initial*2**n)]."""
    return random.uniform(0.0, min(maximum, initial * 2 ** min(failures, 62)))


class Backoff:
    """The retry state of one loop: ``next()`` after a failure, ``reset()`` after success."""

    def __init__(self, initial: float = 0.05, maximum: float = 5.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self.failures = 0

    def reset(self) -> None:
        self.failures = 0

    def next(self) -> float:
        """How long to wait before the next try."""
        delay = full_jitter(self.initial, self.maximum, self.failures)
        self.failures += 1
        return delay
