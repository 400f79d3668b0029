"""``chancy worker web``: a dashboard-only process with a generated admin password."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import drop_prefix

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _chancy(dsn: str, prefix: str, *args: str, **kwargs: object) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANCY_")}
    return subprocess.Popen(
        [sys.executable, "-m", "chancy", "--dsn", dsn, "--prefix", prefix, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )


def test_worker_web_serves_the_dashboard_with_a_generated_password(dsn: str, prefix: str) -> None:
    try:
        with _chancy(dsn, prefix, "misc", "migrate") as migrate:
            _, err = migrate.communicate(timeout=60)
            assert migrate.returncode == 0, err
        port = _free_port()
        scrape = "a-prometheus-token-for-the-cli-0001"
        with _chancy(
            dsn, prefix, "worker", "web", "--port", str(port), "--metrics-token", scrape
        ) as proc:
            try:
                assert proc.stdout is not None
                line = proc.stdout.readline()
                assert line.startswith("dashboard login: user 'admin', password "), line
                password = line.strip().rsplit(" ", 1)[-1]
                deadline = time.monotonic() + 30
                while True:
                    try:
                        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                        break
                    except httpx.TransportError:
                        assert proc.poll() is None, "the dashboard exited early"
                        assert time.monotonic() < deadline, "the dashboard did not start"
                        time.sleep(0.1)
                assert health.json() == {"status": "ok"}
                base = f"http://127.0.0.1:{port}"
                token = httpx.post(
                    f"{base}/api/v1/login", json={"username": "admin", "password": password}
                ).json()["token"]
                queues = httpx.get(
                    f"{base}/api/v1/queues", headers={"Authorization": f"Bearer {token}"}
                )
                assert queues.status_code == 200
                assert httpx.get(f"{base}/metrics").status_code == 401
                scraped = httpx.get(
                    f"{base}/metrics", headers={"Authorization": f"Bearer {scrape}"}
                )
                assert scraped.status_code == 200
                assert httpx.get(f"{base}/").headers["content-type"].startswith("text/html")
                proc.send_signal(signal.SIGINT)
                assert proc.wait(30) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.communicate(timeout=10)
        with _chancy(dsn, prefix, "misc", "migrate", "--to-version", "0") as down:
            down.communicate(timeout=60)
    finally:
        drop_prefix(dsn, prefix)
