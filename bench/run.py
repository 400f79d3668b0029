"""Run the benchmark suite and write its report: ``python bench/run.py [--quick] [--dsn DSN]``.

Without ``--dsn`` or ``$CHANCY_DSN`` the embedded PostgreSQL is started (and stopped at the
end). The report goes to ``bench/out/report.md`` with its plots; a full run (not ``--quick``,
not ``--only``) also copies it to ``docs/benchmarks.md`` and the plots to ``docs/img/``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import shlex
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import procs, workloads  # noqa: E402
from bench.db import connect, queries  # noqa: E402
from bench.drain import CONDITIONS  # noqa: E402
from bench.report import as_json, markdown, plots  # noqa: E402
from bench.results import Results  # noqa: E402

WORKLOADS = ("W4", "W1", "W2", "W3", "W5", "W6", "flow")
#: Workloads that run only when named in --only: W7 needs root (network namespaces) and takes
#: about 8 minutes at its default size.
OPT_IN = ("W7",)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    p.add_argument("--dsn", help="PostgreSQL DSN (default: $CHANCY_DSN, else embedded)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repetition (smoke)")
    p.add_argument("--reps", type=int, help="repetitions per figure (default 3, quick 1)")
    p.add_argument(
        "--only",
        help=f"comma-separated workloads to run, of {','.join(WORKLOADS + OPT_IN)} (W7 runs"
        " only when named here)",
    )
    p.add_argument(
        "--conditions",
        help="comma-separated statistics conditions every drain runs under, of"
        f" {','.join(CONDITIONS)} (default: all; --quick: fresh,analyzed)",
    )
    p.add_argument(
        "--drain-cap",
        type=float,
        help="seconds after which an unfinished drain is cut off (default 20, quick 10)",
    )
    p.add_argument("--scale-finished", type=int, help="W5 finished jobs (default 5,000,000)")
    p.add_argument("--scale-waiting", type=int, help="W5 waiting jobs (default 1,000,000)")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "out"), help="report folder")
    p.add_argument("--no-docs", action="store_true", help="do not copy the report into docs/")
    return p.parse_args(argv)


def machine() -> list[str]:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            memory = f", {kb / 2**20:.0f} GiB memory"
    except (OSError, ValueError, IndexError):
        pass
    import psycopg

    return [
        f"- Machine: {platform.system()} {platform.release()}, {model},"
        f" {os.cpu_count()} cores{memory}",
        f"- Python {platform.python_version()}, psycopg {psycopg.__version__}"
        f" ({psycopg.pq.__impl__} implementation)",
    ]


async def server(dsn: str) -> str:
    conn = await connect(dsn)
    async with conn:
        cur = await conn.execute(queries("bench_")["server_info"])
        row = await cur.fetchone()
    assert row is not None
    return (
        f"- Server: {row['version'].split(' on ')[0]} on the same machine, shared_buffers"
        f" {row['shared_buffers']}, synchronous_commit {row['synchronous_commit']},"
        f" autovacuum {row['autovacuum']}"
    )


def load() -> str:
    try:
        return ", ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


async def suite(dsn: str, args: argparse.Namespace, results: Results) -> None:
    sizes = workloads.Sizes.quick() if args.quick else workloads.Sizes()
    changes = {}
    if args.reps:
        changes["reps"] = args.reps
    if args.scale_finished is not None:
        changes["scale_finished"] = args.scale_finished
    if args.scale_waiting is not None:
        changes["scale_waiting"] = args.scale_waiting
    if args.drain_cap is not None:
        changes["drain_cap"] = args.drain_cap
    if args.conditions:
        conditions = tuple(c.strip() for c in args.conditions.split(",") if c.strip())
        wrong = set(conditions) - set(CONDITIONS)
        if wrong or not conditions:
            raise SystemExit(
                f"unknown conditions {sorted(wrong)}; choose from {','.join(CONDITIONS)}"
            )
        # Always in the suite's order (fresh before analyzed: see bench.drain).
        changes["conditions"] = tuple(c for c in CONDITIONS if c in conditions)
    elif args.quick:
        changes["conditions"] = ("fresh", "analyzed")
    sizes = dataclasses.replace(sizes, **changes)
    results.info["sizes"] = sizes
    only = set(args.only.split(",")) if args.only else set(WORKLOADS)
    unknown = only - set(WORKLOADS + OPT_IN)
    if unknown:
        raise SystemExit(f"unknown workloads {sorted(unknown)}; choose from {WORKLOADS + OPT_IN}")

    async def phase(name: str, body: object) -> object:
        start = time.monotonic()
        workloads.log(f"{name} ...")
        value = await body  # type: ignore[misc]
        results.timings[name] = time.monotonic() - start
        return value

    small = None
    try:
        if "W4" in only:
            await phase("W4", workloads.w4_reference(dsn, sizes, results))
        if "W1" in only:
            await phase("W1", workloads.w1_push(dsn, sizes, results))
        if "W2" in only:
            figures = await phase("W2", workloads.w2_drain(dsn, sizes, results))
            small = figures.get("async, tuned")  # type: ignore[attr-defined]
        if "W3" in only:
            await phase("W3", workloads.w3_latency(dsn, sizes, results))
        if "W5" in only:
            await phase("W5", workloads.w5_scale(dsn, sizes, results, small))
        if "W6" in only:
            await phase("W6", workloads.w6_fleet(dsn, sizes, results))
        if "flow" in only:
            await phase("flow control", workloads.flow_control(dsn, sizes, results))
        if "W7" in only:
            await phase("W7", _w7(args))
    finally:
        await procs.close_pools()


#: The published report's W7 section (bench/w7.py, run on its own: it needs root) starts with
#: this heading; a full run keeps it when it rewrites the rest of the page.
W7_HEADING = "## W7: a fleet over a network"


def _w7_section(path: str) -> str:
    """The W7 section of the published report at ``path`` ("" when there is none)."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return ""
    at = text.find("\n" + W7_HEADING)
    return "" if at < 0 else "\n" + text[at:].lstrip("\n")


