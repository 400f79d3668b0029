"""Rules from chancy.rule select exactly the rows a Python predicate selects, on real PostgreSQL.

Each rule runs against a temporary ``jobs`` table; its selection is compared with the same
predicate written in Python over the rows read back from the database.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from chancy.errors import ConfigurationError
from chancy.job import Job, QueuedJob, Reference
from chancy.rule import (
    MAX_FILTER_CONDITIONS,
    MAX_FILTER_DEPTH,
    Condition,
    InvalidRuleError,
    JobRules,
    SQLAble,
    compile_rule,
    compile_rule_named,
    parse_filter,
)
from chancy.utils import importable_name

STATES = ["pending", "running", "retrying", "succeeded", "failed"]
QUEUES = ["default", "emails", "Emails", "a%b", "a_b", "axb", "back\\slash", "q"]
FUNCS = ["app.jobs.send", "app.jobs.resize_image", "app.jobs.Send_100%", "other.task"]

Row = dict[str, Any]
Predicate = Callable[[Row], bool]


def _make_rows() -> list[Row]:
    """Varied, deterministic job rows around the current time."""
    rng = random.Random(20240501)
    base = datetime.now(UTC).replace(microsecond=0)
    rows = []
    for _ in range(60):
        created_at = base - timedelta(minutes=rng.randint(0, 5 * 24 * 60))
        state = rng.choice(STATES)
        completed_at = None
        if state in ("succeeded", "failed"):
            completed_at = min(base, created_at + timedelta(minutes=rng.randint(0, 3000)))
        rows.append(
            {
                "id": uuid.UUID(int=rng.getrandbits(128), version=4),
                "queue": rng.choice(QUEUES),
                "func": rng.choice(FUNCS),
                "state": state,
                "priority": rng.randint(-5, 5),
                "attempts": rng.randint(0, 4),
                "created_at": created_at,
                "scheduled_at": created_at + timedelta(minutes=rng.randint(-60, 600)),
                "completed_at": completed_at,
            }
        )
    return rows


ROWS = _make_rows()
PIVOT = ROWS[7]
IDS = [ROWS[0]["id"], ROWS[3]["id"], ROWS[11]["id"]]


def _ilike(pattern: str) -> Predicate:
    regex = re.compile(
        "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern),
        re.IGNORECASE | re.DOTALL,
    )
    return lambda r: regex.fullmatch(r["queue"]) is not None


# (rule, the same predicate in Python). `age` is filled in from the database's now().
LEAVES: list[tuple[SQLAble, Predicate]] = [
    (JobRules.All(), lambda r: True),
    (JobRules.Queue() == "emails", lambda r: r["queue"] == "emails"),
    (JobRules.Queue() != "emails", lambda r: r["queue"] != "emails"),
    (JobRules.Queue() < "emails", lambda r: r["queue"] < "emails"),
    (JobRules.Queue() >= "b", lambda r: r["queue"] >= "b"),
    (JobRules.Queue().contains("EMAIL"), lambda r: "email" in r["queue"].lower()),
    (JobRules.Queue().contains("a%b"), lambda r: "a%b" in r["queue"]),
    (JobRules.Queue().contains("_"), lambda r: "_" in r["queue"]),
    (JobRules.Queue().contains("\\"), lambda r: "\\" in r["queue"]),
    (JobRules.Queue().ilike("a_b"), _ilike("a_b")),
    (JobRules.Queue().ilike("%S"), _ilike("%S")),
    (JobRules.Queue().is_in(["q", "default"]), lambda r: r["queue"] in ("q", "default")),
    (JobRules.Job() == "app.jobs.send", lambda r: r["func"] == "app.jobs.send"),
    (JobRules.Job().contains("send"), lambda r: "send" in r["func"].lower()),
    (JobRules.Job().contains("100%"), lambda r: "100%" in r["func"]),
    (JobRules.Job().contains("_1"), lambda r: "_1" in r["func"]),
    (JobRules.State() == "failed", lambda r: r["state"] == "failed"),
    (JobRules.State() != "pending", lambda r: r["state"] != "pending"),
    (
        JobRules.State().is_in(["succeeded", "failed"]),
        lambda r: r["state"] in ("succeeded", "failed"),
    ),
    (JobRules.Priority() > 2, lambda r: r["priority"] > 2),
    (JobRules.Priority() <= -1, lambda r: r["priority"] <= -1),
    (JobRules.Priority() == 0, lambda r: r["priority"] == 0),
    (JobRules.Priority() != 0, lambda r: r["priority"] != 0),
    (JobRules.Priority().in_([1, 3, 2**40]), lambda r: r["priority"] in (1, 3)),
    (JobRules.Priority().is_in([]), lambda r: False),
    (JobRules.Attempts() >= 3, lambda r: r["attempts"] >= 3),
    (JobRules.Attempts() < 1, lambda r: r["attempts"] < 1),
    (
        JobRules.CreatedAt() <= PIVOT["created_at"],
        lambda r: r["created_at"] <= PIVOT["created_at"],
    ),
    (
        JobRules.CreatedAt() == PIVOT["created_at"],
        lambda r: r["created_at"] == PIVOT["created_at"],
    ),
    (
        JobRules.ScheduledAt() > PIVOT["scheduled_at"],
        lambda r: r["scheduled_at"] > PIVOT["scheduled_at"],
    ),
    (JobRules.ID() == IDS[0], lambda r: r["id"] == IDS[0]),
    (JobRules.ID() != str(IDS[0]), lambda r: r["id"] != IDS[0]),
    (JobRules.ID().is_in([Reference(i) for i in IDS]), lambda r: r["id"] in IDS),
    (JobRules.Age() > 86400, lambda r: r["age"] > timedelta(days=1)),
    (JobRules.Age() <= 3 * 3600, lambda r: r["age"] <= timedelta(hours=3)),
    (JobRules.Age() >= timedelta(days=2), lambda r: r["age"] >= timedelta(days=2)),
    (JobRules.Age() < 1.5 * 86400, lambda r: r["age"] < timedelta(days=1.5)),
]


@pytest.fixture(scope="module")
def conn(dsn: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        # A temporary table lives only in this session, so parallel tests never see it. "C"
        # collation makes text ordering the same as Python's.
        conn.execute(
            """
            CREATE TEMP TABLE jobs (
                id uuid PRIMARY KEY,
                queue text COLLATE "C" NOT NULL,
                func text COLLATE "C" NOT NULL,
                state text NOT NULL,
                priority int NOT NULL,
                attempts int NOT NULL,
                created_at timestamptz NOT NULL,
                scheduled_at timestamptz NOT NULL,
                completed_at timestamptz
            )
            """
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO jobs VALUES (%(id)s, %(queue)s, %(func)s, %(state)s, %(priority)s,"
                " %(attempts)s, %(created_at)s, %(scheduled_at)s, %(completed_at)s)",
                ROWS,
            )
        yield conn


@pytest.fixture
def tx(conn: psycopg.Connection[dict[str, Any]]) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """One transaction per test, so now() is fixed and anything the test writes is undone."""
    with conn.transaction(force_rollback=True):
        yield conn


def _rows(conn: psycopg.Connection[dict[str, Any]]) -> list[Row]:
    rows = conn.execute(
        "SELECT *, now() - coalesce(completed_at, created_at) AS age FROM jobs"
    ).fetchall()
    return rows


def _select(conn: psycopg.Connection[dict[str, Any]], rule: SQLAble) -> set[uuid.UUID]:
    where, params = compile_rule(rule)
    query = sql.SQL("SELECT id FROM jobs WHERE {}").format(where)
    return {row["id"] for row in conn.execute(query, params)}


def _expect(rows: list[Row], predicate: Predicate) -> set[uuid.UUID]:
    return {r["id"] for r in rows if predicate(r)}


def _leaf_id(rule: SQLAble) -> str:
    # Timestamps come from the clock, and pytest-xdist needs the same ids in every worker.
    return re.sub(r"datetime\.datetime\([^()]*\)", "<timestamp>", repr(rule))


@pytest.mark.parametrize(("rule", "predicate"), LEAVES, ids=[_leaf_id(rule) for rule, _ in LEAVES])
def test_condition_selects_expected_rows(
    tx: psycopg.Connection[dict[str, Any]], rule: SQLAble, predicate: Predicate
) -> None:
    rows = _rows(tx)
    assert _select(tx, rule) == _expect(rows, predicate)


def test_leaves_are_not_trivial(tx: psycopg.Connection[dict[str, Any]]) -> None:
    """Most leaves select some rows and leave some out, so the comparisons above mean something."""
    rows = _rows(tx)
    partial = [rule for rule, p in LEAVES if 0 < len(_expect(rows, p)) < len(rows)]
    assert len(partial) >= len(LEAVES) - 4


def _random_rule(rng: random.Random, depth: int) -> tuple[SQLAble, Predicate]:
    if depth == 0 or rng.random() < 0.3:
        return rng.choice(LEAVES)
    kind = rng.choice(["and", "or", "not"])
    left, lp = _random_rule(rng, depth - 1)
    if kind == "not":
        return ~left, lambda r: not lp(r)
    right, rp = _random_rule(rng, depth - 1)
    if kind == "and":
        return left & right, lambda r: lp(r) and rp(r)
    return left | right, lambda r: lp(r) or rp(r)


def test_random_combinations(tx: psycopg.Connection[dict[str, Any]]) -> None:
    rows = _rows(tx)
    rng = random.Random(7)
    for _ in range(300):
        rule, predicate = _random_rule(rng, depth=4)
        assert _select(tx, rule) == _expect(rows, predicate), repr(rule)


def test_precedence_and_nesting(tx: psycopg.Connection[dict[str, Any]]) -> None:
    rows = _rows(tx)
    a = JobRules.State() == "failed"
    b = JobRules.Priority() > 0
    c = JobRules.Queue() == "emails"
    # Python's & binds tighter than |, and the SQL keeps that grouping.
    loose = a | b & c
    grouped = (a | b) & c
    expected_loose = _expect(
        rows, lambda r: r["state"] == "failed" or (r["priority"] > 0 and r["queue"] == "emails")
    )
    expected_grouped = _expect(
        rows, lambda r: (r["state"] == "failed" or r["priority"] > 0) and r["queue"] == "emails"
    )
    assert expected_loose != expected_grouped
    assert _select(tx, loose) == expected_loose
    assert _select(tx, grouped) == expected_grouped
    assert _select(tx, ~grouped) == {r["id"] for r in rows} - expected_grouped


def test_contains_matches_wildcards_literally(tx: psycopg.Connection[dict[str, Any]]) -> None:
    tx.execute("DELETE FROM jobs")
    for name in ["a%b", "a_b", "axb", "aXb", "ab", "back\\slash", "backslash", "100%", "1000"]:
        tx.execute(
            "INSERT INTO jobs VALUES (gen_random_uuid(), %s, 'f', 'pending', 0, 0, now(), now())",
            [name],
        )

    def queues(rule: SQLAble) -> set[str]:
        where, params = compile_rule(rule)
        query = sql.SQL("SELECT queue FROM jobs WHERE {}").format(where)
        return {row["queue"] for row in tx.execute(query, params)}

    assert queues(JobRules.Queue().contains("a%b")) == {"a%b"}
    assert queues(JobRules.Queue().contains("a_b")) == {"a_b"}
    assert queues(JobRules.Queue().contains("%")) == {"a%b", "100%"}
    assert queues(JobRules.Queue().contains("_")) == {"a_b"}
    assert queues(JobRules.Queue().contains("k\\s")) == {"back\\slash"}
    assert queues(JobRules.Queue().contains("AXB")) == {"axb", "aXb"}
    assert queues(JobRules.Queue().ilike("a_b")) == {"a%b", "a_b", "axb", "aXb"}
    assert queues(JobRules.Queue().ilike("100%")) == {"100%", "1000"}


def test_age_counts_from_completed_at_by_database_time(
    tx: psycopg.Connection[dict[str, Any]],
) -> None:
    # now() is fixed inside the transaction, so ages land exactly on the boundary.
    tx.execute(
        """
        INSERT INTO jobs (id, queue, func, state, priority, attempts, created_at, scheduled_at,
                          completed_at)
        VALUES ('00000000-0000-4000-8000-000000000001', 'age', 'f', 'succeeded', 0, 1,
                now() - interval '10 days', now() - interval '10 days', now() - interval '2 days'),
               ('00000000-0000-4000-8000-000000000002', 'age', 'f', 'pending', 0, 0,
                now() - interval '2 days', now() - interval '2 days', NULL),
               ('00000000-0000-4000-8000-000000000003', 'age', 'f', 'failed', 0, 1,
                now() - interval '30 days', now() - interval '30 days', now() - interval '1 day')
        """
    )
    one, two, three = (uuid.UUID(f"00000000-0000-4000-8000-00000000000{i}") for i in (1, 2, 3))
    in_age = JobRules.Queue() == "age"
    assert _select(tx, in_age & (JobRules.Age() >= 2 * 86400)) == {one, two}
    assert _select(tx, in_age & (JobRules.Age() > timedelta(days=2))) == set()
    assert _select(tx, in_age & (JobRules.Age() == 172800)) == {one, two}
    assert _select(tx, in_age & (JobRules.Age() > 86400)) == {one, two}
    assert _select(tx, in_age & (JobRules.Age() < 86400.5)) == {three}
    assert _select(tx, in_age & (JobRules.Age() <= 86400)) == {three}
    assert _select(tx, in_age & (JobRules.Age() != 86400)) == {one, two}
    # The Pruner's default rule compiles and runs as is.
    assert _select(tx, in_age & (JobRules.Age() > 86400)) == {one, two}
    where, params = compile_rule(JobRules.Age() > 86400)
    assert "now()" in where.as_string(tx)
    assert params == [timedelta(days=1)]


def test_values_never_reach_the_sql_text(tx: psycopg.Connection[dict[str, Any]]) -> None:
    evil = "x'); DROP TABLE jobs; --"
    rule = (
        (JobRules.Queue() == evil)
        | JobRules.Job().contains("secret-needle")
        | JobRules.Queue().ilike("%pattern-needle%")
        | JobRules.Queue().is_in(["listed-needle"])
        | (JobRules.ID() == IDS[1])
        | (JobRules.Priority() == 123456789)
        | (JobRules.CreatedAt() < datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC))
        | (JobRules.Age() > 987654)
        | (JobRules.State() == "retrying")
    )
    where, params = compile_rule(rule)
    text = where.as_string(tx)
    for needle in [
        "DROP",
        "secret-needle",
        "pattern-needle",
        "listed-needle",
        str(IDS[1]),
        "123456789",
        "2001",
        "987654",
        "retrying",
    ]:
        assert needle not in text
    assert len(params) == text.count("%s") == 9
    assert _select(tx, JobRules.Queue() == evil) == set()
    assert tx.execute("SELECT count(*) AS n FROM jobs").fetchone() == {"n": len(ROWS)}


def test_alias_and_named_parameters(tx: psycopg.Connection[dict[str, Any]]) -> None:
    rows = _rows(tx)
    rule = (JobRules.State() == "failed") & (JobRules.Age() > 3600) | (JobRules.Priority() > 3)
    expected = _expect(
        rows,
        lambda r: (r["state"] == "failed" and r["age"] > timedelta(hours=1)) or r["priority"] > 3,
    )

    where, params = compile_rule(rule, alias="j")
    assert '"j"."state"' in where.as_string(tx)
    query = sql.SQL("SELECT j.id FROM jobs AS j WHERE {} LIMIT %s").format(where)
    assert {r["id"] for r in tx.execute(query, [*params, 1000])} == expected

    where, named = compile_rule_named(rule, alias="j", prefix="f_")
    assert set(named) == {"f_0", "f_1", "f_2"}
    query = sql.SQL("SELECT j.id FROM jobs AS j WHERE {} LIMIT %(limit)s").format(where)
    assert {r["id"] for r in tx.execute(query, {**named, "limit": 1000})} == expected


def test_from_dict_round_trip(tx: psycopg.Connection[dict[str, Any]]) -> None:
    rows = _rows(tx)
    data = {
        "or": [
            {
                "and": [
                    {"field": "state", "op": "in", "value": ["succeeded", "failed"]},
                    {"field": "age", "op": ">", "value": "86400"},
                ]
            },
            {"not": {"field": "Queue", "op": "contains", "value": "mail"}},
            {"field": "createdAt", "op": "ge", "value": PIVOT["created_at"].isoformat()},
            {"field": "priority", "op": "==", "value": "4"},
            {"field": "id", "op": "in", "value": [str(i) for i in IDS]},
        ]
    }
    rule = JobRules.from_dict(data)
    expected = _expect(
        rows,
        lambda r: (
            (r["state"] in ("succeeded", "failed") and r["age"] > timedelta(days=1))
            or "mail" not in r["queue"].lower()
            or r["created_at"] >= PIVOT["created_at"]
            or r["priority"] == 4
            or r["id"] in IDS
        ),
    )
    assert _select(tx, rule) == expected
    again = JobRules.from_dict(rule.to_dict())
    assert _select(tx, again) == expected
    assert repr(again) == repr(rule)
    assert _select(tx, JobRules.from_dict({"all": True})) == {r["id"] for r in rows}


def test_parse_filter_accepts_strings_from_http() -> None:
    assert parse_filter("priority", "gt", "3").value == 3
    assert parse_filter("attempts", "<=", 2).value == 2
    assert parse_filter("id", "eq", str(IDS[0])).value == IDS[0]
    assert parse_filter("scheduled_at", "lt", "2024-05-01T12:00:00Z").value == datetime(
        2024, 5, 1, 12, tzinfo=UTC
    )
    assert parse_filter("age", "gt", "60").value == timedelta(minutes=1)
    assert parse_filter("func", "eq", "a.b").rule.field == "func"
    assert parse_filter("job", "contains", "b").rule.field == "func"


@pytest.mark.parametrize(
    ("field", "op", "value", "message"),
    [
        ("nope", "eq", 1, "valid fields are age, attempts, created_at"),
        ("completed_at", "eq", 1, "valid fields are"),
        ("queue", "like", "x", "valid operators are"),
        ("queue", "; DROP", "x", "valid operators are"),
        ("priority", "contains", "1", "supports eq, ge, gt, in, le, lt, ne"),
        ("state", "lt", "failed", "supports eq, in, ne"),
        ("id", "gt", str(IDS[0]), "supports eq, in, ne"),
        ("age", "in", [1], "supports"),
        ("state", "eq", "bogus", "valid states are pending, running"),
        ("id", "eq", "not-a-uuid", "takes a job id"),
        ("id", "eq", 5, "takes a job id"),
        ("priority", "eq", "high", "takes an integer"),
        ("priority", "eq", True, "takes an integer"),
        ("priority", "eq", 1.5, "takes an integer"),
        ("priority", "eq", 2**70, "out of range"),
        ("attempts", "eq", None, "cannot be compared with None"),
        ("created_at", "lt", datetime(2024, 1, 1), "timezone-aware"),
        ("created_at", "lt", "2024-01-01T00:00:00", "timezone-aware"),
        ("scheduled_at", "lt", "yesterday", "ISO 8601"),
        ("scheduled_at", "lt", 1700000000, "takes a datetime"),
        ("queue", "eq", 5, "takes a string"),
        ("queue", "eq", "a\x00b", "NUL"),
        ("queue", "in", "default", "takes a list"),
        ("queue", "in", ["ok", 3], "takes a string"),
        ("age", "gt", "a day", "takes seconds"),
        ("age", "gt", float("nan"), "finite"),
        ("age", "gt", 1e300, "out of range"),
        ("job", "ilike", 3, "takes a string"),
    ],
)
def test_parse_filter_rejects_bad_input(field: str, op: str, value: Any, message: str) -> None:
    with pytest.raises(InvalidRuleError, match=re.escape(message)) as info:
        parse_filter(field, op, value)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, ConfigurationError)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "must be an object"),
        ({"field": "queue", "op": "eq"}, "unrecognised filter keys"),
        ({"field": "queue", "op": "eq", "value": "x", "extra": 1}, "unrecognised filter keys"),
        ({"and": []}, "non-empty list"),
        ({"or": {"field": "queue"}}, "non-empty list"),
        ({"all": False}, "takes the value true"),
        ({"not": "queue"}, "must be an object"),
        ({"and": [{"field": "x", "op": "eq", "value": 1}]}, "unknown field"),
    ],
)
def test_from_dict_rejects_bad_shapes(data: Any, message: str) -> None:
    with pytest.raises(InvalidRuleError, match=re.escape(message)):
        JobRules.from_dict(data)


def test_from_dict_limits_size() -> None:
    leaf = {"field": "queue", "op": "eq", "value": "x"}
    nested: dict[str, Any] = leaf
    for _ in range(MAX_FILTER_DEPTH + 1):
        nested = {"not": nested}
    with pytest.raises(InvalidRuleError, match="nested more than"):
        JobRules.from_dict(nested)
    JobRules.from_dict({"or": [leaf] * MAX_FILTER_CONDITIONS})
    with pytest.raises(InvalidRuleError, match="at most"):
        JobRules.from_dict({"or": [leaf] * (MAX_FILTER_CONDITIONS + 1)})


def test_python_api_validates_too() -> None:
    with pytest.raises(InvalidRuleError, match="not a job state"):
        _ = JobRules.State() == "done"
    with pytest.raises(InvalidRuleError, match="does not support"):
        JobRules.Priority().contains("1")
    with pytest.raises(InvalidRuleError, match="timezone-aware"):
        _ = JobRules.CreatedAt() > datetime(2024, 1, 1)
    with pytest.raises(InvalidRuleError, match="is a field, not a condition"):
        compile_rule(JobRules.Age())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _ = (JobRules.Queue() == "a") & JobRules.Queue()  # type: ignore[operator]


def test_rules_have_no_truth_value() -> None:
    a = JobRules.Queue() == "a"
    with pytest.raises(TypeError, match="combine rules with &"):
        _ = a and (JobRules.State() == "failed")
    with pytest.raises(TypeError, match="one bound at a time"):
        _ = 1 < JobRules.Priority() < 5


def test_reflected_and_equivalent_forms_compile_alike(
    tx: psycopg.Connection[dict[str, Any]],
) -> None:
    def compiled(rule: SQLAble) -> tuple[str, list[Any]]:
        where, params = compile_rule(rule)
        return where.as_string(tx), params

    assert compiled(86400 < JobRules.Age()) == compiled(JobRules.Age() > timedelta(days=1))
    assert compiled(JobRules.State() == QueuedJob.State.FAILED) == compiled(
        JobRules.State() == "failed"
    )
    assert compiled(JobRules.ID() == Reference(IDS[0])) == compiled(JobRules.ID() == IDS[0])


def sample_job() -> None:
    """A module-level function used to check JobRules.Job() accepts functions."""


def test_job_field_accepts_functions_and_jobs() -> None:
    name = importable_name(sample_job)
    assert (JobRules.Job() == sample_job).value == name
    assert (JobRules.Job() == Job(func=name)).value == name
    with pytest.raises(InvalidRuleError, match="lambda"):
        _ = JobRules.Job() == (lambda: None)


def test_condition_is_a_condition() -> None:
    rule = JobRules.Priority() >= 2
    assert isinstance(rule, Condition)
    assert rule.to_dict() == {"field": "priority", "op": "ge", "value": 2}
    assert repr(rule) == "(JobRules.Priority() >= 2)"
