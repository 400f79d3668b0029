"""Hostile input: every value is stored and returned intact, or refused with a clear error.

Property-based (hypothesis) over job kwargs and meta, unique and partition keys, queue names,
cron expressions, the dashboard's filters and request bodies; plus jobs whose results, errors
or meta cannot be stored, and rows edited by hand into bad states. Nothing may crash a worker
or make the API answer 500.

Every route of the dashboard is enumerated from its route table and sent hostile values in
every path parameter, query parameter and body field (see ``ROUTE_SPECS``); a route without
a spec fails the test, so a new route is covered as soon as it exists.

The example counts are small for CI; ``CHANCY_HYPOTHESIS_PROFILE=thorough`` runs 20x more
(and 1,000 examples per dashboard route).
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import string
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from chancy import Chancy, Job, Queue, Worker
from chancy.errors import ChancyError, ConfigurationError, InvalidJobError
from tests.conftest import eventually, migrated_app, new_prefix

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=1200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PROFILE_NAME = os.environ.get("CHANCY_HYPOTHESIS_PROFILE", "ci")
PROFILE = settings.get_profile(PROFILE_NAME)
#: Examples per dashboard route: a handful in CI, 1,000 in the thorough profile.
ROUTE_PROFILE = settings(PROFILE, max_examples=1000 if PROFILE_NAME == "thorough" else 12)

ASYNC = Chancy.Executor.Async
JOBS = "tests.reliability.hostile_jobs"

# Any JSON-like value, including what jsonb cannot hold: NaN and infinities, NUL characters,
# lone surrogates, integers past 64 bits, deep nesting.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.characters(codec=None), max_size=30)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(alphabet=st.characters(codec=None), max_size=8), inner, max_size=4
        )
    ),
    max_leaves=12,
)
keys = st.text(alphabet=st.characters(codec=None), min_size=1, max_size=40)


def storable(value: Any) -> bool:
    """What jsonb can hold, as JSON knows it."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return "\x00" not in value and not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, list):
        return all(storable(v) for v in value)
    if isinstance(value, dict):
        return all(storable(k) and storable(v) for k, v in value.items())
    return True


