"""Hostile input: every value is stored and returned intact, or refused with a clear error.

Property-based (hypothesis) over job kwargs and meta, unique and partition keys, queue names,
cron expressions, the dashboard's filters and request bodies; plus jobs whose results, errors
or meta cannot be stored, and rows edited by hand into bad states. Nothing may crash a worker
or make the API answer 500.

The example counts are small for CI; ``CHANCY_HYPOTHESIS_PROFILE=thorough`` runs 20x more.
"""

from __future__ import annotations

import math
import os
import string
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chancy import Chancy, Job, Queue, Worker
from chancy.errors import ChancyError, ConfigurationError, InvalidJobError
from tests.conftest import eventually, migrated_app

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
PROFILE = settings.get_profile(os.environ.get("CHANCY_HYPOTHESIS_PROFILE", "ci"))

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
from tests.api.conftest import USERS, make_asgi  # noqa: E402

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
