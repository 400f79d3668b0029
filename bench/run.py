"""Run the benchmark suite and write its report: ``python bench/run.py [--quick] [--dsn DSN]``.

Without ``--dsn`` or ``$CHANCY_DSN`` the embedded PostgreSQL is started (and stopped at the
end). The report goes to ``bench/out/report.md`` with its plots; a full run (not ``--quick``,
not ``--only``) also copies it to ``docs/benchmarks.md`` and the plots to ``docs/img/``.
"""

from __future__ import annotations

import argparse
import asyncio
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

from bench import workloads  # noqa: E402
from bench.db import connect, queries  # noqa: E402
from bench.report import markdown, plots  # noqa: E402
from bench.results import Results  # noqa: E402

WORKLOADS = ("W1", "W2", "W3", "W5", "W6", "flow")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    p.add_argument("--dsn", help="PostgreSQL DSN (default: $CHANCY_DSN, else embedded)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repetition (smoke)")
    p.add_argument("--reps", type=int, help="repetitions per figure (default 3, quick 1)")
    p.add_argument("--only", help=f"comma-separated workloads to run, of {','.join(WORKLOADS)}")
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
        f" {row['shared_buffers']}, synchronous_commit {row['synchronous_commit']}"
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
    sizes = dataclasses.replace(sizes, **changes)
    results.info["sizes"] = sizes
    only = set(args.only.split(",")) if args.only else set(WORKLOADS)
    unknown = only - set(WORKLOADS)
    if unknown:
        raise SystemExit(f"unknown workloads {sorted(unknown)}; choose from {WORKLOADS}")

    async def phase(name: str, body: object) -> object:
        start = time.monotonic()
        workloads.log(f"{name} ...")
        value = await body  # type: ignore[misc]
        results.timings[name] = time.monotonic() - start
        return value

    small = None
    if "W1" in only:
        await phase("W1", workloads.w1_push(dsn, sizes, results))
    if "W2" in only:
        figures = await phase("W2", workloads.w2_drain(dsn, sizes, results))
        small = figures.get("async, tuned")  # type: ignore[union-attr]
    if "W3" in only:
        await phase("W3", workloads.w3_latency(dsn, sizes, results))
    if "W5" in only:
        await phase("W5", workloads.w5_scale(dsn, sizes, results, small))
    if "W6" in only:
        await phase("W6", workloads.w6_fleet(dsn, sizes, results))
    if "flow" in only:
        await phase("flow control", workloads.flow_control(dsn, sizes, results))


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    from chancy.embedded import resolve_dsn

    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    dsn, embedded = resolve_dsn(args.dsn)
    results = Results()
    started = datetime.datetime.now(datetime.UTC)
    load_before = load()
    t0 = time.monotonic()
    try:
        server_line = asyncio.run(server(dsn))
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
            f" {sizes.scale_waiting:,} waiting; fleet {sizes.fleet:,}; {sizes.reps}"
            " repetition(s)."
        )
    if "W5 table" in results.info:
        header.append(f"- W5 table: {results.info['W5 table']}.")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(
            [
                {
                    "workload": fig.workload,
                    "label": fig.label,
                    "unit": fig.unit,
                    "values": fig.values,
                    "reference": fig.reference,
                    "target": fig.target,
                    "met": fig.met,
                }
                for fig in results.figures
            ],
            f,
            indent=1,
        )
    report = markdown(results, image_dir="", header=header)
    path = os.path.join(args.out, "report.md")
    with open(path, "w") as f:
        f.write(report)
    print(f"wrote {path}" + "".join(f", {p}" for p in written))
    if not args.quick and not args.only and not args.no_docs:
        docs = os.path.join(ROOT, "docs")
        os.makedirs(os.path.join(docs, "img"), exist_ok=True)
        with open(os.path.join(docs, "benchmarks.md"), "w") as f:
            f.write(markdown(results, image_dir="img/", header=header))
        for p in written:
            shutil.copy(p, os.path.join(docs, "img", os.path.basename(p)))
        print(f"copied the report to {os.path.join(docs, 'benchmarks.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
