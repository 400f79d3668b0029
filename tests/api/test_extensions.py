"""Code written for Chancy 0.26's dashboard, run against chancy's: a user's ``ApiPlugin`` named
by a plugin's ``api_plugin()``, 0.26-style authentication backends, ``Api(debug=True)``; and
the Trigger plugin's page, which exists only while that plugin is installed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from starlette.authentication import AuthenticationBackend, requires
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

import chancy.plugins.api as api_package
from chancy import Chancy, Job, Queue
from chancy.errors import ConfigurationError
from chancy.plugin import Plugin
from chancy.plugins.api import Api, ApiPlugin, AuthBackend, SimpleAuthBackend
from chancy.plugins.api.plugin import ApiPlugin as ApiPluginFrom026Path
from tests.api.conftest import USERS, dashboard_plugins, login, make_asgi
from tests.conftest import migrated_app

httpx = pytest.importorskip("httpx")

SECRET_DETAIL = "a secret the client must never see"


class HelloApi(ApiPlugin):
    """A dashboard extension as a Chancy 0.26 user writes it."""

    def name(self) -> str:
        return "hello"

    def routes(self) -> list[Any]:
        return [
            {"path": "/api/v1/hello", "endpoint": self.hello, "methods": ["GET"], "name": "hi"},
            {
                "path": "/api/v1/hello/admin",
                "endpoint": self.admin_only,
                "methods": ["POST"],
                "name": "hello_admin",
            },
            {"path": "/api/v1/hello/boom", "endpoint": self.boom, "methods": ["GET"], "name": "b"},
            {
                "path": "/api/v1/hello/ws",
                "endpoint": self.greet,
                "methods": None,
                "name": "hello_ws",
                "is_websocket": True,
            },
        ]

    @staticmethod
    @requires(["authenticated"])
    async def hello(request: Request, *, chancy: Chancy, worker: Any) -> JSONResponse:
        queues = await chancy.get_all_queues()
        return JSONResponse(
            {
                "user": request.user.username,
                "scopes": sorted(request.auth.scopes),
                "queues": sorted(q.name for q in queues),
                "worker": worker,
                "plugins": sorted(chancy.plugins),
            }
        )

    @staticmethod
    @requires(["authenticated", "admin"])
    async def admin_only(request: Request, *, chancy: Chancy, worker: Any) -> JSONResponse:
        return JSONResponse({"done": True})

    @staticmethod
    @requires(["authenticated"])
    async def boom(request: Request, *, chancy: Chancy, worker: Any) -> JSONResponse:
        raise RuntimeError(SECRET_DETAIL)

    @staticmethod
    @requires(["authenticated"])
    async def greet(websocket: WebSocket, *, chancy: Chancy, worker: Any) -> None:
        await websocket.accept()
        await websocket.send_json({"user": websocket.user.username})
        await websocket.close()


class HelloPlugin(Plugin):
    def api_plugin(self) -> str | None:
        return f"{__name__}.HelloApi"


class NotAnExtension(Plugin):
    def api_plugin(self) -> str | None:
        return f"{__name__}.HelloPlugin"


class MissingExtension(Plugin):
    def api_plugin(self) -> str | None:
        return f"{__name__}.NoSuchThing"


async def test_a_users_026_style_api_plugin_is_served(app: Chancy, client_for: Any) -> None:
    assert ApiPluginFrom026Path is ApiPlugin is api_package.ApiPlugin
    await app.declare(Queue("hello-queue"))
    app.plugins["hello"] = HelloPlugin()
    async with client_for(make_asgi(app)) as client:
        admin = await login(client, "admin")
        viewer = await login(client, "viewer")
        answer = await client.get("/api/v1/hello", headers=admin)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["user"] == "admin" and body["scopes"] == ["admin", "authenticated"]
        # chancy is a working Chancy on the same database and plugins; no worker serves it.
        assert body["worker"] is None and "hello" in body["plugins"]
        assert body["queues"] == ["hello-queue"]
        assert (await client.get("/api/v1/hello", headers=viewer)).json()["scopes"] == [
            "authenticated"
        ]
        # The dashboard's token check comes first: 401 without a token, and with a forged one.
        anonymous = await client.get("/api/v1/hello")
        assert anonymous.status_code == 401 and "log in" in anonymous.json()["error"]
        forged = {"Authorization": "Bearer eyJ1IjoiYWRtaW4ifQ.c2lnbmF0dXJl"}
        assert (await client.get("/api/v1/hello", headers=forged)).status_code == 401
        # Starlette's @requires decides the rest, answered as JSON.
        refused = await client.post("/api/v1/hello/admin", headers=viewer)
        assert refused.status_code == 403 and refused.json()["error"]
        assert (await client.post("/api/v1/hello/admin", headers=admin)).json() == {"done": True}
        # A failing endpoint is a 500 that says nothing of the failure.
        boom = await client.get("/api/v1/hello/boom", headers=admin)
        assert boom.status_code == 500
        assert SECRET_DETAIL not in boom.text and "Traceback" not in boom.text
        config = (await client.get("/api/v1/configuration", headers=admin)).json()
        assert "hello" in config["pages"]
    del app.plugins["hello"]
    async with client_for(make_asgi(app)) as client:
        admin = await login(client, "admin")
        gone = await client.get("/api/v1/hello", headers=admin)
        assert gone.status_code == 404 and gone.json() == {"error": "no such route"}


async def _websocket(asgi: Any, path: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    """What the app sends on one WebSocket connection to ``path`` (ASGI, no client library)."""
    sent: list[dict[str, Any]] = []
    incoming = [{"type": "websocket.connect"}]

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "scheme": "ws",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("dashboard.test", 80),
        "subprotocols": [],
    }
    await asgi(scope, receive, send)
    return sent


async def test_a_websocket_route_of_an_extension_checks_the_token(
    app: Chancy, client_for: Any
) -> None:
    app.plugins["hello"] = HelloPlugin()
    try:
        asgi = make_asgi(app)
        async with client_for(asgi) as client:
            headers = await login(client, "admin")
        sent = await _websocket(asgi, "/api/v1/hello/ws", headers)
        assert [m["type"] for m in sent] == [
            "websocket.accept",
            "websocket.send",
            "websocket.close",
        ]
        assert sent[1]["text"] == '{"user":"admin"}'
        # Without a token the upgrade is refused (policy violation), before the endpoint.
        refused = await _websocket(asgi, "/api/v1/hello/ws", {})
        assert [(m["type"], m.get("code")) for m in refused] == [("websocket.close", 1008)]
    finally:
        del app.plugins["hello"]


@pytest.mark.parametrize(
    ("plugin", "message"),
    [(NotAnExtension(), "must name an ApiPlugin subclass"), (MissingExtension(), "cannot be")],
)
def test_a_bad_api_plugin_path_is_a_clear_error(plugin: Plugin, message: str) -> None:
    chancy = Chancy("postgresql://nowhere.invalid/x", plugins=[plugin], no_default_plugins=True)
    with pytest.raises(ConfigurationError, match=message):
        make_asgi(chancy)


# -- 0.26-style authentication backends -------------------------------------------------------


class Starlette026Backend(AuthenticationBackend):
    """As Chancy 0.26's docs show a backend: Starlette's AuthenticationBackend with login and
    logout (0.26's own SimpleAuthBackend also wrote to a session there may not be)."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users
        self.seen: list[Any] = []
        self.logged_out: list[str] = []

    async def login(self, request: Request, username: str, password: str) -> bool:
        self.seen.append(request)
        if self.users.get(username) == password:
            try:
                request.session["username"] = username
            except AssertionError:
                pass  # no SessionMiddleware: tokens only
            return True
        return False

    async def logout(self, request: Request) -> None:
        self.logged_out.append(request.url.path)

    async def authenticate(self, conn: Any) -> Any:
        return None


class Subclassed026Backend(AuthBackend):
    """The same, subclassing ``chancy.plugins.api.AuthBackend`` as 0.26 code imports it."""

    async def login(self, request: Request, username: str, password: str) -> bool:
        return (username, password) == ("ops", "ops-password")

    async def logout(self, request: Request) -> None:
        return None

    async def authenticate(self, conn: Any) -> Any:  # type: ignore[override]
        return None


async def test_a_026_style_auth_backend_logs_users_in(app: Chancy, client_for: Any) -> None:
    backend = Starlette026Backend({"ana": "ana-password"})
    async with client_for(make_asgi(app, authentication_backend=backend)) as client:
        wrong = await client.post("/api/v1/login", json={"username": "ana", "password": "no"})
        assert wrong.status_code == 401
        ok = await client.post(
            "/api/v1/login", json={"username": "ana", "password": "ana-password"}
        )
        assert ok.status_code == 200, ok.text
        # login got the real Starlette request; a True grants the admin role.
        assert isinstance(backend.seen[-1], Request)
        assert backend.seen[-1].url.path == "/api/v1/login"
        assert ok.json()["user"] == {"username": "ana", "role": "admin"}
        headers = {"Authorization": f"Bearer {ok.json()['token']}"}
        assert (await client.get("/api/v1/me", headers=headers)).json()["can_act"] is True
        assert (await client.post("/api/v1/logout", headers=headers)).status_code == 200
        assert backend.logged_out == ["/api/v1/logout"]
        assert (await client.get("/api/v1/me", headers=headers)).status_code == 401

    async with client_for(make_asgi(app, authentication_backend=Subclassed026Backend())) as client:
        ok = await client.post(
            "/api/v1/login", json={"username": "ops", "password": "ops-password"}
        )
        assert ok.status_code == 200 and ok.json()["user"]["role"] == "admin"
        bad = await client.post("/api/v1/login", json={"username": "ops", "password": "x"})
        assert bad.status_code == 401

    # The Api plugin takes them too; something that is neither is refused with the fix.
    assert Api(authentication_backend=backend).authentication_backend.backend is backend  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match="login"):
        Api(authentication_backend=object())