def same(a: Any, b: Any) -> bool:
    """Equal as JSON numbers and strings (a float may come back as an int of equal value)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, float) or isinstance(b, float):
        # jsonb keeps a number's decimal text: 3.6e+16 comes back as the int 36000000000000000.
        return isinstance(a, int | float) and isinstance(b, int | float) and float(a) == float(b)
    return bool(a == b)


async def count(app: Chancy) -> int:
    async with app.pool.connection() as conn:
        row = await (await conn.execute(f"SELECT count(*) FROM {app.prefix}jobs")).fetchone()  # type: ignore[arg-type]
    return int(row[0]) if row else 0


@pytest.fixture
async def app(dsn: str, prefix: str) -> AsyncIterator[Chancy]:
    async with migrated_app(dsn, prefix, pool=2) as chancy:
        yield chancy


# -- what a pusher hands over --------------------------------------------------------------


@PROFILE
@given(kwargs=st.dictionaries(st.text(max_size=10), values, max_size=4), meta=values)
async def test_kwargs_and_meta_round_trip_or_are_refused(
    app: Chancy, kwargs: Any, meta: Any
) -> None:
    meta = meta if isinstance(meta, dict) else {"v": meta}
    before = await count(app)
    try:
        job = Job(func=f"{JOBS}.ok", kwargs=kwargs, meta=meta)
        ref = await app.push(job)
    except InvalidJobError as exc:
        assert not (storable(kwargs) and storable(meta)), exc
        assert (
            "PostgreSQL cannot store" in str(exc) or "JSON" in str(exc) or "surrogate" in str(exc)
        )
        assert await count(app) == before  # nothing stored
        return
    assert storable(kwargs) and storable(meta)
    stored = await app.get_job(ref)
    assert stored is not None
    assert same(stored.kwargs, kwargs) and same(stored.meta, meta)


@PROFILE
@given(bad=st.sampled_from([float("nan"), float("-inf"), "x\x00y", "\udc80"]))
async def test_one_bad_job_in_a_batch_stores_nothing(app: Chancy, bad: Any) -> None:
    before = await count(app)
    batch = [Job(func=f"{JOBS}.ok", kwargs={"i": i}) for i in range(3000)]
    batch[1500] = Job(func=f"{JOBS}.ok", kwargs={"bad": bad})
    with pytest.raises(InvalidJobError, match="job 1500"):
        async for _ in app.push_many(batch, batch_size=5000):
            pass
    assert await count(app) == before


@PROFILE
@given(unique=keys, partition=keys)
async def test_unique_and_partition_keys_round_trip_or_are_refused(
    app: Chancy, unique: str, partition: str
) -> None:
    unique = f"{uuid.uuid4()}{unique}"  # one database serves every example: keep keys apart
    try:
        job = Job(func=f"{JOBS}.ok", unique_key=unique, partition_key=partition)
    except InvalidJobError as exc:
        assert not (storable(unique) and storable(partition)) or len(partition) > 200, exc
        return
    ref = await app.push(job)
    assert await app.push(job) == ref  # the live key maps to the same job
    stored = await app.get_job(ref)
    assert stored is not None
    assert (stored.unique_key, stored.partition_key) == (unique, partition)


@PROFILE
@given(name=st.text(alphabet=st.characters(codec=None), max_size=60))
async def test_queue_names_round_trip_or_are_refused(app: Chancy, name: str) -> None:
    try:
        queue = Queue(name, executor=ASYNC)
    except ConfigurationError as exc:
        assert str(exc)
        return
    await app.declare(queue, upsert=True)
    assert (await app.get_queue(name)).name == name


@PROFILE
@given(func=st.text(alphabet=st.characters(codec=None), max_size=40))
def test_func_paths_are_checked(func: str) -> None:
    try:
        Job(func=func)
    except InvalidJobError as exc:
        assert "import path" in str(exc)
        return
    assert all(part.isidentifier() for part in func.split("."))


@PROFILE
@given(
    expression=st.text(alphabet=string.digits + " */,-?LW#@abcdefghijklmnopqrstuvwxyz", max_size=40)
    | st.text(max_size=40)
)
def test_cron_expressions_parse_or_are_refused(expression: str) -> None:
    from chancy.plugins.cron.schedule import InvalidCronExpression, parse

    try:
        parsed = parse(expression)
    except InvalidCronExpression as exc:
        assert str(exc)
        return
    after = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    assert parsed.next_after(after) > after


# -- what a worker meets -----------------------------------------------------------------


@pytest.fixture
async def worker(app: Chancy) -> AsyncIterator[Worker]:
    await app.declare(Queue("default", executor=ASYNC, concurrency=5, polling_interval=0.2))
    w = Worker(app, register_signal_handlers=False, shutdown_timeout=5)
    async with w:
        await eventually(lambda: "default" in w.executors)
        yield w


async def still_serving(app: Chancy) -> None:
    ref = await app.push(Job(func=f"{JOBS}.ok"))
    job = await app.wait_for_job(ref, timeout=15)
    assert job is not None and str(job.state) == "succeeded" and job.result == "ok"


@pytest.mark.parametrize("value", ["nan", "inf", "nul", "surrogate", "object"])
async def test_a_result_that_cannot_be_stored_is_reported_not_fatal(
    app: Chancy, worker: Worker, value: str
) -> None:
    ref = await app.push(Job(func=f"{JOBS}.returns", kwargs={"value": value}))
    job = await app.wait_for_job(ref, timeout=15)
    assert job is not None and str(job.state) == "succeeded"
    assert job.result is None and "cannot be stored" in job.meta["result_error"]
    await still_serving(app)


async def test_an_error_message_with_nul_and_surrogates_is_stored_escaped(
    app: Chancy, worker: Worker
) -> None:
    ref = await app.push(Job(func=f"{JOBS}.raises_nul"))
    job = await app.wait_for_job(ref, timeout=15)
    assert job is not None and str(job.state) == "failed"
    assert "bad byte \\x00" in job.errors[-1]["traceback"]
    assert "\\udfff" in job.errors[-1]["traceback"]
    await still_serving(app)


async def test_meta_spoiled_by_the_job_is_kept_as_before(app: Chancy, worker: Worker) -> None:
    ref = await app.push(Job(func=f"{JOBS}.spoils_meta", meta={"kept": True}))
    job = await app.wait_for_job(ref, timeout=15)
    assert job is not None and str(job.state) == "succeeded" and job.result == "done"
    assert job.meta == {"kept": True}
    await still_serving(app)


@pytest.mark.parametrize(
    ("column", "value", "fragment"),
    [
        ("func", "'no.such.module.func'", "no.such"),
        ("func", "'tests.reliability.hostile_jobs.missing'", "missing"),
        ("func", "'tests.reliability.hostile_jobs.NOT_CALLABLE'", "NOT_CALLABLE"),
        ("func", "'not a path'", "import path"),
        ("kwargs", "'[1, 2]'::jsonb", "kwargs"),
        ("kwargs", "'\"text\"'::jsonb", "kwargs"),
        ("kwargs", "'{\"unexpected\": 1}'::jsonb", "unexpected"),
        ("limits", '\'[{"type": "bogus"}]\'::jsonb', "limit"),
        ("limits", "'{\"t\": 1}'::jsonb", "limit"),
        ("priority", "2147483647", None),
        ("meta", "'[]'::jsonb", None),
        ("errors", "'{\"x\": 1}'::jsonb", None),
    ],
)
async def test_rows_edited_into_bad_states_fail_clearly(
    app: Chancy, worker: Worker, dsn: str, column: str, value: str, fragment: str | None
) -> None:
    """Each ends failed with an error naming the problem (or, when the value does no harm,
    just runs); either way the worker serves on."""
    await app.pause_queue("default")
    ref = await app.push(Job(func=f"{JOBS}.ok"))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"UPDATE {app.prefix}jobs SET {column} = {value} WHERE id = %s",  # type: ignore[arg-type]
            (ref.identifier,),
        )
    await app.resume_queue("default")

    async def ended() -> bool:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(
                f"SELECT state FROM {app.prefix}jobs WHERE id = %s",  # type: ignore[arg-type]
                (ref.identifier,),
            ).fetchone()
        wanted = ("failed",) if fragment is not None else ("failed", "succeeded")
        return row is not None and row[0] in wanted

    await eventually(ended, timeout=20, message=f"the job with bad {column} ended")
    if fragment is not None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(
                f"SELECT errors::text FROM {app.prefix}jobs WHERE id = %s",  # type: ignore[arg-type]
                (ref.identifier,),
            ).fetchone()
        assert row is not None and fragment.lower() in row[0].lower(), row
    await still_serving(app)


async def test_an_unknown_state_is_left_alone_and_shown(
    app: Chancy, worker: Worker, dsn: str
) -> None:
    ref = await app.push(Job(func=f"{JOBS}.ok"))
    await app.wait_for_job(ref, timeout=15)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"UPDATE {app.prefix}jobs SET state = 'bogus' WHERE id = %s",  # type: ignore[arg-type]
            (ref.identifier,),
        )
    await still_serving(app)
    try:
        job = await app.get_job(ref)
    except ChancyError as exc:
        assert "bogus" in str(exc)
    else:
        assert job is not None and str(job.state) == "bogus"


# -- what the dashboard is sent ------------------------------------------------------------

httpx = pytest.importorskip("httpx")
from chancy.plugins.api import SimpleAuthBackend, build_starlette_app  # noqa: E402
from tests.api.conftest import (  # noqa: E402
    SECRET,
    USERS,
    close_dashboards,
    dashboard_plugins,
    make_asgi,
)

PARAMS = ["state", "queue", "func", "since", "until", "limit", "cursor", "filter", "count", "x"]


@pytest.fixture
async def client(app: Chancy) -> AsyncIterator[Any]:
    asgi = make_asgi(app)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=asgi), base_url="http://dashboard.test"
    ) as c:
        login = await c.post(
            "/api/v1/login", json={"username": "admin", "password": USERS["admin"]}
        )
        c.headers["Authorization"] = f"Bearer {login.json()['token']}"
        yield c
    await close_dashboards()


@PROFILE
@given(query=st.dictionaries(st.sampled_from(PARAMS), st.text(max_size=40), max_size=4))
async def test_job_filters_never_500(client: Any, query: dict[str, str]) -> None:
    for path in ("/api/v1/jobs", "/api/v1/jobs/counts"):
        response = await client.get(path, params=query)
        assert response.status_code < 500, (path, query, response.text)
        if response.status_code >= 400:
            assert response.json()["error"]


ROUTES = [
    "/api/v1/queues",
    "/api/v1/queues/default",
    "/api/v1/queues/default/pause",
    "/api/v1/jobs/retry",
    "/api/v1/jobs/cancel",
    "/api/v1/jobs/purge",
    "/api/v1/login",
    "/api/v1/crons/k/run",
]


@PROFILE
@given(route=st.sampled_from(ROUTES), body=values)
async def test_request_bodies_never_500(app: Chancy, client: Any, route: str, body: Any) -> None:
    await app.declare(Queue("default"), upsert=True)
    try:
        response = await client.post(route, json=body)
    except ValueError:
        return  # httpx itself refuses to send NaN or a lone surrogate
    assert response.status_code < 500, (route, body, response.text)
    if response.status_code >= 400:
        assert response.json()["error"]


@PROFILE
@given(raw=st.binary(max_size=200), path=st.sampled_from(ROUTES))
async def test_raw_bytes_never_500(client: Any, raw: bytes, path: str) -> None:
    response = await client.post(path, content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code < 500, (path, raw, response.text)


@PROFILE
@given(job_id=st.text(max_size=60) | st.uuids().map(str))
async def test_job_ids_never_500(client: Any, job_id: str) -> None:
    response = await client.get(f"/api/v1/jobs/{quote(job_id, safe='')}")
    assert response.status_code < 500, (job_id, response.text)


# -- every route, every parameter, every body field ----------------------------------------


def _hostile_plugins() -> list[Any]:
    """The dashboard's test plugins plus Trigger: every plugin that adds dashboard routes."""
    from chancy.plugins.trigger import Trigger

    return [*dashboard_plugins(), Trigger()]


