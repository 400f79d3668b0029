"""The benchmark suite runs end to end at its smoke size and writes its report.

This proves the suite works, not how fast chancy is: no figure is checked (the machine is
shared; speed is judged by the suite's own ratios, never by a timed test).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_quick_run_writes_the_report(dsn: str, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    env = {**os.environ, "CHANCY_DSN": dsn}
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = (tmp_path / "report.md").read_text()
    for workload in ("| W1 |", "| W2 |", "| W3 |", "| W5 |", "| W6 |", "| flow |"):
        assert workload in report
    assert "ratio to W4" in report
    for limit in ("rate_limit", "global_concurrency", "partition_concurrency", "all four limits"):
        assert limit in report, f"flow-control variant {limit} missing from the report"
    assert (tmp_path / "bench-throughput.png").stat().st_size > 0
    assert (tmp_path / "bench-latency.png").stat().st_size > 0
