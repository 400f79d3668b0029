"""W7, a fleet over a network: ``python bench/w7.py [--dsn DSN] [--hosts 1,2,4,8]
[--delays 0.5,2,10] [--jobs N]``.

Worker "hosts" (1, 2, 4 and 8 by default), each a ``python -m bench.worker`` process in its
own network namespace, reach PostgreSQL over a veth link whose round trip is 0.5, 2 or 10 ms
(see ``bench.netlab``). For every combination it measures:

- the drain rate of a pre-pushed backlog of no-op jobs, by the database's clock (first
  ``started_at`` to last ``completed_at``) and from outside (from the go, so the workers'
  start-up over the link counts);
- the pickup latency in the idle fleet: single pushes at a steady rate from this process,
  each job records its start minus the pusher's ``time.time()`` (one machine, one clock): p50
  and p99;
- the connections the hosts hold on the server (``pg_stat_activity``, by application name):
  the peak during the drain and while idle.

At the longest round trip it also drains with other values of the queue's ``concurrency``,
which for the async executor is both the claim batch (a producer claims up to its free slots)
and the prefetch (it claims again once a quarter of them are free).

Without ``--dsn`` the run starts a throwaway PostgreSQL cluster of its own (recommended: eight
hosts hold up to 90 connections); with it, that server is used through the same link. Needs
root (network namespaces). The table goes to stdout and, with every value, to
``bench/out/w7.md`` and ``bench/out/w7.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import glob
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import netlab, procs  # noqa: E402
from bench.db import connect, drain_window, installation, queries, wait_drained  # noqa: E402
from bench.drain import poll_drained, push_backlog, reset_jobs  # noqa: E402
from bench.stats import percentile  # noqa: E402
from chancy import Chancy, Job, Queue  # noqa: E402

#: The worker settings of the suite's tuned drains (bench.workloads.TUNED_WORKER).
WORKER = {"pool_max": 10, "completer_batch_size": 1000, "completer_interval": 0.005}


@dataclasses.dataclass
class Row:
    """One combination of hosts, round trip and concurrency, measured."""

    hosts: int
    rtt_ms: float
    concurrency: int
    jobs: int
    #: The link's round trip as a client in host 0 measured it (median of one-row queries).
    rtt_measured_ms: float = 0.0
    #: One claim as a producer makes it (``fetch_claim``), from host 0 (median).
    claim_ms: float = 0.0
    rate: float = 0.0
    outside: float = 0.0
    startup: float = 0.0
    #: Jobs finished when the drain was cut off at its cap (None: it finished).
    cut: int | None = None
    pickup_p50_ms: float = 0.0
    pickup_p99_ms: float = 0.0
    pickups: int = 0
    #: Push to claim by the server's clock (the claim transaction's start minus the push
    #: transaction's): how much of the pickup passed before the claim reached the server.
    claim_p50_ms: float = 0.0
    claim_p99_ms: float = 0.0
    connections_drain: int = 0
    connections_idle: int = 0
    #: How many hosts had a session on the server at once (at most), by application name.
    hosts_seen: int = 0


@dataclasses.dataclass(frozen=True)
class Options:
    hosts: tuple[int, ...] = (1, 2, 4, 8)
    delays: tuple[float, ...] = (0.5, 2.0, 10.0)
    jobs: int = 20_000
    concurrency: int = 500
    #: Other concurrency values tried at the longest round trip.
    variants: tuple[int, ...] = (100, 2000)
    latency_count: int = 200
    latency_rate: float = 40.0
    cap: float = 120.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Hosts:
    """One ``bench.worker`` process per namespace, kept for the whole run."""

    def __init__(self, net: netlab.Network) -> None:
        self.net = net
        self.procs: list[subprocess.Popen[str]] = []

    def _spawn(self, i: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.net.python(i, "bench.worker", self.net.host_dsn(i)),
            cwd=ROOT,
            env=procs.child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    async def start(self) -> None:
        for i in range(self.net.hosts):
            self.procs.append(self._spawn(i))
        for proc in self.procs:
            await procs.wait_line(proc, "up")

    async def ping(self, prefix: str, queue: str, count: int = 50) -> tuple[float, float]:
        """Host 0's round trip to the server and the time of one (empty) claim of ``queue``
        as a producer makes it, in seconds (medians)."""
        procs.send_line(self.procs[0], f"ping {count} {prefix} {queue}")
        line = await procs.read_line(self.procs[0])
        word, *values = line.split()
        if word != "pong" or len(values) != 2:
            raise RuntimeError(f"host 0 answered {line!r} to a ping")
        return float(values[0]), float(values[1])

    async def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    procs.send_line(proc, "exit")
        await procs.stop(self.procs)
        self.procs = []


class Connections:
    """Samples the hosts' connections on the server every 50 ms; keeps the peak."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.peak = 0
        self.hosts = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Connections:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    def take(self) -> int:
        """The peak since the last take."""
        peak, self.peak = self.peak, 0
        return peak

    async def sample(self, conn: Any) -> None:
        """One sample, on ``conn`` (also taken at the end of a drain: a drain of a few
        hundred jobs can end between two samples of the loop, before a host's pool
        connection was seen)."""
        cur = await conn.execute(queries("bench_")["w7_connections"])
        row = await cur.fetchone()
        if row is not None:
            self.peak = max(self.peak, int(row["total"]))
            self.hosts = max(self.hosts, int(row["hosts"]))

    async def _run(self) -> None:
        conn = await connect(self.dsn)
        async with conn:
            while not self._stop.is_set():
                await self.sample(conn)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 0.05)