def _route_table() -> list[tuple[str, str]]:
    """(method, path) of every route, read from the dashboard's own route table."""
    probe = Chancy(
        "postgresql://route-table.invalid/none",
        plugins=_hostile_plugins(),
        no_default_plugins=True,
    )
    asgi = build_starlette_app(
        probe, authentication_backend=SimpleAuthBackend(USERS), secret_key=SECRET
    )
    return sorted(
        (method, route.path)
        for route in asgi.routes
        for method in getattr(route, "methods", None) or ()
        if method != "HEAD"
    )


ROUTE_TABLE = _route_table()
JOB_FILTERS = ["state", "queue", "func", "func_contains", "since", "until", "filter"]
QUEUE_FIELDS = [
    "concurrency",
    "tags",
    "executor",
    "executor_options",
    "polling_interval",
    "rate_limit",
    "rate_limit_window",
    "global_concurrency",
    "partition_concurrency",
    "partition_rate_limit",
    "partition_rate_limit_window",
    "eager_polling",
]
#: The query parameters and body fields each route takes. A route missing here fails.
ROUTE_SPECS: dict[tuple[str, str], dict[str, list[str]]] = {
    ("GET", "/"): {},
    ("GET", "/ui/{file}"): {},
    ("GET", "/health"): {},
    ("GET", "/metrics"): {},
    ("POST", "/api/v1/login"): {"body": ["username", "password"]},
    ("POST", "/api/v1/logout"): {},
    ("GET", "/api/v1/me"): {},
    ("GET", "/api/v1/configuration"): {},
    ("GET", "/api/v1/system"): {},
    ("GET", "/api/v1/overview"): {},
    ("GET", "/api/v1/queues"): {},
    ("POST", "/api/v1/queues"): {"body": ["name", *QUEUE_FIELDS]},
    ("GET", "/api/v1/queues/{name}"): {},
    ("POST", "/api/v1/queues/{name}"): {"body": QUEUE_FIELDS},
    ("POST", "/api/v1/queues/{name}/pause"): {"body": ["resume_in"]},
    ("POST", "/api/v1/queues/{name}/resume"): {},
    ("POST", "/api/v1/queues/{name}/delete"): {"body": ["purge_jobs"]},
    ("GET", "/api/v1/workers"): {},
    ("GET", "/api/v1/jobs"): {"query": [*JOB_FILTERS, "limit", "cursor", "count"]},
    ("GET", "/api/v1/jobs/counts"): {"query": JOB_FILTERS},
    ("POST", "/api/v1/jobs/retry"): {"body": ["ids", "filter"]},
    ("POST", "/api/v1/jobs/cancel"): {"body": ["ids", "filter"]},
    ("POST", "/api/v1/jobs/purge"): {"body": ["ids", "filter"]},
    ("GET", "/api/v1/jobs/{id}"): {},
    ("GET", "/api/v1/functions"): {},
    ("GET", "/api/v1/crons"): {},
    ("POST", "/api/v1/crons/{key}/run"): {},
    ("POST", "/api/v1/crons/{key}/delete"): {},
    ("POST", "/api/v1/crons/{key}/pause"): {},
    ("POST", "/api/v1/crons/{key}/resume"): {},
    ("GET", "/api/v1/workflows"): {"query": ["limit", "offset", "state", "name"]},
    ("GET", "/api/v1/workflows/{id}"): {},
    ("GET", "/api/v1/metrics"): {},
    ("GET", "/api/v1/metrics/{name}"): {"query": ["resolution", "since", "until", "queue", "func"]},
    ("GET", "/api/v1/triggers"): {},
    ("POST", "/api/v1/triggers/{id}/enable"): {},
    ("POST", "/api/v1/triggers/{id}/disable"): {},
    ("POST", "/api/v1/triggers/{id}/delete"): {},
}
#: A value that exists, for each path parameter, so the examples also reach past the lookup.
KNOWN = {"name": "default", "key": "k", "id": "0190c0de-0000-7000-8000-000000000001"}
KNOWN_BY_ROUTE = {"/ui/{file}": "app.js", "/api/v1/metrics/{name}": "jobs.succeeded"}

