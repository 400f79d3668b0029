"""The dashboard routes of chancy.plugins.trigger.api, added to a real dashboard app."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the dashboard needs the web extra (starlette)")
httpx = pytest.importorskip("httpx", reason="the API tests need httpx")

from starlette.applications import Starlette  # noqa: E402

from chancy import Chancy, Job  # noqa: E402
from chancy.plugins.api import SimpleAuthBackend, build_starlette_app  # noqa: E402
from chancy.plugins.trigger import Trigger  # noqa: E402
from chancy.plugins.trigger.api import routes  # noqa: E402
from tests.trigger.conftest import installed  # noqa: E402

USERS = {"admin": "admin-password", "viewer": "viewer-password"}


@pytest.fixture
async def client(app: Chancy) -> AsyncIterator[Any]:
    dashboard_app = build_starlette_app(
        app,
        authentication_backend=SimpleAuthBackend(USERS, read_only=["viewer"]),
        secret_key="a-test-secret-key-of-enough-length",
        cache_ttl=0,
    )
    dashboard = dashboard_app.state.dashboard
    asgi = Starlette(routes=[*routes(dashboard), *dashboard.routes()])
    transport = httpx.ASGITransport(app=asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://dashboard.test") as c:
        yield c


async def headers(client: Any, user: str) -> dict[str, str]:
    response = await client.post("/api/v1/login", json={"username": user, "password": USERS[user]})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def test_list_disable_enable_and_delete(app: Chancy, client: Any) -> None:
    users = f"{app.prefix}users"
    tid = await Trigger.register_trigger(
        app,
        table_name=users,
        operations=["INSERT"],
        job_template=Job(func="tests.trigger.jobs.echo", queue="q"),
        level="row",
    )
    admin = await headers(client, "admin")
    viewer = await headers(client, "viewer")

    assert (await client.get("/api/v1/triggers")).status_code == 401
    listed = (await client.get("/api/v1/triggers", headers=viewer)).json()["triggers"]
    assert [(t["id"], t["table_name"], t["enabled"]) for t in listed] == [(str(tid), users, True)]

    # Actions need the admin role.
    forbidden = await client.post(f"/api/v1/triggers/{tid}/disable", headers=viewer)
    assert forbidden.status_code == 403
    assert len(await installed(app, users)) == 1

    r = await client.post(f"/api/v1/triggers/{tid}/disable", headers=admin)
    assert r.status_code == 200 and r.json() == {"id": str(tid), "enabled": False, "changed": True}
    assert await installed(app, users) == []
    r = await client.post(f"/api/v1/triggers/{tid}/disable", headers=admin)
    assert r.json()["changed"] is False
    r = await client.post(f"/api/v1/triggers/{tid}/enable", headers=admin)
    assert r.json() == {"id": str(tid), "enabled": True, "changed": True}
    assert len(await installed(app, users)) == 1

    r = await client.post(f"/api/v1/triggers/{tid}/delete", headers=admin)
    assert r.status_code == 200 and r.json() == {"id": str(tid), "deleted": True}
    assert await Trigger.get_triggers(app) == {}
    assert await installed(app, users) == []

    missing = uuid.uuid4()
    for action in ("enable", "disable", "delete"):
        r = await client.post(f"/api/v1/triggers/{missing}/{action}", headers=admin)
        assert r.status_code == 404 and str(missing) in r.json()["error"]
    r = await client.post("/api/v1/triggers/not-a-uuid/enable", headers=admin)
    assert r.status_code == 400 and "malformed trigger id" in r.json()["error"]
