"""A ProcessExecutor child's side of progress reports: forwards them to the worker, throttled.

A job may report in a tight loop; sending each report over the socket would cost both
processes a pickle and a system call per report. The child sends a report at once when none
was sent in the last ``interval`` seconds, and otherwise keeps only the latest, which a
daemon thread (started at the first report held back) sends once the interval has passed,
so a job that reports and then computes for an hour does not hold its last report back.
Before a job's reply, the pending report goes first, so the worker has the last report when
the outcome arrives.

Every write to the socket happens under one lock, as whole frames: reports sent by the
thread never interleave with a reply sent by the main thread.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from chancy.progress import Report

#: Seconds between two reports sent to the worker, at most (the worker writes less often).
INTERVAL = 0.05


class ProgressPipe:
    """Sends frames to the worker; throttles progress reports."""

    def __init__(
        self,
        sock: socket.socket,
        frame: Callable[[Any], bytes],
        kind: int,
        *,
        interval: float = INTERVAL,
    ) -> None:
        self._sock = sock
        self._frame = frame
        self._kind = kind
        self._interval = interval
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._pending: tuple[Any, ...] | None = None
        self._last = float("-inf")
        # Started at the first report held back, so children of jobs that never report
        # start no thread; None once starting it failed (see ``report``).
        self._thread: threading.Thread | bool | None = False

    def report(self, job_id: int, report: Report) -> None:
        """Called by job code (any thread) through ``chancy.progress.deliver``."""
        message = (self._kind, job_id, report.fraction, report.message, report.data_json)
        with self._lock:
            now = time.monotonic()
            if self._pending is None and now - self._last >= self._interval:
                self._last = now
                self._sock.sendall(self._frame(message))
                return
            if self._thread is False:
                self._thread = self._start()
            if self._thread is None:
                # No thread to send it later (a job under a tight memory limit cannot start
                # one: its stack counts against RLIMIT_AS): send every report now.
                self._last = now
                self._sock.sendall(self._frame(message))
                return
            self._pending = message
            self._changed.notify()

    def _start(self) -> threading.Thread | None:
        thread = threading.Thread(target=self._run, name="chancy-progress", daemon=True)
        try:
            thread.start()
        except (RuntimeError, MemoryError):
            return None
        return thread

    def reply(self, data: bytes) -> None:
        """Send a job's reply (a whole frame), after the report it left pending, if any."""
        with self._lock:
            pending, self._pending = self._pending, None
            if pending is not None:
                self._sock.sendall(self._frame(pending))
            self._sock.sendall(data)

    def _run(self) -> None:
        with self._lock:
            while True:
                if self._pending is None:
                    self._changed.wait()
                    continue
                wait = self._last + self._interval - time.monotonic()
                if wait > 0:
                    self._changed.wait(wait)
                    continue
                pending, self._pending = self._pending, None
                self._last = time.monotonic()
                try:
                    self._sock.sendall(self._frame(pending))
                except OSError:
                    return  # the worker went away; the main thread finds out too
