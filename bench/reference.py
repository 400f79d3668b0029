"""W4, the reference: the fastest honest hand-written loop on a plain table, same server.

It does the least a job queue must do per job, with the durability chancy has (autocommit,
every commit as the server's synchronous_commit says, a logged table):

- drain: claim 100 in priority order with ``FOR UPDATE SKIP LOCKED``, call the no-op for each,
  mark the 100 done in one ``UPDATE``; on one connection, and on four at once (four
  processes, so the client's Python is not the limit);
- push: a binary ``COPY`` of rows the client encodes itself (ids made as chancy makes them);
- latency: a LISTEN consumer woken by an INSERT that carries ``pg_notify``.

Each drain connection runs in its own process (``python -m bench.reference drain DSN``,
kept for the whole run): a synchronous psycopg connection, statements prepared before the
clock starts, rows as tuples. The earlier, slower form of this loop (asyncio psycopg, dict
rows, a claim joined to its picked ids, random ids) is kept as :func:`legacy_drain`, so the
W4 section can show what the rework changed, measured in the same run.

Every chancy figure is divided by the matching reference figure measured in the same
repetition. The latency consumer: ``python -m bench.reference consume DSN PREFIX OUT``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import struct
import sys
import time
import warnings
from typing import Any

import psycopg
from psycopg.rows import dict_row

from bench import jobs, procs
from bench.db import connect, queries
from chancy.utils import chancy_uuid

QUEUE = "ref"
BATCH = 100


async def setup(dsn: str, prefix: str) -> None:
    conn = await connect(dsn)
    async with conn:
        q = queries(prefix)
        for name in ("ref_drop", "legacy_drop", "ref_create", "legacy_create"):
            await conn.execute(q[name])


async def teardown(dsn: str, prefix: str) -> None:
    conn = await connect(dsn)
    async with conn:
        q = queries(prefix)
        await conn.execute(q["ref_drop"])
        await conn.execute(q["legacy_drop"])


# -- push -----------------------------------------------------------------------------

_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_TRAILER = b"\xff\xff"
_ROW = struct.Struct("!hi16si3si15si")
_QUEUE_B = QUEUE.encode()
_FUNC_B = b"bench.jobs.noop"


def _binary_rows(start: int, stop: int) -> bytes:
    """Rows ``start``..``stop`` in COPY's binary format: id, queue, func, kwargs (jsonb).

    The kwargs are ``{"n": i}``, as in chancy's W1 push; jsonb's binary form is a version
    byte followed by the JSON text.
    """
    pack = _ROW.pack
    parts = []
    for i in range(start, stop):
        kwargs = b'\x01{"n": %d}' % i
        parts.append(
            pack(4, 16, chancy_uuid().bytes, 3, _QUEUE_B, 15, _FUNC_B, len(kwargs)) + kwargs
        )
    return b"".join(parts)


async def copy_rate(dsn: str, prefix: str, n: int, chunk: int = 5000) -> float:
    """Jobs per second inserted by one binary COPY in one transaction.

    The client makes the ids (time-ordered, as chancy does) and encodes the rows itself,
    ``chunk`` rows per write, so encoding overlaps with the server storing the previous chunk.
    """
    q = queries(prefix)
    conn = await connect(dsn)
    async with conn:
        await conn.execute(q["ref_truncate"])
        start = time.perf_counter()
        async with conn.transaction():
            cur = conn.cursor()
            async with cur.copy(q["ref_copy"]) as copy:
                await copy.write(_HEADER)
                for offset in range(0, n, chunk):
                    await copy.write(_binary_rows(offset, min(n, offset + chunk)))
                await copy.write(_TRAILER)
        elapsed = time.perf_counter() - start
        cur = await conn.execute(q["ref_pending"])
        row = await cur.fetchone()
        await conn.execute(q["ref_truncate"])
    if row is None or row["n"] != n:
        raise RuntimeError(f"reference COPY stored {row} rows, not {n}")
    return n / elapsed


async def write_row_copy_rate(dsn: str, prefix: str, n: int) -> float:
    """The same rows as :func:`copy_rate` by the earlier reference's way of writing them:
    a text COPY with one psycopg ``write_row`` per row."""
    q = queries(prefix)
    conn = await connect(dsn)
    async with conn:
        await conn.execute(q["ref_truncate"])
        start = time.perf_counter()
        async with conn.transaction():
            cur = conn.cursor()
            async with cur.copy(q["ref_copy_text"]) as copy:
                for i in range(n):
                    await copy.write_row((chancy_uuid(), QUEUE, "bench.jobs.noop", f'{{"n": {i}}}'))
        elapsed = time.perf_counter() - start
        await conn.execute(q["ref_truncate"])
    return n / elapsed


# -- drain ----------------------------------------------------------------------------


async def drain(dsn: str, prefix: str, n: int, connections: int = 1) -> dict[str, Any]:
    """Drain ``n`` queued no-op jobs with ``connections`` processes, one connection each.

    The rate is ``n`` over the time from the first claim to the last completion, both taken
    by the drain processes (same machine clock); the processes are connected and their
    statements prepared before the clock starts. Returns the rate, the seconds, the
    completions over time and every claim's latency.
    """
    q = queries(prefix)
    conn = await connect(dsn)
    async with conn:
        await conn.execute(q["ref_truncate"])
        await conn.execute(q["ref_fill"], {"n": n, "queue": QUEUE})
        # Fresh statistics: the claim's plan must not depend on them (see ref_create).
        await conn.execute(q["ref_analyze"])
        children = await procs.pool(DrainPool, dsn).take(connections)
        try:
            for child in children:
                procs.send_line(child, f"prepare {prefix}")
            for child in children:
                await procs.wait_line(child, "prepared")
            for child in children:
                procs.send_line(child, "go")
            timeout = max(120.0, n / 200)
            outcomes = [json.loads(await procs.read_line(c, timeout)) for c in children]
        except BaseException:
            await procs.stop(children)
            raise
        cur = await conn.execute(q["ref_pending"])
        row = await cur.fetchone()
        await conn.execute(q["ref_truncate"])
    finished = sum(o["finished"] for o in outcomes)
    if finished != n or row is None or row["n"] != 0:
        raise RuntimeError(f"reference drain finished {finished} of {n} jobs ({row} left)")
    start = min(o["start"] for o in outcomes)
    end = max(o["end"] for o in outcomes)
    series = sorted((t - start, k) for o in outcomes for t, k in o["series"])
    claims = [c for o in outcomes for c in o["claims"]]
    return {"rate": n / (end - start), "seconds": end - start, "series": series, "claims": claims}


class DrainPool(procs.ProcessPool):
    """Reference drain processes: ``python -m bench.reference drain DSN``."""

    module = "bench.reference"

    def args(self) -> list[str]:
        return ["drain", self.dsn]


def drain_process(dsn: str) -> None:
    """Reference drain connections, reused: ``prepare PREFIX``, then ``go``, repeatedly.

    ``prepare`` readies the claim and the completion of that prefix's table (prints
    ``prepared``); ``go`` drains it and prints one JSON line: when the drain started and
    ended (``time.time()``), how many jobs this connection finished, completions over time
    and the latency of every claim that returned jobs.
    """
    noop = jobs.noop_sync
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=0) as conn:
        cur = conn.cursor()
        print("up", flush=True)
        claim = done = ""
        for line in sys.stdin:
            command, _, argument = line.strip().partition(" ")
            if command == "prepare":
                q = queries(argument)
                claim, done = q["ref_claim"], q["ref_done"]
                # Prepared before the clock starts: a claim of none, a completion of nothing.
                cur.execute(claim, {"queue": QUEUE, "limit": 0})
                cur.execute(done, {"ids": []})
                print("prepared", flush=True)
                continue
            if command != "go":
                return
            params = {"queue": QUEUE, "limit": BATCH}
            series: list[tuple[float, int]] = []
            claims: list[float] = []
            finished = 0
            start = end = time.time()
            while True:
                t = time.perf_counter()
                rows = cur.execute(claim, params).fetchall()
                if not rows:
                    break
                claims.append(time.perf_counter() - t)
                for _row in rows:
                    noop()
                cur.execute(done, {"ids": [r[0] for r in rows]})
                end = time.time()
                finished += len(rows)
                series.append((end, len(rows)))
            outcome = {
                "start": start,
                "end": end,
                "finished": finished,
                "series": series,
                "claims": claims,
            }
            print(json.dumps(outcome), flush=True)


async def legacy_drain(dsn: str, prefix: str, n: int, batch: int = BATCH) -> float:
    """The earlier reference drain, unchanged: asyncio psycopg on the driver's connection,
    dict rows, an ``await`` per job, the claim joined to its picked ids, random ids."""
    q = queries(prefix)
    conn = await connect(dsn)
    async with conn:
        await conn.execute(q["legacy_truncate"])
        await conn.execute(q["legacy_fill"], {"n": n, "queue": QUEUE})
        await conn.execute(q["legacy_analyze"])
        claim, done = q["legacy_claim"], q["legacy_done"]
        params = {"queue": QUEUE, "limit": batch}
        finished = 0
        start = time.perf_counter()
        elapsed = 0.0
        while True:
            cur = await conn.execute(claim, params)
            rows = await cur.fetchall()
            if not rows:
                break
            for _row in rows:
                await jobs.noop()
            await conn.execute(done, {"ids": [r["id"] for r in rows]})
            finished += len(rows)
            elapsed = time.perf_counter() - start
        await conn.execute(q["legacy_truncate"])
    if finished != n:
        raise RuntimeError(f"legacy reference drain finished {finished} of {n} jobs")
    return n / elapsed


# -- latency --------------------------------------------------------------------------


async def trickle(dsn: str, prefix: str, *, count: int, rate: float, push: Any = None) -> float:
    """Push ``count`` jobs at a steady ``rate`` per second; return the achieved rate.

    ``push(t)`` pushes one job stamped with ``t``; by default a reference job is inserted
    with its NOTIFY on one connection.
    """
    conn = None
    if push is None:
        conn = await connect(dsn)
        query = queries(prefix)["ref_push_notify"]

        async def push(t: float) -> None:
            await conn.execute(query, {"queue": QUEUE, "t": t})

    try:
        start = time.monotonic()
        for i in range(count):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await push(time.time())
        return count / (time.monotonic() - start)
    finally:
        if conn is not None:
            await conn.close()


async def wait_consumed(dsn: str, prefix: str, timeout: float) -> None:
    """Wait until the latency consumer has taken every reference job."""
    conn = await connect(dsn)
    async with conn:
        deadline = time.monotonic() + timeout
        while True:
            cur = await conn.execute(queries(prefix)["ref_pending"])
            row = await cur.fetchone()
            if row is not None and row["n"] == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the reference consumer did not take every job")
            await asyncio.sleep(0.05)


def consume(dsn: str, prefix: str, out: str) -> None:
    """The reference latency consumer: LISTEN, claim on each wake-up, record start - push."""
    stopping = False

    def on_term(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    # notifies() is only used to wait; the handler is what sees every notification.
    warnings.filterwarnings("ignore", "using 'notifies", RuntimeWarning)
    q = queries(prefix)
    latencies: list[float] = []
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        # A handler sees notifications that arrive while a query runs, too.
        woken = [False]
        conn.add_notify_handler(lambda _n: woken.__setitem__(0, True))
        conn.execute(q["ref_listen"])
        print("ready", flush=True)
        params = {"queue": QUEUE, "limit": BATCH}
        while not stopping:
            if not woken[0]:
                for _ in conn.notifies(timeout=0.2, stop_after=1):
                    pass
            if not woken[0]:
                continue
            woken[0] = False
            while True:
                rows = conn.execute(q["ref_claim"], params).fetchall()
                if not rows:
                    break
                now = time.time()
                latencies.extend(now - r["pushed_at"] for r in rows)
                conn.execute(q["ref_done"], {"ids": [r["id"] for r in rows]})
    with open(out, "w") as f:
        json.dump(latencies, f)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "consume":
        consume(sys.argv[2], sys.argv[3], sys.argv[4])
    elif len(sys.argv) == 3 and sys.argv[1] == "drain":
        drain_process(sys.argv[2])
    else:
        raise SystemExit(
            "usage: python -m bench.reference consume DSN PREFIX OUT\n"
            "       python -m bench.reference drain DSN"
        )
