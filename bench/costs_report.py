"""The markdown of bench/costs.py: per-job server time, CPU, WAL, projection, connections."""

from __future__ import annotations

from typing import Any

PUSHER = "costs_push"
WORKER = "costs_worker"
#: The server size the projection shows beside this machine's.
CORES = 16


def _n(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def _cpu(p: dict[str, Any], window: str, group: str) -> float | None:
    cpu = p.get("cpu") or {}
    if window not in cpu:
        return None
    return float(cpu[window].get(group, 0.0))


def _cpu_total(p: dict[str, Any], group: str) -> float | None:
    cpu = p.get("cpu") or {}
    if not cpu:
        return None
    return sum(float(w.get(group, 0.0)) for w in cpu.values())


def core_us(p: dict[str, Any], key: str = "phase_us") -> float | None:
    """Per job, push + claim + complete + advance: statement time (``phase_us``) or CPU
    (``phase_cpu``)."""
    u = p.get(key)
    if not u:
        return None
    return float(sum(u[k] for k in ("push", "claim", "complete", "advance")))


def _phase_table(rows: list[dict[str, Any]], key: str) -> list[str]:
    out = [
        "| path | push | claim | complete | advance | **per job (sum)** | cleanup | other |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in rows:
        u = p.get(key) or dict.fromkeys(
            ("push", "claim", "complete", "advance", "cleanup", "other")
        )
        out.append(
            f"| {p['label']} | {_n(u['push'], 1)} | {_n(u['claim'], 1)} |"
            f" {_n(u['complete'], 1)} | {_n(u['advance'], 1)} | **{_n(core_us(p, key), 1)}** |"
            f" {_n(u['cleanup'], 1)} | {_n(u['other'], 1)} |"
        )
    return out


def _per(us: float | None, cores: int = 1) -> float | None:
    return cores * 1e6 / us if us else None


def markdown(data: dict[str, Any]) -> str:
    rows = data["paths"]
    s = data["settings"]
    out = [
        "# Server cost per job",
        "",
        f"- Date: {data['date']}; {data['jobs_per_path']:,} jobs per path; the run took"
        f" {data['minutes']:.1f} minutes; load average at the end {data['load']}.",
        f"- Command: `{data['command']}`",
        f"- Server: {data['server']}: {s.get('version', '?').split(' on ')[0]},"
        f" shared_buffers {s.get('shared_buffers')}, synchronous_commit"
        f" {s.get('synchronous_commit')}, full_page_writes {s.get('full_page_writes')},"
        f" wal_level {s.get('wal_level')}, max_connections {s.get('max_connections')}.",
        "- One worker process (async executor, concurrency 500, pool of 10, completer batches"
        " up to 1,000), jobs pushed to a paused queue which is then resumed; cleanup = the"
        " Pruner's delete of the finished jobs + `VACUUM` of the jobs table.",
        "",
        "## Server CPU per job, µs, by phase",
        "",
        *_phase_table(rows, "phase_cpu"),
        "",
        "CPU time of the backends serving the pusher and the worker (/proc/<pid>/schedstat),"
        " each connection group's time in each window divided among the phases in proportion"
        " to the pg_stat_statements time of its statements there; while jobs are pushed, the"
        " worker's CPU (its LISTEN session taking the pushes' notifications) counts as push."
        " *advance*: the workflow leader's passes (recording finished steps, queueing ready"
        " ones). *per job (sum)*: push + claim + complete + advance. *cleanup*: the Pruner's"
        " delete and `VACUUM`. *other*: the worker's periodic statements (heartbeat,"
        " leadership, metrics, queue polls, transaction control), which depend on the run's"
        " duration rather than on the number of jobs.",
        "",
        "## Statement time per job, µs (pg_stat_statements: execution + planning)",
        "",
        *_phase_table(rows, "phase_us"),
        "",
        "Statement time is elapsed time: on a loaded machine it includes the time a backend"
        " waited for a core, so it can exceed the CPU time above.",
        "",
        "## Backend CPU per job, µs (/proc/<pid>/schedstat of the server processes)",
        "",
        "| path | pusher's backends, push | worker's backends, whole run |"
        " pusher's backends, cleanup | all server processes, whole run |",
        "|---|---:|---:|---:|---:|",
    ]
    for p in rows:
        out.append(
            f"| {p['label']} | {_n(_cpu(p, 'push', PUSHER), 1)} |"
            f" {_n(_cpu_total(p, WORKER), 1)} | {_n(_cpu(p, 'cleanup', PUSHER), 1)} |"
            f" {_n(_cpu_total(p, 'all'), 1)} |"
        )
    out += [
        "",
        "*all server processes* adds the WAL writer, checkpointer, autovacuum launcher and the"
        " postmaster to the backends (the measuring sessions left out).",
        "",
        "## WAL per job, bytes",
        "",
        "| path | push | drain (claim + complete + other) | of which claim | of which complete |"
        " cleanup | total |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for p in rows:
        w = p["wal_lsn"]
        pw = p["phase_wal"]
        out.append(
            f"| {p['label']} | {_n(w['push'])} | {_n(w['drain'])} | {_n(pw['claim'])} |"
            f" {_n(pw['complete'])} | {_n(w['cleanup'])} | {_n(sum(w.values()))} |"
        )
    out += [
        "",
        "Push, drain, cleanup and total: `pg_wal_lsn_diff` of `pg_current_wal_insert_lsn()` around"
        " each phase (commit records included); claim and complete: the `wal_bytes` of their"
        " statements in pg_stat_statements.",
        "",
        f"## What one core carries, and a {CORES}-core server",
        "",
        "Jobs per second per core = 1,000,000 / µs per job. Linear in cores: an upper bound"
        " (see the caveats in docs/scaling.md).",
        "",
        "| path | CPU µs/job (per job sum) | jobs/s per core |"
        f" {CORES} cores | CPU µs/job, all server processes, whole run | jobs/s per core |"
        f" {CORES} cores |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for p in rows:
        us = core_us(p, "phase_cpu")
        total = _cpu_total(p, "all")
        out.append(
            f"| {p['label']} | {_n(us, 1)} | {_n(_per(us))} | {_n(_per(us, CORES))} |"
            f" {_n(total, 1)} | {_n(_per(total))} | {_n(_per(total, CORES))} |"
        )
    out += [
        "",
        "## Wall time and connections (noisy: the machine is shared)",
        "",
        "| path | push, s | push, jobs/s | drain, s | drain, jobs/s | worker connections, idle |"
        " at peak |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for p in rows:
        sec = p["seconds"]
        c = p["connections"]
        out.append(
            f"| {p['label']} | {_n(sec['push'], 2)} | {_n(p['jobs'] / sec['push'])} |"
            f" {_n(sec['drain'], 2)} | {_n(p['jobs'] / sec['drain'])} | {c['idle']} |"
            f" {c['peak']} |"
        )
    out += [
        "",
        "Connections are the worker's sessions in `pg_stat_activity` (its application name):"
        " the pool (at most 10 here) and the LISTEN session.",
        "",
        "## Row versions per job in the jobs table (what autovacuum has to clean)",
        "",
        "| path | inserted | updated | of which HOT | deleted (pruned) | dead versions |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for p in rows:
        t = p.get("table") or {}
        dead = t.get("updated", 0) + t.get("deleted", 0)
        out.append(
            f"| {p['label']} | {_n(t.get('inserted'), 2)} | {_n(t.get('updated'), 2)} |"
            f" {_n(t.get('hot_updated'), 2)} | {_n(t.get('deleted'), 2)} | {_n(dead, 2)} |"
        )
    out += [
        "",
        "From `pg_stat_user_tables` of the jobs table once the pusher's and the worker's"
        " sessions have ended. Every update and delete leaves one dead row version for"
        " (auto)vacuum.",
        "",
        "## Statements per path (µs and WAL bytes per job)",
        "",
    ]
    for p in rows:
        out += [
            f"### {p['label']}",
            "",
            "| statement | phase | calls/job | µs/job | WAL B/job |",
            "|---|---|---:|---:|---:|",
        ]
        for name, d in list(p["statements"].items())[:10]:
            out.append(
                f"| `{name}` | {d['phase']} | {d['calls_per_job']:.4f} |"
                f" {d['us_per_job']:.2f} | {d['wal_bytes'] / p['jobs']:.0f} |"
            )
        out.append("")
    return "\n".join(out) + "\n"
