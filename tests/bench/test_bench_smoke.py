"""The benchmark suite runs end to end at its smoke size and writes its report.

This proves the suite works, not how fast chancy is: no figure is checked (the machine is
shared; speed is judged by the suite's own ratios, never by a timed test).
"""

from __future__ import annotations

import json
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
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--quick",
            "--conditions",
            "fresh,analyzed,autovacuum",
            "--out",
            str(tmp_path),
        ],
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
    # The reference loops have their own section, the four-connection drain included.
    assert "## W4, the reference" in report
    assert "four connections (W6's reference)" in report
    assert "binary COPY" in report
    # Every drain under each statistics condition, measured both ways, best and worst shown.
    drains = report.split("## Drains under three statistics conditions", 1)[1]
    assert "| database clock |" in drains and "| outside poller |" in drains
    for condition in ("fresh", "analyzed", "autovacuum"):
        assert f"| {condition} |" in drains, f"condition {condition} missing from the report"
    summary = drains.split("### Every condition", 1)[0]
    assert summary.count("| W2 |") == 6, "a W2 variant is missing from the best/worst table"
    results = json.loads((tmp_path / "results.json").read_text())
    w6 = [r for r in results if r["workload"] == "W6" and r["condition"]]
    assert w6 and all(r["reference_label"] == "W4 four-connection drain" for r in w6)
    conditions = {(r["label"], r["condition"]) for r in results if r["workload"] == "W2"}
    assert len(conditions) == 6 * 3
    assert (tmp_path / "bench-throughput.png").stat().st_size > 0
    assert (tmp_path / "bench-latency.png").stat().st_size > 0
