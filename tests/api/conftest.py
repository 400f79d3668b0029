"""Fixtures: a migrated Chancy with the dashboard's plugins, and an httpx client on its app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the dashboard needs the web extra (starlette)")
httpx = pytest.importorskip("httpx", reason="the API tests need httpx")

from chancy import Chancy  # noqa: E402
from chancy.plugin import Plugin  # noqa: E402
from chancy.plugins.api import SimpleAuthBackend, build_starlette_app  # noqa: E402
from chancy.plugins.leadership import ImmediateLeadership  # noqa: E402
from chancy.plugins.metrics import Metrics  # noqa: E402
from tests.conftest import migrated_app  # noqa: E402

USERS = {"admin": "admin-password", "viewer": "viewer-password"}
SECRET = "a-test-secret-key-of-enough-length"


def dashboard_plugins() -> list[Plugin]:
    plugins: list[Plugin] = [ImmediateLeadership(), Metrics(flush_interval=0.1)]
    try:
        from chancy.plugins.cron import Cron

        plugins.append(Cron(poll_interval=3600))
    except ImportError:
        pass
    try:
        from chancy.plugins.workflow import WorkflowPlugin

        plugins.append(WorkflowPlugin())
    except ImportError:
        pass
    return plugins


@pytest.fixture
async def app(dsn: str, prefix: str) -> AsyncIterator[Chancy]:
    async with migrated_app(dsn, prefix, dashboard_plugins(), pool=3) as chancy:
        yield chancy


#: Dashboards built by make_asgi, closed after each test (each has its own connection pool).
_BUILT: list[Any] = []


def make_asgi(chancy: Chancy, **options: Any) -> Any:
    """The dashboard app with the test users; its pool is closed when the test ends."""
    options.setdefault("cache_ttl", 0)
    options.setdefault("authentication_backend", SimpleAuthBackend(USERS, read_only=["viewer"]))
    asgi = build_starlette_app(chancy, secret_key=SECRET, **options)
    _BUILT.append(asgi)
    return asgi


async def close_dashboards() -> None:
    """Close the pools of the dashboards built so far."""
    while _BUILT:
        dashboard = getattr(_BUILT.pop().state, "dashboard", None)
        close = getattr(dashboard, "close", None)
        if close is not None:
            await close()


@pytest.fixture(autouse=True)
async def _close_dashboards() -> AsyncIterator[None]:
    yield
    await close_dashboards()


@pytest.fixture
def client_for() -> Any:
    clients: list[Any] = []

    def make(asgi: Any) -> Any:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=asgi), base_url="http://dashboard.test"
        )
        clients.append(client)
        return client

    return make


@pytest.fixture
async def client(app: Chancy, client_for: Callable[[Any], Any]) -> AsyncIterator[Any]:
    client = client_for(make_asgi(app))
    async with client:
        yield client


async def login(client: Any, user: str = "admin") -> dict[str, str]:
    response = await client.post("/api/v1/login", json={"username": user, "password": USERS[user]})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


@pytest.fixture
async def admin(client: Any) -> dict[str, str]:
    return await login(client, "admin")


@pytest.fixture
async def viewer(client: Any) -> dict[str, str]:
    return await login(client, "viewer")