# The input classes: non-ASCII and any code point (NUL, lone surrogates), numbers huge,
# negative and not finite, out-of-range and malformed timestamps, deep nesting, JSON of the
# wrong type, and filters built from all of them.
_FIXED_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfff",
    "é",
    "日本語",
    "\u202e",
    "0",
    "-1",
    "1e13",
    "1e400",
    "-1e400",
    "nan",
    "NaN",
    "inf",
    "-Infinity",
    "9" * 30,
    "9" * 5000,
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59.999999-14:00",
    "10000-01-01",
    "2024-02-30",
    "-infinity",
    "[" * 3000,
    "true",
    "null",
    "[]",
    "{}",
    "pending",
    "default",
    "jobs.succeeded",
    "1min",
    str(uuid.uuid4()),
    '{"and": [' + ",".join(['{"all": true}'] * 900) + "]}",
    '{"field": "age", "op": ">", "value": 1e13}',
    '{"field": "age", "op": "<", "value": -1e300}',
    '{"field": "queue", "op": "==", "value": "\\ud800"}',
    '{"field": "queue", "op": "==", "value": "a\\u0000"}',
    '{"field": "priority", "op": ">", "value": 99999999999999999999999}',
    '{"field": "created_at", "op": ">", "value": "0001-01-01T00:00:00+14:00"}',
    '{"not": ' * 60 + '{"all": true}' + "}" * 60,
]
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 10**13, 10**19, -(10**19), 10**400, 2**31, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e13, 1e300, -1e300, 5e-324, 1e-9]),
)
hostile_text = st.one_of(
    st.text(alphabet=st.characters(codec=None), max_size=20),
    st.sampled_from(_FIXED_TEXT),
    numbers.map(str),
)
deep = st.integers(20, 150).map(lambda n: functools.reduce(lambda inner, _: [inner], range(n), 0))
FILTER_FIELDS = ["age", "queue", "func", "state", "created_at", "scheduled_at", "id"]
FILTER_FIELDS += ["priority", "attempts", "bogus"]
one_filter = st.fixed_dictionaries(
    {
        "field": st.sampled_from(FILTER_FIELDS),
        "op": st.sampled_from(["==", "!=", "<", ">=", "in", "contains", "ilike", "nope"]),
        "value": st.one_of(scalars, numbers, hostile_text, st.lists(hostile_text, max_size=3)),
    }
)
filters = st.one_of(
    one_filter,
    st.fixed_dictionaries({"and": st.lists(one_filter, min_size=1, max_size=3)}),
    st.fixed_dictionaries({"not": one_filter}),
    st.just({"and": [{"all": True}] * 900}),
    st.just({"or": [{"field": "func", "op": "ilike", "value": "%x%"}] * 65}),
)
json_values = st.one_of(values, numbers, hostile_text, deep, filters)
criteria = st.fixed_dictionaries(
    {},
    optional={
        name: (filters | json_values) if name == "filter" else json_values for name in JOB_FILTERS
    },
)
FIELD_VALUES = {
    "filter": criteria | json_values,
    "ids": st.lists(st.uuids().map(str) | hostile_text, max_size=4) | json_values,
    "tags": st.lists(hostile_text | st.sampled_from(["(a+)+$", "(", "^web$"]), max_size=3)
    | json_values,
}
_RAW_BODIES = [
    b"[" * 50_000,
    b"{" * 1000,
    b'{"a":' * 2000,
    b"\xff\xfe",
    b"",
    b"   ",
    b"NaN",
    b'{"x": 1e999}',
    b'{"x": Infinity}',
    b'"text"',
    b"[1, 2]",
    b"null",
]
raw_bodies = st.sampled_from(_RAW_BODIES) | st.binary(max_size=100)


