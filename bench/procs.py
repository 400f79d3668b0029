"""Starting and stopping benchmark worker processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = ROOT if not path else f"{ROOT}{os.pathsep}{path}"
    return env


def spawn(module: str, args: Sequence[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=child_env(),
        stdin=subprocess.DEVNULL,
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


async def stop(procs: Sequence[subprocess.Popen[str]], timeout: float = 30) -> None:
    """SIGTERM (a graceful stop), then wait; kill what does not exit in time."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            await asyncio.to_thread(proc.wait, timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)
        if proc.stdout is not None:
            proc.stdout.close()


@asynccontextmanager
async def workers(
    dsn: str, prefix: str, settings: dict[str, Any], count: int = 1
) -> AsyncIterator[list[subprocess.Popen[str]]]:
    """``count`` worker processes on ``prefix``, each serving its queues once yielded."""
    procs = [spawn("bench.worker", [dsn, prefix, json.dumps(settings)]) for _ in range(count)]
    try:
        for proc in procs:
            await wait_line(proc, "ready")
        yield procs
    finally:
        await stop(procs)
