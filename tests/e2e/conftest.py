"""Harness for end-to-end tests: real worker processes started through ``chancy worker start``.

Each test gets its own table prefix, a migrated app configured exactly like its workers
(``tests.e2e.app``), and the side table ``{prefix}e2e_runs`` in which jobs record their runs.
Workers log to files; their logs are printed at teardown, so a failing test shows them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest
from psycopg.rows import dict_row

from chancy import Chancy, QueuedJob, Reference
from tests.conftest import drop_prefix
from tests.e2e.app import DSN_ENV, PREFIX_ENV, make_app
from tests.e2e.jobs import SIDE_TABLE_DDL

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """One ``chancy worker start`` subprocess."""

    def __init__(self, worker_id: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.worker_id = worker_id
        self.proc = proc
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.proc.send_signal(sig)

    async def wait_ready(self, timeout: float = 30) -> None:
        """Wait until the worker logged that it started (it serves its queues by then)."""
        marker = f"worker {self.worker_id} started"
        deadline = time.monotonic() + timeout
        while marker not in self.output():
            if not self.alive():
                raise AssertionError(
                    f"worker {self.worker_id} exited with {self.proc.returncode} before it"
                    f" started:\n{self.output()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"worker {self.worker_id} did not start within {timeout}s:\n{self.output()}"
                )
            await asyncio.sleep(0.05)

    async def wait_exit(self, timeout: float) -> int:
        """Wait for the process to exit; return its exit code."""
        deadline = time.monotonic() + timeout
        while (code := self.proc.poll()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"worker {self.worker_id} still running after {timeout}s:\n{self.output()}"
                )
            await asyncio.sleep(0.02)
        return code


class E2E:
    """A test's app, its workers and its side table."""

    def __init__(self, dsn: str, prefix: str, log_dir: Path) -> None:
        self.dsn = dsn
        self.prefix = prefix
        self.log_dir = log_dir
        self.chancy: Chancy = make_app(dsn, prefix)
        self.workers: list[WorkerProcess] = []
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("CHANCY_") or k == "CHANCY_TEST_DSN"
        }
        self.env.update({DSN_ENV: dsn, PREFIX_ENV: prefix, "PYTHONUNBUFFERED": "1"})

    def start_worker(
        self,
        *,
        shutdown_timeout: float = 10,
        worker_id: str | None = None,
        tags: Iterable[str] = (),
    ) -> WorkerProcess:
        worker_id = worker_id or f"w{len(self.workers) + 1}-{uuid.uuid4().hex[:6]}"
        log_path = self.log_dir / f"{worker_id}.log"
        args = [
            sys.executable,
            "-m",
            "chancy",
            "--app",
            "tests.e2e.app:app",
            "worker",
            "start",
            "--worker-id",
            worker_id,
            "--shutdown-timeout",
            str(shutdown_timeout),
        ]
        if tags:
            args += ["--tags", ",".join(tags)]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        worker = WorkerProcess(worker_id, proc, log_path)
        self.workers.append(worker)
        return worker

    async def stop_all(self) -> None:
        """SIGTERM every live worker, then SIGKILL what is still running after 15 s."""
        for worker in self.workers:
            worker.signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for worker in self.workers:
            try:
                await asyncio.to_thread(worker.proc.wait, max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                await asyncio.to_thread(worker.proc.wait, 10)

    def print_logs(self) -> None:
        for worker in self.workers:
            print(f"----- worker {worker.worker_id} (pid {worker.pid}) -----")
            print(worker.output())

    async def query(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        pool = await self.chancy.open()
        async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql.format(prefix=self.prefix), params)
            return await cur.fetchall() if cur.description else []

    async def runs(self) -> list[dict[str, Any]]:
        """The recorded runs, in the order they were recorded."""
        return await self.query("SELECT * FROM {prefix}e2e_runs ORDER BY seq")

    async def state_counts(self) -> dict[str, int]:
        rows = await self.query("SELECT state, count(*) AS n FROM {prefix}jobs GROUP BY state")
        return {r["state"]: r["n"] for r in rows}

    async def jobs(self, refs: Iterable[Reference]) -> list[QueuedJob]:
        refs = list(refs)
        found = {j.id: j for j in await self.chancy.get_jobs(refs)}
        return [found[r.identifier] for r in refs]

    async def wait_for(self, refs: Iterable[Reference], *, timeout: float = 30) -> list[QueuedJob]:
        """Wait until every job is succeeded or failed; return them in the given order."""
        refs = list(refs)
        await self.chancy.wait_for_jobs(refs, timeout=timeout, interval=0.5)
        return await self.jobs(refs)


@pytest.fixture
async def e2e(dsn: str, prefix: str, tmp_path: Path) -> AsyncIterator[E2E]:
    harness = E2E(dsn, prefix, tmp_path)
    try:
        async with harness.chancy:
            await harness.chancy.migrate()
            await harness.query(SIDE_TABLE_DDL)
            try:
                yield harness
            finally:
                await harness.stop_all()
                harness.print_logs()
                await harness.chancy.migrate(to_version=0)
    finally:
        drop_prefix(dsn, prefix)
