"""A project written for Chancy 0.26 runs unchanged on chancy (issue 16's acceptance).

``tests/compat/project`` is a small shop application written against Chancy 0.26's public API
only (its README lists what it uses). These tests run it the way its users run it: a
subprocess, ``python -m shop.main DSN PREFIX``, with nothing but the project on PYTHONPATH,
and assert what it reports.

- With this chancy (the interpreter running the tests).
- With the released chancy 0.26.0, when ``CHANCY_REF026_PYTHON`` names an interpreter that has
  it (``python3 -m venv /work/ref026 && /work/ref026/bin/pip install chancy==0.26.0 croniter``
  ``Django==5.2.19``: the project uses the Django apps 0.26 documents):
  the same assertions pass, which proves the project is genuine 0.26 code and that the
  outcomes asserted are 0.26's.
- With this chancy on a database that chancy 0.26.0 created and filled
  (``databases/chancy-0.26.0.sql``, default prefix): the project's ``migrate()`` upgrades it
  in place and the scenario runs as on a fresh one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.compat.test_databases import DUMPS, load
from tests.compat.test_databases import database as database  # the fixture
from tests.conftest import drop_prefix

ROOT = Path(__file__).resolve().parents[2]
PROJECT = Path(__file__).resolve().parent / "project"
REF026 = os.environ.get("CHANCY_REF026_PYTHON")


def run_project(python: str, dsn: str, prefix: str, *path: Path) -> dict[str, Any]:
    """Run the shop as its users do; return its REPORT."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHANCY_", "PYTHON"))}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (PROJECT, *path))
    ran = subprocess.run(
        [python, "-m", "shop.main", dsn, prefix],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=100,
        env=env,
        check=False,
    )
    assert ran.returncode == 0, f"the project failed:\n{ran.stdout[-4000:]}\n{ran.stderr[-8000:]}"
    reports = [line for line in ran.stdout.splitlines() if line.startswith("REPORT ")]
    assert reports, f"no REPORT line:\n{ran.stdout[-4000:]}\n{ran.stderr[-4000:]}"
    report: dict[str, Any] = json.loads(reports[-1].removeprefix("REPORT "))
    # Shown by pytest when an assertion on the report fails.
    print(json.dumps(report, indent=1))
    print(ran.stderr[-20000:], file=sys.stderr)
    return report


