"""The demo on a terminal ends where an operator looks next: a live dashboard until Ctrl-C."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

import httpx
import psycopg
import pytest

from chancy.demo import PREFIX

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DASHBOARD = re.compile(r"dashboard: (http://127\.0\.0\.1:\d+/)\s+\(user admin, password (\S+)\)")


def _read_until(fd: int, pattern: re.Pattern[str], seen: list[str], timeout: float) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536).decode(errors="replace")
            except OSError:  # the child closed the terminal
                break
            seen.append(chunk)
            found = pattern.search("".join(seen))
            if found:
                return found
    pytest.fail(f"the demo never printed {pattern.pattern!r}; it printed:\n{''.join(seen)}")


def _demo_tables(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_class WHERE relkind = 'r' AND relname LIKE %s",
            (PREFIX.replace("_", "\\_") + "%",),
        ).fetchone()
    return int(row[0]) if row else 0


def test_on_a_terminal_the_demo_keeps_its_dashboard_up_until_ctrl_c(dsn: str) -> None:
    primary, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("CHANCY_DSN",)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "chancy.demo", "--dsn", dsn, "--jobs", "30", "--port", "0"],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=env,
        start_new_session=True,
    )
    os.close(secondary)
    seen: list[str] = []
    try:
        found = _read_until(primary, DASHBOARD, seen, timeout=200)
        url, password = found.group(1), found.group(2)
        assert "] 30/30" in "".join(seen)  # the tour ran every job first
        # The printed login opens the dashboard, and the tour's jobs are on view.
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.get("health").status_code == 200
            login = client.post("api/v1/login", json={"username": "admin", "password": password})
            assert login.status_code == 200, login.text
            headers = {"Authorization": f"Bearer {login.json()['token']}"}
            jobs = client.get("api/v1/jobs", params={"limit": 100}, headers=headers)
            assert jobs.status_code == 200
            assert len(jobs.json()["jobs"]) == 30
        assert proc.poll() is None, "the demo must keep running until Ctrl-C"
        # Ctrl-C stops the worker and removes the demo's tables.
        os.killpg(proc.pid, signal.SIGINT)
        _read_until(primary, re.compile(r"all jobs succeeded"), seen, timeout=60)
        assert proc.wait(60) == 0, "".join(seen)
        assert _demo_tables(dsn) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        os.close(primary)
