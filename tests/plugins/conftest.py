"""Worker processes for the plugin tests, started from runner.py and always cleaned up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, LiteralString, cast

import pytest

from chancy import Chancy, Queue
from chancy.plugin import Plugin
from chancy.store import Spec

ROOT = Path(__file__).resolve().parents[2]

#: Small, fast settings for process tests: leases of 2 s renewed every 0.2 s.
LEADERSHIP = {"poll_interval": 0.2, "timeout": 2.0}
RECOVERY = {"poll_interval": 0.2}
HEARTBEAT = (0.25, 2.0)


class Proc:
    """One worker process."""

    def __init__(self, name: str, worker_id: str, popen: subprocess.Popen[bytes], events: Path):
        self.name = name
        self.worker_id = worker_id
        self.popen = popen
        self.events_path = events
        #: Monotonic time by which the process was known dead after a SIGKILL.
        self.killed_at: float | None = None

    def events(self) -> list[dict[str, Any]]:
        if not self.events_path.exists():
            return []
        out = []
        for line in self.events_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.append(json.loads(line))
        return out

    def started(self) -> bool:
        return any(e["e"] == "started" for e in self.events())

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.popen.send_signal(sig)

    def kill(self) -> float:
        """SIGKILL and reap; return the monotonic time by which it was dead."""
        self.signal(signal.SIGKILL)
        self.popen.wait(timeout=10)
        self.killed_at = time.monotonic()
        return self.killed_at

    def stacks(self) -> str:
        """Ask the process for its threads' and tasks' stacks (see runner.py); return its log,
        to say where a process that does not exit is stuck."""
        log = self.events_path.with_suffix(".log")
        size = log.stat().st_size if log.exists() else 0
        self.signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if log.exists() and b"-- end of stacks --" in log.read_bytes()[size:]:
                break
            time.sleep(0.05)
        return log.read_text(errors="replace")[-30000:] if log.exists() else ""

    def exit_line(self) -> dict[str, Any] | None:
        for e in self.events():
            if e["e"] == "exit":
                return e
        return None


class Fleet:
    """Starts worker processes on one prefix; kills whatever is left at the end."""

    def __init__(self, dsn: str, prefix: str, tmp: Path) -> None:
        self.dsn = dsn
        self.prefix = prefix
        self.tmp = tmp
        self.procs: list[Proc] = []
        self._n = 0

    def start(
        self,
        name: str,
        *,
        tags: tuple[str, ...] = (),
        leadership: Any = LEADERSHIP,
        recovery: Any = RECOVERY,
        heartbeat: tuple[float, float] = HEARTBEAT,
        shutdown_timeout: float = 5,
    ) -> Proc:
        self._n += 1
        worker_id = f"{name}-{self._n}"
        events = self.tmp / f"{worker_id}.jsonl"
        config = {
            "dsn": self.dsn,
            "prefix": self.prefix,
            "worker_id": worker_id,
            "tags": list(tags),
            "leadership": leadership,
            "recovery": recovery,
            "heartbeat": list(heartbeat),
            "events": str(events),
            "shutdown_timeout": shutdown_timeout,
        }
        env = {**os.environ, "CHANCY_RUNNER": json.dumps(config), "PYTHONPATH": str(ROOT)}
        log = open(self.tmp / f"{worker_id}.log", "wb")
        popen = subprocess.Popen(
            [sys.executable, "-m", "tests.plugins.runner"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        proc = Proc(name, worker_id, popen, events)
        self.procs.append(proc)
        return proc

    def by_worker(self, worker_id: str) -> Proc:
        return next(p for p in self.procs if p.worker_id == worker_id)

    def logs(self) -> str:
        parts = []
        for p in self.procs:
            path = self.tmp / f"{p.worker_id}.log"
            if path.exists():
                parts.append(f"--- {p.worker_id} ---\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def close(self) -> None:
        for p in self.procs:
            if p.alive():
                p.signal(signal.SIGCONT)
                p.signal(signal.SIGKILL)
        for p in self.procs:
            try:
                p.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture
async def make_app(chancy: Chancy, dsn: str, prefix: str) -> AsyncIterator[Any]:
    """Build more apps on the test's (migrated) prefix, each with its own plugins."""
    apps: list[Chancy] = []

    def make(*plugins: Plugin) -> Chancy:
        app = Chancy(
            dsn,
            prefix=prefix,
            plugins=plugins,
            no_default_plugins=True,
            min_connection_pool_size=1,
            max_connection_pool_size=3,
        )
        apps.append(app)
        return app

    try:
        yield make
    finally:
        for app in apps:
            await app.close()


@pytest.fixture
async def fleet(chancy: Chancy, dsn: str, prefix: str, tmp_path: Path) -> AsyncIterator[Fleet]:
    # Every worker declares the "default" queue; declared first with tags no worker has, it
    # is never served, so the processes start no executor they do not need.
    await chancy.declare(Queue("default", tags={"^nobody$"}))
    fleet = Fleet(dsn, prefix, tmp_path)
    try:
        yield fleet
    finally:
        fleet.close()


async def lease_row(chancy: Chancy) -> Any:
    text = f"""
        SELECT worker_id, term, last_seen, expires_at, expires_at > now() AS live
        FROM {chancy.prefix}leader WHERE id = 1"""
    return await chancy.db.run(Spec(cast(LiteralString, text), None, "one"))