def check_report(report: dict[str, Any], *, other_queues: tuple[str, ...] = ()) -> None:
    """What the shop must report, on Chancy 0.26 and on chancy alike (``other_queues``: those
    the database held before the shop came)."""
    # Unique keys and push_many.
    assert report["unique_key_same_job"] is True
    assert report["push_many_batches"] == [2, 2, 1]
    assert [r["state"] for r in report["receipts"]] == ["succeeded"] * 6
    jobs = report["jobs"]

    # Process executor: ran in another process, job context meta saved, time limit enforced.
    for name, size in (("thumb_small", 1000), ("thumb_large", 200_000)):
        assert jobs[name]["state"] == "succeeded", jobs[name]
        assert jobs[name]["meta"]["thumbnail"]["size"] == size
    for name in ("thumb_huge", "poster", "bad_image"):
        assert (jobs[name]["state"], jobs[name]["errors"]) == ("failed", 1), name
    assert report["upscale"]["state"] == "pending" and report["upscale"]["attempts"] == 0
    assert report["newsletters"] == ["breaking", "weekly", "monthly"]

    # Retries (RetryPlugin subclass with its own calculate_next_run) on the custom executor.
    assert (jobs["charge"]["state"], jobs["charge"]["attempts"], jobs["charge"]["errors"]) == (
        "succeeded",
        3,
        2,
    )
    assert (jobs["refund"]["state"], jobs["refund"]["attempts"], jobs["refund"]["errors"]) == (
        "failed",
        2,
        2,
    )
    assert sorted(map(tuple, report["retry_calls"])) == [
        ("shop.jobs.charge_card", 1),
        ("shop.jobs.charge_card", 2),
        ("shop.jobs.refund", 1),
    ]

    # Workflow and sequence completed, in dependency order.
    assert report["workflow"] == {
        "state": "completed",
        "steps": dict.fromkeys(("reserve", "pack", "label", "ship"), "succeeded"),
    }
    assert report["sequence"] == {
        "state": "completed",
        "steps": dict.fromkeys(("step_0", "step_1", "step_2"), "succeeded"),
    }
    order = report["audit"]["order"]
    assert order.index("reserve_stock") < min(
        order.index("pack_parcel"), order.index("print_label")
    )
    assert max(order.index("pack_parcel"), order.index("print_label")) < order.index("ship_parcel")
    assert (
        order.index("export_sales") < order.index("compress_export") < order.index("upload_export")
    )

    # Cron fired, the pruner removed the scratch job, the worker led.
    assert report["cron_runs"] >= 1
    assert report["heartbeat_unscheduled"] is True
    assert report["cache_job_pruned"] is True
    assert report["leader"] is True

    # The custom plugin: lifecycle hooks, hub events, its sleep loop, job hooks.
    audit = report["audit"]
    assert audit["worker_started"] is True and audit["worker_stopped"] is True
    # Not "gpu": its tags ask for has=gpu, which the shop's worker lacks.
    shop_queues = (
        "default",
        "emails",
        "fulfilment",
        "images",
        "newsletters",
        "payments",
        "reports",
        "scratch",
    )
    assert audit["queues_started"] == sorted({*shop_queues, *other_queues})
    assert audit["leaders"] == ["shop-worker-1"]
    assert audit["ticks"] >= 3 and audit["ticks_heard"][:3] == [1, 2, 3]
    assert audit["wait_for_results"] == ["list"]
    completed = {c["func"]: c for c in audit["completed"]}
    assert completed["charge_card"]["states"] == ["retrying", "retrying", "succeeded"]
    assert completed["charge_card"]["error"] == "ConnectionError"
    assert completed["charge_card"]["result"] == "charged 4200 for order 1001 in eu-west"
    assert completed["refund"]["states"] == ["retrying", "failed"]
    assert completed["refund"]["error"] == "ValueError"
    # A time limit reaches plugins as a TimeoutError, as on every 0.26 executor.
    assert (
        completed["make_huge_thumbnail"]["states"],
        completed["make_huge_thumbnail"]["error"],
    ) == (
        ["failed"],
        "timeout",
    )
    # A memory limit reaches plugins as a MemoryError, a job's exception as itself.
    assert completed["make_poster"]["error"] == "out of memory"
    assert completed["check_image"]["error"] == "ValueError"
    thumbs = [c for c in audit["completed"] if c["func"] == "make_thumbnail"]
    assert len(thumbs) == 2
    for thumb in thumbs:
        assert thumb["result"]["pid"] != report["main_pid"]
    assert completed["ship_parcel"]["result"] == "shipped 1001"
    # on_job_updated: once per written outcome, at least one per job run.
    assert audit["updated"] >= len(audit["completed"]) + 3

    # A scheduled job cancelled before it ran ends failed (and never ran: six receipts below).
    assert report["cancelled"] == "failed"

    # The custom plugin's own table (its 0.26 Migration), filled by on_jobs_updated_in_transaction.
    audit_rows = {(func, state): n for func, state, n in report["audit_table"]}
    assert audit_rows.pop(("heartbeat", "succeeded")) >= 1
    assert audit_rows == {
        ("charge_card", "retrying"): 2,
        ("charge_card", "succeeded"): 1,
        ("refund", "retrying"): 1,
        ("refund", "failed"): 1,
        ("make_huge_thumbnail", "failed"): 1,
        ("make_poster", "failed"): 1,
        ("check_image", "failed"): 1,
        ("send_newsletter", "succeeded"): 3,
        ("make_thumbnail", "succeeded"): 2,
        ("send_receipt", "succeeded"): 6,
        ("order_placed", "succeeded"): 1,
        ("clear_cache", "succeeded"): 1,
        ("reserve_stock", "succeeded"): 1,
        ("pack_parcel", "succeeded"): 1,
        ("print_label", "succeeded"): 1,
        ("ship_parcel", "succeeded"): 1,
        ("export_sales", "succeeded"): 1,
        ("compress_export", "succeeded"): 1,
        ("upload_export", "succeeded"): 1,
    }

    # What an operator's script sees: the worker's queues, the workers, the queues, a
    # fetched workflow and its DOT graph, pause and resume, Job.pack() round trips.
    served = [q for q in shop_queues if q != "default"]
    assert report["introspection"] == {
        "served": sorted({"default", *served, *other_queues}),
        "count": len({"default", *served, *other_queues}),
        "emails_served": True,
        "gpu_served": False,
        "payments_executor": "shop.executors.RegionExecutor",
        "workers": ["shop-worker-1"],
        "queues": sorted({"default", "gpu", *served, *other_queues}),
        "workflow_complete": True,
        "dot_edges": 4,
        "pause": ["paused", "active"],
        "pack_round_trip": True,
    }
    # Events every 0.26 plugin may listen for (hub.on_any saw them).
    assert {
        "worker.started",
        "worker.stopped",
        "worker.queue.started",
        "worker.queue.removed",
        "worker.announced",
        "queue.declared",
        "queue.pushed",
        "queue.paused",
        "queue.resumed",
        # Not leadership.gained: 0.26's first election can NOTIFY before its LISTEN is up
        # (its plugins start before its listener), so 0.26 itself misses it under load.
        "metrics.counter",
        "metrics.gauge",
        "metrics.histogram",
        "pruner.removed",
        "workflow.step_completed",
        "shop.audit.tick",
    } <= set(audit["events"])

    # A worker in its own process served a job and stopped cleanly on SIGTERM.
    assert report["worker_process"] == {
        "job": "succeeded",
        "output": ["READY", "STOPPED"],
        "exit": 0,
    }

    # Trigger: a row inserted into the shop's table queued a job carrying the trigger's meta.
    assert len(report["triggers"]) == 1 and report["triggers"][0].endswith("orders")
    assert report["order_placed"] == [f"INSERT on {report['triggers'][0]}"]

    # The sync API and the Django apps 0.26 documents (models over the Chancy tables).
    assert report["sync_push"] == "pending"
    assert report["django"] == {
        "charge": {"state": "succeeded", "attempts": 3},
        "failed_payments": 1,
        "queues": ["emails", "images", "payments"],
        "cron": ["0 3 * * *"],
        "workflow": {
            "name": "fulfil-1001",
            "state": "completed",
            "steps": ["label", "pack", "reserve", "ship"],
        },
    }

    # Custom metrics reported through the worker.
    metrics = report["metrics"]
    assert metrics["shop:jobs:succeeded"] >= 22
    assert metrics["shop:jobs:errors"] == 6
    assert metrics["shop:jobs:timeouts"] == 1
    assert metrics["shop:charged"]["count"] == 1 and metrics["shop:charged"]["sum"] == 4200
    # A gauge (its latest value; 0.26 under load may report an earlier one, so only >= 1).
    assert metrics["shop:audit:ticks"] >= 1