async def combination(
    app: Chancy, dsn: str, hosts: Hosts, row: Row, opts: Options, tmp: str
) -> Row:
    """Drain a backlog with ``row.hosts`` hosts, then measure pickups in the idle fleet."""
    prefix = app.prefix
    queue = f"w7c{row.concurrency}"
    await reset_jobs(dsn, prefix)
    await push_backlog(app, queue, "bench.jobs.noop", row.jobs)
    settings = {
        **WORKER,
        "queues": [queue],
        "latency_out": os.path.join(tmp, "pickup-{pid}.json"),
    }
    fleet = procs.Fleet(dsn, prefix, settings, row.hosts)
    fleet.procs = hosts.procs[: row.hosts]
    conn = await connect(dsn)
    async with conn, Connections(dsn) as connections:
        await conn.execute(queries(prefix)["poller_session"])
        try:
            fleet.go()
            seen, complete = await poll_drained(conn, prefix, fleet, cap=opts.cap)
            await connections.sample(conn)
            row.connections_drain = connections.take()
            row.hosts_seen = connections.hosts
            done, seconds, first = await drain_window(conn, prefix, queue)
            row.rate = done / seconds if seconds > 0 else 0.0
            row.startup = first - fleet.go_time
            if complete:
                row.outside = row.jobs / (seen - fleet.go_time)
            else:
                row.cut = done
                row.outside = done / (seen - fleet.go_time)
            if complete and opts.latency_count:
                # Idle now: the producers wait for a NOTIFY (or their polling interval).
                await asyncio.sleep(1.0)
                connections.take()
                await trickle(app, queue, opts.latency_count, opts.latency_rate)
                await wait_drained(conn, prefix, timeout=60, interval=0.02)
                row.connections_idle = connections.take()
                cur = await conn.execute(queries(prefix)["w7_pickup_claims"], {"queue": queue})
                claims = [float(r["seconds"]) for r in await cur.fetchall()]
                if claims:
                    row.claim_p50_ms = percentile(claims, 50) * 1000
                    row.claim_p99_ms = percentile(claims, 99) * 1000
        finally:
            await fleet.stop()
    pickups = await asyncio.to_thread(_collect, tmp)
    if complete and opts.latency_count and len(pickups) != opts.latency_count:
        raise RuntimeError(f"W7: {len(pickups)} of {opts.latency_count} pickups recorded")
    if pickups:
        row.pickups = len(pickups)
        row.pickup_p50_ms = percentile(pickups, 50) * 1000
        row.pickup_p99_ms = percentile(pickups, 99) * 1000
    return row


def _collect(tmp: str) -> list[float]:
    """Every host's pickup latencies (files written as the workers stopped), removed."""
    pickups: list[float] = []
    for path in glob.glob(os.path.join(tmp, "pickup-*.json")):
        with open(path) as f:
            pickups.extend(json.load(f))
        os.unlink(path)
    return pickups


