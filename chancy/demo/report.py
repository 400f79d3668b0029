"""What the demo draws: progress while the jobs run, then a table of what ran where."""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chancy.demo.tour import Lane
    from chancy.job import QueuedJob


# -- progress -----------------------------------------------------------------------------


class Progress:
    """Draws progress: one line redrawn in place on a terminal, a line a second otherwise."""

    def __init__(self, lanes: list[Lane], total: int, started: float, stream: Any) -> None:
        self.lanes = lanes
        self.stream = stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.total = total
        self.started = started
        self._last_line = 0.0
        self._width = 0

    @property
    def done(self) -> int:
        return sum(lane.done for lane in self.lanes)

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        done = self.done
        width = 28
        filled = int(width * done / self.total) if self.total else width
        bar = "#" * filled + "-" * (width - filled)
        lanes = "  ".join(f"{lane.label} {lane.done}/{len(lane.refs)}" for lane in self.lanes)
        rate = f"{done / elapsed:,.0f}" if elapsed >= 0.5 else "-"
        return f"[{bar}] {done}/{self.total}  {lanes}  {rate} jobs/s  {elapsed:4.1f}s"

    def draw(self, *, final: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            text = self.line()
            pad = max(0, self._width - len(text))
            self._width = len(text)
            self.stream.write("\r" + text + " " * pad + ("\n" if final else ""))
            self.stream.flush()
        elif final or now - self._last_line >= 1.0:
            self._last_line = now
            self.stream.write(self.line() + "\n")
            self.stream.flush()


# -- the run ------------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    out = []
    for n, row in enumerate([headers, *rows]):
        cells = [
            cell.ljust(w) if i in (0, 1, len(headers) - 1) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _ran_where(lane: Lane, jobs: list[QueuedJob], worker_pid: int) -> str:
    places = [j.result for j in jobs if isinstance(j.result, dict)]
    pids = sorted({p["pid"] for p in places if "pid" in p})
    threads = {p.get("thread") for p in places}
    if lane.label == "process":
        others = [p for p in pids if p != worker_pid]
        return f"{len(others)} child process(es): pid " + ", ".join(map(str, others))
    if lane.label == "threaded":
        return f"worker pid {worker_pid}, {len(threads)} thread(s)"
    return f"worker pid {worker_pid}, event loop ({', '.join(sorted(map(str, threads)))})"


def summary(lanes: list[Lane], jobs: dict[str, list[QueuedJob]]) -> tuple[str, bool]:
    headers = ["QUEUE", "EXECUTOR", "JOBS", "OK", "FAILED", "RETRIED", "WALL", "JOBS/S", "RAN IN"]
    rows = []
    all_ok = True
    for lane in lanes:
        got = jobs[lane.queue]
        ok = sum(1 for j in got if str(j.state) == "succeeded")
        failed = sum(1 for j in got if str(j.state) == "failed")
        retried = sum(1 for j in got if j.errors)
        starts = [j.started_at for j in got if j.started_at is not None]
        ends = [j.completed_at for j in got if j.completed_at is not None]
        wall = _seconds(min(starts), max(ends)) if starts and ends else 0.0
        rate = len(got) / wall if wall > 0 else 0.0
        all_ok = all_ok and ok == len(lane.refs)
        rows.append(
            [
                lane.queue,
                lane.label,
                str(len(lane.refs)),
                str(ok),
                str(failed),
                str(retried),
                f"{wall:.2f}s",
                f"{rate:,.0f}",
                _ran_where(lane, got, os.getpid()),
            ]
        )
    return _table(headers, rows), all_ok


def _seconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())
