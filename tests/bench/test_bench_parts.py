"""Parts of the benchmark suite that decide what the report says, checked on their own.

Which statistics condition a drain figure reports as best and worst (and the target judged
on the worst), and the stand-in that does autovacuum's work when the server's daemon is off.
"""

from __future__ import annotations

from bench.db import connect, queries
from bench.drain import Autovacuum
from bench.report import conditioned_table
from bench.results import Conditioned, Figure
from bench.workloads import at_least
from chancy import Chancy, Job
from tests.conftest import eventually


def _figure(condition: str, value: float, reference: float, unit: str = "jobs/s") -> Figure:
    return Figure(
        "W2",
        "drain",
        unit,
        [value],
        [reference],
        "W4",
        higher_is_better=unit != "ms",
        condition=condition,
        measure="database clock",
    )


def test_best_and_worst_are_chosen_by_ratio_to_the_reference() -> None:
    # autovacuum has the highest absolute rate but not the best ratio: the reference ran
    # faster in its repetition, so the machine was quieter then.
    group = Conditioned(
        "W2",
        "drain",
        {
            "database clock": [
                _figure("fresh", 100, 100),
                _figure("analyzed", 50, 200),
                _figure("autovacuum", 300, 400),
            ]
        },
        target=">= 60% of W4",
        check=at_least(0.6, ratio=True),
    )
    assert group.best().condition == "fresh"
    assert group.worst().condition == "analyzed"
    # Judged on the worst condition: fresh (1.0) and autovacuum (0.75) alone would pass.
    assert group.met is False
    table = conditioned_table([group])
    row = next(line for line in table.splitlines() if "| database clock |" in line)
    assert "fresh: 100, ratio 1.00" in row
    assert "**analyzed**: 50, ratio 0.25" in row
    assert "**not met**" in row


def test_for_latencies_the_worst_condition_is_the_slowest() -> None:
    group = Conditioned(
        "W5",
        "claim p99",
        {
            "claim probe": [
                _figure("fresh", 4.0, 2.0, unit="ms"),
                _figure("analyzed", 30.0, 2.0, unit="ms"),
            ]
        },
    )
    assert group.best().condition == "fresh"
    assert group.worst().condition == "analyzed"


async def test_autovacuum_stand_in_vacuums_and_analyzes_a_changed_table(
    chancy: Chancy, dsn: str, prefix: str
) -> None:
    """Past the thresholds, the stand-in runs VACUUM and ANALYZE, as the daemon would."""
    async for _ in chancy.push_many(
        [Job(func="bench.jobs.noop", queue="default") for _ in range(1000)], batch_size=1000
    ):
        pass
    q = queries(prefix)

    async def read(name: str) -> dict[str, int]:
        # A new autocommit connection each time: counters as of now, not a cached snapshot.
        conn = await connect(dsn)
        async with conn:
            cur = await conn.execute(q[name])
            row = await cur.fetchone()
        assert row is not None
        return dict(row)

    async def counted() -> bool:
        changes = await read("jobs_changes")
        return changes["inserted"] > 500 and changes["changed"] > 500

    # The inserting backend reports its counters within seconds.
    await eventually(counted, timeout=30, message="the insert was not counted")
    async with Autovacuum(dsn, prefix) as stand_in:
        await eventually(
            lambda: stand_in.analyzes >= 1 and stand_in.vacuums >= 1,
            timeout=30,
            message="the stand-in neither vacuumed nor analyzed",
        )

    async def recorded() -> bool:
        done = await read("jobs_maintenance")
        return done["vacuum"] >= 1 and done["analyze"] >= 1

    # The server recorded the runs (by hand: the daemon did not run them) ...
    await eventually(recorded, timeout=30, message="no VACUUM and ANALYZE recorded")
    # ... and they reset what autovacuum decides on.
    changes = await read("jobs_changes")
    assert changes["changed"] < 500 and changes["inserted"] < 500


async def test_outside_poller_reads_only_the_partial_indexes(
    chancy: Chancy, dsn: str, prefix: str
) -> None:
    """The poller runs every 10 ms during a drain: a sequential scan there (which, disabled,
    also costs a JIT compile of tens of milliseconds per poll) takes the drain's CPU."""
    import psycopg

    from tests.plans import explain, unbounded_scans

    async for _ in chancy.push_many(
        [Job(func="bench.jobs.noop", queue="default") for _ in range(2000)], batch_size=1000
    ):
        pass
    q = queries(prefix)
    table = f"{prefix}jobs"
    with psycopg.connect(dsn, autocommit=True) as conn:
        for analyzed in (False, True):
            if analyzed:
                conn.execute(f"VACUUM ANALYZE {table}")  # type: ignore[arg-type]
            for generic in (False, True):
                plan = explain(
                    conn, q["jobs_unfinished"], {}, generic=generic, settings=q["poller_session"]
                )
                assert unbounded_scans(plan, {table}, set()) == [], (analyzed, generic)


def test_a_drain_that_falls_below_80_percent_of_fresh_misses_its_target() -> None:
    """Issue #15: no drain figure under any statistics condition below 0.8 of fresh."""

    def group(analyzed: float) -> Conditioned:
        return Conditioned(
            "W2",
            "drain",
            {
                "database clock": [
                    _figure("fresh", 100, 100),
                    _figure("analyzed", analyzed, 100),
                ]
            },
            check=at_least(50),
            steady=0.8,
        )

    # Both above the absolute target of 50/s; only the steadiness differs.
    assert group(85).met is True
    assert group(75).met is False
    assert Conditioned("W2", "drain", {"database clock": [_figure("fresh", 1, 1)]}).met is None