@pytest.fixture
def fresh_prefix(dsn: str, prefix: str) -> Iterator[str]:
    """The test's prefix; the project leaves its tables behind, so drop them after."""
    try:
        yield prefix
    finally:
        drop_prefix(dsn, prefix)


@pytest.mark.timeout(150)
@pytest.mark.parametrize(
    "which",
    [
        pytest.param("chancy", id="this-chancy"),
        pytest.param(
            "chancy-0.26.0",
            id="chancy-0.26.0",
            marks=pytest.mark.skipif(
                not REF026,
                reason="set CHANCY_REF026_PYTHON to an interpreter with chancy==0.26.0 installed"
                " (see this module's docstring) to run the project on the released 0.26",
            ),
        ),
    ],
)
def test_a_chancy_026_project_runs_unchanged(which: str, dsn: str, fresh_prefix: str) -> None:
    python = sys.executable if which == "chancy" else str(REF026)
    report = run_project(python, dsn, fresh_prefix)
    if which == "chancy":
        assert Path(report["chancy"]) == ROOT / "chancy", "the project did not run this chancy"
    else:
        assert report["version"] == "0.26.0" and "site-packages" in report["chancy"]
    check_report(report)


@pytest.mark.timeout(200)
def test_the_project_runs_on_a_database_chancy_026_made(database: str) -> None:
    (dump,) = [d for d in DUMPS if d.stem == "chancy-0.26.0"]
    load(database, dump)
    # The dump's own jobs call tests.compat.fixture_jobs, so the repository is on the path too.
    report = run_project(sys.executable, database, "chancy_", ROOT)
    check_report(report, other_queues=("compat_later", "compat_now"))
