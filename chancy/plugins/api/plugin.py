"""The Api plugin: serves the dashboard (JSON API and web UI) from a worker with uvicorn.

``ApiPlugin`` and ``RouteT`` are importable from here too, where Chancy 0.26 kept them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import signal
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from chancy.errors import ConfigurationError
from chancy.plugin import Plugin, PluginScope
from chancy.plugins.api.api_plugin import ApiPlugin, RouteT
from chancy.plugins.api.auth import AuthBackend, SimpleAuthBackend
from chancy.plugins.api.compat import as_auth_backend

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from chancy.app import Chancy
    from chancy.plugins.api.app import Dashboard
    from chancy.worker import Worker

__all__ = ["Api", "ApiPlugin", "RouteT", "serve_dashboard"]

log = logging.getLogger("chancy.api")


class Api(Plugin):
    """The dashboard, served by this worker on ``host:port`` (default 127.0.0.1:8000).

    :param authentication_backend: who may log in: an :class:`AuthBackend`, or a Chancy
        0.26-style backend (``async login(request, username, password) -> bool``; a True
        grants the admin role). Without one, an ``admin`` user with a random password is
        created and logged once (also kept in ``generated_password``).
    :param secret_key: signs login tokens; without one a random key is used, so logins end
        when the process stops.
    :param allow_origins: origins allowed to call the API from a browser (CORS).
    :param trusted_proxies: addresses or networks (``"10.0.0.0/8"``) of the reverse proxies
        in front of the dashboard, whose ``X-Forwarded-For`` and ``X-Forwarded-Proto``
        headers are believed; ``"*"`` believes everybody (only when nothing else can reach
        the port). Default: none, so a client cannot claim another address (the login limits
        count per address).
    :param options: tuning passed to :func:`~chancy.plugins.api.app.build_starlette_app`,
        among them ``debug=True`` (Chancy 0.26's option): it logs every dashboard request
        (method, path, status, time) and the plugin extensions loaded at DEBUG on the
        ``chancy.api`` logger. Unlike 0.26 (Starlette's debug mode) it never sends a traceback
        to a client: failures are logged here only.

    Needs the ``web`` extra (``pip install 'chancy[web]'``: Starlette and uvicorn).
    """

    def __init__(
        self,
        port: int = 8000,
        host: str = "127.0.0.1",
        authentication_backend: AuthBackend | Any | None = None,
        secret_key: str | None = None,
        allow_origins: Iterable[str] | None = None,
        trusted_proxies: Iterable[str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigurationError(f"Api(port={port!r}) must be a TCP port number")
        self.port = port
        self.host = host
        self.generated_password: str | None = None
        if authentication_backend is None:
            self.generated_password = secrets.token_urlsafe(12)
            authentication_backend = SimpleAuthBackend({"admin": self.generated_password})
        self.authentication_backend: AuthBackend = as_auth_backend(authentication_backend)
        self.secret_key = secret_key
        self.allow_origins = list(allow_origins or [])
        self.trusted_proxies = _check_proxies(trusted_proxies)
        self.options = options
        #: The dashboard being served (None until served).
        self.dashboard: Dashboard | None = None
        #: The port actually bound once serving (useful with ``port=0``).
        self.bound_port: int | None = None
        self.started = asyncio.Event()

    @classmethod
    def get_identifier(cls) -> str:
        return "chancy.api"

    @classmethod
    def get_scope(cls) -> PluginScope:
        return PluginScope.WORKER

    def build_app(self, chancy: Chancy, worker: Worker | None = None) -> Starlette:
        """The dashboard's ASGI app for ``chancy`` (served by ``worker``, if any)."""
        try:
            from chancy.plugins.api.app import build_starlette_app
        except ImportError as exc:
            raise ConfigurationError(
                "the Api plugin needs Starlette and uvicorn: pip install 'chancy[web]'"
            ) from exc
        return build_starlette_app(
            chancy,
            authentication_backend=self.authentication_backend,
            secret_key=self.secret_key,
            allow_origins=self.allow_origins,
            worker=worker,
            **self.options,
        )

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        try:
            import uvicorn  # noqa: F401 (checked here, used by uvicorn_config)
        except ImportError as exc:
            raise ConfigurationError(
                "the Api plugin needs uvicorn: pip install 'chancy[web]'"
            ) from exc
        app = self.build_app(chancy, worker)
        self.dashboard = app.state.dashboard
        if self.generated_password is not None:
            log.warning(
                "dashboard login: user 'admin', password %r (generated; pass"
                " Api(authentication_backend=SimpleAuthBackend({...})) to choose)",
                self.generated_password,
            )
        server = _quiet_server(self.uvicorn_config(app, self.host, self.port))
        task = asyncio.ensure_future(server.serve())
        try:
            while not server.started and not task.done():
                await asyncio.wait([task], timeout=0.05)
            if server.started:
                for listener in server.servers:
                    for sock in listener.sockets:
                        self.bound_port = sock.getsockname()[1]
                        break
                log.info("dashboard on http://%s:%s/", self.host, self.bound_port)
                self.started.set()
            await asyncio.shield(task)
        finally:
            server.should_exit = True
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, 10)
            self.started.clear()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await app.state.dashboard.close()

    def uvicorn_config(self, app: Any, host: str, port: int) -> Any:
        """uvicorn's settings for serving ``app``: proxy headers only from trusted proxies."""
        import uvicorn

        proxies = self.trusted_proxies
        return uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="off",
            access_log=False,
            log_level="warning",
            # uvicorn believes X-Forwarded-For from 127.0.0.1 by default (and whatever the
            # FORWARDED_ALLOW_IPS variable says); here only the configured proxies count.
            proxy_headers=bool(proxies),
            forwarded_allow_ips=",".join(proxies) if proxies else "",
        )


