"""The dashboard's batch routes and page (served while the BatchPlugin is installed)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the dashboard needs the web extra (starlette)")
httpx = pytest.importorskip("httpx", reason="the API tests need httpx")

from chancy import Chancy  # noqa: E402
from chancy.plugins.batch import Batch, BatchPlugin  # noqa: E402
from tests.api.conftest import close_dashboards, login, make_asgi  # noqa: E402
from tests.batch.conftest import J  # noqa: E402


@pytest.fixture
async def client(app: Chancy) -> AsyncIterator[Any]:
    asgi = make_asgi(app)
    transport = httpx.ASGITransport(app=asgi)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://d.test") as client:
            yield client
    finally:
        await close_dashboards()


async def test_batches_are_listed_and_shown(app: Chancy, client: Any, plugin: BatchPlugin) -> None:
    admin = await login(client)
    config = (await client.get("/api/v1/configuration", headers=admin)).json()
    assert "batch" in config["pages"] and config["features"]["batches"]
    first = await Batch.push(app, [J("ok"), J("ok")], on_finish=J("callback", queue="cb"))
    second = await Batch.push(app, [J("ok")])
    listed = (await client.get("/api/v1/batches", headers=admin)).json()["batches"]
    assert [b["id"] for b in listed] == [second, first]
    assert listed[1]["total"] == 2 and listed[1]["remaining"] == 2
    assert listed[1]["state"] == "open"
    page = await client.get(f"/api/v1/batches?before={second}&limit=1", headers=admin)
    assert [b["id"] for b in page.json()["batches"]] == [first]

    await app.db.run(plugin_finish_all(app))
    await plugin.process(app)
    closed = (await client.get("/api/v1/batches?state=closed", headers=admin)).json()["batches"]
    assert {b["id"] for b in closed} == {first, second}
    assert (await client.get("/api/v1/batches?state=open", headers=admin)).json()["batches"] == []
    detail = (await client.get(f"/api/v1/batches/{first}", headers=admin)).json()["batch"]
    assert detail["state"] == "closed" and detail["finished"]
    assert detail["counts"]["succeeded"] == 2 and set(detail["callbacks"]) == {"on_finish"}
    for path, status in (
        ("/api/v1/batches/abc", 400),
        (f"/api/v1/batches/{uuid.uuid4()}", 404),
        ("/api/v1/batches?state=bogus", 400),
        ("/api/v1/batches?limit=0", 400),
        ("/api/v1/batches?colour=red", 400),
    ):
        assert (await client.get(path, headers=admin)).status_code == status, path
    ui = (await client.get("/ui/app.js")).text
    assert "batchesPage" in ui


def plugin_finish_all(app: Chancy) -> Any:
    from chancy.store import Spec

    return Spec(
        f"UPDATE {app.prefix}jobs SET state = 'succeeded', completed_at = now()",  # type: ignore[arg-type]
    )