async def trickle(app: Chancy, queue: str, count: int, rate: float) -> None:
    """Push ``count`` single jobs at ``rate`` per second, each stamped with its push time."""
    start = time.monotonic()
    for i in range(count):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await app.push(Job(func="bench.jobs.record_start", queue=queue, kwargs={"t": time.time()}))


def plan(opts: Options) -> list[Row]:
    """Every combination, in run order: by round trip, then hosts, then concurrency."""
    rows = []
    longest = max(opts.delays)
    for rtt in opts.delays:
        values = [opts.concurrency]
        if rtt == longest:
            values += [v for v in opts.variants if v != opts.concurrency]
        for count in opts.hosts:
            for concurrency in values:
                rows.append(Row(count, rtt, concurrency, opts.jobs))
    return rows


async def run(dsn: str, net: netlab.Network, opts: Options) -> list[Row]:
    prefix = f"bench{os.getpid() % 100000}_w7_"
    rows = plan(opts)
    hosts = Hosts(net)
    tmp = tempfile.mkdtemp(prefix="chancy-w7-pickups-")
    # The host processes start while the driver migrates.
    try:
        await hosts.start()
        async with installation(dsn, prefix) as app:
            for concurrency in sorted({r.concurrency for r in rows}):
                queue = Queue(
                    f"w7c{concurrency}",
                    executor=Chancy.Executor.Async,
                    concurrency=concurrency,
                    polling_interval=1,
                )
                await app.declare(queue, upsert=True)
            measured: dict[float, tuple[float, float]] = {}
            for row in rows:
                if net.delay_ms != row.rtt_ms or row.rtt_ms not in measured:
                    net.set_rtt(row.rtt_ms)
                    rtt, claim = await hosts.ping(prefix, f"w7c{opts.concurrency}")
                    measured[row.rtt_ms] = (rtt * 1000, claim * 1000)
                    log(
                        f"round trip {row.rtt_ms:g} ms: measured {rtt * 1000:.2f} ms; a claim"
                        f" takes {claim * 1000:.2f} ms"
                    )
                row.rtt_measured_ms, row.claim_ms = measured[row.rtt_ms]
                await combination(app, dsn, hosts, row, opts, tmp)
                log(
                    f"{row.hosts} host(s), {row.rtt_ms:g} ms, concurrency {row.concurrency}:"
                    f" {row.rate:,.0f} jobs/s ({row.outside:,.0f}/s outside)"
                    + (f", cut off with {row.cut:,} done" if row.cut is not None else "")
                    + f", pickup p50 {row.pickup_p50_ms:.1f} ms p99 {row.pickup_p99_ms:.1f} ms"
                    f" (push to claim p50 {row.claim_p50_ms:.1f} ms),"
                    f" connections {row.connections_drain} draining, {row.connections_idle} idle"
                )
    finally:
        await hosts.close()
        for path in glob.glob(os.path.join(tmp, "*")):
            os.unlink(path)
        os.rmdir(tmp)
    return rows


def table(rows: list[Row]) -> str:
    lines = [
        "| hosts | RTT (ms) | measured RTT (ms) | one claim (ms) | concurrency | drain (jobs/s,"
        " database clock) | drain (jobs/s, from the go) | pickup p50 (ms) | pickup p99 (ms)"
        " | push to claim p50 / p99 (ms, server) | connections draining | connections idle |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cut = f" (cut off: {r.cut:,} of {r.jobs:,})" if r.cut is not None else ""
        lines.append(
            f"| {r.hosts} | {r.rtt_ms:g} | {r.rtt_measured_ms:.2f} | {r.claim_ms:.1f} |"
            f" {r.concurrency} |"
            f" {r.rate:,.0f}{cut} | {r.outside:,.0f} | {r.pickup_p50_ms:.1f} |"
            f" {r.pickup_p99_ms:.1f} | {r.claim_p50_ms:.1f} / {r.claim_p99_ms:.1f} |"
            f" {r.connections_drain} | {r.connections_idle} |"
        )
    return "\n".join(lines)


def _numbers(text: str, kind: type = int) -> tuple[Any, ...]:
    return tuple(kind(x) for x in text.split(",") if x.strip())


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/w7.py", description=__doc__.splitlines()[0])
    p.add_argument("--dsn", help="server to use (default: a throwaway cluster of its own)")
    p.add_argument("--hosts", default="1,2,4,8", help="host counts (default 1,2,4,8)")
    p.add_argument("--delays", default="0.5,2,10", help="round trips in ms (default 0.5,2,10)")
    p.add_argument("--jobs", type=int, default=20_000, help="backlog per drain (default 20000)")
    p.add_argument("--concurrency", type=int, default=500, help="queue concurrency (default 500)")
    p.add_argument(
        "--variants",
        default="100,2000",
        help="other concurrency values tried at the longest round trip (default 100,2000;"
        " empty: none)",
    )
    p.add_argument("--pickups", type=int, default=200, help="pickups timed per combination")
    p.add_argument("--pickup-rate", type=float, default=40.0, help="pushes per second")
    p.add_argument("--cap", type=float, default=120.0, help="seconds before a drain is cut off")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "out"), help="report folder")
    p.add_argument(
        "--log-statements",
        action="store_true",
        help="have the run's own cluster log every statement with its time and host, and copy"
        " its log to OUT/w7-server.log (to see a claim's round trips)",
    )
    p.add_argument(
        "--remove-leftovers",
        action="store_true",
        help="delete the namespaces of W7 runs killed outright, then leave",
    )
    return p.parse_args(argv)


