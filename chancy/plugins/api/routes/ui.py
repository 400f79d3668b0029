"""The web UI's files: the page at ``/`` and its script, style and icon under ``/ui/``.

The page carries a strict Content-Security-Policy (scripts and styles from the dashboard
only, no inline code, no framing); the script puts API data in the page only as text.
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chancy.plugins.api.http import JSON, SECURITY_HEADERS

__all__ = ["UiRoutes"]

_UI_FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class UiRoutes:
    """Serves the UI's files (no login needed: they hold no data)."""

    def __init__(self) -> None:
        self._files: dict[str, bytes] = {}

    def _file(self, name: str) -> bytes:
        data = self._files.get(name)
        if data is None:
            data = resources.files("chancy.plugins.api").joinpath("ui", name).read_bytes()
            self._files[name] = data
        return data

    async def index(self, request: Request) -> Response:
        path = request.scope.get("path") or "/"
        if not path.endswith("/"):
            # Relative URLs in the page resolve against the directory the app is mounted at.
            # The Location is relative too (the last segment plus a slash): a redirect built
            # from the Host header would send a poisoned request to another site.
            last = path.rsplit("/", 1)[-1]
            return Response(status_code=307, headers={"Location": f"{last}/"})
        return Response(
            self._file("index.html"),
            media_type="text/html; charset=utf-8",
            headers={
                **SECURITY_HEADERS,
                "Content-Security-Policy": _CSP,
                "Cache-Control": "no-cache",
            },
        )

    async def ui_file(self, request: Request) -> Response:
        name = request.path_params["file"]
        media = _UI_FILES.get(name)
        if media is None:
            return JSON({"error": "not found"}, status_code=404)
        return Response(
            self._file(name),
            media_type=media,
            headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"},
        )

    def routes(self) -> list[Route]:
        return [
            Route("/", self.index, methods=["GET"]),
            Route("/ui/{file}", self.ui_file, methods=["GET"]),
        ]
