"""Shared pieces of the reliability tests: the test's own app and the worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from chancy import Chancy
from tests.reliability.chaos_jobs import DSN_ENV, PREFIX_ENV

ROOT = Path(__file__).resolve().parents[2]


def small_app(dsn: str, prefix: str) -> Chancy:
    """The test's own Chancy: no plugins, a pool of two."""
    return Chancy(
        dsn,
        prefix=prefix,
        no_default_plugins=True,
        min_connection_pool_size=1,
        max_connection_pool_size=2,
    )


def worker_env(dsn: str, prefix: str, **extra: str) -> dict[str, str]:
    """The environment of a chaos worker process (none of the test's own CHANCY_ settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANCY_")}
    env.update({DSN_ENV: dsn, PREFIX_ENV: prefix, "PYTHONUNBUFFERED": "1", **extra})
    return env


def spawn_worker(
    worker_id: str, env: dict[str, str], log: Path, wrapper: Iterable[str] = ()
) -> subprocess.Popen[bytes]:
    """Start ``tests.reliability.chaos_worker`` (inside ``wrapper``, e.g. ``ip netns exec``)."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [*wrapper, sys.executable, "-m", "tests.reliability.chaos_worker", worker_id],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
