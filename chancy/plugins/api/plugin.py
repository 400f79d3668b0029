"""The Api plugin: serves the dashboard (JSON API and web UI) from a worker with uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from chancy.errors import ConfigurationError
from chancy.plugin import Plugin, PluginScope
from chancy.plugins.api.auth import AuthBackend, SimpleAuthBackend

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from chancy.app import Chancy
    from chancy.worker import Worker

log = logging.getLogger("chancy.api")


class Api(Plugin):
    """The dashboard, served by this worker on ``host:port`` (default 127.0.0.1:8000).

    :param authentication_backend: who may log in. Without one, an ``admin`` user with a
        random password is created and logged once (also kept in ``generated_password``).
    :param secret_key: signs login tokens; without one a random key is used, so logins end
        when the process stops.
    :param allow_origins: origins allowed to call the API from a browser (CORS).
    :param options: tuning passed to :func:`~chancy.plugins.api.app.build_starlette_app`.

    Needs the ``web`` extra (``pip install 'chancy[web]'``: Starlette and uvicorn).
    """

    def __init__(
        self,
        port: int = 8000,
        host: str = "127.0.0.1",
        authentication_backend: AuthBackend | None = None,
        secret_key: str | None = None,
        allow_origins: Iterable[str] | None = None,
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
        elif not isinstance(authentication_backend, AuthBackend):
            raise ConfigurationError("authentication_backend must be an AuthBackend")
        self.authentication_backend = authentication_backend
        self.secret_key = secret_key
        self.allow_origins = list(allow_origins or [])
        self.options = options
        #: The port actually bound once serving (useful with ``port=0``).
        self.bound_port: int | None = None
        self.started = asyncio.Event()

    @classmethod
    def get_identifier(cls) -> str:
        return "chancy.api"

    @classmethod
    def get_scope(cls) -> PluginScope:
        return PluginScope.WORKER

    def build_app(self, chancy: Chancy) -> Starlette:
        """The dashboard's ASGI app for ``chancy``."""
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
            **self.options,
        )

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        try:
            import uvicorn
        except ImportError as exc:
            raise ConfigurationError(
                "the Api plugin needs uvicorn: pip install 'chancy[web]'"
            ) from exc
        app = self.build_app(chancy)
        if self.generated_password is not None:
            log.warning(
                "dashboard login: user 'admin', password %r (generated; pass"
                " Api(authentication_backend=SimpleAuthBackend({...})) to choose)",
                self.generated_password,
            )
        config = uvicorn.Config(
            app,
            host=self.host,
            port=self.port,
            lifespan="off",
            access_log=False,
            log_level="warning",
        )
        server = _quiet_server(config)
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
        import uvicorn
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
    config = uvicorn.Config(
        app, host=bind_host, port=bind_port, lifespan="off", access_log=False, log_level="warning"
    )
    server = _quiet_server(config)
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
