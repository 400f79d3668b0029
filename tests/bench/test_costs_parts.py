"""The parts of bench/costs.py that need no server: naming statements as pg_stat_statements
shows them, their phases, who ran them, and the CPU arithmetic between two marks."""

from __future__ import annotations

import os
import re

from bench.costs_probe import CpuSampler, Statements, normalize, process_cpu_ns
from chancy.store.loader import queries

PREFIX = "costs1_plain_"


def as_pg_stat_statements(text: str) -> str:
    """What the server records for a statement chancy sends: psycopg's placeholders become
    $n, and the server replaces each literal constant with the next $n."""
    counter = iter(range(1, 1000))
    lines = []
    for line in text.splitlines():
        code, dashes, comment = line.partition("--")  # comments are kept as they are
        code = re.sub(r"%\(\w+\)s", lambda _: f"${next(counter)}", code)
        code = re.sub(r"'[^']*'", lambda _: f"${next(counter)}", code)
        lines.append(code + dashes + comment)
    return "\n".join(lines)


def test_statements_are_named_after_chancy_queries() -> None:
    names = Statements(PREFIX)
    core = queries("chancy.store.sql", PREFIX)
    for name in ("job_fetch", "job_complete_many", "job_insert_many", "limit_lock"):
        assert names.name(as_pg_stat_statements(core[name])) == name
    workflow = queries("chancy.plugins.workflow.sql", PREFIX)["workflow_results"]
    assert names.name(as_pg_stat_statements(workflow)) == "workflow_results"


def test_a_slightly_different_text_still_finds_its_query() -> None:
    names = Statements(PREFIX)
    text = as_pg_stat_statements(queries("chancy.store.sql", PREFIX)["job_fetch"])
    assert names.name(text.replace("LIMIT", "LIMIT  /* hint */")) == "job_fetch"
    # Text that is no chancy query is kept as (short) text, not forced onto a name.
    assert names.name("SELECT 1 FROM pg_class") == "select ? from pg_class"


def test_normalize_blanks_constants_comments_and_parameters() -> None:
    a = normalize("SELECT 'x', 12 -- note\nFROM t WHERE a = %(a)s AND b = -3;")
    b = normalize("select $1, $2 from t where a = $3 and b = $4")
    assert a == b


def test_phases_and_who_ran_them() -> None:
    phase = Statements.phase
    assert phase("job_fetch", "drain") == "claim"
    assert phase("job_fetch_keyed", "drain") == "claim"
    assert phase("workflow_results", "drain") == "claim"
    assert phase("job_complete_many", "drain") == "complete"
    assert phase("workflow_queued", "drain") == "advance"
    assert phase("job_insert_many", "drain") == "push"
    assert phase("worker_heartbeat", "drain") == "other"
    # In the cleanup window, the pruner's composed delete and VACUUM are cleanup.
    assert phase("with doomed as ( select j.id from x", "cleanup") == "cleanup"
    assert phase("vacuum costs1_plain_jobs", "cleanup") == "cleanup"
    assert phase("worker_heartbeat", "cleanup") == "other"
    by_pusher = Statements.by_pusher
    assert by_pusher("push", "job_insert_many", "push", workflows=False)
    # In a workflow path the leader (the worker) inserts the steps' jobs.
    assert not by_pusher("push", "job_insert_many", "push", workflows=True)
    assert by_pusher("push", "workflow_push", "push", workflows=True)
    assert not by_pusher("claim", "job_fetch", "drain", workflows=False)
    assert by_pusher("cleanup", "vacuum x", "cleanup", workflows=False)


def test_cpu_between_marks_sums_groups_and_leaves_out_the_measuring_sessions() -> None:
    sampler = CpuSampler("", os.getpid(), exclude=[3])
    sampler.group = {1: "costs_worker", 2: "costs_worker", 3: "costs_monitor", 4: "walwriter"}
    start = {1: 1_000, 2: 5_000, 3: 0, 4: 0}
    # Process 5 started after the first mark: all of its time counts.
    sampler.group[5] = "costs_push"
    end = {1: 3_000, 2: 5_000, 3: 9_000_000, 4: 500, 5: 7_000}
    got = sampler.between(start, end)
    assert got == {"all": 9.5, "costs_worker": 2.0, "walwriter": 0.5, "costs_push": 7.0}


def test_process_cpu_time_grows() -> None:
    before = process_cpu_ns(os.getpid())
    assert before is not None
    sum(i * i for i in range(200_000))
    after = process_cpu_ns(os.getpid())
    assert after is not None and after > before
    assert process_cpu_ns(2**22 + 12345) is None