def _check_proxies(proxies: Iterable[str] | None) -> list[str]:
    if proxies is None:
        return []
    if isinstance(proxies, str):
        proxies = [p.strip() for p in proxies.split(",") if p.strip()]
    checked = []
    for proxy in proxies:
        if not isinstance(proxy, str):
            raise ConfigurationError(f"trusted_proxies takes addresses as strings, got {proxy!r}")
        if proxy != "*":
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ConfigurationError(
                    f"trusted_proxies: {proxy!r} is not an IP address or network; give e.g."
                    ' ["127.0.0.1", "10.0.0.0/8"] (or "*" to believe every client)'
                ) from None
        checked.append(proxy)
    return checked


def _quiet_server(config: Any) -> Any:
    """A uvicorn server without signal handlers: the worker owns SIGTERM and SIGINT."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            yield

    return Server(config)


async def serve_dashboard(
    chancy: Chancy,
    *,
    host: str | None = None,
    port: int | None = None,
    echo: Any = print,
    metrics_token: str | None = None,
) -> None:
    """Serve only the dashboard (no jobs run here) until SIGINT or SIGTERM.

    Uses the app's configured ``Api`` plugin (its auth, secret and address) when it has one;
    otherwise an ``admin`` user with a random password is created and its password echoed.
    ``metrics_token`` (when given) opens ``/metrics`` to Prometheus with that bearer token.
    """
    try:
        import uvicorn  # noqa: F401 (checked here, used by uvicorn_config)
    except ImportError as exc:
        raise ConfigurationError(
            "the dashboard needs the web extra: pip install 'chancy[web]'"
        ) from exc
    api = chancy.plugins.get(Api.get_identifier())
    if not isinstance(api, Api):
        api = Api()
    if metrics_token is not None:
        api.options = {**api.options, "metrics_token": metrics_token}
    if api.generated_password is not None:
        echo(f"dashboard login: user 'admin', password {api.generated_password}")
    await chancy.check_migrations()
    app = api.build_app(chancy)
    bind_host = host if host is not None else api.host
    bind_port = port if port is not None else api.port
    echo(f"serving the chancy dashboard on http://{bind_host}:{bind_port}/")
    server = _quiet_server(api.uvicorn_config(app, bind_host, bind_port))
    loop = asyncio.get_running_loop()
    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
            handled.append(sig)
    try:
        await server.serve()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        await app.state.dashboard.close()