def _copy_log(path: Any, target: str) -> None:
    """Copy the cluster's log (before the cluster's directory is removed)."""
    import shutil

    with contextlib.suppress(OSError):
        shutil.copy(path, target)


#: The run's network, for the SIGTERM handler.
_network: list[netlab.Network] = []


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM: end the hosts at once (no graceful stop over a link that may be gone), then
    unwind like Ctrl-C, so the namespaces, links and cluster are removed."""
    for net in _network:
        net.kill_hosts()
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.remove_leftovers:
        print("\n".join(netlab.remove_leftovers()) or "nothing to remove")
        return 0
    opts = Options(
        hosts=_numbers(args.hosts),
        delays=_numbers(args.delays, float),
        jobs=args.jobs,
        concurrency=args.concurrency,
        variants=_numbers(args.variants),
        latency_count=args.pickups,
        latency_rate=args.pickup_rate,
        cap=args.cap,
    )
    if not opts.hosts or not opts.delays or min(opts.hosts) < 1 or opts.jobs < 1:
        raise SystemExit("give at least one host count >= 1, one delay and --jobs >= 1")
    try:
        netlab.check_available()
    except netlab.Unavailable as exc:
        print(f"W7 cannot run here: {exc}", file=sys.stderr)
        return 2
    # A SIGTERM unwinds like Ctrl-C, so the namespaces, links and cluster are removed.
    signal.signal(signal.SIGTERM, _interrupt)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    started = time.time()
    with contextlib.ExitStack() as stack:
        if args.dsn:
            dsn = args.dsn
        else:
            settings = {}
            if args.log_statements:
                settings = {"log_statement": "all", "log_line_prefix": "'%m %a %p '"}
            cluster = stack.enter_context(netlab.Cluster(max_connections=200, settings=settings))
            if args.log_statements:
                # Runs before the cluster's directory is removed (the stack unwinds in reverse).
                os.makedirs(args.out, exist_ok=True)
                stack.callback(_copy_log, cluster.log, os.path.join(args.out, "w7-server.log"))
            dsn = cluster.dsn
        net = stack.enter_context(netlab.Network(max(opts.hosts), dsn))
        _network.append(net)
        log(f"{net.hosts} host namespaces on {net.subnet}, delay by {net.method}")
        rows = asyncio.run(run(dsn, net, opts))
        method = net.method
    took = time.time() - started
    text = table(rows)
    print(text)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "w7.json"), "w") as f:
        json.dump(
            {
                "command": command,
                "delay": method,
                "seconds": took,
                "options": dataclasses.asdict(opts),
                "rows": [dataclasses.asdict(r) for r in rows],
            },
            f,
            indent=1,
        )
    with open(os.path.join(args.out, "w7.md"), "w") as f:
        f.write(
            f"# W7: a fleet over a network\n\n- Command: `{command}`\n- Delay by {method};"
            f" the run took {took / 60:.1f} minutes; load average after:"
            f" {', '.join(f'{x:.1f}' for x in os.getloadavg())}.\n\n{text}\n"
        )
    log(f"W7 took {took / 60:.1f} minutes; wrote {os.path.join(args.out, 'w7.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
