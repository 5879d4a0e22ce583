"""The viewer's pages and files, and who may show them in a frame.

Pages carry a ``Content-Security-Policy: frame-ancestors`` header built from `Settings.embed_origins`,
so a dashboard on an allowed origin can put ``/embed/<stream>`` (or the whole viewer) in an
``<iframe>`` and any other site cannot. Images (snapshot, MJPEG) need no such permission: an
``<img>`` may show them from anywhere the request is allowed by the access policy.
"""

from __future__ import annotations

import functools
from pathlib import Path

from aiohttp import web

from server.config import STREAM_ID_PATTERN
from server.keys import settings_key


def web_root() -> Path:
    """The viewer's files: packaged beside the code when installed, ``web/`` in a source checkout."""
    installed = Path(__file__).parent / "web"
    return installed if installed.is_dir() else Path(__file__).parent.parent / "web"


def setup_pages(app: web.Application) -> None:
    app.router.add_get("/", _index)
    app.router.add_get("/embed/{stream}", _embed)
    app.router.add_get("/static/{name}", _static)


@functools.cache
def viewer_files() -> frozenset[str]:
    """The names ``/static/`` serves: the viewer's own flat folder of pages, scripts and styles.

    Serving a fixed set instead of a directory means no request path ever reaches the file system:
    no traversal to judge, and no ``OSError`` (a name too long, say) to turn into a 500.
    """
    return frozenset(p.name for p in web_root().iterdir() if p.is_file() and p.suffix in VIEWER_SUFFIXES)


VIEWER_SUFFIXES = frozenset({".html", ".js", ".css"})


def frame_ancestors(origins: tuple[str, ...]) -> str:
    """The CSP directive allowing this server itself and ``origins`` to frame its pages."""
    if "*" in origins:
        return "frame-ancestors *"
    return " ".join(["frame-ancestors 'self'", *origins])


def _page(request: web.Request, name: str) -> web.FileResponse:
    response = web.FileResponse(web_root() / name)
    response.headers["Content-Security-Policy"] = frame_ancestors(request.app[settings_key].embed_origins)
    response.headers["Cache-Control"] = "no-cache"
    return response


async def _static(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    if name not in viewer_files():
        raise web.HTTPNotFound(text="no such file")
    return web.FileResponse(web_root() / name)


async def _index(request: web.Request) -> web.FileResponse:
    return _page(request, "index.html")


async def _embed(request: web.Request) -> web.FileResponse:
    """One stream, no chrome; the page itself reads the stream id from its URL."""
    if not STREAM_ID_PATTERN.match(request.match_info["stream"]):
        raise web.HTTPNotFound(text="no such stream")
    return _page(request, "embed.html")