def body_strategy(fields: list[str]) -> Any:
    obj = st.fixed_dictionaries(
        {}, optional={f: FIELD_VALUES.get(f, json_values) for f in [*fields, "unexpected"]}
    )

    def encode(value: Any) -> bytes:
        # ensure_ascii escapes lone surrogates as \udXXX; allow_nan writes NaN and Infinity.
        return json.dumps(value, allow_nan=True).encode()

    return st.one_of(obj.map(encode), obj.map(encode), json_values.map(encode), raw_bodies)


def encode_text(value: str) -> str:
    """Percent-encode any string, lone surrogates too (as the bytes a client could send)."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def hostile_header() -> Any:
    raw = st.binary(max_size=60).map(lambda b: b"Bearer " + b) | st.sampled_from(
        [b"Bearer \xc3\xa9t\xc3\xa9.abc", b"Bearer abc.\xff", b"Bearer", b"Basic YTpi", b"Bearer ."]
    )
    # Servers refuse CR, LF and NUL in headers before any app sees them.
    return raw.map(lambda b: bytes(c for c in b if c not in (0, 10, 13)))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def dashboard(dsn: str) -> AsyncIterator[tuple[Chancy, Any]]:
    """The dashboard over a Chancy with its plugins (cron, workflows, metrics, triggers) and a
    cron.

    One per module (and xdist worker): migrating the plugins for each of the routes would
    cost more than the examples.
    """
    from chancy.plugins.cron import Cron

    async with migrated_app(dsn, new_prefix(), _hostile_plugins(), pool=2) as chancy:
        await chancy.declare(Queue("default"), upsert=True)
        await Cron.schedule(chancy, "0 * * * *", Job(func=f"{JOBS}.ok").with_unique_key("k"))
        asgi = build_starlette_app(
            chancy,
            authentication_backend=SimpleAuthBackend(USERS, read_only=["viewer"]),
            secret_key=SECRET,
            cache_ttl=0,
            login_attempts=10**6,
            client_login_attempts=10**6,
        )
        try:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=asgi), base_url="http://dashboard.test"
            ) as c:
                yield chancy, c
        finally:
            await asgi.state.dashboard.close()


async def _token(client: Any) -> str:
    login = await client.post(
        "/api/v1/login", json={"username": "admin", "password": USERS["admin"]}
    )
    return f"Bearer {login.json()['token']}"


def test_every_route_has_a_spec() -> None:
    missing = [f"{m} {p}" for m, p in ROUTE_TABLE if (m, p) not in ROUTE_SPECS]
    assert not missing, f"routes without a parameter strategy (add them to ROUTE_SPECS): {missing}"
    stale = [f"{m} {p}" for m, p in ROUTE_SPECS if (m, p) not in ROUTE_TABLE]
    assert not stale, f"ROUTE_SPECS names routes that no longer exist: {stale}"


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("method", "path"), ROUTE_TABLE, ids=[f"{m} {p}" for m, p in ROUTE_TABLE])
@ROUTE_PROFILE
@given(data=st.data())
async def test_every_route_answers_hostile_input_without_a_500(
    dashboard: tuple[Chancy, Any], method: str, path: str, data: Any
) -> None:
    chancy, client = dashboard
    spec = ROUTE_SPECS.get((method, path))
    assert spec is not None, f"{method} {path} has no parameter strategy: add it to ROUTE_SPECS"
    if "{name}" in path and path.startswith("/api/v1/queues"):
        await chancy.declare(Queue("default"), upsert=True)
    url = path
    for name in re.findall(r"{(\w+)}", path):
        known = KNOWN_BY_ROUTE.get(path, KNOWN.get(name, "x"))
        value = data.draw(st.just(known) | hostile_text, label=name)
        url = url.replace("{" + name + "}", encode_text(value) or "%20")
    query = data.draw(
        st.fixed_dictionaries(
            {}, optional={p: hostile_text for p in [*spec.get("query", []), "unexpected"]}
        ),
        label="query",
    )
    if query:
        url += "?" + "&".join(f"{encode_text(k)}={encode_text(v)}" for k, v in query.items())
    # httpx refuses to send a URL past 64 KiB (servers refuse far shorter request lines).
    assume(len(url) < 60_000)
    if data.draw(st.booleans(), label="hostile token") and data.draw(st.booleans()):
        authorization: Any = data.draw(hostile_header(), label="authorization")
    else:
        authorization = await _token(client)
    content = (
        data.draw(body_strategy(spec.get("body", [])), label="body") if method == "POST" else None
    )
    response = await client.request(
        method, url, content=content, headers={"Authorization": authorization}
    )
    assert response.status_code < 500, (method, url, content, response.text)
    if response.status_code >= 400 and path.startswith("/api/"):
        assert response.json()["error"], response.text
