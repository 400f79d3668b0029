"""bench/costs.py runs end to end at a tiny size and reports every path with real figures.

The shared test server does not preload pg_stat_statements, so this also proves the fallback:
given that server, the script measures on a throwaway cluster of its own. No figure is compared
with a target (the machine is shared); the test checks that each is there and positive.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster import find_pg_bin

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PATHS = (
    "plain",
    "single",
    "unique",
    "limits",
    "keyed",
    "workflow",
    "results",
    "plain_async",
    "single_async",
)


def _has_pg_stat_statements() -> bool:
    bin_dir = find_pg_bin()
    return bin_dir is not None and any(bin_dir.parent.rglob("pg_stat_statements.so"))


def test_costs_reports_every_path(dsn: str, tmp_path: Path) -> None:
    if not _has_pg_stat_statements():
        pytest.skip("no PostgreSQL binaries with pg_stat_statements on this machine")
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "costs.py"), "--jobs", "300", "--out", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "CHANCY_DSN": dsn},
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads((tmp_path / "costs.json").read_text())
    report = (tmp_path / "costs.md").read_text()
    assert data["server"].startswith("a throwaway cluster"), data["server"]
    assert [p["key"] for p in data["paths"]] == list(PATHS)
    for p in data["paths"]:
        label = p["label"]
        assert f"| {label} |" in report, f"{label} missing from the report"
        for phase in ("push", "claim", "complete"):
            assert p["phase_us"][phase] > 0, (label, phase, p["phase_us"])
            assert p["phase_cpu"][phase] > 0, (label, phase, p["phase_cpu"])
        assert p["phase_us"]["cleanup"] > 0, label
        assert p["cpu"]["drain"]["costs_worker"] > 0, label
        assert all(p["wal_lsn"][w] > 0 for w in ("push", "drain", "cleanup")), label
        assert p["phase_wal"]["claim"] > 0 and p["phase_wal"]["complete"] > 0, label
        assert p["connections"]["peak"] >= p["connections"]["idle"] >= 2, label
        assert p["pruned"] == p["jobs"], label
        # Every job's statements are named after chancy's queries, not left as raw text.
        assert {"job_fetch", "job_complete_many"} & set(p["statements"]), label
    workflow = next(p for p in data["paths"] if p["key"] == "workflow")
    assert workflow["phase_us"]["advance"] > 0
    assert workflow["statements"]["workflow_results"]["phase"] == "claim"
    results = next(p for p in data["paths"] if p["key"] == "results")
    plain = next(p for p in data["paths"] if p["key"] == "plain")
    # A stored result is written with the completion: more WAL there than for a plain job.
    assert results["phase_wal"]["complete"] > plain["phase_wal"]["complete"] + 100
    for section in ("## Server CPU per job", "## WAL per job", "16 cores", "connections"):
        assert section in report


def test_costs_measures_on_a_server_given_that_preloads_the_extension(tmp_path: Path) -> None:
    """A server that preloads pg_stat_statements is measured as it is (no throwaway)."""
    if not _has_pg_stat_statements():
        pytest.skip("no PostgreSQL binaries with pg_stat_statements on this machine")
    from tests.cluster import Cluster

    with Cluster({"shared_preload_libraries": "pg_stat_statements"}) as server:
        result = subprocess.run(
            [
                sys.executable,
                str(ROOT / "bench" / "costs.py"),
                "--dsn",
                server.dsn,
                "--jobs",
                "200",
                "--paths",
                "plain",
                "--out",
                str(tmp_path),
            ],
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if k != "CHANCY_DSN"},
            capture_output=True,
            text=True,
            timeout=200,
        )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads((tmp_path / "costs.json").read_text())
    assert data["server"].startswith("the server given"), data["server"]
    (plain,) = data["paths"]
    assert plain["phase_cpu"]["claim"] > 0 and plain["phase_us"]["complete"] > 0