async def _w7(args: argparse.Namespace) -> None:
    """Run W7 (bench/w7.py, its own cluster and network) into ``args.out``; a machine where it
    cannot run (not root, no ``ip netns``) gets a line in the log, not a failed suite."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(args.out, "w7.md"))  # an earlier run's table
    command = [sys.executable, os.path.join(ROOT, "bench", "w7.py"), "--out", args.out]
    if args.quick:
        command += ["--hosts", "1,2", "--delays", "2", "--jobs", "300", "--pickups", "20"]
        command += ["--variants", ""]
    proc = await asyncio.create_subprocess_exec(*command)
    code = await proc.wait()
    if code == 2:
        workloads.log("W7 skipped: it cannot run on this machine (see above)")
    elif code != 0:
        raise RuntimeError(f"W7 failed (exit code {code})")


def _w7_report(out: str) -> str:
    """W7's table (written by bench/w7.py into ``out``) as a section of the report."""
    try:
        with open(os.path.join(out, "w7.md")) as f:
            text = f.read()
    except OSError:
        return ""
    return "\n" + text.replace("# W7: a fleet over a network", W7_HEADING, 1)


def compile_sources() -> None:
    """Write the bytecode of chancy and of the benchmark's job module, as a deployment has it.

    Where ``PYTHONDONTWRITEBYTECODE`` is set (it is on the machines this suite runs on) no
    import writes a ``.pyc``, so every process-executor child compiled ``bench/jobs.py`` from
    source when it first ran a job, about 1.3 ms of each child's start, which an installed
    application does not pay. ``compileall`` writes the files regardless of that setting.
    """
    import compileall

    for package in ("chancy", "bench"):
        compileall.compile_dir(os.path.join(ROOT, package), quiet=1)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    compile_sources()
    from chancy.embedded import resolve_dsn

    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    dsn, embedded = resolve_dsn(args.dsn)
    results = Results()
    started = datetime.datetime.now(datetime.UTC)
    load_before = load()
    t0 = time.monotonic()
    try:
        server_line = asyncio.run(server(dsn))
        if server_line.endswith("autovacuum off"):
            results.notes.append(
                "The server's autovacuum daemon is off (`autovacuum = off`), which per-table"
                " settings cannot override, so the benchmark did the daemon's work for the"
                " `autovacuum` condition: during each drain it checked the jobs table's"
                " counters every second and ran VACUUM and/or ANALYZE once more than 500 rows"
                " were dead, inserted or changed (bench.drain.Autovacuum). The runs it made"
                " are counted in the detail table."
            )
        asyncio.run(suite(dsn, args, results))
    finally:
        if embedded is not None:
            embedded.stop()
    total = time.monotonic() - t0
    results.timings["total"] = total
    os.makedirs(args.out, exist_ok=True)
    written = plots(results, args.out)
    sizes = results.info.get("sizes")
    header = [
        "# Benchmarks",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC; the suite took {total / 60:.1f} minutes.",
        f"- Command: `{command}`"
        + (" (quick smoke size: not a measurement)" if args.quick else ""),
        *machine(),
        server_line,
        f"- Load average (1, 5, 15 min) before: {load_before}; after: {load()}. The machine"
        " is shared, so only ratios measured in the same run are comparable.",
    ]
    if sizes is not None:
        header.append(
            f"- Sizes: push {sizes.push:,}; drain {sizes.drain_async:,} (async),"
            f" {sizes.drain_other:,} (thread, process); latency {sizes.latency_count:,} at"
            f" {sizes.latency_rate:g}/s; scale {sizes.scale_finished:,} finished +"
            f" {sizes.scale_waiting:,} waiting; fleet {sizes.fleet:,}; flow control"
            f" {sizes.flow:,}; {sizes.reps} repetition(s); statistics conditions"
            f" {', '.join(sizes.conditions)}."
        )
    if "W5 table" in results.info:
        header.append(f"- W5 table: {results.info['W5 table']}.")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(as_json(results), f, indent=1)
    report = markdown(results, image_dir="", header=header)
    if "W7" in results.timings:
        report += _w7_report(args.out)
    path = os.path.join(args.out, "report.md")
    with open(path, "w") as f:
        f.write(report)
    print(f"wrote {path}" + "".join(f", {p}" for p in written))
    if not args.quick and not args.only and not args.no_docs:
        docs = os.path.join(ROOT, "docs")
        os.makedirs(os.path.join(docs, "img"), exist_ok=True)
        published = os.path.join(docs, "benchmarks.md")
        kept = _w7_section(published)
        with open(published, "w") as f:
            f.write(markdown(results, image_dir="img/", header=header) + kept)
        for p in written:
            shutil.copy(p, os.path.join(docs, "img", os.path.basename(p)))
        print(f"copied the report to {os.path.join(docs, 'benchmarks.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
