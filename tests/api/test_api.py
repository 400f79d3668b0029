"""The dashboard API against the real ASGI app and PostgreSQL: every route, auth, bad input."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString, cast
from urllib.parse import quote

import psycopg
import pytest

from chancy import Chancy, Job, Queue, Worker
from chancy.errors import ConfigurationError
from chancy.plugins.metrics import Metrics
from chancy.store import Spec
from tests.api.conftest import SECRET, login, make_asgi
from tests.conftest import eventually

httpx = pytest.importorskip("httpx")

ASYNC = Chancy.Executor.Async
NOOP = "tests.metrics.jobs.noop"

PROTECTED = [
    ("GET", "/metrics"),
    ("GET", "/api/v1/me"),
    ("GET", "/api/v1/configuration"),
    ("GET", "/api/v1/system"),
    ("GET", "/api/v1/overview"),
    ("GET", "/api/v1/queues"),
    ("POST", "/api/v1/queues"),
    ("GET", "/api/v1/queues/default"),
    ("POST", "/api/v1/queues/default"),
    ("POST", "/api/v1/queues/default/pause"),
    ("POST", "/api/v1/queues/default/resume"),
    ("POST", "/api/v1/queues/default/delete"),
    ("GET", "/api/v1/workers"),
    ("GET", "/api/v1/jobs"),
    ("GET", "/api/v1/jobs/counts"),
    ("POST", "/api/v1/jobs/retry"),
    ("POST", "/api/v1/jobs/cancel"),
    ("POST", "/api/v1/jobs/purge"),
    ("GET", "/api/v1/jobs/0190c0de-0000-7000-8000-000000000001"),
    ("GET", "/api/v1/functions"),
    ("GET", "/api/v1/crons"),
    ("POST", "/api/v1/crons/k/run"),
    ("POST", "/api/v1/crons/k/delete"),
    ("POST", "/api/v1/crons/k/pause"),
    ("POST", "/api/v1/crons/k/resume"),
    ("GET", "/api/v1/workflows"),
    ("GET", "/api/v1/workflows/0190c0de-0000-7000-8000-000000000002"),
    ("GET", "/api/v1/metrics"),
    ("GET", "/api/v1/metrics/jobs.succeeded"),
]
ACTIONS = [(m, p) for m, p in PROTECTED if m == "POST"]


async def push(app: Chancy, n: int = 1, **fields: Any) -> list[str]:
    fields.setdefault("func", NOOP)
    refs = [await app.push(Job(**fields)) for _ in range(n)]
    return [str(r.identifier) for r in refs]


async def failed_job(app: Chancy, **fields: Any) -> str:
    (job_id,) = await push(app, **fields)
    assert await app.cancel_job(job_id)
    return job_id


# -- auth --------------------------------------------------------------------------------


async def test_health_needs_no_login(client: Any) -> None:
    response = await client.get("/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_every_route_needs_a_token(client: Any, method: str, path: str) -> None:
    response = await client.request(method, path)
    assert response.status_code == 401, response.text
    assert "log in" in response.json()["error"]
    forged = {"Authorization": "Bearer eyJ1IjoiYWRtaW4ifQ.c2lnbmF0dXJl"}
    assert (await client.request(method, path, headers=forged)).status_code == 401


@pytest.mark.parametrize(("method", "path"), ACTIONS)
async def test_read_only_users_cannot_act(
    client: Any, viewer: dict[str, str], method: str, path: str
) -> None:
    response = await client.request(method, path, headers=viewer, json={})
    assert response.status_code == 403
    assert "read-only" in response.json()["error"]


async def test_read_only_users_can_look(client: Any, viewer: dict[str, str]) -> None:
    for path in ("/api/v1/queues", "/api/v1/jobs", "/api/v1/me", "/api/v1/overview"):
        assert (await client.get(path, headers=viewer)).status_code == 200, path
    me = (await client.get("/api/v1/me", headers=viewer)).json()
    assert me == {"username": "viewer", "role": "read-only", "can_act": False}


async def test_login_rejects_wrong_passwords_and_rate_limits(client: Any) -> None:
    bad = {"username": "admin", "password": "wrong"}
    for _ in range(5):
        response = await client.post("/api/v1/login", json=bad)
        assert response.status_code == 401
        assert response.json() == {"error": "wrong username or password"}
    response = await client.post("/api/v1/login", json=bad)
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    # Even the right password waits here: the limit is per (address, username) pair.
    right = {"username": "admin", "password": "admin-password"}
    assert (await client.post("/api/v1/login", json=right)).status_code == 429


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'{"username": 1, "password": "x"}', b'{"username": "admin"}'],
)
async def test_login_validates_its_body(client: Any, body: bytes) -> None:
    response = await client.post("/api/v1/login", content=body)
    assert response.status_code == 400
    assert response.json()["error"]


async def test_tokens_are_signed_and_expire(app: Chancy, client_for: Any) -> None:
    from chancy.plugins.api.auth import ADMIN, TokenSigner, User

    async with client_for(make_asgi(app)) as client:
        expired, _ = TokenSigner(SECRET).issue(User("admin", ADMIN), ttl=-10)
        other, _ = TokenSigner("another-secret-key-entirely").issue(User("admin", ADMIN))
        for token in (expired, other, "garbage", expired + "x"):
            response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401


async def test_oversized_body_is_refused(client: Any, admin: dict[str, str]) -> None:
    response = await client.post(
        "/api/v1/jobs/retry", headers=admin, content=b"{" + b" " * 300_000 + b"}"
    )
    assert response.status_code == 413


# -- configuration, system, workers --------------------------------------------------


async def test_configuration_and_system(client: Any, admin: dict[str, str], app: Chancy) -> None:
    config = (await client.get("/api/v1/configuration", headers=admin)).json()
    assert config["prefix"] == app.prefix
    assert config["features"]["metrics"] is True
    assert "chancy.metrics" in {p["identifier"] for p in config["plugins"]}
    assert config["states"] == ["pending", "running", "failed", "retrying", "succeeded"] or set(
        config["states"]
    ) == {"pending", "running", "failed", "retrying", "succeeded"}
    system = (await client.get("/api/v1/system", headers=admin)).json()
    assert "PostgreSQL" in system["server"]["server_version"]
    assert system["schema_versions"]["chancy"] >= 9
    assert system["schema_versions"]["metrics"] == 5


async def test_workers_show_the_leader(
    client: Any, admin: dict[str, str], app: Chancy, dsn: str
) -> None:
    from chancy.plugins.leadership import Leadership

    await app.declare(Queue("default", tags={"^nobody$"}))
    await app.declare(Queue("w", executor=ASYNC))
    leading = Chancy(
        dsn,
        prefix=app.prefix,
        plugins=[Leadership(poll_interval=0.2, timeout=2)],
        no_default_plugins=True,
        max_connection_pool_size=2,
    )
    async with (
        leading,
        Worker(
            leading,
            register_signal_handlers=False,
            worker_id="dash-w1",
            heartbeat_poll_interval=0.2,
            heartbeat_timeout=5,
        ) as worker,
    ):
        await eventually(worker.is_leader.is_set)

        async def listed() -> list[dict[str, Any]] | None:
            rows = (await client.get("/api/v1/workers", headers=admin)).json()["workers"]
            return rows if rows and "w" in rows[0]["queues"] else None

        # The heartbeat reports the queues served from its next beat on.
        (row,) = await eventually(listed, timeout=15, interval=0.1)
        assert row["worker_id"] == "dash-w1" and row["alive"] is True
        assert row["is_leader"] is True and "w" in row["queues"]
        detail = (await client.get("/api/v1/queues/w", headers=admin)).json()
        assert detail["workers"] == ["dash-w1"]


# -- queues ------------------------------------------------------------------------------


async def test_queue_lifecycle(client: Any, admin: dict[str, str], app: Chancy) -> None:
    created = await client.post(
        "/api/v1/queues",
        headers=admin,
        json={"name": "emails", "concurrency": 3, "executor": "async", "tags": ["^web"]},
    )
    assert created.status_code == 200, created.text
    assert created.json()["queue"]["executor"] == Chancy.Executor.Async.value
    again = await client.post("/api/v1/queues", headers=admin, json={"name": "emails"})
    assert again.status_code == 409
    await push(app, 2, queue="emails")
    listed = (await client.get("/api/v1/queues", headers=admin)).json()["queues"]
    emails = next(q for q in listed if q["name"] == "emails")
    assert emails["waiting"] == 2 and emails["running"] == 0 and emails["estimated"] is False
    updated = await client.post(
        "/api/v1/queues/emails", headers=admin, json={"concurrency": 5, "polling_interval": 2}
    )
    assert updated.status_code == 200
    stored = await app.get_queue("emails")
    assert stored.concurrency == 5 and stored.polling_interval == 2 and stored.tags == {"^web"}
    paused = await client.post("/api/v1/queues/emails/pause", headers=admin, json={})
    assert paused.json()["queue"]["state"] == "paused"
    assert (await app.get_queue("emails")).state == Queue.State.PAUSED
    # An update keeps the queue paused.
    await client.post("/api/v1/queues/emails", headers=admin, json={"concurrency": 6})
    assert (await app.get_queue("emails")).state == Queue.State.PAUSED
    resumed = await client.post("/api/v1/queues/emails/resume", headers=admin)
    assert resumed.json()["queue"]["state"] == "active"
    timed = await client.post("/api/v1/queues/emails/pause", headers=admin, json={"resume_in": 60})
    assert timed.json()["queue"]["resume_at"] is not None
    deleted = await client.post(
        "/api/v1/queues/emails/delete", headers=admin, json={"purge_jobs": True}
    )
    assert deleted.json() == {"deleted": True}
    assert (await client.get("/api/v1/queues/emails", headers=admin)).status_code == 404
    assert (await client.get("/api/v1/jobs?queue=emails", headers=admin)).json()["jobs"] == []


async def test_queue_limits_are_set_and_their_usage_shown(
    client: Any, admin: dict[str, str], app: Chancy
) -> None:
    created = await client.post(
        "/api/v1/queues",
        headers=admin,
        json={"name": "api-calls", "executor": "async", "rate_limit": 100, "rate_limit_window": 60},
    )
    assert created.status_code == 200, created.text
    limits = {
        "global_concurrency": 4,
        "partition_concurrency": 1,
        "partition_rate_limit": 10,
        "partition_rate_limit_window": 30,
    }
    updated = await client.post("/api/v1/queues/api-calls", headers=admin, json=limits)
    assert updated.status_code == 200, updated.text
    stored = await app.get_queue("api-calls")
    assert {k: getattr(stored, k) for k in limits} == limits
    assert stored.rate_limit == 100
    for key in ("acme", "acme", "globex"):
        await app.push(Job(func=NOOP, queue="api-calls").with_partition_key(key))
    worker = Worker(app, worker_id="api-test", register_signal_handlers=False)
    async with app.pool.connection() as conn:
        claim = await worker.fetch_claim(stored, conn, up_to=10)
    assert len(claim.jobs) == 2  # one per key: partition_concurrency 1
    detail = (await client.get("/api/v1/queues/api-calls", headers=admin)).json()
    assert detail["limits"]["running"] == 2 and detail["limits"]["started_in_window"] == 2
    assert detail["limits"]["partitions"] == {
        "acme": {"running": 1, "started_in_window": 1},
        "globex": {"running": 1, "started_in_window": 1},
    }
    # A queue without limits has none to show.
    await app.declare(Queue("plain"))
    assert (await client.get("/api/v1/queues/plain", headers=admin)).json()["limits"] is None
    bad = await client.post(
        "/api/v1/queues/api-calls", headers=admin, json={"partition_rate_limit_window": None}
    )
    assert bad.status_code == 400 and "partition_rate_limit" in bad.json()["error"]


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/api/v1/queues", {"name": "bad name!"}, "queue name"),
        ("/api/v1/queues", {"name": "q", "concurrency": 0}, "concurrency"),
        ("/api/v1/queues", {"name": "q", "executor": "os.system"}, "unknown executor"),
        ("/api/v1/queues", {"name": "q", "tags": ["("]}, "regex"),
        ("/api/v1/queues", {"name": "q", "tags": "x"}, "tags"),
        ("/api/v1/queues", {"name": "q", "polling_interval": -1}, "polling_interval"),
        ("/api/v1/queues", {"name": "q", "rate_limit": 5}, "rate_limit"),
        ("/api/v1/queues", {"name": "q", "state": "paused"}, "unknown queue fields"),
        ("/api/v1/queues", {"name": "q", "eager_polling": "yes"}, "eager_polling"),
        ("/api/v1/queues/default", {"concurrency": "many"}, "concurrency"),
        ("/api/v1/queues/default/pause", {"resume_in": "soon"}, "resume_in"),
        ("/api/v1/queues/default/pause", {"resume_in": -5}, "resume_in"),
        ("/api/v1/queues/default/delete", {"purge_jobs": "yes"}, "purge_jobs"),
    ],
)
async def test_queue_bad_input(
    client: Any, admin: dict[str, str], app: Chancy, path: str, body: Any, message: str
) -> None:
    await app.declare(Queue("default"))
    response = await client.post(path, headers=admin, json=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


async def test_unknown_queue_is_404(client: Any, admin: dict[str, str]) -> None:
    for method, path in (
        ("GET", "/api/v1/queues/nope"),
        ("POST", "/api/v1/queues/nope"),
        ("POST", "/api/v1/queues/nope/pause"),
        ("POST", "/api/v1/queues/nope/resume"),
        ("POST", "/api/v1/queues/nope/delete"),
    ):
        response = await client.request(method, path, headers=admin, json={})
        assert response.status_code == 404, (method, path)


# -- jobs --------------------------------------------------------------------------------


async def test_jobs_list_filters(client: Any, admin: dict[str, str], app: Chancy) -> None:
    a = await push(app, 3, queue="a")
    b = await push(app, 2, queue="b", func="tests.metrics.jobs.echo")
    cancelled = await failed_job(app, queue="b")

    async def ids(query: str) -> set[str]:
        response = await client.get(f"/api/v1/jobs?{query}", headers=admin)
        assert response.status_code == 200, response.text
        return {j["id"] for j in response.json()["jobs"]}

    assert await ids("") == {*a, *b, cancelled}
    assert await ids("queue=a") == set(a)
    assert await ids("queue=a,b") == {*a, *b, cancelled}
    assert await ids("state=failed") == {cancelled}
    assert await ids("state=pending&queue=b") == set(b)
    assert await ids("func=tests.metrics.jobs.echo") == set(b)
    assert await ids("func_contains=ECHO") == set(b)
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert len(await ids(f"since={past}&until={future}".replace("+", "%2B"))) == 6
    assert await ids(f"since={future}".replace("+", "%2B")) == set()
    rule = json.dumps(
        {
            "or": [
                {"field": "queue", "op": "==", "value": "a"},
                {"field": "state", "op": "==", "value": "failed"},
            ]
        }
    )
    assert await ids(f"filter={rule}") == {*a, cancelled}
    injection = json.dumps({"field": "queue", "op": "==", "value": "a' OR '1'='1"})
    assert await ids(f"filter={injection}") == set()
    job = (await client.get("/api/v1/jobs?state=failed", headers=admin)).json()["jobs"][0]
    assert job["cancelled"] is True and job["error_count"] == 1
    # Expired jobs (failed by a claim past their deadline) and deadlines are filterable.
    expired = str(
        await app.push(Job(func=NOOP, queue="x", deadline=datetime.now(UTC) + timedelta(hours=1)))
    )
    update = f"UPDATE {app.prefix}jobs SET deadline = now() - interval '1s' WHERE id = %(id)s"
    await app.db.run(Spec(cast(LiteralString, update), {"id": expired}))
    assert [j.id for j in await app.db.run(app.store.job_fetch("x", 5, "w"))] == []
    assert await ids(quote('filter={"field": "expired", "op": "==", "value": true}', "=&")) == {
        expired
    }
    soon = quote(datetime.now(UTC).isoformat())
    deadline_rule = f'filter={{"field": "deadline", "op": "<", "value": "{soon}"}}'
    assert await ids(quote(deadline_rule, "=&%")) == {expired}


async def test_jobs_pagination_walks_every_job_once(
    client: Any, admin: dict[str, str], app: Chancy
) -> None:
    pushed = set(await push(app, 23))
    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        query = f"/api/v1/jobs?limit=5{'&cursor=' + cursor if cursor else ''}&count=1"
        body = (await client.get(query, headers=admin)).json()
        seen.extend(j["id"] for j in body["jobs"])
        assert body["total"] == {"count": 23, "estimated": False}
        pages += 1
        if not body["next_cursor"]:
            break
        cursor = body["next_cursor"]
    assert pages == 5 and len(seen) == 23 and set(seen) == pushed
    assert seen == sorted(seen, reverse=True)  # newest first


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("state=bogus", "unknown state"),
        ("state=pending,nope", "unknown state"),
        ("limit=0", "limit"),
        ("limit=100000", "limit"),
        ("limit=ten", "limit"),
        ("cursor=not-a-uuid", "malformed cursor"),
        ("filter=not-json", "filter must be JSON"),
        ("filter=[1]", "filter must be a JSON object"),
        ('filter={"field":"password","op":"==","value":1}', "unknown field"),
        ('filter={"field":"queue","op":"; DROP","value":1}', "unknown operator"),
        ('filter={"field":"priority","op":">","value":"high"}', "integer"),
        ('filter={"field":"created_at","op":">","value":"2024-01-01"}', "timezone"),
        ("since=yesterday", "since must be an ISO 8601"),
        ("until=2024-13-45", "until must be an ISO 8601"),
        ("sort=id", "unknown parameters"),
    ],
)
async def test_jobs_bad_input_is_a_400(
    client: Any, admin: dict[str, str], query: str, message: str
) -> None:
    response = await client.get(f"/api/v1/jobs?{query}", headers=admin)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


async def test_job_detail_returns_kwargs_as_data(
    client: Any, admin: dict[str, str], app: Chancy
) -> None:
    script = "<script>alert('x')</script>"
    (job_id,) = await push(app, kwargs={"html": script, "n": 1}, meta={"note": "<b>hi</b>"})
    response = await client.get(f"/api/v1/jobs/{job_id}", headers=admin)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    job = response.json()["job"]
    assert job["kwargs"] == {"html": script, "n": 1}
    assert job["meta"] == {"note": "<b>hi</b>"}
    assert job["state"] == "pending" and job["errors"] == [] and job["result"] is None


async def test_job_detail_bad_ids(client: Any, admin: dict[str, str]) -> None:
    assert (await client.get("/api/v1/jobs/xyz", headers=admin)).status_code == 400
    assert (await client.get("/api/v1/jobs/1%27%20OR%201=1", headers=admin)).status_code == 400
    missing = await client.get(f"/api/v1/jobs/{uuid.uuid4()}", headers=admin)
    assert missing.status_code == 404


async def test_job_counts_exact_then_estimated(app: Chancy, client_for: Any, dsn: str) -> None:
    await push(app, 30)
    await failed_job(app)
    async with client_for(make_asgi(app)) as client:
        headers = await login(client)
        counts = (await client.get("/api/v1/jobs/counts", headers=headers)).json()["counts"]
        assert counts["pending"] == {"count": 30, "estimated": False}
        assert counts["failed"] == {"count": 1, "estimated": False}
        assert counts["running"]["count"] == 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"UPDATE {app.prefix}jobs SET state = 'succeeded', completed_at = now()"  # type: ignore[arg-type]
            f" WHERE id IN (SELECT id FROM {app.prefix}jobs WHERE state = 'pending' LIMIT 20)"
        )
        conn.execute(f"ANALYZE {app.prefix}jobs")  # type: ignore[arg-type]
    async with client_for(make_asgi(app, count_threshold=5)) as client:
        headers = await login(client)
        counts = (await client.get("/api/v1/jobs/counts", headers=headers)).json()["counts"]
        # 31 rows > threshold: waiting and running counted (capped) through their partial
        # indexes, finished ones estimated from the statistics; no scan of finished jobs.
        assert counts["pending"] == {"count": 5, "estimated": True}  # 10 pending, capped
        assert counts["running"] == {"count": 0, "estimated": False}
        assert counts["retrying"] == {"count": 0, "estimated": False}
        assert counts["succeeded"] == {"count": 20, "estimated": True}
        assert counts["failed"] == {"count": 1, "estimated": True}
        listed = (await client.get("/api/v1/jobs?count=1", headers=headers)).json()
        assert listed["total"]["estimated"] is True


async def test_bulk_actions_by_ids(client: Any, admin: dict[str, str], app: Chancy) -> None:
    pending = await push(app, 2)
    done = await client.post("/api/v1/jobs/cancel", headers=admin, json={"ids": pending})
    assert done.json() == {
        "matched": 2,
        "cancelled": sorted(pending) or pending,
        "more": False,
    } or (set(done.json()["cancelled"]) == set(pending))
    again = await client.post("/api/v1/jobs/cancel", headers=admin, json={"ids": pending})
    assert again.json()["cancelled"] == []
    # A reason is stored with who cancelled (the dashboard user) and shown on the job.
    [why] = await push(app, 1)
    bad = await client.post("/api/v1/jobs/cancel", headers=admin, json={"ids": [why], "reason": 5})
    assert bad.status_code == 400 and "reason must be a string" in bad.json()["error"]
    with_reason = {"ids": [why], "reason": "duplicate order"}
    done = await client.post("/api/v1/jobs/cancel", headers=admin, json=with_reason)
    assert done.json()["cancelled"] == [why]
    shown = (await client.get(f"/api/v1/jobs/{why}", headers=admin)).json()["job"]
    assert shown["cancel_reason"] == "duplicate order"
    assert shown["cancelled_by"].endswith("(dashboard)")
    retried = await client.post("/api/v1/jobs/retry", headers=admin, json={"ids": pending})
    assert set(retried.json()["retried"]) == set(pending)
    assert {j.state for j in await app.get_jobs(pending)} == {"retrying"}
    purged = await client.post("/api/v1/jobs/purge", headers=admin, json={"ids": pending[:1]})
    assert purged.json()["purged"] == 1
    assert await app.get_job(pending[0]) is None


async def test_bulk_actions_by_filter(client: Any, admin: dict[str, str], app: Chancy) -> None:
    keep = await push(app, 2, queue="keep")
    drop = await push(app, 3, queue="drop")
    cancelled = await client.post(
        "/api/v1/jobs/cancel", headers=admin, json={"filter": {"queue": "drop"}}
    )
    assert set(cancelled.json()["cancelled"]) == set(drop)
    retried = await client.post(
        "/api/v1/jobs/retry",
        headers=admin,
        json={"filter": {"state": ["failed"], "queue": "drop"}},
    )
    assert len(retried.json()["retried"]) == 3
    purged = await client.post(
        "/api/v1/jobs/purge",
        headers=admin,
        json={"filter": {"filter": {"field": "queue", "op": "==", "value": "drop"}}},
    )
    assert purged.json() == {"matched": 3, "purged": 3, "more": False}
    assert len(await app.get_jobs(keep)) == 2


async def test_bulk_filter_is_bounded(app: Chancy, client_for: Any) -> None:
    await push(app, 4)
    async with client_for(make_asgi(app, max_bulk=3)) as client:
        headers = await login(client)
        response = await client.post(
            "/api/v1/jobs/cancel", headers=headers, json={"filter": {"state": "pending"}}
        )
        assert response.json()["matched"] == 3 and response.json()["more"] is True
        too_many = [str(uuid.uuid4()) for _ in range(4)]
        response = await client.post("/api/v1/jobs/purge", headers=headers, json={"ids": too_many})
        assert response.status_code == 400 and "at most 3" in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "either"),
        ({"ids": ["x"], "filter": {"queue": "a"}}, "either"),
        ({"ids": "all"}, "non-empty list"),
        ({"ids": []}, "non-empty list"),
        ({"ids": ["not-a-uuid"]}, "malformed job id"),
        ({"ids": [5]}, "malformed job id"),
        ({"filter": {}}, "non-empty object"),
        ({"filter": {"state": "bogus"}}, "unknown state"),
        ({"filter": {"colour": "red"}}, "unknown parameters"),
        ({"filter": {"filter": {"field": "x", "op": "==", "value": 1}}}, "unknown field"),
        ({"everything": True}, "unknown fields"),
    ],
)
@pytest.mark.parametrize("action", ["retry", "cancel", "purge"])
async def test_bulk_bad_input(
    client: Any, admin: dict[str, str], action: str, body: Any, message: str
) -> None:
    response = await client.post(f"/api/v1/jobs/{action}", headers=admin, json=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


async def test_functions(client: Any, admin: dict[str, str], app: Chancy) -> None:
    await push(app, 2, queue="f1")
    await failed_job(app, func="tests.metrics.jobs.echo", queue="f2")
    metrics = app.plugins["chancy.metrics"]
    assert isinstance(metrics, Metrics)
    metrics.increment("jobs.succeeded", "f1", NOOP, 7)
    await metrics.flush(app)
    functions = (await client.get("/api/v1/functions", headers=admin)).json()["functions"]
    by_func = {f["func"]: f for f in functions}
    assert by_func[NOOP]["recent"] == 2 and by_func[NOOP]["succeeded"] == 7
    assert by_func["tests.metrics.jobs.echo"]["recent_failed"] == 1
    assert by_func["tests.metrics.jobs.echo"]["queues"] == ["f2"]


# -- overview, metrics -------------------------------------------------------------------


async def test_overview_alerts(client: Any, admin: dict[str, str], app: Chancy, dsn: str) -> None:
    await app.declare(Queue("held"))
    await app.pause_queue("held")
    (job_id,) = await push(app, queue="held")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"UPDATE {app.prefix}jobs SET state = 'running', taken_by = 'gone-worker',"  # type: ignore[arg-type]
            " started_at = now() WHERE id = %s",
            (job_id,),
        )
    body = (await client.get("/api/v1/overview", headers=admin)).json()
    kinds = {a["kind"] for a in body["alerts"]}
    assert {"no_workers", "jobs_on_dead_workers", "queue_paused"} <= kinds
    dead = next(a for a in body["alerts"] if a["kind"] == "jobs_on_dead_workers")
    assert dead["jobs"] == [job_id]
    held = next(q for q in body["queues"] if q["name"] == "held")
    assert held["running"] == 1


async def test_metrics_routes(client: Any, admin: dict[str, str], app: Chancy) -> None:
    metrics = app.plugins["chancy.metrics"]
    assert isinstance(metrics, Metrics)
    metrics.increment("jobs.succeeded", "q", NOOP, 5)
    metrics.increment("jobs.failed", "q", NOOP, 1)
    metrics.observe("jobs.runtime", "q", NOOP, 0.02)
    await metrics.flush(app)
    index = (await client.get("/api/v1/metrics", headers=admin)).json()
    assert index["installed"] is True
    assert {"name": "jobs.succeeded", "kind": "counter", "queue": "q", "func": NOOP} in index[
        "metrics"
    ]
    series = await client.get("/api/v1/metrics/jobs.succeeded?resolution=5min", headers=admin)
    assert [p["count"] for p in series.json()["points"]] == [5]
    filtered = await client.get("/api/v1/metrics/jobs.runtime?queue=other", headers=admin)
    assert filtered.json()["points"] == []
    overview = (await client.get("/api/v1/overview", headers=admin)).json()
    assert overview["throughput"][0]["succeeded"] == 5
    assert overview["throughput"][0]["failed"] == 1
    text = await client.get("/metrics", headers=admin)
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
    assert f'chancy_jobs_succeeded_total{{queue="q",func="{NOOP}"}} 5' in text.text


async def test_prometheus_scrapes_with_a_fixed_metrics_token(
    app: Chancy, client_for: Callable[[Any], Any]
) -> None:
    token = "a-prometheus-scrape-token-0123456789"
    client = client_for(make_asgi(app, metrics_token=token))
    async with client:
        metrics = app.plugins["chancy.metrics"]
        assert isinstance(metrics, Metrics)
        metrics.increment("jobs.succeeded", "q", NOOP, 3)
        await metrics.flush(app)
        assert (await client.get("/metrics")).status_code == 401
        wrong = {"Authorization": "Bearer not-the-token-at-all-0000"}
        assert (await client.get("/metrics", headers=wrong)).status_code == 401
        scrape = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert scrape.status_code == 200
        assert f'chancy_jobs_succeeded_total{{queue="q",func="{NOOP}"}} 3' in scrape.text
        # The token opens /metrics only: no other route takes it.
        for path in ("/api/v1/overview", "/api/v1/jobs", "/api/v1/metrics"):
            denied = await client.get(path, headers={"Authorization": f"Bearer {token}"})
            assert denied.status_code == 401, path
        # A login token still works for /metrics too.
        assert (await client.get("/metrics", headers=await login(client))).status_code == 200


def test_a_short_metrics_token_is_refused(app: Chancy) -> None:
    with pytest.raises(ConfigurationError, match="at least 16 characters"):
        make_asgi(app, metrics_token="short")


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/api/v1/metrics/nope", 404, "unknown metric"),
        ("/api/v1/metrics/jobs.succeeded?resolution=2min", 400, "resolution"),
        ("/api/v1/metrics/jobs.succeeded?since=later", 400, "since"),
        (
            "/api/v1/metrics/jobs.succeeded?since=2024-02-01T00:00:00Z&until=2024-01-01T00:00:00Z",
            400,
            "until must be after",
        ),
        ("/api/v1/metrics/jobs.succeeded?bucket=1", 400, "unknown parameters"),
    ],
)
async def test_metrics_bad_input(
    client: Any, admin: dict[str, str], path: str, status: int, message: str
) -> None:
    response = await client.get(path, headers=admin)
    assert response.status_code == status
    assert message in response.json()["error"]


# -- crons and workflows -----------------------------------------------------------------


async def test_crons(client: Any, admin: dict[str, str], app: Chancy) -> None:
    cron = pytest.importorskip("chancy.plugins.cron").Cron
    job = Job(func=NOOP, queue="nightly", kwargs={"x": "<i>"}).with_unique_key("nightly-noop")
    await cron.schedule(app, "30 2 * * *", job)
    crons = (await client.get("/api/v1/crons", headers=admin)).json()["crons"]
    assert [c["unique_key"] for c in crons] == ["nightly-noop"]
    assert crons[0]["cron"] == "30 2 * * *" and crons[0]["job"]["kwargs"] == {"x": "<i>"}
    ran = await client.post("/api/v1/crons/nightly-noop/run", headers=admin)
    pushed = await app.get_job(ran.json()["job_id"])
    assert pushed is not None and pushed.queue == "nightly"
    assert (await client.post("/api/v1/crons/other/run", headers=admin)).status_code == 404
    paused = await client.post("/api/v1/crons/nightly-noop/pause", headers=admin)
    assert paused.status_code == 200 and paused.json()["paused_at"] is not None
    listed = (await client.get("/api/v1/crons", headers=admin)).json()["crons"]
    assert listed[0]["paused_at"] is not None
    assert (await cron.get_schedules(app))["nightly-noop"]["paused_at"] is not None
    resumed = await client.post("/api/v1/crons/nightly-noop/resume", headers=admin)
    assert resumed.status_code == 200 and resumed.json()["paused_at"] is None
    assert (await cron.get_schedules(app))["nightly-noop"]["paused_at"] is None
    for action in ("pause", "resume"):
        missing = await client.post(f"/api/v1/crons/other/{action}", headers=admin)
        assert missing.status_code == 404 and "other" in missing.json()["error"]
    deleted = await client.post("/api/v1/crons/nightly-noop/delete", headers=admin)
    assert deleted.json() == {"deleted": 1}
    assert (
        await client.post("/api/v1/crons/nightly-noop/delete", headers=admin)
    ).status_code == 404


async def test_workflows(client: Any, admin: dict[str, str], app: Chancy) -> None:
    workflow = pytest.importorskip("chancy.plugins.workflow")
    wf = (
        workflow.Workflow("nightly")
        .add("extract", Job(func=NOOP))
        .add("load", Job(func=NOOP), ["extract"])
    )
    wf_id = await workflow.WorkflowPlugin.push(app, wf)
    listed = (await client.get("/api/v1/workflows", headers=admin)).json()["workflows"]
    assert [w["id"] for w in listed] == [str(wf_id)]
    assert listed[0]["step_total"] == 2
    detail = (await client.get(f"/api/v1/workflows/{wf_id}", headers=admin)).json()["workflow"]
    steps = {s["step_id"]: s for s in detail["steps"]}
    assert steps["load"]["dependencies"] == ["extract"]
    filtered = await client.get("/api/v1/workflows?state=completed", headers=admin)
    assert filtered.json()["workflows"] == []
    for path, status in (
        ("/api/v1/workflows/abc", 400),
        (f"/api/v1/workflows/{uuid.uuid4()}", 404),
        ("/api/v1/workflows?state=bogus", 400),
        ("/api/v1/workflows?limit=0", 400),
        ("/api/v1/workflows?colour=red", 400),
    ):
        assert (await client.get(path, headers=admin)).status_code == status, path


async def test_plugin_routes_and_pages_exist_only_with_their_plugins(
    dsn: str, prefix: str, client_for: Any, app: Chancy
) -> None:
    from chancy.plugins.leadership import ImmediateLeadership

    plugin_routes = [
        "/api/v1/crons",
        "/api/v1/workflows",
        "/api/v1/metrics",
        "/api/v1/metrics/jobs.succeeded",
        "/api/v1/triggers",
    ]
    # With Metrics, Cron and the WorkflowPlugin (the fixture's app): their pages and routes.
    async with client_for(make_asgi(app)) as client:
        headers = await login(client)
        config = (await client.get("/api/v1/configuration", headers=headers)).json()
        assert config["pages"] == ["cron", "metrics", "workflow"]
        assert config["features"] == {
            "metrics": True,
            "cron": True,
            "workflows": True,
            "triggers": False,
            "batches": False,
        }
        assert config["resolutions"] == ["1min", "5min", "1hour", "1day"]
        for path in plugin_routes[:-1]:
            assert (await client.get(path, headers=headers)).status_code == 200, path
        assert (await client.get("/api/v1/triggers", headers=headers)).status_code == 404

    bare = Chancy(
        dsn,
        prefix=prefix + "b",
        plugins=[ImmediateLeadership()],
        no_default_plugins=True,
        max_connection_pool_size=2,
    )
    async with bare:
        await bare.migrate()
        try:
            async with client_for(make_asgi(bare)) as client:
                headers = await login(client)
                config = (await client.get("/api/v1/configuration", headers=headers)).json()
                assert config["pages"] == []
                assert config["features"] == {
                    "metrics": False,
                    "cron": False,
                    "workflows": False,
                    "triggers": False,
                    "batches": False,
                }
                assert "resolutions" not in config
                for path in plugin_routes:
                    response = await client.get(path, headers=headers)
                    assert response.status_code == 404, path
                    assert response.json() == {"error": "no such route"}
                overview = await client.get("/api/v1/overview", headers=headers)
                assert overview.status_code == 200 and overview.json()["throughput"] == []
                scrape = (await client.get("/metrics", headers=headers)).text
                # The live gauges only: no series of the Metrics plugin.
                assert "chancy_workers_live 0" in scrape
                assert "chancy_jobs_" not in scrape
        finally:
            await bare.migrate(to_version=0)


# -- the UI and mounting ----------------------------------------------------------------


async def test_ui_is_served_with_a_strict_policy(client: Any) -> None:
    page = await client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    script = await client.get("/ui/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert (await client.get("/ui/style.css")).status_code == 200
    assert (await client.get("/ui/../app.py")).status_code == 404
    assert (await client.get("/ui/secret.txt")).status_code == 404


async def test_mounts_under_a_path_prefix(app: Chancy, client_for: Any) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    outer = Starlette(routes=[Mount("/ops/chancy", make_asgi(app))])
    async with client_for(outer) as client:
        redirect = await client.get("/ops/chancy", follow_redirects=False)
        assert redirect.status_code in (301, 302, 307)
        assert redirect.headers["location"].endswith("/ops/chancy/")
        assert (await client.get("/ops/chancy/")).status_code == 200
        token = (
            await client.post(
                "/ops/chancy/api/v1/login",
                json={"username": "admin", "password": "admin-password"},
            )
        ).json()["token"]
        me = await client.get("/ops/chancy/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["username"] == "admin"


async def test_cors_allows_only_configured_origins(app: Chancy, client_for: Any) -> None:
    async with client_for(make_asgi(app, allow_origins=["https://ops.example"])) as client:
        headers = {
            "Origin": "https://ops.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        }
        ok = await client.options("/api/v1/jobs/retry", headers=headers)
        assert ok.headers["access-control-allow-origin"] == "https://ops.example"
        evil = await client.options(
            "/api/v1/jobs/retry", headers={**headers, "Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in evil.headers


async def test_get_responses_are_cached_briefly_and_actions_clear_the_cache(
    app: Chancy, client_for: Any
) -> None:
    async with client_for(make_asgi(app, cache_ttl=60)) as client:
        headers = await login(client)
        first = (await client.get("/api/v1/jobs", headers=headers)).json()
        (job_id,) = await push(app)
        assert (await client.get("/api/v1/jobs", headers=headers)).json() == first
        await client.post("/api/v1/jobs/cancel", headers=headers, json={"ids": [job_id]})
        fresh = (await client.get("/api/v1/jobs", headers=headers)).json()
        assert [j["id"] for j in fresh["jobs"]] == [job_id]


async def test_api_plugin_serves_over_http(app: Chancy) -> None:
    from chancy.plugins.api import Api, SimpleAuthBackend

    api = Api(port=0, authentication_backend=SimpleAuthBackend({"a": "b" * 8}))
    app.plugins[api.get_identifier()] = api
    await app.declare(Queue("default", tags={"^nobody$"}))
    try:
        async with Worker(app, register_signal_handlers=False):
            await eventually(api.started.is_set, timeout=10)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api.bound_port}") as http:
                assert (await http.get("/health")).json() == {"status": "ok"}
                assert (await http.get("/api/v1/queues")).status_code == 401
        assert not api.started.is_set()
    finally:
        del app.plugins[api.get_identifier()]


def test_api_generates_an_admin_password_without_a_backend() -> None:
    from chancy.plugins.api import Api

    api = Api()
    assert api.generated_password and len(api.generated_password) >= 12
    assert api.host == "127.0.0.1" and api.port == 8000
