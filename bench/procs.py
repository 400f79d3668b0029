"""Benchmark processes: chancy workers (long-lived, reused) and reference drains."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeVar

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = ROOT if not path else f"{ROOT}{os.pathsep}{path}"
    return env


def spawn(module: str, args: Sequence[str], *, stdin: bool = False) -> subprocess.Popen[str]:
    """``python -m module args``; with ``stdin`` its standard input is a pipe we write to."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=child_env(),
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )


async def wait_line(proc: subprocess.Popen[str], expected: str, timeout: float = 60) -> None:
    """Wait until ``proc`` prints ``expected`` on a line of its own."""
    assert proc.stdout is not None
    stdout = proc.stdout

    def read() -> None:
        for line in stdout:
            if line.strip() == expected:
                return
        raise RuntimeError(f"process {proc.args} exited (code {proc.wait()}) before '{expected}'")

    await asyncio.wait_for(asyncio.to_thread(read), timeout)


async def read_line(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    """The next line ``proc`` prints (an error if it exits first)."""
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout)
    if not line:
        raise RuntimeError(f"process {proc.args} exited (code {proc.wait()}) without output")
    return line


def send_line(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


async def stop(procs: Sequence[subprocess.Popen[str]], timeout: float = 30) -> None:
    """SIGTERM, then wait; kill what does not exit in time."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            await asyncio.to_thread(proc.wait, timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)
        for pipe in (proc.stdout, proc.stdin):
            if pipe is not None:
                with suppress(OSError):
                    pipe.close()


# -- chancy workers -------------------------------------------------------------------


class ProcessPool:
    """Helper processes (``python -m module args``) kept for the whole run.

    Each prints ``up`` once it is ready for commands on its standard input; the pool hands
    out idle ones, so repeated measurements do not pay for Python's start-up each time.
    """

    module = ""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.procs: list[subprocess.Popen[str]] = []

    def args(self) -> list[str]:
        return [self.dsn]

    async def take(self, count: int) -> list[subprocess.Popen[str]]:
        """``count`` idle processes, started (and waited for) if there are fewer."""
        self.procs = [p for p in self.procs if p.poll() is None]
        while len(self.procs) < count:
            proc = spawn(self.module, self.args(), stdin=True)
            self.procs.append(proc)
            await wait_line(proc, "up")
        return self.procs[:count]

    async def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with suppress(OSError):
                    send_line(proc, "exit")
        await stop(self.procs)
        self.procs = []


class WorkerPool(ProcessPool):
    """``python -m bench.worker DSN``: each runs one chancy ``Worker`` at a time, started and
    stopped through its standard input, so a drain pays for the worker's start-up but not
    for Python's."""

    module = "bench.worker"


_pools: list[ProcessPool] = []

P = TypeVar("P", bound=ProcessPool)


def pool(kind: type[P], dsn: str) -> P:
    """The run's pool of ``kind`` processes for ``dsn`` (closed by :func:`close_pools`)."""
    for existing in _pools:
        if type(existing) is kind and existing.dsn == dsn:
            return existing  # type: ignore[return-value]
    created = kind(dsn)
    _pools.append(created)
    return created


async def close_pools() -> None:
    """Stop every pooled process (at the end of a run)."""
    while _pools:
        await _pools.pop().close()


class Fleet:
    """``count`` workers on one prefix and queue settings, told to start at once.

    :meth:`go` starts a ``Worker`` in each process and records when (``go_time``, from
    ``time.time()``); a drain timed from it includes the workers' start-up.
    """

    def __init__(self, dsn: str, prefix: str, settings: dict[str, Any], count: int = 1) -> None:
        self.pool = pool(WorkerPool, dsn)
        self.settings = {**settings, "prefix": prefix}
        self.count = count
        self.procs: list[subprocess.Popen[str]] = []
        self.go_time = 0.0
        self._started = False

    async def up(self) -> None:
        """Have ``count`` idle worker processes (booted, waiting for a start)."""
        self.procs = await self.pool.take(self.count)

    def go(self) -> None:
        if not self.procs:
            raise RuntimeError("Fleet.go() before up()")
        line = "start " + json.dumps(self.settings)
        self.go_time = time.time()
        for proc in self.procs:
            send_line(proc, line)
        self._started = True

    async def serving(self, timeout: float = 60) -> None:
        """Wait until every worker serves its queues."""
        for proc in self.procs:
            await wait_line(proc, "ready", timeout)

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"worker process {proc.pid} exited (code {proc.returncode})")

    async def stop(self, timeout: float = 60) -> None:
        """Stop the workers gracefully (their processes stay for the next fleet)."""
        if not self._started:
            return
        self._started = False
        for proc in self.procs:
            if proc.poll() is None:
                send_line(proc, "stop")
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    await wait_line(proc, "stopped", timeout)
                except (TimeoutError, RuntimeError):
                    # Not reusable: gone from the pool (take() drops dead processes).
                    await stop([proc])


@asynccontextmanager
async def workers(
    dsn: str, prefix: str, settings: dict[str, Any], count: int = 1, *, serving: bool = True
) -> AsyncIterator[Fleet]:
    """``count`` chancy workers on ``prefix``, started together.

    With ``serving`` this waits until every worker serves its queues before yielding;
    without, it yields right after the go.
    """
    fleet = Fleet(dsn, prefix, settings, count)
    await fleet.up()
    try:
        fleet.go()
        if serving:
            await fleet.serving()
        yield fleet
    finally:
        await fleet.stop()