# -- Api(debug=True) --------------------------------------------------------------------------


async def test_debug_logs_requests_and_never_sends_tracebacks(
    app: Chancy, client_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("chancy.api")
    level = logger.level
    app.plugins["hello"] = HelloPlugin()
    try:
        api = Api(authentication_backend=SimpleAuthBackend(USERS), debug=True, cache_ttl=0)
        asgi = api.build_app(app)
        assert asgi.state.dashboard.debug is True and asgi.debug is False
        assert logger.getEffectiveLevel() == logging.DEBUG
        with caplog.at_level(logging.DEBUG, logger="chancy.api"):
            async with client_for(asgi) as client:
                headers = await login(client, "admin")
                assert (await client.get("/api/v1/queues", headers=headers)).status_code == 200
                boom = await client.get("/api/v1/hello/boom", headers=headers)
            await asgi.state.dashboard.close()
        assert boom.status_code == 500
        assert SECRET_DETAIL not in boom.text and "Traceback" not in boom.text
        assert boom.json() == {"error": "internal error; see the server log"}
        messages = [r.getMessage() for r in caplog.records if r.name == "chancy.api"]
        assert any("GET /api/v1/queues -> 200" in m for m in messages), messages
        assert any("GET /api/v1/hello/boom -> 500" in m for m in messages), messages
        # The traceback is in the server's log, not in the answer.
        failed = [r for r in caplog.records if r.exc_info and SECRET_DETAIL in str(r.exc_info[1])]
        assert failed
    finally:
        logger.setLevel(level)
        del app.plugins["hello"]


# -- the Trigger plugin's page ----------------------------------------------------------------


async def test_the_triggers_page_data(dsn: str, prefix: str, client_for: Any) -> None:
    from chancy.plugins.trigger import Trigger
    from tests.trigger.conftest import installed, sql

    async with migrated_app(dsn, prefix, [*dashboard_plugins(), Trigger()], pool=3) as app:
        users = f"{prefix}users"
        await app.declare(Queue("q"))
        await sql(app, f"CREATE TABLE {users} (id serial PRIMARY KEY, email text)")
        tid = await Trigger.register_trigger(
            app,
            table_name=users,
            operations=["INSERT", "UPDATE"],
            job_template=Job(func="tests.trigger.jobs.echo", queue="q"),
            level="row",
            when="NEW.email IS NOT NULL",
        )
        async with client_for(make_asgi(app)) as client:
            admin = await login(client, "admin")
            viewer = await login(client, "viewer")
            config = (await client.get("/api/v1/configuration", headers=viewer)).json()
            assert "trigger" in config["pages"] and config["features"]["triggers"] is True
            (row,) = (await client.get("/api/v1/triggers", headers=viewer)).json()["triggers"]
            # Every field the page shows.
            assert row["id"] == str(tid) and row["table_name"] == users
            assert row["schema_name"] and row["trigger_name"] and row["created_at"]
            assert row["operations"] == ["INSERT", "UPDATE"] and row["level"] == "row"
            assert row["when"] == "NEW.email IS NOT NULL" and row["enabled"] is True
            assert row["job"]["func"] == "tests.trigger.jobs.echo" and row["job"]["queue"] == "q"
            # The page's buttons: only admins may use them.
            disable = f"/api/v1/triggers/{tid}/disable"
            assert (await client.post(disable, headers=viewer)).status_code == 403
            assert (await client.post(disable, headers=admin)).json()["changed"] is True
            listed = (await client.get("/api/v1/triggers", headers=viewer)).json()["triggers"]
            assert listed[0]["enabled"] is False and await installed(app, users) == []
            enable = f"/api/v1/triggers/{tid}/enable"
            assert (await client.post(enable, headers=admin)).json()["enabled"] is True
            removed = await client.post(f"/api/v1/triggers/{tid}/delete", headers=admin)
            assert removed.json() == {"id": str(tid), "deleted": True}
            assert (await client.get("/api/v1/triggers", headers=admin)).json()["triggers"] == []


def test_the_ui_offers_plugin_pages_only_when_listed() -> None:
    ui = Path(api_package.__file__).parent / "ui"
    page = (ui / "index.html").read_text()
    for link, plugin in (
        ("#/crons", "cron"),
        ("#/workflows", "workflow"),
        ("#/triggers", "trigger"),
        ("#/metrics", "metrics"),
    ):
        assert f'href="{link}" data-page="{link[2:]}" data-plugin="{plugin}" hidden' in page
    script = (ui / "app.js").read_text()
    assert "a.hidden = !(config.pages || []).includes(a.dataset.plugin)" in script
    assert "triggers: triggersPage" in script
    # The page builds its cells from text only (no HTML parsing of API data).
    assert "innerHTML" not in script
