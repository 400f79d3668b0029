"""Worker processes for the workflow and cron tests (``tests.workflow.runner``), always reaped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from chancy import Chancy
from chancy.store import Spec
from tests.workflow.runner import ENV

ROOT = Path(__file__).resolve().parents[2]

#: Leases of 2 s renewed every 0.2 s: a crashed leader is replaced within ~2 s. Heartbeats are
#: more lenient (a worker that cannot renew its heartbeat in time stops claiming), so a busy
#: shared server does not stall the test; a crashed worker's jobs come back within ~5 s.
LEADERSHIP = {"poll_interval": 0.2, "timeout": 2.0}
RECOVERY = {"poll_interval": 0.2}
HEARTBEAT = [0.5, 5.0]


class Proc:
    def __init__(self, worker_id: str, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.worker_id = worker_id
        self.popen = popen
        self.log = log

    def alive(self) -> bool:
        return self.popen.poll() is None

    def started(self) -> bool:
        try:
            return f"worker {self.worker_id} started" in self.log.read_text(errors="replace")
        except OSError:
            return False

    def kill(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=10)


class Fleet:
    """Starts runner processes on one prefix; kills whatever is left at the end."""

    def __init__(self, dsn: str, prefix: str, tmp: Path, **plugins: Any) -> None:
        self.dsn = dsn
        self.prefix = prefix
        self.tmp = tmp
        self.plugins = plugins
        self.procs: list[Proc] = []

    def start(self, name: str, *, tags: tuple[str, ...] = ()) -> Proc:
        worker_id = f"{name}-{len(self.procs) + 1}"
        config = {
            "dsn": self.dsn,
            "prefix": self.prefix,
            "worker_id": worker_id,
            "tags": list(tags),
            "leadership": LEADERSHIP,
            "recovery": RECOVERY,
            "heartbeat": HEARTBEAT,
            **self.plugins,
        }
        env = {**os.environ, ENV: json.dumps(config), "PYTHONPATH": str(ROOT)}
        log_path = self.tmp / f"{worker_id}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                [sys.executable, "-m", "tests.workflow.runner"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        proc = Proc(worker_id, popen, log_path)
        self.procs.append(proc)
        return proc

    def by_id(self, worker_id: str) -> Proc:
        return next(p for p in self.procs if p.worker_id == worker_id)

    def logs(self) -> str:
        parts = []
        for p in self.procs:
            text = p.log.read_text(errors="replace") if p.log.exists() else ""
            parts.append(f"--- {p.worker_id} ---\n{text[-4000:]}")
        return "\n".join(parts)

    def close(self) -> None:
        for p in self.procs:
            if p.alive():
                p.popen.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 10
        for p in self.procs:
            try:
                p.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass


async def leader(chancy: Chancy) -> str | None:
    """The worker holding a live lease, or None."""
    row = await chancy.db.run(
        Spec(
            f"SELECT worker_id FROM {chancy.prefix}leader"  # type: ignore[arg-type]
            " WHERE id = 1 AND expires_at > now()",
            None,
            "one",
        )
    )
    return row["worker_id"] if row else None
